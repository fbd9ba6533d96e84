"""The rollout's parts without a server: the stats message parser (recorded text, shadow fields
included, and the real element's output), the spool's crash semantics, hash assignment, the
confidence sequence's time-uniform coverage, the canary's decisions and resumption, the drift
detector and the A/B analysis."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nerve_learning.rollout import assign, canary as canary_mod
from nerve_learning.rollout.abtest import analyse
from nerve_learning.rollout.canary import Canary, CanaryConfig, load
from nerve_learning.rollout.drift import DriftConfig, DriftDetector, experiment
from nerve_learning.rollout.sequential import mean_cs
from nerve_learning.rollout.telemetry import Device, Report, Spool, parse_structure, stats_messages

REPO = Path(__file__).resolve().parents[2]

# What the element's shadow mode posts (recorded from `gst-launch-1.0 -m ... nervesr scale=1
# shadow-model=...`, a comma put into the shadow model's path to check quoting).
RECORDED = (
    'Got message #273 from element "nervesr0" (element): nervesr-stats, frames-enhanced=(guint64)50, '
    "frames-classical=(guint64)2, inference-errors=(guint64)0, mean-inference-ms=(double)4.7170063400000002, "
    "falling-back=(boolean)false, model=(string)nerve-sr-x2, model-sha256=(string)b32e9f83, provider=(string)cpu, "
    "model-swaps=(guint64)0, swaps-refused=(guint64)1, harvested-patches=(guint64)12, harvested-bytes=(guint64)49152, "
    "model-scale=(uint)0, abr-enhance=(boolean)true, "
    'shadow-model=(string)"/tmp/a dir, with comma/cand.onnx", shadow-model-sha256=(string)0fe1, '
    "shadow-champion=(string)nerve-sr-x2, shadow-samples=(guint64)30, shadow-dropped=(guint64)3, "
    "shadow-champion-psnr=(double)35.25, shadow-candidate-psnr=(double)35.75, shadow-gain-db=(double)0.5, "
    "shadow-champion-ms-per-mpx=(double)191.24580078125001, shadow-candidate-ms-per-mpx=(double)7.125, "
    'shadow-codec=(string)x264, shadow-error=(string)"";'
)


def test_stats_message_parsed_with_shadow_fields() -> None:
    [m] = stats_messages("noise\n" + RECORDED + "\nmore noise")
    assert m["frames-enhanced"] == 50 and m["frames-classical"] == 2 and m["swaps-refused"] == 1
    assert m["falling-back"] is False and m["model"] == "nerve-sr-x2"
    assert m["shadow-model"] == "/tmp/a dir, with comma/cand.onnx"
    assert m["shadow-samples"] == 30 and m["shadow-dropped"] == 3
    assert m["shadow-gain-db"] == pytest.approx(0.5) and m["shadow-candidate-ms-per-mpx"] == pytest.approx(7.125)
    assert m["shadow-error"] == "" and m["model-scale"] == 0 and m["shadow-codec"] == "x264"
    name, fields = parse_structure("nervesr-stats, shadow-model=(string)NULL;")
    assert name == "nervesr-stats" and fields["shadow-model"] is None


def test_parser_reads_the_real_element() -> None:
    if shutil.which("gst-launch-1.0") is None or not (REPO / "target/release/libgstnerve.so").is_file():
        pytest.fail("needs gst-launch-1.0 and the built plugin (cargo build --release)")
    out = subprocess.run(["gst-launch-1.0", "-m", "videotestsrc", "num-buffers=6", "!",
                          "video/x-raw,format=I420,width=64,height=48", "!", "nervesr", "scale=2", "!", "fakesink"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "GST_PLUGIN_PATH": str(REPO / "target/release")})
    assert out.returncode == 0, out.stderr
    last = stats_messages(out.stdout)[-1]
    assert last["frames-enhanced"] + last["frames-classical"] == 6
    assert len(last["model-sha256"]) == 64 and isinstance(last["mean-inference-ms"], float)


def test_parser_reads_the_real_shadow_mode() -> None:
    """nervesr's shadow mode at scale=1 (a rung at display size): the candidate scored beside the
    champion on the real frames; telemetry takes the gain from these fields."""
    if shutil.which("gst-launch-1.0") is None or not (REPO / "target/release/libgstnerve.so").is_file():
        pytest.fail("needs gst-launch-1.0 and the built plugin (cargo build --release)")
    from nerve_learning.data.clips import data_root

    clip = data_root() / "videos/talking_head/test_cif_I_CABAC_slice.264"
    out = subprocess.run(["gst-launch-1.0", "-m", "filesrc", f"location={clip}", "!", "h264parse", "!", "avdec_h264",
                          "!", "videoconvert", "!", "video/x-raw,format=I420", "!", "nervesr", "scale=1",
                          "model=nerve-sr-x2", "shadow-model=nerve-sr-x2-kd", "shadow-scale=2", "shadow-budget=2000",
                          "!", "fakesink"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "GST_PLUGIN_PATH": str(REPO / "target/release")})
    assert out.returncode == 0, out.stderr
    last = stats_messages(out.stdout)[-1]
    if "shadow-samples" not in last:
        pytest.fail("this nervesr has no shadow mode (rebuild the plugin)")
    assert last["shadow-samples"] > 0 and last["shadow-model"] == "nerve-sr-x2-kd"
    assert last["shadow-gain-db"] == pytest.approx(last["shadow-candidate-psnr"] - last["shadow-champion-psnr"], abs=1e-6)


def _report(arm: str = "t", gain: float | None = 0.1) -> Report:
    return Report(device="d", seq=0, created_ms=0, rollout="r", arm=arm, model_version=2, model_sha256="x", video_s=1.0,
                  frames_enhanced=25, gain_db=gain, champion_psnr=30.0, candidate_psnr=30.1, bicubic_psnr=29.0)


def test_spool_survives_a_cut_line_and_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # nothing listens: fail at once
    dev = Device("d", tmp_path, "http://127.0.0.1:9", "r")
    for _ in range(3):
        dev.record(_report())
    with dev.spool.log.open("ab") as f:  # a writer killed in the middle of a line
        f.write(b'{"report": {"seq": 4, "dev')
    again = Device("d", tmp_path, "http://127.0.0.1:9", "r")  # the device restarts
    assert again.seq == 3 and again.totals["t.sessions"] == 3
    again.record(_report())
    recs = again.spool.records()
    assert [r["report"]["seq"] for r in recs] == [1, 2, 3, 4]
    assert again.totals["t.n"] == 4 and again.totals["t.gain_sum"] == pytest.approx(0.4)
    assert len(again.spool.pending()) == 4
    assert again.flush() == 0  # nothing listens there: everything stays pending
    assert len(again.spool.pending()) == 4
    again.spool.mark_sent(2)
    assert [r["report"]["seq"] for r in Spool(again.spool.root).pending()] == [3, 4]


def test_assignment_is_stable_and_monotone() -> None:
    ids = [f"dev{i:05d}" for i in range(4000)]
    assert [assign.bucket(d, "r1") for d in ids[:20]] == [assign.bucket(d, "r1") for d in ids[:20]]
    assert assign.bucket("dev00001", "r1") != assign.bucket("dev00001", "r2")
    for f in (0.05, 0.25, 0.5):
        share = assign.fraction_under(ids, "r1", f)
        assert abs(share - f) < 0.03, (f, share)
    small = set(d for d in ids if assign.arm(d, "r1", 0.05) == assign.CANDIDATE)
    wide = set(d for d in ids if assign.arm(d, "r1", 0.25) == assign.CANDIDATE)
    assert small <= wide
    few = ids[:10]
    t = assign.threshold_for(few, "r1", 0.01, min_devices=2)
    assert sum(assign.bucket(d, "r1") < t for d in few) == 2
    for salt in ("a", "b", "c", "d"):  # exactly floor(5% of 40) = 2, whatever the hash does
        t = assign.threshold_for(ids[:40], salt, 0.05, min_devices=1)
        assert assign.fraction_under(ids[:40], salt, t) == 0.05
    wider = assign.threshold_for(ids[:40], "a", 0.5, 1)
    assert wider > assign.threshold_for(ids[:40], "a", 0.05, 1) and assign.threshold_for(ids[:40], "a", 1.0, 1) == 1.0


def test_confidence_sequence_is_time_uniform() -> None:
    """Looking after every sample: the 95% sequence excludes the true mean in at most ~5% of
    runs (a fixed-n interval looked at this often would in far more), and finds a real effect."""
    rng = np.random.default_rng(0)
    misses, found = 0, 0
    runs = 300
    for k in range(runs):
        x = rng.normal(0.0, 0.4 if k % 2 else 1.5, 200)
        n, s, q = np.arange(1, 201), np.cumsum(x), np.cumsum(x * x)
        if any(not (ci.low <= 0.0 <= ci.high) for ci in (mean_cs(n[i], s[i], q[i], 0.3, 0.05, 0.05) for i in range(2, 200))):
            misses += 1
        y = rng.normal(-0.3, 0.4, 200)
        s, q = np.cumsum(y), np.cumsum(y * y)
        found += any(mean_cs(n[i], s[i], q[i], 0.3, 0.05, 0.05).high < 0 for i in range(2, 200))
    assert misses / runs <= 0.08, misses / runs
    assert found / runs >= 0.95


class FakeRegistry:
    """What the canary uses of the registry, in memory."""

    def __init__(self) -> None:
        self.uri = "fake"
        self.aliases: dict[str, int] = {"champion": 1}
        self.tags: dict[str, str] = {}
        outer = self

        class Client:
            def set_registered_model_tag(self, name: str, k: str, v: str) -> None:
                outer.tags[k] = v

            def set_model_version_tag(self, *a: Any) -> None:
                pass

            def delete_registered_model_alias(self, name: str, alias: str) -> None:
                outer.aliases.pop(alias, None)

        self.client = Client()

    def champion(self, name: str) -> Any:
        return type("V", (), {"version": self.aliases["champion"]})()

    def set_alias(self, name: str, alias: str, v: int) -> None:
        self.aliases[alias] = v

    def promote(self, name: str, v: int) -> None:
        self.aliases["champion"] = v


def _totals(devices: list[str], rid: str, threshold: float, gain: float, per_device: int, rng: np.random.Generator,
            errors: float = 0.0) -> dict[str, dict[str, float]]:
    out = {}
    for d in devices:
        a = assign.arm(d, rid, threshold)
        g = rng.normal(gain, 0.2, per_device)
        frames = 25.0 * per_device
        out[d] = {f"{a}.n": per_device, f"{a}.gain_sum": g.sum(), f"{a}.gain_sq": (g * g).sum(),
                  f"{a}.sessions": per_device, f"{a}.frames_enhanced": frames,
                  f"{a}.inference_errors": errors * frames if a == "t" else 0.0,
                  f"{a}.video_s": per_device, f"{a}.cpu_s": per_device * 0.5}
    return out


@pytest.mark.parametrize("gain,expect", [(-0.5, "rolled_back"), (0.3, "promoted")])
def test_canary_decides_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gain: float, expect: str) -> None:
    devices = [f"dev{i:03d}" for i in range(40)]
    reg = FakeRegistry()
    rng = np.random.default_rng(1)
    cfg = CanaryConfig()
    c = Canary(reg, tmp_path / "state.json", cfg)
    st = c.start("m", 2, "rid", devices)
    rounds, fractions = 0, [st.max_fleet_fraction]
    while st.status == "running" and rounds < 50:
        rounds += 1
        thr = st.threshold
        monkeypatch.setattr(canary_mod, "fleet_totals", lambda uri, rid: _totals(devices, "rid", thr, gain, rounds, rng))
        c = Canary(reg, tmp_path / "state.json", cfg)  # a fresh controller each time: resumes from the file
        assert c.state is not None and c.state.step == st.step
        st = c.tick(devices)
        fractions.append(st.max_fleet_fraction)
    assert st.status == expect, st.decisions
    saved = load(tmp_path / "state.json")
    assert saved is not None and saved.status == expect
    assert json.loads(reg.tags["nerve.rollout"])["status"] == expect
    if expect == "rolled_back":
        assert max(fractions) <= 0.1 and "candidate" not in reg.aliases
    else:
        assert reg.aliases["champion"] == 2 and max(fractions) == 1.0


def test_canary_guardrail_and_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    devices = [f"dev{i:03d}" for i in range(40)]
    rng = np.random.default_rng(2)
    c = Canary(FakeRegistry(), tmp_path / "g.json", CanaryConfig())
    st = c.start("m", 2, "g", devices)
    monkeypatch.setattr(canary_mod, "fleet_totals", lambda uri, rid: _totals(devices, "g", st.threshold, 0.3, 8, rng, errors=0.2))
    st = c.tick(devices)
    assert st.status == "rolled_back" and "inference_errors" in st.decisions[-1]["reason"]
    c = Canary(FakeRegistry(), tmp_path / "r.json", CanaryConfig())
    st = c.start("m", 2, "r", devices)
    tot = _totals(devices, "r", st.threshold, 0.3, 1, rng)
    tot[devices[0]]["c.refused_artifacts"] = 1.0
    monkeypatch.setattr(canary_mod, "fleet_totals", lambda uri, rid: tot)
    st = c.tick(devices)
    assert st.status == "rolled_back" and "sha256" in st.decisions[-1]["reason"]


def _metas(rng: np.random.Generator, n: int, mean: float, grad: float, codec: str = "h264") -> list[dict[str, Any]]:
    return [{"stats": {"mean": float(rng.normal(mean, 30)), "std": float(abs(rng.normal(30, 10))),
                       "grad": float(abs(rng.normal(grad, 4))), "temporal": float(abs(rng.normal(3, 2)))},
             "codec": codec, "width": 640, "height": 360} for _ in range(n)]


def test_drift_detector() -> None:
    rng = np.random.default_rng(0)
    ref, same = _metas(rng, 600, 110, 12), _metas(rng, 600, 110, 12)
    shifted = _metas(rng, 300, 160, 4)
    res = experiment(ref, same, shifted, DriftConfig(window=64), trials=100)
    assert res["false_alarm_rate"] <= 0.05 and res["detected"]
    assert res["patches_to_detect"] <= 40
    codec = DriftDetector(ref).check(_metas(rng, 64, 110, 12, codec="vp8"))
    assert codec["drifted"] and "codec" in codec["why"]


def test_ab_analysis() -> None:
    rng = np.random.default_rng(0)
    res = analyse({"t": list(rng.normal(1.3, 0.2, 30)), "c": list(rng.normal(1.0, 0.2, 30))})
    assert res["ci_low_db"] < 0.3 < res["ci_high_db"] and res["ci_low_db"] > 0
    assert res["decision"].startswith("B (candidate) is better")
    res = analyse({"t": list(rng.normal(1.0, 0.2, 30)), "c": list(rng.normal(1.0, 0.2, 30))})
    assert res["decision"] == "no significant difference"


def test_bicubic_is_pytorchs() -> None:
    """The devices' numpy bicubic (no PyTorch in a device process) gives PyTorch's numbers."""
    import torch

    from nerve_learning.rollout.fleet import bicubic

    rng = np.random.default_rng(0)
    for shape, scale in (((3, 32, 32), 2), ((2, 9, 14), 2), ((1, 11, 7), 3)):
        lr = rng.integers(0, 256, shape).astype(np.uint8)
        up = torch.nn.functional.interpolate(torch.from_numpy(lr.astype(np.float32))[:, None], scale_factor=scale,
                                             mode="bicubic", align_corners=False)
        want = np.clip(up[:, 0].numpy() + 0.5, 0, 255).astype(np.uint8)
        got = bicubic(lr, scale)
        assert got.shape == want.shape and np.array_equal(got, want), (shape, scale)


def test_a_stale_device_process_is_ended(tmp_path: Path) -> None:
    """A device still playing from a controller that was killed is ended before the device is
    started again (two processes must not write one spool); any other process is left alone."""
    import sys
    import time

    from nerve_learning.rollout.fleet import end_stale

    work = tmp_path / "dev000"
    work.mkdir()
    stale = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--work", str(work)])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (work / "pid").write_text(str(other.pid))  # a recycled pid: not this device's process
        end_stale(work)
        time.sleep(0.2)
        assert other.poll() is None
        (work / "pid").write_text(str(stale.pid))
        end_stale(work)
        assert stale.wait(timeout=10) == -9
    finally:
        for p in (stale, other):
            if p.poll() is None:
                p.kill()
                p.wait()
