"""A fleet simulator: every device is an OS process playing real `nervesr` pipelines.

A device loops over sessions. Each session it reads the rollout's public state from the
tracking server (the registered model's `nerve.rollout` tag; the last copy it saw when the server
is down), finds its arm by the stable hash of its id (assign.py), fetches the model of that arm
(and the candidate, to score it in shadow) through the registry, which checks the sha256 (a
mismatch is refused and counted, the device keeps the champion), picks a segment from its
viewing mix, and plays the segment's rung (a bicubic downscale by the model's scale, x264 at the
fleet's CRF: the stream a player decodes) through `gst-launch-1.0 ... nervesr scale=2
model-location=<the model>`; the `nervesr-stats` message at EOS gives the frame counters,
inference time and errors, the CPU time of the process is the energy figure. Then it scores the
models on patches of the same frames against the real frame (the shadow comparison: the same
low-resolution input, the real high-resolution patch; when `nervesr` posts `shadow-*` fields,
those are used instead), records a report in its spool and sends what is pending.

So the quality effect of a candidate on a device is measured on that device's content every
session; nothing in the simulator states it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.clips import data_root
from ..data.degrade import Codec, _input_args, ffmpeg_exe, hr_geometry, probe_size
from ..metrics import psnr
from ..paths import REPO
from . import assign
from .content import Segment
from .telemetry import Device, Report, stats_messages

MIXES: dict[str, Any] = {}


def _mixes() -> dict[str, Any]:
    if not MIXES:
        from .content import ANIMATION_SEGMENTS, MIXED_SEGMENTS, SMALL_SEGMENTS

        MIXES.update({"animation": ANIMATION_SEGMENTS, "mixed": MIXED_SEGMENTS, "small": SMALL_SEGMENTS})
    return MIXES


@dataclass
class DeviceConfig:
    id: str
    work: Path
    uri: str
    name: str  # registered model
    mix: str = "animation"
    scale: int = 2
    rung: Codec = Codec("x264", 28)
    patches: int = 12  # scored patches per session (the shadow budget)
    patch_lr: int = 32
    sessions: int = 0  # 0: until the stop file appears
    seed: int = 0
    # False: while no rollout collects evidence (none, or decided) the device only watches the
    # state every `poll_s` instead of playing (the CI test's fleet: CPU for what is decided)
    play_settled: bool = True
    poll_s: float = 1.0


def _segment(seg: Segment, scale: int, rung: Codec, cache: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """(the rung's file, its decoded luma, the real frames' luma) of a segment, cached."""
    clip, first, frames, box = seg
    key = f"{Path(clip.path).stem}-{first}-{frames}-x{scale}-{rung.name}{rung.crf}"
    if box is not None:
        key += "-box{}x{}x{}x{}".format(*box)
    video, hr_npy, lr_npy = cache / f"{key}.mkv", cache / f"{key}.hr.npy", cache / f"{key}.lr.npy"
    if not (video.is_file() and hr_npy.is_file() and lr_npy.is_file()):
        cache.mkdir(parents=True, exist_ok=True)
        root = data_root()
        x0, y0 = (box[0], box[1]) if box is not None else (0, 0)
        w, h = hr_geometry(box[2:] if box is not None else probe_size(clip, root), scale)
        vf = f"select='gte(n\\,{first})',crop={w}:{h}:{x0}:{y0}"
        hr = subprocess.run([ffmpeg_exe(), "-v", "error", *_input_args(clip, root), "-vf", vf, "-fps_mode", "passthrough",
                             "-frames:v", str(frames), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                            capture_output=True, check=True).stdout
        hr_arr = np.frombuffer(hr, np.uint8).reshape(-1, h, w)
        tmp = video.with_suffix(f".{os.getpid()}.tmp.mkv")
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}",
                        "-r", str(clip.fps), "-i", "-", "-vf", f"scale={w // scale}:{h // scale}:flags=bicubic,format=yuv420p",
                        *rung.args(), "-f", "matroska", str(tmp)], input=hr_arr.tobytes(), check=True)
        lr = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(tmp), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                            capture_output=True, check=True).stdout
        # each file written under a name of this process, then renamed: devices may race on a segment
        for arr, final in ((np.frombuffer(lr, np.uint8).reshape(-1, h // scale, w // scale), lr_npy), (hr_arr, hr_npy)):
            part = final.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(part, arr)
            os.replace(part, final)
        os.replace(tmp, video)
    return video, np.load(hr_npy), np.load(lr_npy)


def play(video: Path, location: Path, timeout: float = 120) -> tuple[dict[str, Any], float]:
    """Plays a rung through nervesr following `location`; (the last nervesr-stats, CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "GST_PLUGIN_PATH": str(REPO / "target" / "release")}
    out = subprocess.run(["gst-launch-1.0", "-m", "filesrc", f"location={video}", "!", "matroskademux", "!", "h264parse",
                          "!", "avdec_h264", "!", "videoconvert", "!", "video/x-raw,format=I420", "!", "nervesr", "scale=2",
                          f"model-location={location}", "threads=1", "!", "fakesink"],
                         capture_output=True, text=True, env=env, timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stats = stats_messages(out.stdout)
    if out.returncode != 0 or not stats:
        return {"inference-errors": 1, "frames-enhanced": 0, "frames-classical": 0, "error": out.stderr[-500:]}, cpu
    return stats[-1], cpu


class Scorer:
    """The shadow comparison in Python: ONNX models on low-resolution patches of the rung,
    scored against the real frame's patches (bicubic beside them)."""

    def __init__(self) -> None:
        self.sessions: dict[str, Any] = {}

    def run(self, onnx: Path, lr: np.ndarray) -> np.ndarray:
        import onnxruntime as ort

        key = str(onnx)
        if key not in self.sessions:
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            self.sessions[key] = ort.InferenceSession(key, so, providers=["CPUExecutionProvider"])
        x = lr.astype(np.float32)[:, None] / 255.0
        # the exported models take one image at a time (batch dimension fixed at 1)
        y = np.concatenate([self.sessions[key].run(None, {"lr": x[i : i + 1]})[0][:, 0] for i in range(len(x))])
        return np.clip(y * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _cubic_taps(n: int, scale: int, a: float = -0.75) -> tuple[np.ndarray, np.ndarray]:
    """(indices (n*scale, 4), weights (n*scale, 4)) of the bicubic filter along one axis:
    PyTorch's `interpolate(mode="bicubic", align_corners=False)` (Keys' kernel with a = -0.75,
    source x = (o + 0.5) / scale - 0.5, edges replicated)."""
    x = (np.arange(n * scale, dtype=np.float64) + 0.5) / scale - 0.5
    x0 = np.floor(x)
    t = (x - x0)[:, None]
    d = np.abs(np.array([-1.0, 0.0, 1.0, 2.0])[None, :] - t)
    w = np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a)
    idx = np.clip(x0[:, None].astype(np.int64) + np.arange(-1, 3)[None, :], 0, n - 1)
    return idx, w.astype(np.float32)


def bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic upscale of (N, H, W) uint8 luma, rounded: the same numbers as PyTorch's, in numpy
    (a device process does not load PyTorch for it: 1.5 s of CPU at every start)."""
    _, h, w = lr.shape
    iy, wy = _cubic_taps(h, scale)
    ix, wx = _cubic_taps(w, scale)
    x = lr.astype(np.float32)
    rows = np.einsum("nhk...,hk->nh...", x[:, iy], wy)  # (N, H*s, W)
    up = np.einsum("nhwk,wk->nhw", rows[:, :, ix], wx)  # (N, H*s, W*s)
    return np.clip(up + 0.5, 0, 255).astype(np.uint8)


def sample_patches(hr: np.ndarray, lr: np.ndarray, n: int, p: int, s: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    f = rng.integers(0, min(len(hr), len(lr)), n)
    lh, lw = lr.shape[1:]
    ys, xs = rng.integers(0, lh - p + 1, n), rng.integers(0, lw - p + 1, n)
    lrs = np.stack([lr[i, y : y + p, x : x + p] for i, y, x in zip(f, ys, xs)])
    hrs = np.stack([hr[i, y * s : (y + p) * s, x * s : (x + p) * s] for i, y, x in zip(f, ys, xs)])
    return lrs, hrs


def run_device(cfg: DeviceConfig) -> int:
    from ..registry.store import Registry, RegistryError
    from .canary import read_state

    work = Path(cfg.work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "pid").write_text(str(os.getpid()))  # Fleet.start ends a stale process of this device
    stop = work.parent / "STOP"
    # a seed from the id's sha256 (str hashes change from one Python process to the next)
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(cfg.id.encode()).digest()[:4], "big") + cfg.seed)
    registry = Registry(cfg.uri)
    scorer = Scorer()
    state_cache = work / "rollout.json"
    mix = _mixes()[cfg.mix]
    session = 0
    devices: dict[str, Device] = {}
    refused: set[int] = set()
    verified: set[int] = set()  # versions on disk whose sha256 was checked (a version never changes)
    while cfg.sessions <= 0 or session < cfg.sessions:
        if stop.exists():
            break
        try:
            # one request: the rollout's public state and the champion alias, together
            public_now, champion_now = read_state(registry.client, cfg.name)
            public = {**(public_now or {}), "champion_now": champion_now}
            tmp = state_cache.with_suffix(".tmp")
            tmp.write_text(json.dumps(public))
            os.replace(tmp, state_cache)
        except Exception:  # the server is down: go on with what was last seen
            public = json.loads(state_cache.read_text()) if state_cache.is_file() else None
        if not public or public.get("champion_now") is None:
            time.sleep(0.5)
            continue
        rid = str(public.get("id") or "none")
        dev = devices.setdefault(rid, Device(cfg.id, work, cfg.uri, rid))
        champion_v = int(public["champion_now"])
        candidate_v = public.get("candidate")
        status = public.get("status")
        active = status in ("running", "shadow", "ab")
        if not active and not cfg.play_settled:
            time.sleep(cfg.poll_s)  # no rollout is collecting evidence: watch for the next one
            continue
        session += 1
        arm = assign.arm(cfg.id, rid, float(public.get("threshold", 0.0))) if active else assign.CHAMPION
        n_refused = 0

        def fetch(version: int) -> Path | None:
            nonlocal n_refused
            where = work / "models" / f"v{version}"
            if version in refused:
                return None
            if version in verified and (where / "manifest.toml").is_file():
                return where
            try:
                registry.materialize(cfg.name, version, where)
                verified.add(version)
            except RegistryError as e:
                if "sha256" not in str(e):  # the server could not answer: not the artifact's fault
                    return where if (where / "manifest.toml").is_file() else None
                refused.add(version)  # the bytes are not the registered ones: never run them
                n_refused += 1
                return None
            except Exception:  # server down: use what is on disk (its sha256 was checked when fetched)
                if not (where / "manifest.toml").is_file():
                    return None
            return where

        champ_dir = fetch(champion_v)
        if champ_dir is None:
            time.sleep(0.5)
            continue
        cand_dir = fetch(int(candidate_v)) if active and candidate_v is not None and int(candidate_v) != champion_v else None
        if cand_dir is None and arm == assign.CANDIDATE:
            arm = assign.CHAMPION  # the candidate was refused or cannot be fetched: keep the champion
        run_dir = cand_dir if arm == assign.CANDIDATE else champ_dir
        assert run_dir is not None
        seg = mix[int(rng.integers(len(mix)))]
        clip, frames = seg.clip, seg.frames
        video, hr, lr = _segment(seg, cfg.scale, cfg.rung, work.parent / "segments")
        stats, cpu = play(video, run_dir)
        fps = float(clip.fps)
        report = Report(device=cfg.id, seq=0, created_ms=0, rollout=rid, arm=arm,
                        model_version=candidate_v if arm == assign.CANDIDATE else champion_v,
                        model_sha256=str(stats.get("model-sha256", "")), video_s=frames / fps,
                        frames_enhanced=int(stats.get("frames-enhanced", 0)),
                        frames_classical=int(stats.get("frames-classical", 0)),
                        inference_errors=int(stats.get("inference-errors", 0)),
                        mean_inference_ms=float(stats.get("mean-inference-ms", 0.0)),
                        falling_back=bool(stats.get("falling-back", False)),
                        swaps_refused=int(stats.get("swaps-refused", 0)), cpu_s=cpu, refused_artifacts=n_refused,
                        content=clip.content)
        report.realtime_miss = int(report.mean_inference_ms > 1000.0 / fps or report.frames_classical > 0)
        lrp, hrp = sample_patches(hr, lr, cfg.patches, cfg.patch_lr, cfg.scale, rng)
        champ_onnx = next(champ_dir.glob("*.onnx"))
        report.champion_psnr = psnr(scorer.run(champ_onnx, lrp), hrp)
        report.bicubic_psnr = psnr(bicubic(lrp, cfg.scale), hrp)
        report.shadow_samples = len(lrp)
        if cand_dir is not None:
            cand_onnx = next(p for p in cand_dir.glob("*.onnx") if p.name.endswith(f"-v{candidate_v}.onnx"))
            report.candidate_psnr = psnr(scorer.run(cand_onnx, lrp), hrp)
            report.gain_db = report.candidate_psnr - report.champion_psnr
        if "shadow-gain-db" in stats:  # nervesr's own shadow mode measured it on the real frames
            report.gain_db = float(stats["shadow-gain-db"])
            report.shadow_samples = int(stats.get("shadow-samples", 0))
        dev.record(report)
        dev.flush()
    for dev in devices.values():  # a last try for anything still pending
        dev.flush()
    return 0


# ---- the fleet ------------------------------------------------------------------------------

def end_stale(device_work: Path) -> None:
    """SIGKILL of a process still playing as this device (one started by a controller that was
    itself killed: a pipeline killed with SIGKILL in its shadow or canary step leaves its
    devices running, and its rerun starts them again); two processes must never share one spool."""
    try:
        pid = int((device_work / "pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if str(device_work).encode() in cmdline and pid != os.getpid():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        for _ in range(100):  # until it is gone (a zombie of another parent counts as gone)
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                return
            if state == "Z":
                return
            time.sleep(0.05)


class RunningFleet:
    """Devices that are already running (a real fleet, or one a test started): a rollout on
    them needs their ids and starts or stops nothing."""

    def __init__(self, devices: int) -> None:
        self.ids = [f"dev{i:03d}" for i in range(devices)]

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass
class FleetConfig:
    devices: int = 20
    mix: str = "animation"
    work: Path = Path("out/fleet")
    sessions: int = 0
    patches: int = 12
    play_settled: bool = True  # DeviceConfig.play_settled
    # the devices' CPU priority below the caller's (nice): on one machine the controller and the
    # pipeline, which in a deployment have machines of their own, are not held up by the fleet
    nice: int = 0


class Fleet:
    """Starts and stops the device processes."""

    def __init__(self, uri: str, name: str, cfg: FleetConfig) -> None:
        self.uri, self.name, self.cfg = uri, name, cfg
        self.ids = [f"dev{i:03d}" for i in range(cfg.devices)]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.cfg.work.mkdir(parents=True, exist_ok=True)

    def command(self, device: str) -> list[str]:
        return [*(["nice", "-n", str(self.cfg.nice)] if self.cfg.nice else []),
                sys.executable, "-m", "nerve_learning.rollout.fleet", "--id", device, "--work", str(self.cfg.work / device),
                "--uri", self.uri, "--name", self.name, "--mix", self.cfg.mix,
                "--sessions", str(self.cfg.sessions), "--patches", str(self.cfg.patches),
                *([] if self.cfg.play_settled else ["--only-during-rollouts"])]

    def prepare(self) -> None:
        """Cuts and encodes every segment of the mix once, before the devices start (they would
        otherwise all decode the same clips at once on their first session)."""
        for seg in _mixes()[self.cfg.mix]:
            _segment(seg, 2, Codec("x264", 28), self.cfg.work / "segments")

    def start(self, device: str | None = None) -> None:
        (self.cfg.work / "STOP").unlink(missing_ok=True)
        if device is None:
            self.prepare()
        # A device's telemetry must not hold up its playback: a server that does not answer fails
        # the call at once (one retry, no back-off; MLflow's default backs off for minutes), the
        # device goes on with what it last saw and keeps its reports in the spool.
        env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30", **os.environ,
               "OMP_NUM_THREADS": "1"}
        for d in [device] if device else self.ids:
            end_stale(self.cfg.work / d)
            log = open(self.cfg.work / f"{d}.log", "ab")
            self.procs[d] = subprocess.Popen(self.command(d), stdout=log, stderr=subprocess.STDOUT, env=env)

    def kill(self, device: str) -> None:
        """kill -9 of one device."""
        p = self.procs[device]
        p.send_signal(signal.SIGKILL)
        p.wait()

    def stop(self, timeout: float = 120) -> None:
        (self.cfg.work / "STOP").write_text("stop")
        end = time.time() + timeout
        for p in self.procs.values():
            try:
                p.wait(timeout=max(1.0, end - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def produced(self) -> dict[str, int]:
        """Reports each device made (complete lines in its spools), per device and rollout."""
        from .telemetry import Spool

        out: dict[str, int] = {}
        for d in self.ids:
            for spool_dir in (self.cfg.work / d / "spool").glob("*"):
                out[f"{spool_dir.name}/{d}"] = len(Spool(spool_dir).records())
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="one simulated device")
    ap.add_argument("--id", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--uri", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--mix", default="animation")
    ap.add_argument("--sessions", type=int, default=0)
    ap.add_argument("--patches", type=int, default=12)
    ap.add_argument("--only-during-rollouts", action="store_true",
                    help="play only while a rollout collects evidence (DeviceConfig.play_settled)")
    a = ap.parse_args(argv)
    return run_device(DeviceConfig(a.id, Path(a.work), a.uri, a.name, mix=a.mix, sessions=a.sessions, patches=a.patches,
                                   play_settled=not a.only_during_rollouts))


if __name__ == "__main__":
    sys.exit(main())
