"""Project settings: Kedro defaults, the MLflow tracking hooks and their config file."""

from granvit_pipeline.hooks import tracking_hooks

# Parent run per `kedro run`, nested runs per stage, report artifacts (see hooks.py).
HOOKS = tracking_hooks()

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/<env>/mlflow.yml, read by the tracking hooks (context.config_loader["mlflow"]).
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
    # An environment (conf/<env>/) overrides single keys of base, not whole top-level blocks:
    # `ingest.sources` in conf/mix/ keeps base's `ingest.split_fractions`, and a conf/local
    # mlflow.yml that sets only `tracking_uri` keeps the rest of base's.
    "merge_strategy": {"parameters": "soft", "mlflow": "soft"},
}
