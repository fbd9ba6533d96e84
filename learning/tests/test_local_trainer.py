"""The local trainer on tiny configs: its policy, the harvest into the episodic memory, pairs made
by the real codec, and the register-only-if-better decision against a real (embedded) registry."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from nerve_learning.cli import main
from nerve_learning.data.clips import TRAIN, Clip
from nerve_learning.data.dataset import PairConfig
from nerve_learning.data.degrade import Codec
from nerve_learning.ondevice.local_trainer import (
    BAR_LUMA, EX_TEMPFAIL, LocalTrainConfig, Policy, allowed, harvest_clip, local_train, memory_pairs, read_device,
    split, student_from_onnx, with_bar,
)
from nerve_learning.data.memory import EpisodicMemory, MemoryConfig
from nerve_learning.metrics import psnr
from nerve_learning.registry.store import Registry

MODELS = Path(__file__).resolve().parents[2] / "models"
CLIP = Clip("videos/talking_head/makeup_closeup_test.mp4", "talking_head")
assert CLIP in TRAIN
TINY_REPLAY = PairConfig(scale=2, codecs=(Codec("x264", 23),), frames_per_clip=2, frame_step=1, patch_lr=24,
                         patches_per_frame=4, clips=TRAIN[:1])
ASSUME = Policy(assume_idle=True, assume_charging=True, assume_wifi=True)


def fake_device(root: Path, load: float, battery: str | None, mains: bool | None, wifi_up: bool) -> Path:
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "loadavg").write_text(f"{load} 0.5 0.5 1/100 42\n")
    ps = root / "sys" / "class" / "power_supply"
    ps.mkdir(parents=True)
    if battery is not None:
        (ps / "BAT0").mkdir()
        (ps / "BAT0" / "type").write_text("Battery\n")
        (ps / "BAT0" / "status").write_text(battery + "\n")
    if mains is not None:
        (ps / "AC").mkdir()
        (ps / "AC" / "type").write_text("Mains\n")
        (ps / "AC" / "online").write_text("1\n" if mains else "0\n")
    net = root / "sys" / "class" / "net"
    for name, wireless in (("lo", False), ("eth0", False), ("wlan0", True)):
        (net / name).mkdir(parents=True)
        up = name == "lo" or (wireless and wifi_up)
        (net / name / "operstate").write_text("up\n" if up else "down\n")
        if wireless:
            (net / name / "wireless").mkdir()
    return root


def test_policy_reads_linux_signals(tmp_path: Path) -> None:
    import os

    cpus = os.cpu_count() or 1
    good = read_device(fake_device(tmp_path / "a", 0.1 * cpus, "Charging", None, True))
    assert good.charging is True and good.wifi is True
    assert allowed(Policy(), good) == (True, [])
    busy = read_device(fake_device(tmp_path / "b", 2.0 * cpus, "Discharging", False, False))
    ok, reasons = allowed(Policy(), busy)
    assert not ok and len(reasons) == 3
    assert any("not idle" in r for r in reasons) and "not charging" in reasons and "not on Wi-Fi" in reasons
    # A computer without those signals: flags stand in for them.
    bare = read_device(tmp_path / "nothing")
    assert not allowed(Policy(), bare)[0]
    assert allowed(ASSUME, bare) == (True, [])
    assert allowed(Policy(require_idle=False, require_charging=False, require_wifi=False), busy)[0]
    # Schedule window, wrapping midnight.
    night = Policy(window="23:00-06:00", assume_idle=True, assume_charging=True, assume_wifi=True)
    assert allowed(night, bare, dt.datetime(2026, 1, 1, 2, 30))[0]
    assert not allowed(night, bare, dt.datetime(2026, 1, 1, 12, 0))[0]
    with pytest.raises(ValueError, match="HH:MM"):
        allowed(Policy(window="late"), bare)


def test_harvest_writes_the_contract_and_pairs_go_through_the_codec(tmp_path: Path) -> None:
    memory = EpisodicMemory(tmp_path / "mem", MemoryConfig(capacity=1000, durable=False))
    got = harvest_clip(memory, CLIP, max_frames=6, frame_step=3, patches_per_frame=3, patch=64)
    assert got.items == len(memory) == 18 and got.frames_played == 19
    again = EpisodicMemory(tmp_path / "mem")  # what another process (the trainer) reads back
    ids = again.ids()
    meta = again.meta(ids[0])
    assert meta["source"] == f"harvest:{CLIP.path}" and meta["codec"] == "h264" and meta["crf"] is None
    assert (meta["width"], meta["height"], meta["patch"], meta["task"]) == (340, 256, 64, "talking_head")
    assert meta["stats"]["temporal"] is not None and meta["stats"]["std"] >= 4.0
    hr, lr = again.load(ids[0])
    assert hr.shape == (64, 64) and hr.dtype == np.uint8 and lr is None
    assert not list((tmp_path / "mem" / "items").glob("*.tmp"))

    train, held = split(again, 0.34)
    frames_of = lambda group: {again.meta(i)["frame"] for i in group}  # noqa: E731
    assert train and held and not frames_of(train) & frames_of(held), "a frame is never on both sides"
    mild_lr, mild_hr = memory_pairs(again, ids, 2, (Codec("x264", 18),))
    harsh_lr, _ = memory_pairs(again, ids, 2, (Codec("x264", 45),))
    both_lr, _ = memory_pairs(again, ids, 2, (Codec("x264", 18), Codec("x264", 45)))
    assert mild_lr.shape == (18, 32, 32) and mild_hr.shape == (18, 64, 64) and len(both_lr) == 36
    plain = mild_hr.reshape(18, 32, 2, 32, 2).mean((2, 4))
    assert psnr(mild_lr, plain) > psnr(harsh_lr, plain) + 3  # the codec really ran, at the rung asked

    barred_lr, barred_hr = memory_pairs(again, ids, 2, (Codec("x264", 18),), bars=1.0)
    assert len(barred_lr) == 36 and len(barred_hr) == 36, "every item once plain, once barred"
    bar_hr = barred_hr[[not any(np.array_equal(b, m) for m in mild_hr) for b in barred_hr]]
    assert len(bar_hr) == 18 and all((h == BAR_LUMA).any() for h in bar_hr)


def test_holding_back_whole_videos(tmp_path: Path) -> None:
    memory = EpisodicMemory(tmp_path / "mem", MemoryConfig(capacity=1000, durable=False))
    harvest_clip(memory, CLIP, max_frames=4, frame_step=2, patches_per_frame=2, patch=64)
    source = lambda i: memory.meta(i)["source"]  # noqa: E731
    train, held = split(memory, 0.2, by="source")  # one video only: whole frames, as by="frame"
    assert (train, held) == split(memory, 0.2, by="frame")
    other = next(c for c in TRAIN if c.content == "talking_head" and c != CLIP)
    harvest_clip(memory, other, max_frames=4, frame_step=2, patches_per_frame=2, patch=64)
    train, held = split(memory, 0.2, by="source")
    assert train and held and sorted(train + held) == sorted(memory.ids())
    assert len({source(i) for i in held}) == 1 and not {source(i) for i in train} & {source(i) for i in held}
    with pytest.raises(ValueError, match="hold-out unit"):
        split(memory, 0.2, by="clip")


def test_a_bar_covers_one_side_and_leaves_the_rest() -> None:
    rng = np.random.default_rng(1)
    patch = np.random.default_rng(0).integers(40, 240, (64, 96), dtype=np.uint8)
    sides = set()
    for _ in range(40):
        out = with_bar(patch, rng)
        bar = out == BAR_LUMA
        rows, cols = bar.all(1), bar.all(0)
        assert rows.any() or cols.any(), "the bar spans the patch"
        covered = rows.sum() / 64 if rows.any() else cols.sum() / 96
        assert 1 / 8 - 1e-9 <= covered <= 1 / 2 + 1e-9
        assert np.array_equal(out[~bar], patch[~bar]), "the picture outside the bar is untouched"
        sides.add((bool(rows[0]), bool(rows[-1]), bool(cols[0]), bool(cols[-1])))
    assert len(sides) == 4, "bars come on all four sides"


def harvested_with_champion(tmp_path: Path) -> tuple[EpisodicMemory, Registry]:
    """A memory harvested from a training clip and a registry with the shipped model as champion."""
    memory = EpisodicMemory(tmp_path / "mem", MemoryConfig(capacity=1000, durable=False))
    harvest_clip(memory, CLIP, max_frames=10, frame_step=2, patches_per_frame=4, patch=64)
    registry = Registry(tmp_path / "registry")
    registry.register(MODELS / "nerve-sr-x2.onnx", "sr", scale=2, alias="champion")
    return memory, registry


def test_local_train_registers_only_a_better_model(tmp_path: Path) -> None:
    memory, registry = harvested_with_champion(tmp_path)
    cfg = LocalTrainConfig(name="sr", rungs=(Codec("x264", 28),), steps=40, batch=8, replay=TINY_REPLAY,
                           replay_pairs=8, fisher_samples=4, holdout=0.3)
    cache = tmp_path / "cache"

    # The policy says no: nothing runs, nothing is registered.
    busy = fake_device(tmp_path / "dev", 50.0, "Discharging", None, False)
    report = local_train(registry, memory, cfg, Policy(), cache, device_root=busy)
    assert not report["ran"] and report["reasons"]
    # A candidate that does not clear the bar is not registered.
    report = local_train(registry, memory, LocalTrainConfig(**{**cfg.__dict__, "min_gain_db": 50.0}), ASSUME, cache)
    assert report["ran"] and "kept v1" in report["decision"] and "candidate" not in report
    assert [v.version for v in registry.versions("sr")] == [1]
    assert report["held_pairs"] > 0 and report["train_pairs"] > report["held_pairs"]
    # One that does is registered as candidate with its lineage; the champion stays until promoted.
    report = local_train(registry, memory, LocalTrainConfig(**{**cfg.__dict__, "min_gain_db": -50.0}), ASSUME, cache)
    v2 = registry.get("sr", "candidate")
    assert v2.version == report["candidate"] == 2 and v2.parent == 1
    assert v2.data["items"] == report["train_items"] and v2.data["tasks"] == {"talking_head": report["train_items"]}
    assert v2.metrics["heldback/gain_db"] == pytest.approx(report["gain_db"])
    assert registry.get("sr", "champion").version == 1
    # The registered file is the fine-tuned network, not a copy of the champion.
    loc = tmp_path / "loc"
    registry.materialize("sr", 2, loc)
    tuned, base = student_from_onnx(loc / "sr-v2.onnx"), student_from_onnx(MODELS / "nerve-sr-x2.onnx")
    assert any((a - b).abs().max() > 0 for a, b in zip(tuned.state_dict().values(), base.state_dict().values()))


def test_the_best_learning_rate_within_the_guard_is_kept(tmp_path: Path) -> None:
    memory, registry = harvested_with_champion(tmp_path)
    # lr 0 leaves the champion as it is: no gain, no forgetting
    cfg = LocalTrainConfig(name="sr", rungs=(Codec("x264", 28),), steps=30, batch=8, replay=TINY_REPLAY,
                           replay_pairs=4, guard_pairs=4, holdout=0.3, min_gain_db=-50.0, lrs=(0.0, 3e-3))
    report = local_train(registry, memory, cfg, ASSUME, tmp_path / "cache")
    tries = {t["lr"]: t for t in report["tries"]}
    assert set(tries) == {0.0, 3e-3} and tries[0.0]["gain_db"] == pytest.approx(0.0, abs=1e-6)
    assert tries[0.0]["forget_db"] == pytest.approx(0.0, abs=1e-6), "the guard was measured"
    assert tries[3e-3]["gain_db"] != pytest.approx(0.0, abs=1e-6), "the other rate really trained"
    def expected(tries: list[dict], limit: float) -> float:
        within = [t for t in tries if t["forget_db"] <= limit]
        return max(within or tries, key=lambda t: t["gain_db"])["lr"]

    assert report["lr"] == expected(report["tries"], cfg.max_forget_db)
    assert report["gain_db"] == pytest.approx(tries[report["lr"]]["gain_db"])
    # A guard that only the untouched model passes: it is kept although the other gained more.
    loose = LocalTrainConfig(**{**cfg.__dict__, "max_forget_db": 10.0})
    report = local_train(registry, memory, loose, ASSUME, tmp_path / "cache")
    assert report["lr"] == expected(report["tries"], 10.0) == max(report["tries"], key=lambda t: t["gain_db"])["lr"]
    strict = LocalTrainConfig(**{**cfg.__dict__, "max_forget_db": 1e-9})
    report = local_train(registry, memory, strict, ASSUME, tmp_path / "cache")
    assert report["lr"] == expected(report["tries"], 1e-9)
    if report["tries"][1]["forget_db"] > 1e-9:
        assert report["lr"] == 0.0


def test_cli_harvest_and_local_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mem, reg = str(tmp_path / "mem"), str(tmp_path / "reg")
    assert main(["harvest", "--memory", mem, "--clip", CLIP.path, "--frames", "4", "--step", "2",
                 "--patches", "3", "--patch", "64"]) == 0
    with pytest.raises(SystemExit, match="held-out"):
        main(["harvest", "--memory", mem, "--clip", "videos/talking_head/Zhling_1280x720.264"])
    assume = ["--assume-idle", "--assume-charging", "--assume-wifi"]
    assert main(["local-train", "--memory", mem, "--tracking-uri", reg, *assume]) == 2  # no champion: clear error
    assert "register the shipped model first" in capsys.readouterr().out
    assert main(["registry", "--tracking-uri", reg, "register", "--model", str(MODELS / "nerve-sr-x2.onnx"),
                 "--alias", "champion"]) == 0
    assert main(["local-train", "--memory", mem, "--tracking-uri", reg, "--window", "00:00-00:00"]) == EX_TEMPFAIL
    out = tmp_path / "report.json"
    rc = main(["local-train", "--memory", mem, "--tracking-uri", reg, *assume, "--steps", "5", "--batch", "4", "--replay-fraction", "0", "--ewc-lambda", "0",
               "--holdout", "0.5", "--json", str(out)])
    assert rc == 0 and json.loads(out.read_text())["ran"] is True


def test_ondevice_loop_end_to_end_tiny(tmp_path: Path) -> None:
    """Harvest -> local training -> registry (promotion) -> exported model location -> scores of
    the exported files on unseen clips; tiny so it runs in seconds."""
    from nerve_learning.ondevice.loop import LoopConfig, markdown, run_loop

    cfg = LoopConfig(content="screen", harvest_frames=4, harvest_step=2, harvest_patches=4, patch=64,
                     train=LocalTrainConfig(rungs=(Codec("x264", 28),), steps=10, batch=8, replay=TINY_REPLAY,
                                            replay_pairs=8, fisher_samples=4, holdout=0.3, min_gain_db=-100.0),
                     eval_rungs=(Codec("x264", 28),), eval_frames=1)
    result = run_loop(cfg, tmp_path / "work", tmp_path / "cache")
    assert result["champion"]["version"] == 2 and result["champion"]["parent"] == 1
    assert (tmp_path / "work" / "location" / "manifest.toml").exists()
    keys = list(result["rows"])
    assert any(k.startswith("screen|") for k in keys) and {k.split("|")[0] for k in keys} >= {"sports", "animation"}
    s = result["summary"]
    assert s["target_content"] == "screen" and set(s["other_gain_db"]) == {"talking_head", "sports", "animation",
                                                                            "texture"}
    assert "| clip | rung |" in markdown(result)


def test_rep_finetune_changes_the_deployed_model_in_place_and_keeps_it_plain() -> None:
    import torch

    from nerve_learning.ondevice.local_trainer import finetune
    from nerve_learning.sr.model import EdgeConv, Student

    torch.manual_seed(0)
    model = Student(2, channels=4, depth=1)
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (8, 16, 16), dtype=np.uint8)
    lr = hr[:, ::2, ::2].copy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = LocalTrainConfig(steps=5, batch=4, replay_fraction=0.0, rep=True)
    out = finetune(model, (lr, hr), (lr[:0], hr[:0]), cfg, 1e-2)
    assert out is model and not any(isinstance(m, EdgeConv) for m in model.modules())
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_soup_is_the_mean_of_the_candidates_weights() -> None:
    import torch

    from nerve_learning.ondevice.local_trainer import soup_of
    from nerve_learning.sr.model import Student

    a, b = Student(2, channels=3, depth=1), Student(2, channels=3, depth=1)
    for p in list(a.parameters()) + list(b.parameters()):
        p.data.normal_()
    s = soup_of([a, b])
    for k, v in s.state_dict().items():
        torch.testing.assert_close(v, (a.state_dict()[k] + b.state_dict()[k]) / 2)
    assert s is not a and not torch.equal(s.body[0].weight, a.body[0].weight)


def test_two_harvests_of_the_same_video_give_the_same_pairs(tmp_path: Path) -> None:
    # Item ids are random, so the pairs must be made in an order set by what the items hold.
    made = []
    for run in ("a", "b"):
        memory = EpisodicMemory(tmp_path / run, MemoryConfig(capacity=1000, durable=False))
        harvest_clip(memory, CLIP, max_frames=4, frame_step=2, patches_per_frame=3, patch=64)
        train, held = split(memory, 0.3)
        made.append((memory_pairs(memory, train, 2, (Codec("x264", 23),), bars=0.5, seed=0),
                     [memory.meta(i)["frame"] for i in held]))
    (a, held_a), (b, held_b) = made
    assert held_a == held_b
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
