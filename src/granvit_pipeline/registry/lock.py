"""One promotion at a time per registered model: a lock around "read the champion, apply the
gates, move the alias" (and around rollbacks).

MLflow has no compare-and-set for aliases: two ``register`` runs finishing together could both
compare themselves with the same champion and both move the alias, so the last writer wins even
when it is the worse model, and one champion-history entry is lost. The lock lives where the
registry does:

- PostgreSQL registry (``postgresql://``, ``postgresql+psycopg2://``): a session-level advisory
  lock on a 64-bit key of the model name, so every host that talks to that database is
  serialized; PostgreSQL drops it with the connection if the process dies.
- SQLite registry (``sqlite:///path/mlflow.db``): an OS file lock (``filelock``) on
  ``<db>.promotion.lock`` beside the database file, for every model in it.
- Anything else (an MLflow server over HTTP, ...): the client cannot take a lock there. That is
  logged as a warning; promote from one place (one CI job, one scheduler) in that setup.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

POLL_S = 0.2


class PromotionLockTimeout(TimeoutError):
    """Another process held the model's promotion lock for longer than the timeout."""


@contextmanager
def promotion_lock(registry_uri: str, model: str, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the promotion lock of ``model`` in the registry at ``registry_uri``."""
    scheme = registry_uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "postgresql":
        with _advisory_lock(registry_uri, model, timeout_s):
            yield
    elif scheme == "sqlite":
        with _file_lock(_sqlite_path(registry_uri), model, timeout_s):
            yield
    else:
        logger.warning(
            "%s: no promotion lock for a %r registry; concurrent promotions of this model "
            "could interleave (promote from one place)", model, scheme
        )  # fmt: skip
        yield


def advisory_key(model: str) -> int:
    """Signed 64-bit key of ``model`` for ``pg_advisory_lock`` (namespaced to this project)."""
    digest = hashlib.sha256(f"granvit_pipeline.promotion:{model}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def _advisory_lock(uri: str, model: str, timeout_s: float) -> Iterator[None]:
    import sqlalchemy as sa  # MLflow's own dependency for SQL stores

    key = {"key": advisory_key(model)}
    engine = sa.create_engine(uri, poolclass=sa.pool.NullPool)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            take = sa.text("SELECT pg_try_advisory_lock(:key)")
            _wait_for(lambda: bool(conn.execute(take, key).scalar()), model, timeout_s)
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), key)
    finally:
        engine.dispose()


def _sqlite_path(uri: str) -> Path:
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    if not database or database == ":memory:":
        raise ValueError(f"{uri}: promotion lock needs a SQLite file, not an in-memory database")
    return Path(database)


@contextmanager
def _file_lock(database: Path, model: str, timeout_s: float) -> Iterator[None]:
    from filelock import FileLock, Timeout

    lock = FileLock(database.with_name(database.name + ".promotion.lock"))

    def take() -> bool:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return False
        return True

    _wait_for(take, model, timeout_s)
    try:
        yield
    finally:
        lock.release()


def _wait_for(take: Callable[[], bool], model: str, timeout_s: float) -> None:
    """Call ``take()`` until it returns True; log once when another process holds the lock."""
    deadline = time.monotonic() + timeout_s
    if take():
        return
    logger.info("%s: another promotion is in progress; waiting for its lock", model)
    while not take():
        if time.monotonic() > deadline:
            raise PromotionLockTimeout(
                f"{model}: another process held the promotion lock for over {timeout_s:.0f} s"
            )
        time.sleep(POLL_S)
