"""The on-device trainer: when the device allows it, fine-tune the champion on what the user
watched (the harvested episodic memory), and register the result as a candidate only if it is
better on harvested patches it did not train on.

Steps of :func:`local_train`:
1. policy: idle, charging, on an unmetered network (Wi-Fi), inside a time window; read from
   /proc and /sys on Linux, or asserted by flags on a computer without those signals;
2. the champion of the registered model, fetched from the registry (sha256 checked) and loaded
   back into a PyTorch `Student` (the exported ONNX keeps the PyTorch parameter names);
3. pairs: harvested items are high-resolution luma patches; their low-resolution side is made
   by the real streaming degradation (degrade.py: bicubic downscale, encode, decode) at the rung
   in their metadata when it is a degradation codec with a CRF, otherwise at the configured
   rungs. A fifth of the harvested frames (all patches of a frame together, so no patch is
   judged against its neighbour) is held back for the decision;
4. the continual learner (nerve_learning.continual): half of every batch replays the original
   training pairs (dataset.py's cache of the shipped model's training set), half of the
   harvested patches also come with a letterbox/pillarbox bar (bar rehearsal), and an optional
   EWC penalty (Fisher of the champion on those pairs) holds the weights that matter for them;
   one candidate per learning rate in `lrs`, the best on the held-back pairs within the guard kept;
5. candidate vs champion, PSNR-Y on the held-back pairs; registered as `candidate` (parent: the
   champion's version, lineage: the memory it saw) only when it gains at least `min_gain_db` there
   and loses at most `max_forget_db` on a guard set of the original training pairs kept out of
   the fine-tune (forgetting: what the user does not watch today must not get worse), and
   promoted to `champion` when asked.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import os
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..data.clips import Clip, data_root
from ..data.dataset import PairConfig, build_pairs
from ..data.degrade import Codec, _input_args, degrade, ffmpeg_exe, hr_geometry, probe_size
from ..data.memory import EpisodicMemory, patch_stats
from ..metrics import psnr
from ..sr.export import student_from_onnx
from ..sr.model import Student
from ..registry.store import CANDIDATE, Registry, RegistryError, Version

DEGRADATION_CODECS = ("x264", "x265", "vp9", "av1")
EX_TEMPFAIL = 75  # sysexits.h: "try again later", the exit status when the policy says no


# ---- policy ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    require_idle: bool = True
    require_charging: bool = True
    require_wifi: bool = True
    max_load: float = 0.5  # 1-minute load average per CPU under which the device counts as idle
    window: str = ""  # "HH:MM-HH:MM" local time (may wrap midnight); empty: any time
    assume_idle: bool = False
    assume_charging: bool = False
    assume_wifi: bool = False


@dataclass
class DeviceState:
    load_per_cpu: float | None  # None: no signal on this system
    charging: bool | None
    wifi: bool | None
    detail: dict[str, Any] = field(default_factory=dict)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def read_device(root: Path = Path("/")) -> DeviceState:
    """Idle (load average per CPU), charging (/sys/class/power_supply) and Wi-Fi
    (/sys/class/net/*/wireless on an interface that is up) as Linux reports them. `root` lets
    tests point at a fake tree."""
    detail: dict[str, Any] = {}
    load_text = _read(root / "proc" / "loadavg")
    load = None
    if load_text:
        load = float(load_text.split()[0]) / (os.cpu_count() or 1)
    supplies = root / "sys" / "class" / "power_supply"
    charging: bool | None = None
    if supplies.is_dir():
        batteries, online = [], []
        for s in sorted(supplies.iterdir()):
            kind = _read(s / "type")
            if kind == "Battery":
                batteries.append(_read(s / "status"))
            elif kind in ("Mains", "USB", "USB_C", "USB_PD", "Wireless"):
                online.append(_read(s / "online") == "1")
        detail["batteries"], detail["external_power"] = batteries, online
        if any(online) or any(b in ("Charging", "Full") for b in batteries):
            charging = True
        elif batteries:
            charging = False
        elif online:
            charging = False  # a mains supply that reports offline and no battery: leave it as said
    net = root / "sys" / "class" / "net"
    wifi: bool | None = None
    if net.is_dir():
        up = [i for i in sorted(net.iterdir()) if i.name != "lo" and _read(i / "operstate") in ("up", "unknown")]
        wireless = [i.name for i in up if (i / "wireless").exists() or (i / "phy80211").exists()]
        detail["interfaces_up"] = [i.name for i in up]
        detail["wireless_up"] = wireless
        wifi = bool(wireless)
    return DeviceState(load_per_cpu=load, charging=charging, wifi=wifi, detail=detail)


def _in_window(window: str, now: dt.datetime) -> bool:
    try:
        start_s, end_s = window.split("-")
        start = dt.time.fromisoformat(start_s.strip())
        end = dt.time.fromisoformat(end_s.strip())
    except ValueError as e:
        raise ValueError(f"schedule window {window!r} is not HH:MM-HH:MM") from e
    t = now.time()
    return start <= t < end if start <= end else (t >= start or t < end)


def allowed(policy: Policy, state: DeviceState, now: dt.datetime | None = None) -> tuple[bool, list[str]]:
    """Whether the trainer may run now, and why not (one reason per unmet condition)."""
    now = now or dt.datetime.now()
    reasons = []
    if policy.window and not _in_window(policy.window, now):
        reasons.append(f"outside the schedule window {policy.window} (now {now:%H:%M})")
    if policy.require_idle and not policy.assume_idle:
        load = state.load_per_cpu
        if load is None:
            reasons.append("idleness unknown (no /proc/loadavg); pass --assume-idle")
        elif load > policy.max_load:
            reasons.append(f"not idle: load {load:.2f} per CPU > {policy.max_load}")
    if policy.require_charging and not policy.assume_charging and state.charging is not True:
        reasons.append("not charging" if state.charging is False else
                       "charging state unknown (no power supply in /sys); pass --assume-charging")
    if policy.require_wifi and not policy.assume_wifi and state.wifi is not True:
        reasons.append("not on Wi-Fi" if state.wifi is False else "network unknown; pass --assume-wifi")
    return not reasons, reasons


# ---- harvest (Python side; the Rust harvester in nervesr writes the same store format) -------

def stream_info(clip: Clip, root: Path) -> tuple[str | None, float | None]:
    """(codec as ffmpeg names it, e.g. "h264"; the container's bitrate in kb/s when it states one)."""
    if clip.raw_size is not None:
        return "rawvideo", None
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", *_input_args(clip, root)], capture_output=True)
    codec, kbps = None, None
    for line in out.stderr.decode(errors="replace").splitlines():
        if "Video:" in line and codec is None:
            codec = line.split("Video:")[1].split()[0].strip(",")
        if "bitrate:" in line and kbps is None:
            value = line.split("bitrate:")[1].split()[0]
            kbps = float(value) if value.replace(".", "", 1).isdigit() else None
    return codec, kbps


def iter_luma(clip: Clip, root: Path, max_frames: int) -> Any:
    """Decoded luma frames (H, W) of a clip, one at a time, as a player would see them."""
    w, h = hr_geometry(probe_size(clip, root), 1)
    cmd = [ffmpeg_exe(), "-v", "error", *_input_args(clip, root), "-vf", f"crop={w}:{h}:0:0", "-frames:v",
           str(max_frames), "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        while True:
            buf = proc.stdout.read(w * h)
            if len(buf) < w * h:
                break
            yield np.frombuffer(buf, np.uint8).reshape(h, w)
    finally:
        proc.stdout.close()
        proc.kill()
        proc.wait()


@dataclass
class Harvested:
    items: int
    frames_played: int
    seconds_played: float


def harvest_clip(memory: EpisodicMemory, clip: Clip, root: Path | None = None, *, max_frames: int = 300,
                 frame_step: int = 5, patches_per_frame: int = 6, patch: int = 96, min_std: float = 4.0,
                 select: str = "random", seed: int = 0) -> Harvested:
    """Plays the clip at full resolution and stores `patches_per_frame` patches of every
    `frame_step`-th frame (at most `max_frames` sampled frames), as nervesr's harvester does:
    random positions, flat patches (luma std < `min_std`) skipped since they teach an upscaler
    nothing; `select="textured"` keeps the most textured of twice as many candidates instead (as
    nervesr's harvester does; it skews the memory towards edges, which the held-back frames, cut
    the same way, then over-represent). Metadata per the contract (`frame`, the frame number, is an extra key)."""
    if select not in ("random", "textured"):
        raise ValueError(f"unknown patch selection {select!r}: random or textured")
    root = root or data_root()
    rng = np.random.default_rng(seed)
    w, h = probe_size(clip, root)
    codec, kbps = stream_info(clip, root)
    items: list[tuple[np.ndarray, np.ndarray | None, dict[str, Any]]] = []
    prev: np.ndarray | None = None
    played = 0
    for f, frame in enumerate(iter_luma(clip, root, max_frames * frame_step + 1)):
        played += 1
        fh, fw = frame.shape
        if fh < patch or fw < patch:
            raise ValueError(f"{clip.path} ({fw}x{fh}) is smaller than a {patch}px patch")
        if f % frame_step == 0 and prev is not None:
            ys = rng.integers(0, (fh - patch) // 2 + 1, 2 * patches_per_frame) * 2
            xs = rng.integers(0, (fw - patch) // 2 + 1, 2 * patches_per_frame) * 2
            cands = [(frame[y : y + patch, x : x + patch], int(y), int(x)) for y, x in zip(ys, xs)]
            cands = [c for c in cands if float(c[0].std()) >= min_std]
            if select == "textured":
                cands.sort(key=lambda c: -float(np.abs(np.diff(c[0].astype(np.int16), axis=1)).mean()))
            for hr, y, x in cands[:patches_per_frame]:
                items.append((np.ascontiguousarray(hr), None, {
                    "source": f"harvest:{clip.path}", "codec": codec, "crf": None, "bitrate_kbps": kbps,
                    "width": w, "height": h, "x": x, "y": y, "patch": patch,
                    "stats": patch_stats(hr, prev[y : y + patch, x : x + patch]), "task": clip.content, "frame": f,
                }))
        prev = frame
    memory.add_many(items)
    return Harvested(len(items), played, played / clip.fps)


# ---- pairs from the memory ------------------------------------------------------------------

def frame_key(meta: dict[str, Any]) -> str:
    """Items cut from the same frame share this key (`frame` in the memory format; items stored
    before that key existed fall back to their creation time to a tenth of a second)."""
    frame = meta.get("frame", round(float(meta.get("created", 0.0)), 1))
    return f"{meta.get('source', '')}#{frame}"


def content_order(memory: EpisodicMemory, ids: list[str]) -> list[str]:
    """`ids` in an order set by what the items hold (source, frame, position), not by their
    random ids: the same harvest then gives the same pairs (patches go through the encoder as
    one sequence, and the bars and batches are drawn in this order), so a run repeats."""
    def key(i: str) -> tuple[str, str, int, int, str]:
        m = memory.meta(i)
        return (str(m.get("source", "")), frame_key(m), int(m.get("y", 0)), int(m.get("x", 0)), i)
    return sorted(ids, key=key)


def split(memory: EpisodicMemory, holdout: float, by: str = "frame") -> tuple[list[str], list[str]]:
    """(training ids, held-back ids), chosen by hashes so the split does not move when items are
    added. `by="frame"`: whole frames held back (neighbouring frames of the same video stay on the
    training side, so the held-back pairs reward fitting those videos). `by="source"`: whole
    videos held back (a `holdout` share of the sources, at least one), when there are two or more;
    otherwise by frame."""
    if by not in ("frame", "source"):
        raise ValueError(f"unknown hold-out unit {by!r}: frame or source")
    ids = content_order(memory, memory.ids())
    sources = sorted({str(memory.meta(i).get("source", "")) for i in ids},
                     key=lambda src: hashlib.sha256(src.encode()).digest())
    if by == "source" and len(sources) >= 2:
        kept_out = set(sources[: max(1, min(len(sources) - 1, round(holdout * len(sources))))])
        train = [i for i in ids if str(memory.meta(i).get("source", "")) not in kept_out]
        return train, [i for i in ids if str(memory.meta(i).get("source", "")) in kept_out]
    train, held = [], []
    for i in ids:
        digest = hashlib.sha256(frame_key(memory.meta(i)).encode()).digest()
        (held if int.from_bytes(digest[:4], "big") / 2**32 < holdout else train).append(i)
    return train, held


def rungs_of(meta: dict[str, Any], default: tuple[Codec, ...]) -> tuple[Codec, ...]:
    codec, crf = meta.get("codec"), meta.get("crf")
    if codec in DEGRADATION_CODECS and isinstance(crf, int):
        return (Codec(codec, crf),)
    return default


BAR_LUMA = 16  # black in the limited range every broadcast and streaming format uses


def with_bar(hr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The patch with a black letterbox or pillarbox bar over one of its sides, covering 1/8 to
    1/2 of it. Bars sit in most played video (any aspect-ratio mismatch) whatever its content, and
    the hard edge between a bar and the picture is where a shipped model gains most; a fine-tune
    on harvested content alone forgets it (the README's on-device section: Sintel lost 0.15 dB,
    all of it in the two rows of macroblocks at its bars)."""
    out = hr.copy()
    side = int(rng.integers(4))
    extent = out.shape[0] if side < 2 else out.shape[1]
    depth = int(rng.integers(max(1, extent // 8), max(2, extent // 2 + 1)))
    if side == 0:
        out[:depth] = BAR_LUMA
    elif side == 1:
        out[-depth:] = BAR_LUMA
    elif side == 2:
        out[:, :depth] = BAR_LUMA
    else:
        out[:, -depth:] = BAR_LUMA
    return out


def memory_pairs(memory: EpisodicMemory, ids: list[str], scale: int, rungs: tuple[Codec, ...],
                 bars: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(lr, hr) uint8 stacks: an item's stored low-resolution side when it has one, otherwise
    its patch degraded by the real codec at each of its rungs (patches of a size and rung go
    through the encoder together, as one short video). With `bars` > 0, that share of the items
    also comes as a barred copy (`with_bar`), degraded by the codec like the rest."""
    groups: dict[tuple[Codec, tuple[int, int]], list[np.ndarray]] = {}
    lrs, hrs = [], []
    rng = np.random.default_rng(seed)
    for i in ids:
        hr, lr = memory.load(i)
        h, w = hr_geometry((hr.shape[1], hr.shape[0]), scale)
        codecs = rungs_of(memory.meta(i), rungs)
        if bars > 0 and rng.random() < bars:
            for codec in codecs:
                groups.setdefault((codec, (h, w)), []).append(with_bar(hr[:h, :w], rng))
        if lr is not None:
            lrs.append(lr)
            hrs.append(hr)
            continue
        for codec in codecs:
            groups.setdefault((codec, (h, w)), []).append(hr[:h, :w])
    for (codec, _), patches in groups.items():
        stack = np.stack(patches)
        lrs.extend(degrade(stack, scale, codec))
        hrs.extend(stack)
    if not lrs:
        return np.zeros((0, 1, 1), np.uint8), np.zeros((0, scale, scale), np.uint8)
    return np.stack(lrs), np.stack(hrs)


# ---- models ------------------------------------------------------------------------------------

def to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)


def predict(model: nn.Module, lr: np.ndarray, batch: int = 256) -> np.ndarray:
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(lr), batch):
            outs.append(model(to_tensor(lr[i : i + batch])).squeeze(1).numpy())
    return np.clip(np.concatenate(outs) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def pairs_psnr(model: nn.Module, lr: np.ndarray, hr: np.ndarray) -> float:
    """PSNR-Y over all held-back pairs (one MSE over every pixel, as over one image)."""
    return psnr(predict(model, lr), hr)


# ---- training ----------------------------------------------------------------------------------

@dataclass
class LocalTrainConfig:
    name: str = "nerve-sr-x2"  # registered model
    rungs: tuple[Codec, ...] = (Codec("x264", 23), Codec("x264", 33))
    steps: int = 3000
    batch: int = 32
    # One candidate per learning rate; the one that gains most on the held-back harvested pairs
    # (within the forgetting guard) is kept: the device picks its step size on its own data.
    lrs: tuple[float, ...] = (5e-4, 1e-3, 2e-3)
    replay_fraction: float = 0.5  # share of each batch from the original training pairs
    replay_pairs: int = 6000  # how many of them are kept (a random subset of the cache)
    replay: PairConfig = field(default_factory=PairConfig)  # the shipped model's training set
    # (Fisher normalised to mean 1) off by default: 0.03 held the model so that it gained +0.014 dB
    # on the held-back pairs and was never registered; bar rehearsal keeps the other content instead
    ewc_lambda: float = 0.0
    fisher_samples: int = 128
    holdout: float = 0.2
    holdout_by: str = "frame"  # "source": hold back whole videos (see split)
    min_gain_db: float = 0.02  # below this, the candidate is not registered
    bars: float = 0.5  # share of harvested patches also trained with a letterbox/pillarbox bar (with_bar)
    guard_pairs: int = 2000  # original training pairs kept out of the fine-tune to measure forgetting
    max_forget_db: float = 0.1  # refuse a candidate that loses more than this on them (< 0: no guard)
    threads: int = 1
    seed: int = 0
    rep: bool = False  # fine-tune as re-parameterisable EdgeConv blocks, merged back after
    # Also try the mean of the weights of the learning-rate candidates within the guard (a
    # uniform "model soup", Wortsman et al. 2022: same start, so their average is a model too).
    soup: bool = False


Pairs = tuple[np.ndarray, np.ndarray]


def replay_set(cfg: LocalTrainConfig, cache: Path, rng: np.random.Generator) -> tuple[Pairs, Pairs]:
    """Two disjoint random subsets of the shipped model's training pairs: the replayed ones and
    the forgetting guard (never trained on during the fine-tune)."""
    lr, hr = build_pairs(cfg.replay, cache)
    n_replay = cfg.replay_pairs if cfg.replay_fraction > 0 else 0
    order = rng.permutation(len(lr))
    rep = np.sort(order[: min(n_replay, len(lr))])
    guard = np.sort(order[len(rep) : len(rep) + cfg.guard_pairs])
    return (lr[rep], hr[rep]), (lr[guard], hr[guard])


def crop(lr: torch.Tensor, hr: torch.Tensor, side: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random `side`-pixel window of every LR patch in the batch, and its HR window."""
    h, w = lr.shape[-2:]
    if h == side and w == side:
        return lr, hr
    s = hr.shape[-1] // w
    y = int(torch.randint(0, h - side + 1, (1,), generator=gen))
    x = int(torch.randint(0, w - side + 1, (1,), generator=gen))
    return lr[..., y : y + side, x : x + side], hr[..., y * s : (y + side) * s, x * s : (x + side) * s]


def finetune(model: Student, new: tuple[np.ndarray, np.ndarray], replay: tuple[np.ndarray, np.ndarray],
             cfg: LocalTrainConfig, lr: float) -> Student:
    """Replay + EWC fine-tuning (the continual learner): Fisher of the starting model on the
    replay pairs anchors it; each batch mixes harvested and replayed pairs."""
    from ..continual.benchmark import Ewc, augment

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    deployed = model
    if cfg.rep:
        model = model.as_rep()
    nl, nh = to_tensor(new[0]), to_tensor(new[1])
    rl, rh = to_tensor(replay[0]), to_tensor(replay[1])
    ewc = None
    if cfg.ewc_lambda > 0 and len(rl):
        ewc = Ewc(cfg.ewc_lambda, 1.0)
        ewc.consolidate(model, SimpleNamespace(lr=rl, hr=rh), cfg.fisher_samples, gen)
    n_rep = int(round(cfg.batch * cfg.replay_fraction)) if len(rl) else 0
    # Harvested and replayed patches may differ in size: batches use their common size.
    side = min(nl.shape[-1], nl.shape[-2], *((rl.shape[-1], rl.shape[-2]) if n_rep else ()))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    model.train()
    bar = tqdm(range(cfg.steps), desc=f"local fine-tune (lr {lr:g})", unit="step")
    for step in bar:
        a = torch.randint(0, len(nl), (cfg.batch - n_rep,), generator=gen)
        x, y = crop(nl[a], nh[a], side, gen)
        if n_rep:
            b = torch.randint(0, len(rl), (n_rep,), generator=gen)
            rx, ry = crop(rl[b], rh[b], side, gen)
            x, y = torch.cat([x, rx]), torch.cat([y, ry])
        x, y = augment(x, y, step)
        loss = nn.functional.l1_loss(model(x), y)
        if ewc is not None:
            loss = loss + ewc.penalty(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    if cfg.rep:  # back into the deployed model's plain convolutions, in place
        deployed.load_state_dict(model.plain().state_dict())
        model = deployed
    model.eval()
    return model


def soup_of(models: list[Student]) -> Student:
    """A copy of the first model with the mean of the models' weights."""
    out = copy.deepcopy(models[0])
    states = [m.state_dict() for m in models]
    out.load_state_dict({k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) for k, v in states[0].items()})
    return out.eval()


def local_train(registry: Registry, memory: EpisodicMemory, cfg: LocalTrainConfig, policy: Policy,
                cache: Path, promote: bool = False, device_root: Path = Path("/"),
                now: dt.datetime | None = None) -> dict[str, Any]:
    """One run of the on-device loop; returns its report (also when the policy says no)."""
    from ..sr.export import export_onnx

    started = time.time()
    state = read_device(device_root)
    ok, reasons = allowed(policy, state, now)
    report: dict[str, Any] = {"ran": ok, "policy": asdict(policy), "device": asdict(state), "reasons": reasons}
    if not ok:
        return report
    torch.set_num_threads(cfg.threads)
    champion = registry.champion(cfg.name)
    if champion is None:
        raise RegistryError(f"{cfg.name} has no champion; register the shipped model first: nerve-learn registry "
                            f"register --model models/{cfg.name}.onnx --alias champion")
    if champion.frames != 1:
        raise RegistryError(f"{cfg.name} v{champion.version} takes {champion.frames} frames; harvested patches are "
                            "single frames, so only single-frame models are fine-tuned on the device")
    memory.refresh()
    train_ids, held_ids = split(memory, cfg.holdout, cfg.holdout_by)
    if not train_ids or not held_ids:
        raise ValueError(f"the episodic memory {memory.root} holds {len(memory)} items: too few to train and "
                         "hold back (harvest more first)")
    with tempfile.TemporaryDirectory(prefix="nerve-local-train-") as tmp:
        work = Path(tmp)
        base_path = registry.download(champion, work / "champion")
        base = student_from_onnx(base_path)
        if base.scale != champion.scale:
            raise RegistryError(f"{cfg.name} v{champion.version}: weights are x{base.scale}, registered x{champion.scale}")
        rng = np.random.default_rng(cfg.seed)
        new = memory_pairs(memory, train_ids, base.scale, cfg.rungs, cfg.bars, cfg.seed)
        held = memory_pairs(memory, held_ids, base.scale, cfg.rungs)
        use_guard = cfg.max_forget_db >= 0 and cfg.guard_pairs > 0
        if cfg.replay_fraction > 0 or use_guard:
            replay, guard = replay_set(cfg, cache, rng)
        else:
            replay = guard = (np.zeros((0, 1, 1), np.uint8), np.zeros((0, 2, 2), np.uint8))
        if not cfg.lrs:
            raise ValueError("no learning rate to try (LocalTrainConfig.lrs is empty)")
        before = pairs_psnr(base, *held)
        guard_before = pairs_psnr(base, *guard) if use_guard and len(guard[0]) else None
        tries: list[dict[str, Any]] = []
        models: list[Student] = []
        for lr in cfg.lrs:
            candidate = student_from_onnx(base_path)
            finetune(candidate, new, replay, cfg, lr)
            forget_lr = guard_before - pairs_psnr(candidate, *guard) if guard_before is not None else None
            tries.append({"lr": lr, "gain_db": pairs_psnr(candidate, *held) - before, "forget_db": forget_lr,
                          "within_guard": forget_lr is None or forget_lr <= cfg.max_forget_db})
            models.append(candidate)
        kept = [m for m, t in zip(models, tries) if t["within_guard"]]
        if cfg.soup and len(kept) > 1:
            soup = soup_of(kept)
            forget_soup = guard_before - pairs_psnr(soup, *guard) if guard_before is not None else None
            tries.append({"lr": "soup", "gain_db": pairs_psnr(soup, *held) - before, "forget_db": forget_soup,
                          "within_guard": forget_soup is None or forget_soup <= cfg.max_forget_db,
                          "of": [t["lr"] for t in tries if t["within_guard"]]})
            models.append(soup)
        # the best within the guard; if none is, the best of all (refused below with its reason)
        pick = max(range(len(tries)), key=lambda k: (tries[k]["within_guard"], tries[k]["gain_db"]))
        model = models[pick]
        gain, forget, chosen_lr = tries[pick]["gain_db"], tries[pick]["forget_db"], tries[pick]["lr"]
        after = before + gain
        sources = sorted({memory.meta(i).get("source", "") for i in train_ids})
        tasks: dict[str, int] = {}
        for i in train_ids:
            t = str(memory.meta(i).get("task"))
            tasks[t] = tasks.get(t, 0) + 1
        report.update({
            "champion": champion.version, "train_items": len(train_ids), "held_items": len(held_ids),
            "train_pairs": int(len(new[0])), "held_pairs": int(len(held[0])), "replay_pairs": int(len(replay[0])),
            "rungs": [f"{c.name}:{c.crf}" for c in cfg.rungs], "heldback_psnr_champion": before,
            "heldback_psnr_candidate": after, "gain_db": gain, "guard_pairs": int(len(guard[0])),
            "forget_db": forget, "lr": chosen_lr, "tries": tries,
            "config": {k: str(v) for k, v in asdict(cfg).items()},
        })
        if gain < cfg.min_gain_db:
            report["decision"] = f"kept v{champion.version}: candidate gains {gain:+.3f} dB < {cfg.min_gain_db} dB"
            report["seconds"] = time.time() - started
            return report
        if forget is not None and forget > cfg.max_forget_db:
            report["decision"] = (f"kept v{champion.version}: candidate gains {gain:+.3f} dB on harvested pairs but "
                                  f"loses {forget:.3f} dB > {cfg.max_forget_db} dB on the original training pairs")
            report["seconds"] = time.time() - started
            return report
        onnx_path = work / f"{cfg.name}.onnx"
        export_onnx(model, onnx_path)
        data = {"memory": str(memory.root.resolve()), "items": len(train_ids), "held_back": len(held_ids),
                "sources": sources[:20], "tasks": tasks, "rungs": report["rungs"],
                "replay": f"pairs-{cfg.replay.key()} ({len(replay[0])} pairs)",
                "ids_sha256": hashlib.sha256("".join(sorted(train_ids)).encode()).hexdigest()}
        v = registry.register(onnx_path, cfg.name, scale=champion.scale, frames=1, parent=champion.version, data=data,
                              metrics={"heldback": {"psnr_y": after, "psnr_y_champion": before, "gain_db": gain},
                                       **({"guard": {"forget_db": forget}} if forget is not None else {})},
                              description=f"local fine-tune of v{champion.version} on {len(train_ids)} harvested patches",
                              alias=CANDIDATE, params={"steps": cfg.steps, "lr": chosen_lr, "ewc_lambda": cfg.ewc_lambda,
                                                       "replay_fraction": cfg.replay_fraction, "bars": cfg.bars})
        report["candidate"] = v.version
        report["decision"] = f"registered v{v.version} as candidate ({gain:+.3f} dB on held-back pairs)"
        if promote:
            registry.promote(cfg.name, v.version)
            report["decision"] += "; promoted to champion"
    report["seconds"] = time.time() - started
    return report


def version_summary(v: Version) -> str:
    return f"{v.name} v{v.version} ({', '.join(v.aliases) or 'no alias'})"
