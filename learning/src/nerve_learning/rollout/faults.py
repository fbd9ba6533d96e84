"""Fault injection for the fleet (kill -9 of the tracking server, of a device) and the check
that no telemetry was lost: every report a device made (a complete line in its spool) must be on
the server (one point of the device run's `reports` metric per report)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from ..paths import REPO
from .telemetry import FLEET_EXPERIMENT, TAG_DEVICE, TAG_ROLLOUT, Spool

SCRIPT = REPO / "scripts" / "tracking_server.sh"


def server_env(tracking_dir: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if tracking_dir is not None:
        env["NERVE_TRACKING_DIR"] = str(tracking_dir)
    return env


def start_server(tracking_dir: Path | None = None) -> str:
    out = subprocess.run([str(SCRIPT), "start"], env=server_env(tracking_dir), capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"tracking server did not start: {out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1]


def kill_server(tracking_dir: Path) -> int:
    """kill -9 of the MLflow server's whole process group (no shutdown of any kind)."""
    pid = int((tracking_dir / "mlflow.pid").read_text())
    os.killpg(pid, signal.SIGKILL)
    return pid


def received(uri: str) -> dict[str, int]:
    """Reports on the server per `rollout/device`."""
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name(FLEET_EXPERIMENT)
    if exp is None:
        return {}
    out: dict[str, int] = {}
    for run in c.search_runs([exp.experiment_id], max_results=5000):
        key = f"{run.data.tags.get(TAG_ROLLOUT)}/{run.data.tags.get(TAG_DEVICE)}"
        out[key] = len({m.step for m in c.get_metric_history(run.info.run_id, "reports")})
    return out


def produced(fleet_work: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for spool_dir in Path(fleet_work).glob("*/spool/*"):
        out[f"{spool_dir.name}/{spool_dir.parent.parent.name}"] = len(Spool(spool_dir).records())
    return out


def telemetry_lost(uri: str, fleet_works: list[Path]) -> dict[str, Any]:
    made: dict[str, int] = {}
    for w in fleet_works:
        made.update(produced(w))
    got = received(uri)
    lost = {k: n - got.get(k, 0) for k, n in made.items() if n > got.get(k, 0)}
    return {"produced": sum(made.values()), "received": sum(got.get(k, 0) for k in made), "lost": sum(lost.values()),
            "lost_by_device": lost}
