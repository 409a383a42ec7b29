"""Project settings (Kedro defaults, plus the project's hooks as they are added)."""

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (conf/<env>/) overrides single keys of base, not whole top-level blocks:
    # `ingest.sources` in conf/mix/ keeps base's `ingest.split_fractions`.
    "merge_strategy": {"parameters": "soft"},
}
