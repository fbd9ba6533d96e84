"""The federated report's QoE per viewer type (federated/qoe.py): the personalised table is the
content table with every enhanced entry moved by the measured VMAF gain, and the planner's QoE
through the Rust simulator follows it."""

from __future__ import annotations

import json

import pytest

from nerve_learning.federated.qoe import TABLES, add_qoe, qoe_change, shifted, trace_mix


def test_the_personal_table_moves_only_the_enhanced_entries() -> None:
    table = json.loads((TABLES / "pensieve_screen_nervesr.json").read_text())
    up = shifted(table, 3.0)
    for a, b in zip(table["rungs"], up["rungs"]):
        assert a["vmaf"] == b["vmaf"]
        for la, lb in zip(a["levels"], b["levels"]):
            assert lb["vmaf"] == pytest.approx(min(la["vmaf"] + 3.0, 100.0))
    assert all(lv["vmaf"] <= 100.0 for r in shifted(table, 500.0)["rungs"] for lv in r["levels"])


def test_the_qoe_change_follows_the_vmaf_gain() -> None:
    traces = trace_mix(per_source=1)
    same = qoe_change("screen", 0.0, traces)
    assert same["qoe_change_pct"] == 0.0 and same["sessions"] == len(traces)
    better = qoe_change("screen", 8.0, traces)
    worse = qoe_change("screen", -8.0, traces)
    assert worse["qoe_change_pct"] < 0.0 < better["qoe_change_pct"], (worse, better)
    report = {"viewers": {"sports": {"personal_minus_global_vmaf": 5.0}, "mixed": {"personal_minus_global_vmaf": 0.0}}}
    add_qoe(report)
    assert report["viewers"]["sports"]["qoe_change_pct"] > 0.0 and report["viewers"]["mixed"]["qoe_change_pct"] == 0.0
