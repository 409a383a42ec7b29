"""Project commands for the ``kedro`` CLI (Kedro loads ``<package>.cli.cli``).

``kedro models status`` shows the encoder's champion, challenger and champion history;
``kedro models rollback --reason "..."`` moves ``champion`` back to the previous champion (or
``--to-version N``, an earlier one) and records who and why. Both read the registry location
and model name from the project's conf (``mlflow.yml``, ``parameters_register.yml``; ``--env``
as for ``kedro run``), so they talk to the store the pipeline wrote to.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import click


@click.group(name="granvit_pipeline")
def cli() -> None:
    """Project commands."""


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


def registry_from_conf(project_path: Path, env: str | None = None) -> Any:
    """The ``ModelRegistry`` that ``kedro run`` (in ``env``) registers the encoder in."""
    from kedro.framework.session import KedroSession

    from granvit_pipeline.hooks import CONFIG_KEY
    from granvit_pipeline.registry import ModelRegistry, RegisterParams
    from granvit_pipeline.tracking import TrackingConfig, resolve

    with KedroSession.create(project_path=project_path, env=env) as session:
        context = session.load_context()
        tracking = resolve(TrackingConfig.model_validate(context.config_loader[CONFIG_KEY]),
                           context.project_path)  # fmt: skip
        params = RegisterParams.model_validate(context.params.get("register", {}))
    return ModelRegistry(
        tracking.tracking_uri, params.model_name, params.champion_alias, params.challenger_alias
    )


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
