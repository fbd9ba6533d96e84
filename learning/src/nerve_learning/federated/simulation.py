"""Running the Flower app in Flower's simulation engine (Ray backend) from Python."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..paths import REPO

CACHE = REPO / "learning" / "cache" / "federated"


def simulate(settings: Any, clients: int, cpus: int = 2) -> dict[str, Any]:
    """Runs the app in Flower's simulation engine (Ray) with `clients` SuperNodes; returns the
    server's history."""
    from flwr.simulation import run_simulation

    from .client_app import app as client_app
    from .server_app import app as server_app
    from .task import CONFIG_ENV

    out = Path(settings.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / "settings.json"
    settings.save(cfg)
    os.environ[CONFIG_ENV] = str(cfg.resolve())
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"num_cpus": cpus, "include_dashboard": False, "log_to_driver": False,
                             }}  # Ray workers inherit this process's environment (CONFIG_ENV)
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=clients, backend_config=backend)
    return json.loads((out / "history.json").read_text())
