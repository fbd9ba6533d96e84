"""The federated report: the runs behind learning/reports/federated/federated.json and its PNG.

Runs (Flower simulation, `clients` devices, Ray backend; each one a `simulate` call):
- clean: FedAvg with the robust mean, then per-cluster rounds, no DP;
- dp: the same with client-side clipping and server noise, the noise multiplier set so that the
  whole run (global and cluster rounds) stays within epsilon 8 at delta 1e-5 (Opacus RDP);
- poisoned: the clean global phase with 10% of devices sending scaled, NaN or random updates;
- central: the same student fine-tuned on the union of every device's training patches (no
  federation), the same number of samples seen as the global phase.
Everything is measured on whole frames of clips no device harvested (fleet.eval_clips), Y plane,
PSNR-Y per clip; a viewer type's figure is the mean over its clips (median beside it).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.memory import EpisodicMemory, MemoryConfig
from .fleet import VIEWER_TYPES, build_fleet, content_statistics, eval_set, harvest_fleet, load_fleet, split_memory
from .privacy import PrivacyLedger
from .task import Settings, frames_psnr, get_weights, load_shipped, memory_pairs, predict, set_weights, train_local


DP_CLIP = 0.01  # the clean run's median update norm was 0.14-0.15


def _load_npz(path: Path) -> list[np.ndarray]:
    z = np.load(path)
    return [z[f"arr_{i}"] for i in range(len(z.files))]


def model_of(weights: list[np.ndarray]) -> torch.nn.Module:
    return set_weights(load_shipped(), weights)


def per_type(model: torch.nn.Module, sets: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {v: frames_psnr(model, s) for v, s in sets.items()}


def mean_of(psnrs: dict[str, float]) -> float:
    return float(np.mean(list(psnrs.values())))


def central(fleet: Path, s: Settings, clients_per_round: int) -> list[np.ndarray]:
    """The student fine-tuned on the union of all devices' training patches: as many steps as
    global rounds x local steps, each batch as large as one round's devices together."""
    lrs, hrs = [], []
    for d in load_fleet(fleet):
        mem = EpisodicMemory(d.memory, MemoryConfig(capacity=100_000, durable=False))
        lr, hr = memory_pairs(mem, split_memory(mem)[0])
        lrs.append(lr)
        hrs.append(hr)
    model = load_shipped()
    train_local(model, np.concatenate(lrs), np.concatenate(hrs), s.rounds * s.local_steps,
                s.batch * clients_per_round, s.local_lr, seed=s.seed)
    return get_weights(model)


def viewer_cluster(fleet: Path, centroids: np.ndarray) -> dict[str, int]:
    """The cluster a device of each viewer type joins (nearest centroid of its statistics; the
    type's majority over its devices)."""
    votes: dict[str, list[int]] = {v: [] for v in VIEWER_TYPES}
    for d in load_fleet(fleet):
        st = np.array(content_statistics(EpisodicMemory(d.memory, MemoryConfig(capacity=100_000, durable=False))))
        votes[d.viewer].append(int(((centroids - st) ** 2).sum(1).argmin()))
    return {v: int(np.bincount(c).argmax()) for v, c in votes.items() if c}


def finetuned(fleet: Path, viewer: str, start: list[np.ndarray], s: Settings, sets: Any, devices: int = 4
              ) -> tuple[dict[str, dict[str, float]], list[torch.nn.Module]]:
    """Mean per-clip PSNR over `devices` devices of the type, each fine-tuning `start` for
    `local_steps` steps on its own training patches (the model it keeps)."""
    ds = [d for d in load_fleet(fleet) if d.viewer == viewer][:devices]
    scores: list[dict[str, dict[str, float]]] = []
    models = []
    for d in ds:
        mem = EpisodicMemory(d.memory, MemoryConfig(capacity=100_000, durable=False))
        m = model_of(start)
        train_local(m, *memory_pairs(mem, split_memory(mem)[0]), s.local_steps, s.batch, s.local_lr, seed=d.cid)
        scores.append(per_type(m, sets))
        models.append(m)
    out = {v: {k: float(np.mean([sc[v][k] for sc in scores])) for k in scores[0][v]} for v in scores[0]}
    return out, models


def vmaf_gain(a: torch.nn.Module, b: torch.nn.Module, sets: list[tuple[str, np.ndarray, np.ndarray]], frames: int = 3
              ) -> float:
    """VMAF of model a minus model b on the first `frames` frames of each clip (mean over clips)."""
    from ..quality import vmaf_frames

    gains = []
    for _, lr, hr in sets:
        lr, hr = lr[:frames], hr[:frames]
        if hr.shape[1] < 64 or hr.shape[2] < 64:
            continue
        gains.append(vmaf_frames(hr, predict(a, lr))["vmaf"] - vmaf_frames(hr, predict(b, lr))["vmaf"])
    return float(np.mean(gains)) if gains else float("nan")


def run(name: str, work: Path, s: Settings, clients: int, redo: bool) -> dict[str, Any]:
    from .simulation import simulate

    out = work / name
    if not redo and (out / "history.json").is_file():
        return json.loads((out / "history.json").read_text())
    s = copy.deepcopy(s)
    s.out_dir = str(out.resolve())
    t = time.time()
    print(f"[federated report] run {name}: {clients} devices ...", flush=True)
    h = simulate(s, clients)
    print(f"[federated report] run {name} done in {time.time() - t:.0f} s", flush=True)
    return h


def make_report(work: Path, out: Path, clients: int = 100, cache: Path | None = None, only: str = "") -> dict[str, Any]:
    from .simulation import CACHE

    torch.set_num_threads(1)
    cache = cache or CACHE
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    todo = {x.strip() for x in only.split(",") if x.strip()}
    fleet = work / "fleet"
    if not (fleet / "fleet.json").is_file():
        build_fleet(harvest_fleet(cache), fleet, clients)
    sets = {v: eval_set(v, cache=cache) for v in VIEWER_TYPES}
    base = Settings(fleet_dir=str(fleet.resolve()), eval_cache=str(cache.resolve()), min_nodes=clients)
    per_round = max(1, int(round(base.fraction * clients)))

    clean = run("clean", work, base, clients, "clean" in todo)
    # DP: each update clipped on the device to a bound well under the clean run's median update
    # norm (the clipped update keeps its direction; the noise, z x bound / devices, shrinks with
    # the bound), every device of a cluster in each cluster round, and the server setting the
    # noise multiplier so that the whole run stays within epsilon 8 at delta 1e-5.
    dp_s = copy.deepcopy(base)
    dp_s.clip, dp_s.target_epsilon, dp_s.cluster_fraction = DP_CLIP, 8.0, 0.5
    dp = run("dp", work, dp_s, clients, "dp" in todo)
    norms = [f["median_update_norm"] for f in clean["fit"] if f["phase"] == "global"]
    poisoned_s = copy.deepcopy(base)
    poisoned_s.poison_fraction, poisoned_s.cluster_rounds = 0.1, 0
    poisoned = run("poisoned", work, poisoned_s, clients, "poisoned" in todo)

    # speed: one round with every device training (no evaluation, no clusters)
    speed_s = copy.deepcopy(base)
    speed_s.fraction, speed_s.rounds, speed_s.cluster_rounds, speed_s.eval_cache = 1.0, 1, 0, ""
    run("speed", work, speed_s, clients, "speed" in todo)
    # the SecAgg+ deployment run (SuperLink + 5 SuperNodes, one dropping out), if not there yet
    if "deploy" in todo or not (work / "deploy" / "history.json").is_file():
        import subprocess

        from ..paths import REPO

        print("[federated report] deployment run (scripts/federated_deploy.sh) ...", flush=True)
        subprocess.run([str(REPO / "scripts" / "federated_deploy.sh"), str(work / "deploy")], check=True)

    shipped = load_shipped()
    m_clean = model_of(_load_npz(work / "clean" / "global.npz"))
    m_dp = model_of(_load_npz(work / "dp" / "global.npz"))
    m_poison = model_of(_load_npz(work / "poisoned" / "global.npz"))
    print("[federated report] central baseline ...", flush=True)
    m_central = model_of(central(fleet, base, per_round))
    scores = {name: per_type(m, sets) for name, m in
              (("shipped", shipped), ("global", m_clean), ("global_dp", m_dp), ("poisoned", m_poison),
               ("central", m_central))}

    # personalisation: the option chosen on devices' held-back patches (the server's probe)
    centroids = np.load(work / "clean" / "centroids.npy")
    joins = viewer_cluster(fleet, centroids)
    probe = clean.get("personalise_probe", {})
    options = {k: v for k, v in probe.items() if k != "global"}
    chosen = max(options, key=lambda k: options[k]) if options else "global"
    print(f"[federated report] held-back probe {probe}; chosen: {chosen}", flush=True)
    viewers: dict[str, Any] = {}
    for v in VIEWER_TYPES:
        c = joins.get(v, 0)
        cw = _load_npz(work / "clean" / f"cluster-{c}.npz")
        if chosen == "cluster":
            pers, models = per_type(model_of(cw), sets), [model_of(cw)]
        elif chosen == "cluster+ft":
            pers, models = finetuned(fleet, v, cw, base, sets)
        else:
            pers, models = finetuned(fleet, v, _load_npz(work / "clean" / "global.npz"), base, sets)
        own = mean_of(pers[v]) - mean_of(scores["global"][v])
        others = {u: mean_of(pers[u]) - mean_of(scores["shipped"][u]) for u in VIEWER_TYPES if u != v}
        print(f"[federated report] {v}: cluster {c}, personal - global {own:+.3f} dB", flush=True)
        viewers[v] = {
            "cluster": c,
            "personal_minus_global_db": own,
            "personal_minus_global_db_per_clip": {k: pers[v][k] - scores["global"][v][k] for k in pers[v]},
            "personal_minus_global_vmaf": vmaf_gain(models[0], m_clean, sets[v]),
            "worst_other_minus_shipped_db": min(others.values()),
            "other_minus_shipped_db": others,
            "own_minus_shipped_db": mean_of(pers[v]) - mean_of(scores["shipped"][v]),
            "qoe_change_pct": None,
        }

    def gap(a: str, b: str) -> dict[str, float]:
        return {v: mean_of(scores[a][v]) - mean_of(scores[b][v]) for v in VIEWER_TYPES}

    deploy_path = work / "deploy" / "history.json"
    deploy = json.loads(deploy_path.read_text()) if deploy_path.is_file() else {}
    dep_fit = [f for f in deploy.get("fit", []) if f["phase"] == "global"]
    global_fit = [f for f in clean["fit"] if f["phase"] == "global"]
    report: dict[str, Any] = {
        "clients": clean["devices"],
        "rounds": base.rounds,
        "cluster_rounds": base.cluster_rounds,
        "epsilon": dp.get("epsilon"),
        "delta": base.delta,
        "dp": {"noise_multiplier": dp.get("noise_multiplier"), "clipping_norm": dp_s.clip,
               "clean_median_update_norm": float(np.median(norms)), "phases": dp.get("privacy_phases"),
               "epsilon_per_round": epsilon_curve(dp.get("privacy_phases") or [], base.rounds, base.cluster_rounds,
                                                  base.delta)},
        "global_minus_central_db": float(np.mean(list(gap("global", "central").values()))),
        "global_minus_central_db_per_type": gap("global", "central"),
        "global_minus_shipped_db_per_type": gap("global", "shipped"),
        "dp_cost_db": float(np.mean(list(gap("global", "global_dp").values()))),
        "dp_cost_db_per_type": gap("global", "global_dp"),
        "personalisation": {"probe_heldback_psnr": probe, "chosen": chosen, "viewer_cluster": joins,
                            "cluster_sizes": clean.get("cluster_sizes")},
        "viewers": viewers,
        "secagg": {"dropout_fraction": deploy.get("dropout_fraction"),
                   "round_completed": deploy.get("round_completed"),
                   "devices": deploy.get("devices"), "replies": [f["replies"] for f in dep_fit]},
        "poisoned": {"fraction": 0.1,
                     "global_minus_clean_db": float(np.mean(list(gap("poisoned", "global").values()))),
                     "global_minus_clean_db_per_type": gap("poisoned", "global"),
                     "rejected_updates": len(poisoned.get("rejections", [])),
                     "rejection_example": (poisoned.get("rejections") or [None])[0]},
        "speed_100_devices_one_round": speed_run(work),
        "speed": {"devices_per_round": per_round,
                  "round_seconds_median": float(np.median([f["fit_seconds"] for f in global_fit])),
                  "bytes_per_device_per_round": float(np.median([f["bytes_per_device"] for f in global_fit])),
                  "machine": "2 shared CPU cores, Ray backend, 1 CPU per simulated device"},
        "psnr": scores,
        "history_global": [e for e in clean.get("eval", []) if e["phase"] == "global"],
        "qoe_note": "not measured: no personalised quality tables were fed to nerveabr-sim in this run",
        "command": f"nerve-learn federated report --clients {clients} (runs clean, dp, poisoned, speed and "
                   "scripts/federated_deploy.sh into out/federated/, or reads them back)",
    }
    from .qoe import add_qoe

    add_qoe(report)
    (out / "federated.json").write_text(json.dumps(report, indent=1, default=float))
    plot(report, out / "federated.png")
    print(json.dumps({k: report[k] for k in ("clients", "rounds", "epsilon", "global_minus_central_db", "dp_cost_db",
                                             "secagg", "poisoned", "speed")}, indent=1, default=float))
    return report


def speed_run(work: Path) -> dict[str, Any] | None:
    """One round with every one of the devices training (`nerve-learn federated simulate --set
    fraction=1.0 --set rounds=1 --set cluster_rounds=0 --out <work>/speed`), if it was run."""
    path = work / "speed" / "history.json"
    if not path.is_file():
        return None
    h = json.loads(path.read_text())
    fit = [f for f in h["fit"] if f["phase"] == "global"][0]
    return {"devices": fit["replies"], "round_seconds": fit["fit_seconds"],
            "bytes_per_device_per_round": fit["bytes_per_device"],
            "bytes_per_device_note": "the update a device sends: 8 float32 arrays (5,380 parameters) as .npy bytes"}


def epsilon_curve(phases: list[list[float]], rounds: int, cluster_rounds: int, delta: float) -> list[float]:
    """Epsilon spent after each round (global rounds, then a device's cluster rounds)."""
    if not phases:
        return []
    (z, q1, _), q2 = phases[0], (phases[1][1] if len(phases) > 1 else 0.0)
    out = []
    for r in range(1, rounds + (cluster_rounds if len(phases) > 1 else 0) + 1):
        ledger = PrivacyLedger(delta)
        ledger.add(z, q1, min(r, rounds))
        ledger.add(z, q2, max(0, r - rounds))
        out.append(ledger.epsilon())
    return out


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    hist = report["history_global"]
    if hist:
        first = hist[0]["psnr"]
        for v in VIEWER_TYPES:
            ax[0].plot([e["round"] for e in hist], [mean_of(e["psnr"][v]) - mean_of(first[v]) for e in hist], "o-", label=v)
    ax[0].axhline(0, color="grey", lw=0.5)
    ax[0].set(title="federated global model, gain per viewer type\n(unharvested clips, dB vs shipped)", xlabel="round", ylabel="PSNR-Y gain (dB)")
    ax[0].legend(fontsize=8)
    eps = report["dp"]["epsilon_per_round"]
    ax[1].plot(range(1, len(eps) + 1), eps, "o-")
    ax[1].axhline(8, color="red", lw=0.8, ls="--")
    ax[1].set(title=f"DP run: epsilon spent\n(delta {report['delta']:g}, noise multiplier {report['dp']['noise_multiplier']})",
              xlabel="round (global, then cluster)", ylabel="epsilon")
    names = list(VIEWER_TYPES)
    x = np.arange(len(names))
    ax[2].bar(x - 0.2, [report["viewers"][v]["personal_minus_global_db"] for v in names], 0.4, label="personal - global")
    ax[2].bar(x + 0.2, [report["viewers"][v]["worst_other_minus_shipped_db"] for v in names], 0.4,
              label="worst other type - shipped")
    ax[2].axhline(0.3, color="green", lw=0.8, ls="--")
    ax[2].axhline(-0.1, color="red", lw=0.8, ls="--")
    ax[2].set_xticks(x, names, fontsize=8)
    sec = report["secagg"]
    drop = sec["dropout_fraction"]
    ax[2].set(title=f"personal (cluster) model, dB\nSecAgg+ run: {drop if drop is None else round(drop, 2)} dropped, "
                    f"round completed: {sec['round_completed']}", ylabel="dB")
    ax[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def register_run(run: Path, registry_root: Path, name: str) -> list[str]:
    """Registers the run's global model and every cluster model (ONNX through sr.export, same
    manifest contract) with lineage tags: round, clients, epsilon, cluster."""
    import tempfile

    from ..registry.store import Registry
    from ..sr.export import export_onnx

    h = json.loads((run / "history.json").read_text())
    s = h["settings"]
    reg = Registry(registry_root)
    out = []
    models = [("global", run / "global.npz", None, s["rounds"])] + [
        (f"cluster-{p.stem.split('-')[1]}", p, int(p.stem.split("-")[1]), s["rounds"] + s["cluster_rounds"])
        for p in sorted(run.glob("cluster-*.npz"))]
    with tempfile.TemporaryDirectory() as tmp:
        for label, path, cluster, rounds in models:
            model = model_of(_load_npz(path))
            onnx = Path(tmp) / f"{name}.onnx"
            export_onnx(model, onnx)
            lineage = {"federated": label, "round": rounds, "clients": h["devices"], "epsilon": h.get("epsilon"),
                       "delta": h.get("delta"), "cluster": cluster, "run": str(run)}
            v = reg.register(onnx, name if cluster is None else f"{name}-cluster{cluster}", scale=2, frames=1,
                             data=lineage, description=f"federated {label} model, {h['devices']} devices",
                             params={k: str(v) for k, v in lineage.items()})
            for k, val in lineage.items():  # lineage as version tags, searchable in MLflow
                reg.client.set_model_version_tag(v.name, str(v.version), f"nerve.federated.{k}", str(val))
            out.append(f"{v.name} v{v.version} ({label}, round {rounds}, epsilon {h.get('epsilon')})")
    return out
