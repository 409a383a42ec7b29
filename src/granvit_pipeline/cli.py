"""Project commands for the ``kedro`` CLI (Kedro loads ``<package>.cli.cli``).

``kedro models status`` shows the encoder's champion, challenger and champion history;
``kedro models rollback --reason "..."`` moves ``champion`` back to the previous champion (or
``--to-version N``, an earlier one) and records who and why; ``kedro models reproduce
<version or alias>`` re-trains a version from its commit and data and compares the metrics
(``registry.reproduce``). They read the registry location and model name from the project's
conf (``mlflow.yml``, ``parameters_register.yml``; ``--env`` as for ``kedro run``), so they
talk to the store the pipeline wrote to.
"""

from __future__ import annotations

import getpass
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

logger = logging.getLogger(__name__)

REPORT_DATASET = "evaluation_report"
DEFAULT_REPORT = "data/08_reporting/evaluation_report.json"


@click.group(name="granvit_pipeline")
def cli() -> None:
    """Project commands."""


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


@dataclass(frozen=True)
class ProjectConf:
    """What the commands read from the project's conf."""

    tracking: Any  # tracking.TrackingSettings
    register: Any  # registry.RegisterParams
    report_path: Path  # the evaluation report (catalog ``evaluation_report``), project-relative


def project_conf(project_path: Path, env: str | None = None) -> ProjectConf:
    """The tracking settings, register parameters and report path of ``kedro run`` in ``env``."""
    from kedro.framework.session import KedroSession

    from granvit_pipeline.hooks import CONFIG_KEY
    from granvit_pipeline.registry import RegisterParams
    from granvit_pipeline.tracking import TrackingConfig, resolve

    with KedroSession.create(project_path=project_path, env=env) as session:
        context = session.load_context()
        tracking = resolve(TrackingConfig.model_validate(context.config_loader[CONFIG_KEY]),
                           context.project_path)  # fmt: skip
        params = RegisterParams.model_validate(context.params.get("register", {}))
        report = context.config_loader["catalog"].get(REPORT_DATASET, {}).get("filepath")
    return ProjectConf(tracking, params, Path(report or DEFAULT_REPORT))


def _registry(conf: ProjectConf) -> Any:
    from granvit_pipeline.registry import ModelRegistry

    params = conf.register
    return ModelRegistry(
        conf.tracking.tracking_uri, params.model_name, params.champion_alias,
        params.challenger_alias,
    )  # fmt: skip


def registry_from_conf(project_path: Path, env: str | None = None) -> Any:
    """The ``ModelRegistry`` that ``kedro run`` (in ``env``) registers the encoder in."""
    return _registry(project_conf(project_path, env))


@cli.group()
def models() -> None:
    """The encoder in the MLflow Model Registry (aliases champion / challenger)."""


ENV_OPTION = click.option("--env", "-e", default=None, help="Kedro environment of the conf.")


@models.command()
@ENV_OPTION
@click.pass_obj
def status(metadata: Any, env: str | None) -> None:
    """Show the champion, the challenger and the champion history."""
    registry = registry_from_conf(metadata.project_path, env)
    click.echo(f"model:      {registry.name}")
    click.echo(f"champion:   {_version(registry.champion())}")
    click.echo(f"challenger: {_version(registry.alias_version(registry.challenger_alias))}")
    history = registry.history()
    click.echo(f"history:    {' -> '.join('v' + v for v in history) if history else '(none)'}")
    for event in registry.events()[-5:]:
        click.echo(f"  {json.dumps(event, sort_keys=True)}")


def _version(version: str | None) -> str:
    return f"v{version}" if version is not None else "(not set)"


@models.command()
@ENV_OPTION
@click.option("--reason", required=True, help="Why (recorded in the registry).")
@click.option("--to-version", default=None, help="An earlier champion (default: the last one).")
@click.option("--by", default=None, help="Who (default: the current user).")
@click.pass_obj
def rollback(
    metadata: Any, env: str | None, reason: str, to_version: str | None, by: str | None
) -> None:
    """Move champion back to the previous champion (or --to-version N)."""
    registry = registry_from_conf(metadata.project_path, env)
    try:
        change = registry.rollback(reason, by or _user(), to_version)
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    click.echo(
        f"{registry.name}: champion v{change.previous} -> v{change.version} "
        f"(by {change.by}: {change.reason})"
    )


@dataclass(frozen=True)
class ReproduceOptions:
    """``kedro models reproduce``'s options, as one value for the steps below."""

    ref: str  # version number or alias
    remote: str | None  # DVC remote; None: core.remote
    targets: list[str]  # what `dvc pull` fetches
    pipelines: list[str]  # what `kedro run` re-runs
    tolerance: float
    allow_dirty: bool
    keep: bool


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


@models.command()
@ENV_OPTION
@click.argument("ref", metavar="VERSION")
@click.option("--remote", default=None, help="DVC remote to pull from (default: core.remote).")
@click.option("--pull", "targets", default="shard", show_default=True,
              help="DVC stages or outs the training reads, comma-separated.")  # fmt: skip
@click.option("--pipelines", default="pretrain,adapt,evaluate", show_default=True,
              help="Pipelines that made and scored the model, comma-separated.")  # fmt: skip
@click.option("--tolerance", type=float, default=0.0, show_default=True,
              help="Largest |difference| per metric (0: equal, as on the CPU).")  # fmt: skip
@click.option("--allow-dirty", is_flag=True,
              help="Reproduce a version trained on a tree with uncommitted changes.")  # fmt: skip
@click.option("--keep", is_flag=True, help="Keep the temporary git worktree.")
@click.pass_obj
def reproduce(metadata: Any, env: str | None, targets: str, pipelines: str, **options: Any) -> None:
    """Re-train VERSION (a number or an alias) from its commit and data; compare the metrics.

    Checks the version's git commit out into a temporary worktree, pulls its data from the DVC
    remote, runs the pipelines there and compares the new evaluation metrics with the
    registered ones. Exits non-zero when they differ by more than --tolerance.
    """
    from granvit_pipeline.registry.checkout import ReproduceError

    opts = ReproduceOptions(targets=_names(targets), pipelines=_names(pipelines), **options)
    conf = project_conf(metadata.project_path, env)
    try:
        checks = _reproduce(Path(metadata.project_path), conf, opts)
    except ReproduceError as err:
        raise click.ClickException(str(err)) from err
    _report(opts, checks)


def _origin(conf: ProjectConf, opts: ReproduceOptions) -> Any:
    """The version's origin; a dirty one only with --allow-dirty."""
    from granvit_pipeline.registry.reproduce import ReproduceError, origin_from_tags, version_tags

    version, tags = version_tags(_registry(conf), opts.ref)
    origin = origin_from_tags(version, tags)
    if origin.dirty and not opts.allow_dirty:
        raise ReproduceError(
            f"v{version} was trained on a tree with uncommitted changes (git.dirty=true): its "
            f"commit {origin.commit[:12]} may not be the code that made it; --allow-dirty "
            "reproduces it anyway"
        )
    if origin.dirty:
        logger.warning("v%s: trained on a dirty tree; the commit may differ from its code", version)
    click.echo(f"{conf.register.model_name} v{version}: commit {origin.commit[:12]}, "
               f"env {origin.kedro_env or 'default'}")  # fmt: skip
    return origin


def _reproduce(project: Path, conf: ProjectConf, opts: ReproduceOptions) -> list[Any]:
    """Check out, pull, run, compare (``registry.checkout``, ``registry.reproduce``)."""
    from granvit_pipeline.registry import checkout
    from granvit_pipeline.registry.reproduce import compare_identity, compare_metrics

    origin = _origin(conf, opts)
    toplevel = checkout.git_toplevel(project)
    checkout.check_commit(toplevel, origin.commit)
    with checkout.worktree(toplevel, origin.commit, opts.keep) as tree:
        root = tree / project.resolve().relative_to(toplevel)  # the project in the worktree
        name = checkout.point_remote(project, root, opts.remote)
        checkout.dvc_pull(root, opts.targets, name)
        _check_pulled_data(conf, root, origin.tags)
        env = checkout.child_env(root, {"MLFLOW_TRACKING_URI": conf.tracking.tracking_uri})
        checkout.check_imports_checkout(root, env)
        checkout.kedro_run(root, opts.pipelines, origin.kedro_env, env)
        report = json.loads((root / conf.report_path).read_text())
        params_now = _params_digest(root, origin.kedro_env)
        if opts.keep:
            click.echo(f"worktree kept: {tree}")
    return compare_metrics(origin.metrics, report.get("metrics", {}), opts.tolerance) + (
        compare_identity(origin.tags, report, params_now)
    )


def _check_pulled_data(conf: ProjectConf, root: Path, tags: dict[str, str]) -> None:
    """Stop before training when the pull left no shards, or not the data the version was
    evaluated on (``data.version``)."""
    from granvit_pipeline.registry.lineage import TAG_DATA_VERSION
    from granvit_pipeline.registry.reproduce import ReproduceError
    from granvit_pipeline.tracking import data_version

    shards = conf.tracking.shards_dir
    if shards is None:
        return
    relative = shards.relative_to(conf.tracking.project_root)
    pulled, wanted = data_version(root / relative), tags.get(TAG_DATA_VERSION)
    if pulled is None:
        raise ReproduceError(
            f"no shards in {relative} after dvc pull: the commit's dvc.lock does not lock them "
            "(`dvc repro shard`, commit dvc.lock, `dvc push`, before training)"
        )
    if wanted is not None and pulled != wanted:
        raise ReproduceError(
            f"the pulled shards are data version {pulled}, but the version was evaluated on "
            f"{wanted}: its commit's dvc.lock does not hold its data"
        )


def _params_digest(root: Path, env: str | None) -> str:
    """``params.digest`` of the checkout's conf, as the register node computes it."""
    from kedro.config import OmegaConfigLoader

    from granvit_pipeline.registry import params_digest
    from granvit_pipeline.settings import CONFIG_LOADER_ARGS

    params = OmegaConfigLoader(str(root / "conf"), env=env, **CONFIG_LOADER_ARGS)["parameters"]
    return params_digest({key: params.get(key) for key in ("pretrain", "adapt", "evaluate")})


def _report(opts: ReproduceOptions, checks: list[Any]) -> None:
    """The table; a non-zero exit when a required check failed."""
    from granvit_pipeline.registry.reproduce import failures, format_table

    click.echo(format_table(checks))
    failed = failures(checks)
    if failed:
        raise click.ClickException(
            f"{opts.ref} did not reproduce: {len(failed)} of {len(checks)} checks differ "
            f"(tolerance {opts.tolerance:g}): {', '.join(c.name for c in failed)}"
        )
    click.echo(f"{opts.ref} reproduced: every metric within {opts.tolerance:g}")
