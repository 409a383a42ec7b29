"""Kedro hooks that track every ``kedro run`` in MLflow (configured by ``conf/<env>/mlflow.yml``).

One parent run per ``kedro run``; a nested run per stage node (``nested_runs`` in mlflow.yml:
``train_*``, ``score_*`` or the ``mlflow_run`` tag); other nodes log to the parent. While a
node runs, ``MLFLOW_RUN_ID`` (its run) and ``MLFLOW_TRACKING_URI`` are set in the environment,
so the training processes it starts stream their step metrics into that run
(``tracking.MlflowCallback``) and MLflow's fluent API inside a node resumes it.

Why our own hooks and not kedro-mlflow: it registers models on its own, fails on the plain
file store when unconfigured, and has no way to stream from DeepSpeed child processes. The
lifecycle is split by concern (parent run, node runs, report artifacts); the MLflow work itself
is in ``granvit_pipeline.tracking``, which knows nothing of Kedro.

Nested runs and the child-process environment need the ``SequentialRunner`` (the default):
under thread or process runners nodes run concurrently and would share one environment, so
those runs get the parent run only.
"""

from __future__ import annotations

import contextlib
import fnmatch
import getpass
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl
from kedro.pipeline import Node, Pipeline

from granvit_pipeline.tracking import (
    ENV_RUN_ID,
    ENV_TRACKING_URI,
    RunTracker,
    TrackingConfig,
    TrackingSettings,
    data_version,
    dvc_lock_tags,
    git_tags,
    kedro_params,
    metric_values,
    redact_uri,
    resolve,
)
from granvit_pipeline.tracking.provenance import TAG_DATA_VERSION
from granvit_pipeline.tracking.runs import end_fluent_run

logger = logging.getLogger(__name__)

CONFIG_KEY = "mlflow"  # settings.CONFIG_LOADER_ARGS["config_patterns"]
REPORTS_DIR = "reports"
RUN_FILTERS = ("tags", "node_names", "from_nodes", "to_nodes", "from_inputs", "to_outputs")


@dataclass
class TrackingState:
    """What the hooks share during one ``kedro run`` (settings.py makes one per process)."""

    settings: TrackingSettings | None = None  # None: tracking off
    env: str = "local"  # the Kedro environment of the context
    tracker: RunTracker | None = None
    catalog: Any = None
    parent_run_id: str | None = None
    common_tags: dict[str, str] = field(default_factory=dict)  # parent's, copied to nested runs
    sequential: bool = True
    # The open nested run (node name, run id). It stays open until the next node starts or the
    # pipeline ends: Kedro saves a node's outputs after `after_node_run`, and a report saved
    # then belongs to it, as does a failure to save.
    node_run: tuple[str, str] | None = None
    saved_env: dict[str, str | None] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.tracker is not None and self.parent_run_id is not None

    def run_id_of(self, node: Node) -> str | None:
        if self.node_run is not None and self.node_run[0] == node.name:
            return self.node_run[1]
        return self.parent_run_id

    def close_node_run(self, error: BaseException | None = None) -> None:
        if self.node_run is None:
            return
        _, run_id = self.node_run
        self.node_run = None
        if error is None:
            self.tracker.end_run(run_id)
        else:
            self.tracker.fail_run(run_id, error)

    def set_env(self, run_id: str) -> None:
        assert self.settings is not None
        for key, value in ((ENV_RUN_ID, run_id), (ENV_TRACKING_URI, self.settings.tracking_uri)):
            self.saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def restore_env(self) -> None:
        for key, value in self.saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self.saved_env.clear()

    def reset(self) -> None:
        self.restore_env()
        self.tracker, self.catalog, self.parent_run_id, self.node_run = None, None, None, None
        self.common_tags = {}


def _warn_on_error(what: str, fn: Any, *args: Any) -> None:
    """Logging that must not fail a run that has done its work (a report upload, a tag)."""
    try:
        fn(*args)
    except Exception as err:
        logger.warning("MLflow: could not %s: %s", what, err)


def _run_tags(run_params: dict[str, Any], env: str, root: Path) -> dict[str, str]:
    names = run_params.get("pipeline_names") or ["__default__"]
    tags = {
        "kedro.pipeline": "+".join(names),
        "kedro.env": env,
        "kedro.session_id": str(run_params.get("run_id")),
        "kedro.version": str(run_params.get("kedro_version")),
        **git_tags(root),
        **dvc_lock_tags(root),  # the data versions, next to the code version
    }
    with contextlib.suppress(KeyError, OSError):  # no passwd entry (some containers)
        tags["mlflow.user"] = getpass.getuser()
    filters = {key: run_params[key] for key in RUN_FILTERS if run_params.get(key)}
    if filters:
        tags["kedro.filters"] = json.dumps(filters, default=str)
    return tags


def _pipeline_params(pipeline: Pipeline, catalog: Any) -> dict[str, str]:
    names = [n for n in pipeline.inputs() if n == "parameters" or n.startswith("params:")]
    return kedro_params({name: catalog.load(name) for name in sorted(names)})


class MlflowPipelineHooks:
    """The parent run: started before the pipeline, FINISHED after it, FAILED on its error."""

    def __init__(self, state: TrackingState):
        self.state = state

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Read and validate mlflow.yml (no MLflow import: contexts are made for more than runs)."""
        self.state.reset()
        try:
            raw = context.config_loader[CONFIG_KEY]
        except MissingConfigException:
            logger.info("no %s.yml in conf: MLflow tracking off", CONFIG_KEY)
            self.state.settings = None
            return
        config = TrackingConfig.model_validate(raw)
        self.state.env = context.env or getattr(context.config_loader, "default_run_env", "local")
        root = Path(context.project_path)
        self.state.settings = resolve(config, root) if config.enabled else None

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog) -> None:
        state, settings = self.state, self.state.settings
        if settings is None:
            return
        state.reset()
        try:
            state.tracker = RunTracker(settings)
        except Exception as err:  # fail before any work: tracking was asked for
            raise RuntimeError(
                f"MLflow tracking at {redact_uri(settings.tracking_uri)} failed ({err}); fix it, "
                f"or set `enabled: false` in conf/local/{CONFIG_KEY}.yml to run without tracking"
            ) from err
        runner = str(run_params.get("runner"))
        state.sequential = runner == "None" or "SequentialRunner" in runner
        if not state.sequential:
            logger.warning("MLflow: %s runs nodes concurrently: parent run only", runner)
        state.catalog = catalog
        state.common_tags = _run_tags(run_params, state.env, settings.project_root)
        version = data_version(settings.shards_dir)
        tags = {**state.common_tags, **({TAG_DATA_VERSION: version} if version else {})}
        state.parent_run_id = state.tracker.start_run(tags["kedro.pipeline"], tags)
        _warn_on_error("log parameters", state.tracker.log_params, state.parent_run_id,
                       _pipeline_params(pipeline, catalog))  # fmt: skip
        logger.info("MLflow run %s in %s (experiment %r)", state.parent_run_id,
                    redact_uri(settings.tracking_uri), settings.config.experiment_name)  # fmt: skip

    @hook_impl
    def after_pipeline_run(self) -> None:
        state = self.state
        if not state.active:
            return
        state.close_node_run()
        # The data pipeline may have written new shards during this run.
        version = data_version(state.settings.shards_dir)
        if version:
            _warn_on_error("tag the data version", state.tracker.set_tags, state.parent_run_id,
                           {TAG_DATA_VERSION: version})  # fmt: skip
        state.tracker.end_run(state.parent_run_id)
        state.reset()

    @hook_impl
    def on_pipeline_error(self, error: Exception) -> None:
        state = self.state
        if not state.active:
            return
        # The node's run is still open when saving its outputs failed.
        _warn_on_error("mark the node run failed", state.close_node_run, error)
        state.tracker.fail_run(state.parent_run_id, error)
        state.reset()


class MlflowNodeHooks:
    """A nested run per stage node, and the environment that points its child processes at it."""

    def __init__(self, state: TrackingState):
        self.state = state

    def _wants_nested_run(self, node: Node) -> bool:
        nested = self.state.settings.config.nested_runs
        names = {node.name, node.name.rsplit(".", 1)[-1]}
        return bool(node.tags & set(nested.node_tags)) or any(
            fnmatch.fnmatchcase(name, pattern) for name in names for pattern in nested.node_names
        )

    @hook_impl
    def before_node_run(self, node: Node, inputs: dict[str, Any]) -> None:
        state = self.state
        if not (state.active and state.sequential):
            return
        state.close_node_run()  # the previous node's outputs are saved by now
        if self._wants_nested_run(node):
            version = data_version(state.settings.shards_dir)
            tags = {**state.common_tags, "kedro.node": node.name}
            if version:
                tags[TAG_DATA_VERSION] = version
            run_id = state.tracker.start_run(node.name, tags, state.parent_run_id)
            state.node_run = (node.name, run_id)
            _warn_on_error("log parameters", state.tracker.log_params, run_id,
                           kedro_params(inputs))  # fmt: skip
        state.set_env(state.run_id_of(node))

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        state = self.state
        if state.active and state.sequential:
            end_fluent_run(state.run_id_of(node))  # while MLFLOW_TRACKING_URI still names it
        state.restore_env()  # the run itself stays open while Kedro saves the outputs

    @hook_impl
    def on_node_error(self, error: Exception, node: Node) -> None:
        state = self.state
        if state.active and state.sequential:
            end_fluent_run(state.run_id_of(node))
        state.restore_env()
        if state.active:
            state.close_node_run(error)


def _saved_file(catalog: Any, name: str, root: Path) -> Path | None:
    """The local file or folder a catalog dataset wrote, when it says where."""
    dataset = catalog.get(name)
    # Kedro has no public "where did you save"; file-backed datasets report it in _describe():
    # kedro-datasets as `filepath` (+ `protocol`, `version`), this project's as `path`.
    described = dataset._describe() if dataset is not None else {}
    location = described.get("filepath") or described.get("path")
    if not location or described.get("protocol", "file") != "file" or described.get("version"):
        return None
    path = Path(str(location))
    path = path if path.is_absolute() else root / path
    return path if path.exists() else None


class MlflowOutputHooks:
    """Node outputs named in mlflow.yml as artifacts (``artifact_datasets``: reports, plots) and
    metrics (``metric_datasets``: the evaluation report's numbers) of the node's run."""

    def __init__(self, state: TrackingState):
        self.state = state

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Node) -> None:
        state = self.state
        if not state.active:
            return
        config = state.settings.config
        run_id = state.run_id_of(node)
        if any(fnmatch.fnmatchcase(dataset_name, p) for p in config.artifact_datasets):
            _warn_on_error(f"log dataset {dataset_name}", self._log, run_id, dataset_name, data)
        if dataset_name in config.metric_datasets:
            metrics = metric_values(data, config.metric_datasets[dataset_name])
            _warn_on_error(f"log metrics of {dataset_name}", state.tracker.log_metrics, run_id,
                           metrics)  # fmt: skip

    def _log(self, run_id: str, name: str, data: Any) -> None:
        path = _saved_file(self.state.catalog, name, self.state.settings.project_root)
        if path is not None:
            self.state.tracker.log_path(run_id, path, REPORTS_DIR)
        else:  # not a local file: the value the node returned
            suffix = ".json" if isinstance(data, dict | list) else ".txt"
            self.state.tracker.log_value(run_id, data, f"{REPORTS_DIR}/{name}{suffix}")


def tracking_hooks() -> tuple[Any, ...]:
    """The three tracking hooks, sharing one state (for ``settings.HOOKS``)."""
    state = TrackingState()
    return MlflowPipelineHooks(state), MlflowNodeHooks(state), MlflowOutputHooks(state)
