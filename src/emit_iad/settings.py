"""Kedro project settings.

kedro-mlflow's hook is registered here, not through its entry point, so that under a
multi-process launcher only the main process (RANK 0) opens an MLflow run: one run and one
registered version per launch (hooks.MainProcessWritesHook keeps the others from writing).
"""

from kedro_mlflow.framework.hooks import MlflowHook

from emit_iad.config_args import CONFIG_LOADER_ARGS  # shared with dvc_params.py
from emit_iad.config_loader import ProjectConfigLoader
from emit_iad.hooks import CredentialsHook, MainProcessWritesHook, OutputsCommitHook, StartupHook
from emit_iad.train.world import is_main_process

CONFIG_LOADER_CLASS = ProjectConfigLoader  # OmegaConfigLoader, naming the file of YAML errors
__all__ = ["CONFIG_LOADER_ARGS", "CONFIG_LOADER_CLASS", "DISABLE_HOOKS_FOR_PLUGINS", "HOOKS"]

DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow", "kedro-mlflow")  # as its metadata spells it
# pluggy calls the last registered first: StartupHook checks the parameters and the MLflow
# store before kedro-mlflow opens its run; OutputsCommitHook, called first after the run,
# commits its outputs before kedro-mlflow logs the run (a failure there keeps them)
HOOKS = (CredentialsHook(), MainProcessWritesHook(),
         *((MlflowHook(),) if is_main_process() else ()), StartupHook(),
         OutputsCommitHook())  # fmt: skip
