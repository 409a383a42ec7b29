"""``make dashboards``: the MLflow UI, kedro-viz and the Optuna dashboard on 127.0.0.1.

    python -m granvit_pipeline.reporting.dashboards start   # foreground; Ctrl-C stops all
    python -m granvit_pipeline.reporting.dashboards stop    # from another shell

``start`` runs each server in its own process group (so Ctrl-C in the terminal reaches only
this supervisor, and stopping a server stops its workers too), writes their ids to a pid file,
prints the addresses once they answer, and on SIGINT/SIGTERM terminates every group it started
(SIGKILL after a grace period). ``stop`` signals the supervisor named in the pid file, or the
groups themselves when the supervisor is gone.

What is started, from the project's configuration:
- MLflow UI on the tracking store of ``conf/base/mlflow.yml`` (``MLFLOW_TRACKING_URI`` wins);
  a tracking server (http/https) is only printed, since it runs elsewhere;
- kedro-viz, when the package is installed;
- optuna-dashboard, when installed and ``conf/base/parameters_tune.yml`` names a study storage
  that exists.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import yaml

from granvit_pipeline.tracking.config import TrackingConfig, resolve

logger = logging.getLogger("granvit_pipeline.dashboards")

HOST = "127.0.0.1"
PID_FILE = ".dashboards.pid"
GRACE_S = 10.0  # SIGTERM -> SIGKILL
KEDRO_VIZ_PIN = "kedro-viz==12.5.0"


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def _bin(name: str) -> str | None:
    """A console script of this interpreter's environment, else one on the PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def _yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except yaml.YAMLError as err:
        logger.warning("%s is not valid YAML (%s): ignored", path, err)
        return {}
    return data if isinstance(data, dict) else {}


def mlflow_service(root: Path, port: int) -> Service | str:
    """The MLflow UI command, or why there is none."""
    raw = {**_yaml(root / "conf/base/mlflow.yml"), **_yaml(root / "conf/local/mlflow.yml")}
    settings = resolve(TrackingConfig.model_validate(raw), root)
    uri = settings.tracking_uri
    if uri.startswith(("http://", "https://")):
        return f"MLflow: tracking server {uri} (not started here)"
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command = [_bin("mlflow") or "mlflow", "ui", "--backend-store-uri", uri,
               "--host", HOST, "--port", str(port)]  # fmt: skip
    if settings.artifact_location:
        command += ["--default-artifact-root", settings.artifact_location]
    return Service("MLflow UI", command, port)


def kedro_viz_service(root: Path, port: int) -> Service | str:
    if find_spec("kedro_viz") is None:
        return f"kedro-viz: not installed (pip install {KEDRO_VIZ_PIN}); skipped"
    command = [_bin("kedro") or "kedro", "viz", "run", "--host", HOST, "--port", str(port),
               "--no-browser"]  # fmt: skip
    return Service("kedro-viz", command, port)


def optuna_service(root: Path, port: int) -> Service | str:
    binary = _bin("optuna-dashboard")
    if binary is None:
        return "Optuna dashboard: optuna-dashboard not installed; skipped"
    tune = _yaml(root / "conf/base/parameters_tune.yml").get("tune") or {}
    storage = (tune.get("study") or {}).get("storage")
    if not storage:
        return "Optuna dashboard: no tune.study.storage in parameters_tune.yml; skipped"
    storage = str(storage)
    for prefix in ("sqlite:///", "journal:///"):
        if storage.startswith(prefix):
            path = Path(storage.removeprefix(prefix))
            path = path if path.is_absolute() else root / path
            if not path.exists():  # do not create an empty study database
                return f"Optuna dashboard: no study yet ({path} missing); skipped"
            storage = f"sqlite:///{path}" if prefix == "sqlite:///" else str(path)
    return Service("Optuna dashboard", [binary, storage, "--host", HOST, "--port", str(port)],
                   port)  # fmt: skip


def _port_busy(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as err:
        return err.code < 500
    except (OSError, ValueError):
        return False


def stop_groups(pids: Sequence[int], grace_s: float = GRACE_S) -> None:
    """SIGTERM each process group, then SIGKILL the ones still there after ``grace_s``."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if _group_alive(p)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class Supervisor:
    """Starts the services, waits, and stops every process group it started."""

    def __init__(self, services: Sequence[Service], pid_file: Path):
        self.services, self.pid_file = list(services), pid_file
        self.procs: dict[str, subprocess.Popen] = {}
        self.stopping = False

    def _signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def run(self, ready_timeout_s: float) -> int:
        signal.signal(signal.SIGINT, self._signal)
        signal.signal(signal.SIGTERM, self._signal)
        try:
            for service in self.services:
                if _port_busy(service.port):
                    logger.error("%s: port %d is already in use; skipped", service.name,
                                 service.port)  # fmt: skip
                    continue
                self.procs[service.name] = subprocess.Popen(
                    service.command, start_new_session=True, stdin=subprocess.DEVNULL
                )
            self._write_pid_file()
            self._announce(ready_timeout_s)
            while not self.stopping and any(p.poll() is None for p in self.procs.values()):
                time.sleep(0.5)
        finally:
            self.shutdown()
        return 0 if self.stopping else 1

    def _write_pid_file(self) -> None:
        record = {"supervisor": os.getpid(), "groups": {n: p.pid for n, p in self.procs.items()}}
        self.pid_file.write_text(json.dumps(record, indent=2) + "\n")

    def _announce(self, timeout_s: float) -> None:
        waiting = {s.name: s for s in self.services if s.name in self.procs}
        deadline = time.monotonic() + timeout_s
        while waiting and not self.stopping and time.monotonic() < deadline:
            for name, service in list(waiting.items()):
                if self.procs[name].poll() is not None:
                    logger.error("%s exited with code %s", name, self.procs[name].returncode)
                    del waiting[name]
                elif _answers(service.url):
                    print(f"{name:<18} {service.url}", flush=True)
                    del waiting[name]
            time.sleep(0.5)
        for name, service in waiting.items():
            logger.warning("%s: no answer at %s after %.0f s", name, service.url, timeout_s)
        if self.procs and not self.stopping:
            print("Ctrl-C (or `make dashboards-stop`) stops them all.", flush=True)

    def shutdown(self) -> None:
        stop_groups([p.pid for p in self.procs.values()])
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()


def _stale(pid_file: Path) -> bool:
    try:
        os.kill(int(json.loads(pid_file.read_text())["supervisor"]), 0)
    except (ProcessLookupError, ValueError, KeyError, json.JSONDecodeError):
        return True
    except PermissionError:
        return False
    return False


def stop(pid_file: Path, timeout_s: float = 30.0) -> int:
    """Stop the dashboards recorded in ``pid_file`` (their supervisor cleans up)."""
    if not pid_file.is_file():
        print(f"no dashboards running ({pid_file} missing)")
        return 0
    record = json.loads(pid_file.read_text())
    supervisor = int(record["supervisor"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(supervisor, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    groups = [int(pid) for pid in record.get("groups", {}).values()]
    stop_groups([p for p in groups if _group_alive(p)])  # supervisor gone or stuck
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()
    print(f"stopped {len(groups)} dashboard(s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--project-root", type=Path, default=Path.cwd())
    parser.add_argument("--pid-file", type=Path, default=None, help=f"default: <root>/{PID_FILE}")
    parser.add_argument("--mlflow-port", type=int, default=5000)
    parser.add_argument("--viz-port", type=int, default=4141)
    parser.add_argument("--optuna-port", type=int, default=8080)
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    root = args.project_root.resolve()
    pid_file = args.pid_file or root / PID_FILE
    if args.action == "stop":
        return stop(pid_file)
    if pid_file.exists() and _stale(pid_file):
        logger.warning("removing the stale %s (its supervisor is gone)", pid_file)
        pid_file.unlink()
    if pid_file.exists():
        logger.error("%s exists: dashboards already running? (`... stop` first)", pid_file)
        return 1
    services = []
    for found in (mlflow_service(root, args.mlflow_port), kedro_viz_service(root, args.viz_port),
                  optuna_service(root, args.optuna_port)):  # fmt: skip
        if isinstance(found, Service):
            services.append(found)
        else:
            print(found, flush=True)
    os.chdir(root)  # kedro-viz finds the project, relative storages resolve, from here
    return Supervisor(services, pid_file).run(args.ready_timeout)


if __name__ == "__main__":
    sys.exit(main())
