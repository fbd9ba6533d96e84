"""Continual learning: the metrics on hand-made matrices, the config, and the whole --quick
protocol on real (tiny) data, which must show naive fine-tuning forgetting more than replay+EWC."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from nerve_learning.cli import main
from nerve_learning.continual.benchmark import ContinualConfig, Task, load_config, load_onnx_weights, sequence_metrics
from nerve_learning.sr.model import Student

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "continual-10.toml"


def test_metrics_from_an_accuracy_matrix() -> None:
    # R[i][j]: gain on task j after task i. Task 0 peaks at 1.0 then ends at 0.5 (50% forgotten),
    # task 1 peaks at 2.0 and ends there (0%).
    r = [[1.0, 0.2, 0.0],
         [0.8, 2.0, 0.1],
         [0.5, 2.0, 1.0]]
    m = sequence_metrics(r, initial=[0.0, 0.0, 0.0], naive_diag=[1.0, 2.5, 2.0])
    assert m["forgetting_pct"] == pytest.approx(25.0)
    assert m["forgetting_db"] == pytest.approx(0.25)
    assert m["final_gain_db"] == pytest.approx(3.5 / 3)
    assert m["plasticity_pct_tasks"] == pytest.approx([100.0, 80.0, 50.0])
    assert m["plasticity_min_pct"] == pytest.approx(50.0)
    assert m["bwt_db"] == pytest.approx(((0.5 - 1.0) + (2.0 - 2.0)) / 2)
    assert m["fwt_db"] == pytest.approx((0.2 + 0.1) / 2)


def test_the_benchmark_config_is_ten_tasks_mixing_content_and_codecs() -> None:
    cfg = load_config(CONFIG)
    assert len(cfg.tasks) == 10 and len(set(cfg.tasks)) == 10
    assert {t.codec for t in cfg.tasks} == {"x264", "x265", "vp9", "av1"}
    assert len({t.content for t in cfg.tasks}) == 5
    quick = load_config(CONFIG, quick=True)
    assert quick.steps_per_task < cfg.steps_per_task and quick.memory.capacity < cfg.memory.capacity
    assert quick.memory.balance == cfg.memory.balance  # a nested override keeps the rest of the table


def test_bad_configs_fail_before_any_work() -> None:
    with pytest.raises(ValueError, match="content"):
        ContinualConfig(tasks=(Task("underwater", "x264", 23),))
    with pytest.raises(ValueError, match="codec"):
        ContinualConfig(tasks=(Task("sports", "mpeg2", 5),))
    with pytest.raises(ValueError, match="naive"):
        ContinualConfig(tasks=(Task("sports", "x264", 23),), learners=("replay",))


def test_weights_come_back_from_an_exported_student(tmp_path: Path) -> None:
    from nerve_learning.sr.export import export_onnx

    a = Student(2)
    with torch.no_grad():
        for p in a.parameters():
            p.normal_(0, 0.1)
    export_onnx(a, tmp_path / "a.onnx")
    b = Student(2)
    load_onnx_weights(b, tmp_path / "a.onnx")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError, match="shape"):
        load_onnx_weights(Student(2, channels=8), tmp_path / "a.onnx")


def test_quick_protocol_naive_forgets_more_than_replay_ewc(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    assert main(["continual", "--config", str(CONFIG), "--json", str(out), "--quick", "--export", "cl-quick",
                 "--cache", str(tmp_path / "cache")]) == 0
    report = json.loads(out.read_text())
    naive, both = report["learners"]["naive"], report["learners"]["replay_ewc"]
    for entry in (naive, both):
        assert {"forgetting_pct", "final_gain_db", "plasticity_pct"} <= set(entry)
        t = len(report["tasks"])
        assert np.asarray(entry["matrix"]).shape == (t, t)
    assert naive["forgetting_pct"] > both["forgetting_pct"] + 5.0
    assert naive["final_gain_db"] < both["final_gain_db"]
    for png in report["plots"]:
        assert (tmp_path / png).stat().st_size > 10_000
    # The continually learned student is exported like the shipped models.
    session = ort.InferenceSession(str(tmp_path / "cl-quick.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {"lr": np.random.rand(1, 1, 20, 30).astype(np.float32)})[0].shape == (1, 1, 40, 60)
    assert 'name = "cl-quick"' in (tmp_path / "manifest.toml").read_text()
