"""Project settings (Kedro defaults, plus the project's hooks as they are added)."""

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
