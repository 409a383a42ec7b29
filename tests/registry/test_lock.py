"""Promotions of one model are serialized across processes (``registry/lock.py``): a promotion
that starts while another holds the lock waits for it, then compares itself with the champion
the other one set."""

from __future__ import annotations

import logging
import queue
import subprocess
import sys
import threading

import pytest

from granvit_pipeline.registry import ModelRegistry
from granvit_pipeline.registry.lock import PromotionLockTimeout, promotion_lock
from tests.registry.test_versions import GATES, add_version

WAITING = "another promotion is in progress"
PROMOTE = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from granvit_pipeline.registry import ModelRegistry, PromotionConfig
store, name, version, gates = sys.argv[1:5]
gates = PromotionConfig.model_validate_json(gates)
decision = ModelRegistry(store, name).promote_if_better(version, gates, by="second run")
print("promoted" if decision.promote else "rejected", flush=True)
"""


def _lines(proc: subprocess.Popen) -> queue.Queue:
    """The process's output lines, then None at its end, read on a thread (a blocked read
    cannot hang the test)."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue, text: str, timeout_s: float = 60.0) -> list[str]:
    seen: list[str] = []
    while not any(text in line for line in seen):
        try:
            line = lines.get(timeout=timeout_s)
        except queue.Empty:
            line = None
        if line is None:
            pytest.fail(f"no line with {text!r} (ended or {timeout_s} s passed): {seen}")
        seen.append(line)
    return seen


def test_a_second_promotion_waits_then_compares_with_the_new_champion(
    store: str, model_name: str, new_run
) -> None:
    registry, run_id = ModelRegistry(store, model_name), new_run()
    better, worse = add_version(registry, run_id, acc=0.6), add_version(registry, run_id, acc=0.4)
    args = [store, model_name, worse, GATES.model_dump_json()]
    with promotion_lock(store, model_name):  # a first promotion is deciding
        proc = subprocess.Popen(
            [sys.executable, "-c", PROMOTE, *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        lines = _lines(proc)
        _wait_for(lines, WAITING)
        # ... and moves the champion before it lets go
        registry.client.set_registered_model_alias(model_name, "champion", better)
    output = _wait_for(lines, "rejected")
    assert proc.wait(timeout=60) == 0, output
    assert registry.champion() == better
    tags = registry.client.get_model_version(model_name, worse).tags
    assert tags["promotion.compared_with"] == better, output


def test_postgres_lock_excludes_other_sessions_per_model(postgres: str) -> None:
    with promotion_lock(postgres, "model-a"):
        with (
            pytest.raises(PromotionLockTimeout, match="model-a"),
            promotion_lock(postgres, "model-a", timeout_s=0.5),
        ):
            pass
        with promotion_lock(postgres, "model-b", timeout_s=0.5):
            pass  # another model's lock is free
    with promotion_lock(postgres, "model-a", timeout_s=0.5):
        pass  # released


def test_sqlite_lock_times_out_while_held(store: str, model_name: str) -> None:
    with (
        promotion_lock(store, model_name),
        pytest.raises(PromotionLockTimeout, match=model_name),
        promotion_lock(store, model_name, timeout_s=0.5),
    ):
        pass
    with promotion_lock(store, model_name, timeout_s=0.5):
        pass


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="in-memory"), promotion_lock("sqlite://", "m"):
        pass


def test_a_server_registry_cannot_be_locked_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), promotion_lock("http://127.0.0.1:5000", "m"):
        pass
    assert "no promotion lock for a 'http' registry" in caplog.text
