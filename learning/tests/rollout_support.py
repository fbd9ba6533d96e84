"""What the rollout tests against the real tracking server share: the server (PostgreSQL +
`mlflow server`, started by scripts/tracking_server.sh in a temporary directory, on free loopback
ports), a rollout salt that puts an exact share of a small fleet in the first step, the reports
in the devices' spools, and a kill -9 of the server with its restart a little later.

Import the fixture into a test module (`from rollout_support import server`) to use it there.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from nerve_learning.rollout import assign, faults
from nerve_learning.rollout.telemetry import Spool

REPO = Path(__file__).resolve().parents[2]
CHAMPION = REPO / "models" / "nerve-sr-x2.onnx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(tracking URI, the server's directory) of a fresh PostgreSQL-backed MLflow server."""
    if not (REPO / "target/release/libgstnerve.so").is_file():
        pytest.fail("needs the built plugin (cargo build --release)")
    d = tmp_path_factory.mktemp("tracking")
    with pytest.MonkeyPatch.context() as mp:
        # ports of its own (free ones unless given), so a developer's server on the defaults, or
        # another test run's, is left alone
        mp.setenv("NERVE_PG_PORT", os.environ.get("NERVE_TEST_PG_PORT") or str(free_port()))
        mp.setenv("NERVE_MLFLOW_PORT", os.environ.get("NERVE_TEST_MLFLOW_PORT") or str(free_port()))
        uri = faults.start_server(d)
        try:
            yield uri, d
        finally:
            subprocess.run([str(faults.SCRIPT), "destroy"], env=faults.server_env(d), timeout=120)


def salt_for_one_in(devices: list[str], share: float, prefix: str) -> str:
    """A rollout id whose first step holds exactly `share` of these devices (the salt is the
    experiment's to choose; with 10 devices the hash could otherwise put 2 under 10%)."""
    for k in range(1000):
        rid = f"{prefix}-{k}"
        t = assign.threshold_for(devices, rid, share, 1)
        if assign.fraction_under(devices, rid, t) == share:
            return rid
    raise AssertionError("no salt found")


def records(fleet_work: Path, rollout: str, device: str = "*") -> list[dict[str, Any]]:
    """The reports devices made for a rollout (complete lines in their spools)."""
    return [r for p in sorted(Path(fleet_work).glob(f"{device}/spool/{rollout}")) for r in Spool(p).records()]


class Outage:
    """kill -9 of the MLflow server's process group now, restarted `down_s` later in a thread
    (the caller goes on, as devices and the controller do); `down` and `up` are the times."""

    def __init__(self, tracking: Path, down_s: float) -> None:
        self.tracking, self.down_s = tracking, down_s
        self.down = time.time()
        faults.kill_server(tracking)
        self.up: float | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._restart, daemon=True)
        self.thread.start()

    def _restart(self) -> None:
        time.sleep(self.down_s)
        try:
            faults.start_server(self.tracking)
        except BaseException as e:  # reported by join()
            self.error = e
        self.up = time.time()

    def join(self, timeout: float = 300) -> None:
        self.thread.join(timeout)
        if self.error is not None:
            raise self.error
        assert self.up is not None, "the tracking server did not come back"

    def made_while_down(self, recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        assert self.up is not None
        return [r for r in recs if self.down * 1000 <= r["report"]["created_ms"] <= self.up * 1000]
