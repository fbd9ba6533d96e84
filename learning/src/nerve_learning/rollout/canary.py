"""Canary rollout with automatic rollback or promotion, driven by always-valid sequential tests.

The rollout's state lives in two places written on every change: a JSON file (atomic rename; the
controller's own copy, read back when it restarts) and the registered model's tag
`nerve.rollout` on the tracking server (what devices read to know which arm they are in). A
controller killed at any point restarts from the file and carries on at the step it was at: the
evidence is the devices' running totals on the server, which do not depend on it.

Steps: the candidate goes to `steps[0]` of the fleet (by device hash, assign.py), then each
wider step once the treatment arm's paired quality gain (candidate - champion on the same
patches, on the device) has a confidence sequence above `-margin_db` with at least `min_reports`
new reports at this step, and no guardrail is breached. It is rolled back as soon as the gain's
confidence sequence lies below 0 (harm shown), a guardrail is breached (inference errors,
fallback frames, real-time misses: rate differences against the champion's arm; energy: CPU
seconds per video second above the champion's by `energy_tolerance`), or any device refused
the candidate's artifact (its sha256 did not match the registry). After the last step (100%)
passes, the candidate is promoted to champion.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import assign
from .sequential import Guardrail, Interval, guardrail_breached, mean_cs, rate_cs
from .telemetry import fleet_totals

TAG_ROLLOUT_STATE = "nerve.rollout"
RUNNING, ROLLED_BACK, PROMOTED, SHADOW = "running", "rolled_back", "promoted", "shadow"


@dataclass
class CanaryConfig:
    steps: tuple[float, ...] = (0.05, 0.2, 0.5, 1.0)
    # at least this many devices in the first step (assign.threshold_for): one device's viewing
    # is not the fleet's (a good candidate's first canary device watched only the segments where it
    # is level with the champion, 7 sessions running)
    min_devices: int = 2
    min_reports: int = 4  # treatment reports needed at a step before it may widen
    margin_db: float = 0.05  # non-inferiority margin of the paired gain
    tau_db: float = 0.3  # the gain the test is tuned to detect fastest
    alpha: float = 0.05
    min_gain_sd_db: float = 0.05
    guardrails: tuple[Guardrail, ...] = (
        Guardrail("inference_errors", 0.01), Guardrail("frames_classical", 0.02), Guardrail("realtime_miss", 0.1),
    )
    energy_tolerance: float = 0.25  # CPU s per video s may rise by a quarter at most
    min_energy_sessions: int = 6


@dataclass
class RolloutState:
    id: str
    name: str
    candidate: int
    champion: int
    step: int = 0
    threshold: float = 0.0
    status: str = RUNNING
    shadow: bool = False  # every device scores the candidate beside the champion; none serves it
    step_start_reports: float = 0.0
    max_fleet_fraction: float = 0.0
    device_minutes: float = 0.0
    started: float = field(default_factory=time.time)
    decided: float | None = None
    decisions: list[dict[str, Any]] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)  # the latest evidence, decided on or not

    def public(self) -> dict[str, Any]:
        """What devices need (the tag's value; MLflow bounds tag length)."""
        return {"id": self.id, "candidate": self.candidate, "champion": self.champion, "threshold": self.threshold,
                "status": self.status, "shadow": self.shadow}


def save(state: RolloutState, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("w") as f:
        json.dump(asdict(state), f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: Path) -> RolloutState | None:
    if not path.is_file():
        return None
    return RolloutState(**json.loads(path.read_text()))


def publish(registry: Any, state: RolloutState) -> None:
    registry.client.set_registered_model_tag(state.name, TAG_ROLLOUT_STATE, json.dumps(state.public()))


def read_public(client: Any, name: str) -> dict[str, Any] | None:
    return read_state(client, name)[0]


def read_state(client: Any, name: str) -> tuple[dict[str, Any] | None, int | None]:
    """(the rollout's public state, the champion's version) in one request: what a device reads
    every session. The alias as it stands (a promotion cut short by a crash is settled by the
    controller, Registry.champion, not by devices, which only read)."""
    model = client.get_registered_model(name)
    text = (model.tags or {}).get(TAG_ROLLOUT_STATE)
    champion = (model.aliases or {}).get("champion")
    return (json.loads(text) if text else None), (int(champion) if champion is not None else None)


def arm_sums(totals: dict[str, dict[str, float]], arm: str, key: str) -> float:
    return sum(t.get(f"{arm}.{key}", 0.0) for t in totals.values())


@dataclass
class Evidence:
    gain: Interval
    guard: dict[str, Interval]
    energy_ratio: float | None
    refused: float
    t_reports: float
    t_video_s: float


def evidence(totals: dict[str, dict[str, float]], cfg: CanaryConfig, gain_arm: str = "t") -> Evidence:
    g = (arm_sums(totals, gain_arm, "n"), arm_sums(totals, gain_arm, "gain_sum"), arm_sums(totals, gain_arm, "gain_sq"))
    gain = mean_cs(*g, tau=cfg.tau_db, alpha=cfg.alpha, min_sd=cfg.min_gain_sd_db)
    guard = {}
    for gr in cfg.guardrails:
        unit = "sessions" if gr.name == "realtime_miss" else "frames"
        n = {a: arm_sums(totals, a, "sessions") if unit == "sessions" else
             arm_sums(totals, a, "frames_enhanced") + arm_sums(totals, a, "frames_classical") for a in ("t", "c")}
        guard[gr.name] = rate_cs(arm_sums(totals, "t", gr.name), n["t"], arm_sums(totals, "c", gr.name), n["c"],
                                 gr.tau, cfg.alpha)
    energy = None
    if min(arm_sums(totals, "t", "sessions"), arm_sums(totals, "c", "sessions")) >= cfg.min_energy_sessions:
        t = arm_sums(totals, "t", "cpu_s") / max(arm_sums(totals, "t", "video_s"), 1e-9)
        c = arm_sums(totals, "c", "cpu_s") / max(arm_sums(totals, "c", "video_s"), 1e-9)
        energy = t / c if c > 0 else None
    refused = arm_sums(totals, "t", "refused_artifacts") + arm_sums(totals, "c", "refused_artifacts")
    return Evidence(gain, guard, energy, refused, arm_sums(totals, gain_arm, "n"), arm_sums(totals, "t", "video_s"))


class Canary:
    """The controller: `start` once, then `tick` until the state is decided."""

    def __init__(self, registry: Any, state_path: Path, cfg: CanaryConfig | None = None) -> None:
        self.registry, self.path, self.cfg = registry, Path(state_path), cfg or CanaryConfig()
        self.state = load(self.path)

    def start(self, name: str, candidate: int, rollout_id: str, devices: list[str], shadow: bool = False) -> RolloutState:
        """Starts (or, when the state file is this rollout's, resumes) a rollout of `candidate`."""
        if self.state is not None and self.state.id == rollout_id:
            publish(self.registry, self.state)
            return self.state
        champion = self.registry.champion(name)
        if champion is None:
            raise ValueError(f"{name} has no champion to compare the candidate with")
        st = RolloutState(rollout_id, name, candidate, champion.version, shadow=shadow,
                          status=SHADOW if shadow else RUNNING)
        st.threshold = 0.0 if shadow else assign.threshold_for(devices, rollout_id, self.cfg.steps[0], self.cfg.min_devices)
        st.max_fleet_fraction = assign.fraction_under(devices, rollout_id, st.threshold)
        self.registry.set_alias(name, "candidate", candidate)
        self.state = st
        self._commit(devices, "start", {})
        return st

    def _commit(self, devices: list[str], action: str, detail: dict[str, Any]) -> None:
        st = self.state
        assert st is not None
        st.decisions.append({"at": time.time(), "action": action, "step": st.step, "threshold": st.threshold,
                             "fleet_fraction": assign.fraction_under(devices, st.id, st.threshold), **detail})
        save(st, self.path)
        publish(self.registry, st)

    def tick(self, devices: list[str]) -> RolloutState:
        st, cfg = self.state, self.cfg
        assert st is not None, "start a rollout first"
        if st.status not in (RUNNING, SHADOW):
            return st
        totals = fleet_totals(self.registry.uri, st.id)
        ev = evidence(totals, cfg, gain_arm="c" if st.shadow else "t")
        st.device_minutes = ev.t_video_s / 60.0
        detail = {"gain_db": ev.gain.estimate, "gain_low": _f(ev.gain.low), "gain_high": _f(ev.gain.high),
                  "reports": ev.t_reports, "energy_ratio": ev.energy_ratio, "refused": ev.refused,
                  "guardrails": {k: [_f(v.estimate), _f(v.low), _f(v.high)] for k, v in ev.guard.items()}}
        st.last = detail
        reason = None
        if ev.refused > 0:
            reason = f"{int(ev.refused)} device report(s) refused the candidate's artifact (sha256 mismatch)"
        elif ev.gain.valid and ev.gain.high < 0:
            reason = f"quality: candidate - champion {ev.gain.estimate:+.3f} dB, always-valid CI [{ev.gain.low:+.3f}, {ev.gain.high:+.3f}] below 0"
        else:
            for gr in cfg.guardrails:
                if guardrail_breached(gr, ev.guard[gr.name]):
                    reason = f"guardrail {gr.name}: rate difference > {gr.tolerance} (CI low {ev.guard[gr.name].low:.4f})"
                    break
            if reason is None and ev.energy_ratio is not None and ev.energy_ratio > 1 + cfg.energy_tolerance:
                reason = f"guardrail energy: CPU per video second x{ev.energy_ratio:.2f}"
        if reason is not None:
            st.status, st.decided = ROLLED_BACK, time.time()
            self._rollback()
            self._commit(devices, "rollback", {**detail, "reason": reason})
            return st
        new_reports = ev.t_reports - st.step_start_reports
        if ev.gain.valid and ev.gain.low > -cfg.margin_db and new_reports >= cfg.min_reports:
            if st.shadow:
                st.status, st.decided = "shadow_passed", time.time()
                self._commit(devices, "shadow passed", detail)
                return st
            if st.step + 1 >= len(cfg.steps):
                self.registry.promote(st.name, st.candidate)
                st.status, st.decided = PROMOTED, time.time()
                self._commit(devices, "promote", detail)
                return st
            st.step += 1
            st.step_start_reports = ev.t_reports
            st.threshold = max(st.threshold, assign.threshold_for(devices, st.id, cfg.steps[st.step], cfg.min_devices))
            st.max_fleet_fraction = max(st.max_fleet_fraction, assign.fraction_under(devices, st.id, st.threshold))
            self._commit(devices, "widen", detail)
            return st
        save(st, self.path)
        return st

    def _rollback(self) -> None:
        st = self.state
        assert st is not None
        from mlflow.exceptions import MlflowException

        client = self.registry.client
        client.set_model_version_tag(st.name, str(st.candidate), "nerve.rolled_back_at", f"{time.time():.3f}")
        try:
            client.delete_registered_model_alias(st.name, "candidate")
        except MlflowException:
            pass


def _f(x: float) -> float | None:
    return x if math.isfinite(x) else None
