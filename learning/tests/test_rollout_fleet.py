"""The release loop end to end against the real tracking server (PostgreSQL + `mlflow server`,
started by scripts/tracking_server.sh in a temporary directory) and a fleet of device processes
playing real `nervesr` pipelines:

- a bad candidate (trained on the wrong data, measured worse) is rolled back at the first step
  (10% of the fleet) while a device and the tracking server are killed with SIGKILL: no report
  is lost, reports made while the server was down arrive after it is back;
- a tampered artifact (its bytes changed on the server after registration) is refused by every
  device, and the rollout is rolled back;
- `nerve-learn pipeline run` killed with SIGKILL in the middle of its training step resumes
  there, passes its gates, shadow and canary on the fleet and promotes the good candidate; an
  A/B test of the new champion against the old one follows;
- drift: harvested patches of the fleet's new content are flagged, windows of the old are not.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rollout_support import CHAMPION, REPO, Outage, records, salt_for_one_in, server  # noqa: F401

from nerve_learning.registry.store import Registry
from nerve_learning.rollout import faults
from nerve_learning.rollout.canary import Canary, CanaryConfig
from nerve_learning.rollout.candidates import CandidateConfig, measure, train_bad
from nerve_learning.rollout.content import FLEET_CONTENT, WRONG_CONTENT
from nerve_learning.rollout.fleet import Fleet, FleetConfig


@pytest.mark.slow
def test_bad_candidate_rolled_back_through_kills(server: tuple[str, Path], tmp_path: Path) -> None:
    uri, tracking = server
    reg = Registry(uri)
    name = "ci-bad"
    v1 = reg.register(CHAMPION, name, scale=2, alias="champion")
    cfg = CandidateConfig(bad_steps=200)
    bad = train_bad(CHAMPION, WRONG_CONTENT, tmp_path / "bad.onnx", cfg)
    gain = measure(CHAMPION, {"bad": bad}, FLEET_CONTENT, cfg)["bad_gain_db"]
    assert gain < -0.2, f"the bad candidate is not bad: {gain:+.3f} dB"
    vb = reg.register(bad, name, scale=2, parent=v1.version)
    fleet = Fleet(uri, name, FleetConfig(devices=10, work=tmp_path / "fleet", patches=8))
    rid = salt_for_one_in(fleet.ids, 0.1, "bad")
    # one device in the first step: 10% of this 10-device fleet
    canary = Canary(reg, tmp_path / "bad.json", CanaryConfig(steps=(0.1, 0.5, 1.0), min_devices=1))
    st = canary.start(name, vb.version, rid, fleet.ids)
    fleet.start()
    t0, killed_device = time.time(), False
    down: Outage | None = None
    try:
        while st.status == "running" and time.time() - t0 < 600:
            time.sleep(2)
            reported = len(records(tmp_path / "fleet", rid))
            if reported >= 5 and not killed_device:
                fleet.kill(fleet.ids[3])
                fleet.start(fleet.ids[3])
                killed_device = True
            if reported >= 10 and down is None:
                down = Outage(tracking, down_s=8.0)
            try:
                st = canary.tick(fleet.ids)
            except Exception:
                continue  # the server is restarting
    finally:
        fleet.stop()
    assert st.status == "rolled_back", st.last
    assert st.max_fleet_fraction <= 0.1 and st.step == 0
    assert reg.champion(name).version == v1.version
    assert killed_device and down is not None
    down.join()
    lost = faults.telemetry_lost(uri, [tmp_path / "fleet"])
    assert lost["lost"] == 0 and lost["produced"] >= 10, lost
    made_while_down = down.made_while_down(records(tmp_path / "fleet", rid))
    assert made_while_down, "no report was made while the server was down: the fault was not exercised"


@pytest.mark.slow
def test_tampered_artifact_refused_by_every_device(server: tuple[str, Path], tmp_path: Path) -> None:
    uri, tracking = server
    reg = Registry(uri)
    name = "ci-tamper"
    v1 = reg.register(CHAMPION, name, scale=2, alias="champion")
    v2 = reg.register(REPO / "models" / "nerve-sr-x2-kd.onnx", name, scale=2, parent=v1.version)
    [stored] = list(tracking.glob(f"artifacts/**/{v2.run_id}/artifacts/model/{name}.onnx"))
    data = bytearray(stored.read_bytes())
    data[-10] ^= 0xFF  # one byte changed after registration: the sha256 no longer matches
    stored.write_bytes(bytes(data))
    fleet = Fleet(uri, name, FleetConfig(devices=4, work=tmp_path / "fleet", sessions=1, patches=4))
    canary = Canary(reg, tmp_path / "t.json", CanaryConfig(steps=(1.0,)))
    st = canary.start(name, v2.version, "tamper", fleet.ids)
    fleet.start()
    for p in fleet.procs.values():
        assert p.wait(timeout=600) == 0
    for d in fleet.ids:
        [rec] = records(tmp_path / "fleet", "tamper", d)
        assert rec["report"]["refused_artifacts"] == 1, d
        assert rec["report"]["model_sha256"] == v1.sha256, f"{d} ran something other than the champion"
    st = canary.tick(fleet.ids)
    assert st.status == "rolled_back" and "sha256" in st.decisions[-1]["reason"]


@pytest.mark.slow
def test_pipeline_killed_mid_step_resumes_and_promotes(server: tuple[str, Path], tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from nerve_learning.rollout.abtest import analyse, device_outcomes
    from nerve_learning.rollout.canary import RolloutState, publish
    from nerve_learning.rollout.telemetry import fleet_totals

    uri, _ = server
    reg = Registry(uri)
    name = "ci-good"
    v1 = reg.register(CHAMPION, name, scale=2, alias="champion")
    work = tmp_path / "pipe"
    cmd = [sys.executable, "-m", "nerve_learning.cli", "pipeline", "run", "--uri", uri, "--name", name, "--work",
           str(work), "--devices", "4", "--canary-steps", "0.25,1.0"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 300:
        state_file = work / "pipeline.json"
        if state_file.is_file() and json.loads(state_file.read_text()).get("running") == "train":
            time.sleep(3)  # well inside the fine-tune
            break
        time.sleep(0.5)
    else:
        first.kill()
        pytest.fail("the pipeline never reached its training step")
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed = json.loads((work / "pipeline.json").read_text())
    assert killed["running"] == "train" and "data" in killed["done"] and "train" not in killed["done"]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    state = json.loads((work / "pipeline.json").read_text())
    assert list(state["done"]) == ["data", "train", "evaluate", "register", "shadow", "canary", "promote"]
    assert state["done"]["evaluate"]["heldout_gain_db"] > 0.1
    good = int(state["done"]["register"]["version"])
    assert reg.champion(name).version == good and reg.get(name, good).parent == v1.version
    assert reg.get(name, good).data["pipeline"] == state["id"]  # lineage
    client = MlflowClient(uri)
    children = client.search_runs([state["experiment_id"]], f"tags.`nerve.pipeline` = '{state['id']}'")
    by_step: dict[str, list[str]] = {}
    for r in children:
        if "nerve.step" in r.data.tags:
            by_step.setdefault(r.data.tags["nerve.step"], []).append(r.info.status)
    assert by_step["data"] == ["FINISHED"], by_step  # done before the kill: not redone
    assert sorted(by_step["train"]) == ["FAILED", "FINISHED"], by_step

    # A/B: new champion (arm c) against the previous one (arm t), per-device randomisation
    ab = RolloutState("ab-ci", name, v1.version, good, threshold=0.5, status="ab")
    publish(reg, ab)
    fleet = Fleet(uri, name, FleetConfig(devices=6, work=tmp_path / "ab", sessions=2, patches=8))
    fleet.start()
    for p in fleet.procs.values():
        assert p.wait(timeout=900) == 0
    out = device_outcomes(fleet_totals(uri, "ab-ci"))
    assert len(out["t"]) + len(out["c"]) == 6 and out["t"] and out["c"]
    res = analyse({"t": out["c"], "c": out["t"]})  # B = new champion
    if "effect_db" in res:
        assert res["ci_low_db"] <= res["effect_db"] <= res["ci_high_db"]


@pytest.mark.slow
def test_drift_on_harvested_patches(tmp_path: Path) -> None:
    from nerve_learning.rollout.drift import DriftConfig, experiment
    from nerve_learning.rollout.report import drift_data

    ref, same, shifted, _ = drift_data(tmp_path)
    res = experiment(ref, same, shifted, DriftConfig(), trials=60)
    assert res["detected"] and res["false_alarm_rate"] <= 0.05, res
