"""Kedro project settings. kedro-mlflow registers its hooks through its entry point."""

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

from emit_iad.hooks import CredentialsHook  # noqa: E402

HOOKS = (CredentialsHook(),)
