"""Kedro hooks of the project."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset

from emit_iad.train.world import is_main_process

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
