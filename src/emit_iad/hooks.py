"""Kedro hooks of the project."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset

from emit_iad import tracking
from emit_iad.atomic import recover_all
from emit_iad.stage_params import locator, validate
from emit_iad.train.world import is_main_process

log = logging.getLogger(__name__)

# Credential blocks of conf/local/credentials.yml that nodes receive as `<name>_credentials`.
CREDENTIAL_BLOCKS = ("openai",)


class CredentialsHook:
    """Hand credential blocks to the nodes that need them, as in-memory catalog entries.

    Kedro passes credentials only to datasets; a description node talks to an API instead, so
    it receives ``openai_credentials`` (``api_key``, ``base_url``, ``organization``; empty when
    absent, and the client then reads ``OPENAI_API_KEY``). Memory datasets are never logged as
    parameters, so the key stays out of MLflow.
    """

    @hook_impl
    def after_catalog_created(self, catalog: Any, conf_creds: dict[str, Any], **_: Any) -> None:
        for block in CREDENTIAL_BLOCKS:
            catalog[f"{block}_credentials"] = dict((conf_creds or {}).get(block) or {})


class MainProcessWritesHook:
    """One logical run per launch under any multi-process launcher (accelerate, torchrun,
    DeepSpeed). Every process computes (the training loops meet at their collectives); only
    the main process writes: in the others, every dataset a node produces becomes an in-memory
    one, so no file, no MLflow metric or artifact, no registered model comes from them (and
    settings.py gives them no kedro-mlflow hook, so no second MLflow run either)."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        if is_main_process():
            return
        for name in pipeline.all_outputs():
            catalog[name] = MemoryDataset(copy_mode="assign")


class StartupHook:
    """Before any node runs (and before kedro-mlflow opens its run: settings.py registers this
    hook last, so it is called first):

    - every section of parameters the pipeline reads is checked by its stage's typed config,
      each problem named with the file that set it (conf/base, conf/<env>, conf/local or
      ``--params``), so a typo in the last stage fails in seconds, not after training;
    - half-done swaps of killed processes under ``data/`` are finished or undone, and their
      temporary folders removed (atomic.recover);
    - the project's MLflow store: artifact paths of a copied ``mlflow.db`` moved to this
      project's ``mlruns/``, runs left RUNNING by killed processes marked KILLED.
    """

    def __init__(self):
        self._tagged = False

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        from kedro.framework.project import settings

        project = Path(run_params.get("project_path") or ".")
        sections = {name.split(":", 1)[1]: catalog.load(name) for name in pipeline.inputs()
                    if name.startswith("params:") and "." not in name}  # fmt: skip
        validate(sections, locator(project / settings.CONF_SOURCE, run_params.get("env"),
                                   run_params.get("runtime_params")))  # fmt: skip
        self._tagged = False
        if not is_main_process():
            return
        recover_all(project / "data")
        db = tracking.sqlite_path(mlflow.get_tracking_uri(), project)
        if db is not None:
            tracking.relocate_artifacts(db, project)
            try:
                tracking.mark_killed_runs()
            except mlflow.exceptions.MlflowException as exc:  # a store not yet created
                log.debug("no run to check: %s", exc)

    @hook_impl
    def before_node_run(self, **_: Any) -> None:
        if self._tagged or not is_main_process():
            return
        run = mlflow.active_run()
        if run is not None:
            tracking.tag_process(run.info.run_id)
        self._tagged = True
