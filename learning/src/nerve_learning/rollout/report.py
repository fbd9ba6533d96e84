"""`nerve-learn rollout report`: the whole release loop on the fleet simulator, against a real
tracking server, written to rollout.json with PNGs beside it.

1. the shipped `nerve-sr-x2` is registered as champion of a fresh registered model;
2. bad candidate: the champion fine-tuned on the wrong data (candidates.train_bad), measured on
   the fleet's content, registered, canaried on the fleet (a device and the tracking server are
   killed with SIGKILL while it runs, then restarted): rolled back or not, the largest share of the
   fleet it reached, the device-minutes it took;
3. drift: the fleet switches from the champion's training mix to animation; harvested patches
   (the harvester's patch choice) against the reference: patches to detect, false-alarm rate on
   windows without drift; the drift event starts the pipeline;
4. the pipeline (data -> train -> evaluate -> register -> shadow -> canary -> promote) on the
   fleet: the good candidate's promotion and device-minutes;
5. A/B test of the new champion against the previous one (per-device randomisation);
6. telemetry lost across everything (spools against the server).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..paths import REPO
from ..registry.store import Registry
from . import faults
from .canary import Canary, CanaryConfig, RolloutState, publish, save
from .candidates import CandidateConfig, measure, train_bad
from .content import FLEET_CONTENT, GOOD_TRAIN_CONTENT, WRONG_CONTENT
from .fleet import Fleet, FleetConfig

CHAMPION_FILE = REPO / "models" / "nerve-sr-x2.onnx"


def log(msg: str) -> None:
    print(f"[rollout {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_canary(registry: Registry, name: str, version: int, rid: str, fleet: Fleet, work: Path, cfg: CanaryConfig,
               timeout: float, during: Callable[[float], None] | None = None) -> RolloutState:
    canary = Canary(registry, work / f"{rid}.json", cfg)
    st = canary.start(name, version, rid, fleet.ids)
    fleet.start()
    t0 = time.time()
    try:
        while st.status == "running" and time.time() - t0 < timeout:
            time.sleep(2.0)
            if during is not None:
                during(time.time() - t0)
            try:
                st = canary.tick(fleet.ids)
            except Exception as e:  # the server is down (fault injection): try again next tick
                log(f"tick failed ({type(e).__name__}); retrying")
                continue
            log(f"{rid}: step {st.step} threshold {st.threshold:.3f} status {st.status} "
                f"gain {st.last.get('gain_db')} CS [{st.last.get('gain_low')}, {st.last.get('gain_high')}] "
                f"reports {st.last.get('reports')}")
    finally:
        fleet.stop()
    return st


def drift_data(work: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], Any]:
    """(reference, same content, shifted content) harvested patch metadata, and the memories."""
    from ..data.memory import EpisodicMemory, MemoryConfig
    from ..ondevice.local_trainer import harvest_clip
    from .content import BASKET, BBB, CHAPLIN, MAKEUP, SINTEL

    before = EpisodicMemory(work / "harvest-before", MemoryConfig(capacity=100_000, durable=False))
    after = EpisodicMemory(work / "harvest-after", MemoryConfig(capacity=100_000, durable=False))
    if len(before) == 0:
        for i, clip in enumerate((MAKEUP, BASKET, CHAPLIN)):
            harvest_clip(before, clip, max_frames=40, frame_step=3, patches_per_frame=6, seed=i)
    if len(after) == 0:
        for i, clip in enumerate((BBB, SINTEL)):
            harvest_clip(after, clip, max_frames=40, frame_step=1 if clip is SINTEL else 9, patches_per_frame=6, seed=10 + i)
    def arrival(mem: EpisodicMemory, seed: int) -> list[dict[str, Any]]:
        # The memory's ids are random (uuid4), so their order changed from run to run, and with
        # it which patches share a window and how many windows alarm. A fixed order instead:
        # each patch by clip, frame and place, then one seeded shuffle (a fleet's patches arrive
        # mixed across viewers and clips).
        metas = sorted((mem.meta(i) for i in mem.ids()), key=lambda m: (m["source"], int(m["frame"]), m["y"], m["x"]))
        return [metas[k] for k in np.random.default_rng(seed).permutation(len(metas))]

    ref, same = [], []
    for m in arrival(before, 0):
        (ref if (int(m["frame"]) // 3) % 2 == 0 else same).append(m)  # alternate sampled frames
    return ref, same, arrival(after, 1), (before, after)


def quality_monitor(memories: Any, champion: Path) -> dict[str, Any]:
    from ..data.degrade import Codec
    from ..metrics import psnr
    from ..ondevice.local_trainer import memory_pairs
    from .drift import QualityMonitor
    from .fleet import Scorer, bicubic

    scorer = Scorer()

    def gains(mem: Any) -> list[float]:
        ids = mem.ids()[:120]
        lr, hr = memory_pairs(mem, ids, 2, (Codec("x264", 28),))
        sr, bi = scorer.run(champion, lr), bicubic(lr, 2)
        return [psnr(a, h) - psnr(b, h) for a, b, h in zip(sr, bi, hr)]

    before, after = memories
    g_ref = gains(before)
    g_after = gains(after)
    qm = QualityMonitor(g_ref)
    return {"reference_gain_db": float(np.mean(g_ref)), "after_gain_db": float(np.mean(g_after)),
            **qm.check(g_after)}


def make(uri: str, out: Path, work: Path, devices: int = 20, tracking_dir: Path | None = None,
         canary_timeout: float = 1800, inject_faults: bool = True) -> dict[str, Any]:
    from .plots import plot_rollouts

    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    # the report resumes too: stages already done (same --work) are read back, not run again
    partial = work / "report-state.json"
    result: dict[str, Any] = json.loads(partial.read_text()) if partial.is_file() else {}

    def checkpoint() -> None:
        tmp = partial.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2, default=str))
        tmp.replace(partial)

    registry = Registry(uri)
    if "model" not in result:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        name = f"fleet-sr-x2-{stamp}"
        registry.register(CHAMPION_FILE, name, scale=2, alias="champion",
                          description="the shipped nerve-sr-x2 (the fleet's champion)")
        result.update({"devices": devices, "model": name, "tracking_uri": uri,
                       "command": "nerve-learn rollout report", "created": stamp})
        checkpoint()
    stamp, name = result["created"], result["model"]
    v1 = registry.get(name, 1)
    log(f"{name} v{v1.version} is the first champion on {uri}")
    ccfg = CandidateConfig()
    fleets: list[Path] = [p for p in work.glob("fleet-*") if p.is_dir()]
    canary_cfg = CanaryConfig()
    events: list[dict[str, Any]] = list(result.get("faults", {}).get("injected", []))
    if "bad_candidate" not in result:
        bad_stage(registry, name, v1.version, stamp, ccfg, devices, work, canary_cfg, canary_timeout, tracking_dir,
                  inject_faults, result, fleets, events)
        result["faults"] = {"injected": events}
        checkpoint()
    if "drift" not in result:
        drift_stage(work, result)
        checkpoint()
    if "good_candidate" not in result:
        good_stage(registry, name, uri, ccfg, devices, work, canary_timeout, result, fleets)
        checkpoint()
    if "ab_test" not in result:
        ab_stage(registry, name, uri, v1.version, stamp, devices, work, out, result, fleets)
        checkpoint()
    timing(work, result)
    lost = faults.telemetry_lost(uri, fleets)
    result["faults"] = {"telemetry_lost": lost["lost"], "reports_produced": lost["produced"],
                        "reports_received": lost["received"], "injected": events}
    result["shadow"] = {"fps_ratio": None,
                        "note": "fps with / without nervesr's shadow-model: filled from the Rust benchmark"}
    (out / "rollout.json").write_text(json.dumps(result, indent=2, default=str))
    plot_rollouts(work, out, result, uri)
    log(f"wrote {out / 'rollout.json'}")
    return result


def timing(work: Path, result: dict[str, Any]) -> None:
    """Wall-clock seconds from a canary's start to its decision, and the candidate's sessions,
    beside the device-minutes (minutes of video the devices played on the candidate)."""
    for key, pattern in (("bad_candidate", "bad-*.json"), ("good_candidate", "pipeline/canary.json")):
        states = sorted(work.glob(pattern))
        if key in result and states:
            st = json.loads(states[-1].read_text())
            if st.get("decided"):
                result[key]["wall_s"] = st["decided"] - st["started"]
            result[key]["candidate_reports"] = (st.get("last") or {}).get("reports")


def bad_stage(registry: Registry, name: str, v1: int, stamp: str, ccfg: CandidateConfig, devices: int, work: Path,
              canary_cfg: CanaryConfig, canary_timeout: float, tracking_dir: Path | None, inject_faults: bool,
              result: dict[str, Any], fleets: list[Path], events: list[dict[str, Any]]) -> None:
    bad = train_bad(CHAMPION_FILE, WRONG_CONTENT, work / "bad.onnx", ccfg)
    bad_m = measure(CHAMPION_FILE, {"bad": bad}, FLEET_CONTENT, ccfg)
    vb = registry.register(bad, name, scale=2, parent=v1,
                           data={"trained_on": "screen content, clean bicubic pairs (the wrong data)"},
                           description="deliberately bad candidate")
    log(f"bad candidate v{vb.version}: {bad_m['bad_gain_db']:+.3f} dB on the fleet's content")
    fleet = Fleet(registry.uri, name, FleetConfig(devices=devices, mix="animation", work=work / "fleet-bad"))
    fleets.append(fleet.cfg.work)

    def inject(t: float) -> None:
        if not inject_faults:
            return
        if t > 20 and not any(e["fault"] == "device" for e in events):
            victim = fleet.ids[-1]
            fleet.kill(victim)
            events.append({"fault": "device", "device": victim, "at_s": round(t, 1)})
            fleet.start(victim)
        if t > 30 and tracking_dir is not None and not any(e["fault"] == "server" for e in events):
            pid = faults.kill_server(tracking_dir)
            events.append({"fault": "server", "pid": pid, "at_s": round(t, 1)})
            time.sleep(5)
            faults.start_server(tracking_dir)

    st_bad = run_canary(registry, name, vb.version, f"bad-{stamp}", fleet, work, canary_cfg, canary_timeout, inject)
    result["bad_candidate"] = {"version": vb.version, "measured_gain_db": bad_m["bad_gain_db"],
                               "rolled_back": st_bad.status == "rolled_back", "status": st_bad.status,
                               "max_fleet_fraction": st_bad.max_fleet_fraction, "device_minutes": st_bad.device_minutes,
                               "reason": st_bad.decisions[-1].get("reason"), "scores": bad_m["scores"]}
    log(f"bad candidate: {st_bad.status} at fleet fraction {st_bad.max_fleet_fraction:.3f}")


def drift_stage(work: Path, result: dict[str, Any]) -> None:
    from .drift import DriftConfig, experiment

    ref, same, shifted, memories = drift_data(work)
    drift = experiment(ref, same, shifted, DriftConfig())
    # the same streams judged on the content statistics alone (the switch also changes codec and
    # resolution, which the categorical PSI sees within one step)
    content = experiment(ref, same, shifted, DriftConfig(categorical=False))
    drift["content_only"] = {k: content[k] for k in ("detected", "patches_to_detect", "false_alarm_rate")}
    drift["content_only"]["why"] = content["at_detection"]["why"] if content["at_detection"] else []
    drift["quality_monitor"] = quality_monitor(memories, CHAMPION_FILE)
    drift["reference_patches"], drift["same_patches"], drift["shifted_patches"] = len(ref), len(same), len(shifted)
    result["drift"] = drift
    log(f"drift: detected {drift['detected']} after {drift['patches_to_detect']} patches; "
        f"false alarms {drift['false_alarm_rate']:.3f}")


def good_stage(registry: Registry, name: str, uri: str, ccfg: CandidateConfig, devices: int, work: Path,
               canary_timeout: float, result: dict[str, Any], fleets: list[Path]) -> None:
    from .pipeline import Pipeline, PipelineConfig

    drift = result["drift"]

    def fleet_factory(rid: str) -> Fleet:
        f = Fleet(uri, name, FleetConfig(devices=devices, mix="animation", work=work / f"fleet-{rid}"))
        fleets.append(f.cfg.work)
        return f

    pipe_state: dict[str, Any] = {}
    if drift["detected"]:
        from .content import MIXED_OTHER

        pcfg = PipelineConfig(name=name, work=work / "pipeline", uri=uri, devices=devices, candidate=ccfg,
                              trigger={"drift": drift["at_detection"]["why"]}, canary_timeout_s=canary_timeout)
        pipe_state = Pipeline(pcfg, GOOD_TRAIN_CONTENT, FLEET_CONTENT, MIXED_OTHER, fleet_factory).run()
    done = pipe_state.get("done", {})
    canary_out = done.get("canary", {})
    result["good_candidate"] = {
        "version": done.get("register", {}).get("version"), "promoted": "promote" in done,
        "device_minutes": canary_out.get("device_minutes"), "max_fleet_fraction": canary_out.get("max_fleet_fraction"),
        "heldout_gain_db": done.get("evaluate", {}).get("heldout_gain_db"),
        "forget_db": done.get("evaluate", {}).get("forget_db"), "slowdown": done.get("evaluate", {}).get("slowdown"),
        "shadow_device_minutes": done.get("shadow", {}).get("device_minutes"),
        "pipeline": {"id": pipe_state.get("id"), "run_id": pipe_state.get("run_id"), "steps": list(done),
                     "stopped": pipe_state.get("stopped")},
    }



def ab_stage(registry: Registry, name: str, uri: str, v1: int, stamp: str, devices: int, work: Path, out: Path,
             result: dict[str, Any], fleets: list[Path]) -> None:
    """A/B: the new champion (B) against the previous one (A), per-device randomisation."""
    from .abtest import report as ab_report

    champion_now = registry.champion(name)
    if champion_now is not None and champion_now.version != v1:
        rid = f"ab-{stamp}"
        ab_state = RolloutState(rid, name, v1, champion_now.version, threshold=0.5, status="ab")
        save(ab_state, work / f"{rid}.json")
        publish(registry, ab_state)
        ab_fleet = Fleet(uri, name, FleetConfig(devices=devices, mix="animation", work=work / "fleet-ab", sessions=3))
        fleets.append(ab_fleet.cfg.work)
        ab_fleet.start()
        for p in ab_fleet.procs.values():
            p.wait(timeout=1800)
        from .telemetry import fleet_totals

        totals = fleet_totals(uri, rid)
        # arm t ran the previous champion (A), arm c the new one (B): swap so that effect = B - A
        swap = {"t": "c", "c": "t"}
        swapped = {d: {(swap[k[0]] + k[1:] if k[:2] in ("t.", "c.") else k): v for k, v in t.items()}
                   for d, t in totals.items()}
        ab = ab_report(swapped, out / "ab_test.json", out / "ab_test.png")
        ab_state.status = "ab_done"
        publish(registry, ab_state)
        result["ab_test"] = {k: ab.get(k) for k in ("effect_db", "ci_low_db", "ci_high_db", "p_value", "decision",
                                                     "devices_a", "devices_b", "mean_a_db", "mean_b_db",
                                                     "median_a_db", "median_b_db", "always_valid_ci_db")}
        result["ab_test"]["a"] = f"v{v1} (previous champion)"
        result["ab_test"]["b"] = f"v{champion_now.version} (new champion)"
    else:
        result["ab_test"] = {"effect_db": None, "ci_low_db": None, "ci_high_db": None,
                             "decision": "no new champion to compare"}

