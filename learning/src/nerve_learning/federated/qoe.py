"""What personalisation is worth to a viewer's streaming QoE, through the ABR simulator.

For each viewer type the quality table of its content (measured for the shipped model,
nerve-abr/tables/pensieve_<content>_nervesr.json) stands for the federated global model, and
the personalised table is the same with every enhanced entry raised by the VMAF the personal
model gained over the global one on that type's unharvested clips (the report's
`personal_minus_global_vmaf`; one figure for every rung: the gain was measured at one input
size). The `nerve` planner then streams every session of a fixed trace mix (the first sessions
of each family of ../shared/data/traces) with each table, in the Rust simulator through the
bindings, and the change of mean quality-QoE is the figure.

What this leaves out, stated with the figure: the gain per rung (assumed the same at every rung),
and the global model's own distance from the shipped one (both tables start from the shipped
model's measurements)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..paths import REPO

TABLES = REPO / "nerve-abr" / "tables"
TRACES = REPO.parent / "shared" / "data" / "traces"
# the content each viewer type watches -> its measured table
CONTENT_TABLE = {"sports": "sports", "animation": "animation", "talking_heads": "talking_head", "screen": "screen",
                 "mixed": "generic"}
# sessions per family source in the trace mix
PER_SOURCE = 8


def shifted(table: dict[str, Any], delta_vmaf: float) -> dict[str, Any]:
    """`table` with every enhancement level's VMAF raised by `delta_vmaf` (kept in 0..100)."""
    out = json.loads(json.dumps(table))
    for rung in out["rungs"]:
        for level in rung.get("levels", []):
            level["vmaf"] = float(np.clip(level["vmaf"] + delta_vmaf, 0.0, 100.0))
    return out


def session_qoe(table: Path, traces: list[Any], preference: str = "quality") -> list[float]:
    import nerveabr_py

    env = nerveabr_py.Env(traces, table=str(table))
    return [float(env.run_policy("nerve", i, preference=preference)["qoe_quality"]) for i in range(len(traces))]


def qoe_change(viewer: str, delta_vmaf: float, traces: list[Any]) -> dict[str, Any]:
    """Mean quality-QoE of the planner with the global and the personalised table, per session
    of `traces`, and the change in percent."""
    name = f"pensieve_{CONTENT_TABLE[viewer]}_nervesr.json"
    base = json.loads((TABLES / name).read_text())
    with tempfile.TemporaryDirectory() as d:
        personal = Path(d) / "personal.json"
        personal.write_text(json.dumps(shifted(base, delta_vmaf)))
        g = session_qoe(TABLES / name, traces)
        p = session_qoe(personal, traces)
    diff = np.asarray(p) - np.asarray(g)
    return {
        "table": name, "delta_vmaf": delta_vmaf, "sessions": len(traces),
        "global_qoe": float(np.mean(g)), "personal_qoe": float(np.mean(p)),
        "qoe_change_pct": float(100 * (np.mean(p) - np.mean(g)) / max(abs(np.mean(g)), 1e-9)),
        "qoe_change_median_pct": float(100 * np.median(diff / np.maximum(np.abs(g), 1e-9))),
    }


def trace_mix(root: Path = TRACES, per_source: int = PER_SOURCE) -> list[Any]:
    import nerveabr_py

    return [t for _, traces in nerveabr_py.families(str(root), per_source) for t in traces]


def add_qoe(report: dict[str, Any], root: Path = TRACES) -> dict[str, Any]:
    """Fill `viewers.<type>.qoe_change_pct` (and the detail under `qoe`) of a federated report."""
    traces = trace_mix(root)
    detail = {}
    for viewer, v in report["viewers"].items():
        r = qoe_change(viewer, float(v["personal_minus_global_vmaf"]), traces)
        v["qoe_change_pct"] = r["qoe_change_pct"]
        detail[viewer] = r
    report["qoe"] = {
        "method": __doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else "",
        "traces": f"the first {PER_SOURCE} sessions of each source of {root.name}/ ({len(traces)} sessions)",
        "policy": "nerve (chunk scenario), preference quality", "per_viewer": detail,
    }
    report["qoe_note"] = ("personalised tables = the viewer's content table with enhanced entries raised by the measured "
                          "personal - global VMAF; see qoe.method")
    return report
