"""Kedro project settings.

kedro-mlflow's hook is registered here, not through its entry point, so that under a
multi-process launcher only the main process (RANK 0) opens an MLflow run: one run and one
registered version per launch (hooks.MainProcessWritesHook keeps the others from writing).
"""

from kedro.config import OmegaConfigLoader

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
    # an environment (conf/gpu, conf/local) lists only the parameters it changes
    "merge_strategy": {"parameters": "soft"},
}

from kedro_mlflow.framework.hooks import MlflowHook  # noqa: E402

from emit_iad.hooks import CredentialsHook, MainProcessWritesHook  # noqa: E402
from emit_iad.train.world import is_main_process  # noqa: E402

DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow", "kedro-mlflow")  # as its metadata spells it
HOOKS = (CredentialsHook(), MainProcessWritesHook(),
         *((MlflowHook(),) if is_main_process() else ()))  # fmt: skip
