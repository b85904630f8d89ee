"""How Kedro loads this project's configuration; shared by settings.py and the DVC stage that
resolves the parameters (dvc_params.py), which need not import the hooks."""

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
