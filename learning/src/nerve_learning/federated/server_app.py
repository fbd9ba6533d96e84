"""The aggregator side of the Flower app (a `ServerApp`).

Phases of one run (all through Flower: LegacyContext + DefaultWorkflow, with Flower's
SecAggPlusWorkflow as the fit workflow when the run uses secure aggregation):
1. statistics: every device is asked (`query`) for its four content statistics; k-means over them
   puts devices in `clusters` clusters (statistics only, never pixels);
2. global: `rounds` rounds of FedAvg from the shipped x2 student, `fraction` of the devices each
   round, every update checked and bounded (robust.RobustMean), clipped on the device and noised
   once on the server when DP is on (privacy.NoisyAggregate);
3. clusters: `cluster_rounds` rounds of the same within each cluster, starting from the global
   model (one model per cluster: a device that joins gets the model of its nearest centroid);
4. personalisation probe: each device reports PSNR-Y on its held-back patches of the global and of
   its cluster model, as sent and fine-tuned a few steps (what Reptile/Per-FedAvg-style
   meta-learning does at the device: FedAvg with several local steps is Reptile with outer step
   1, Nichol et al. 2018), so the option kept is chosen on devices' own data.
Writes `<out_dir>/`: global.npz, cluster-K.npz, centroids, history.json (per-round PSNR on the
evaluation sets, privacy spent, rejections, bytes per device per round).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.common import FitIns, FitRes, Parameters, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.logger import log as flog
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid, ServerApp

from ..data.memory import kmeans
from .fleet import VIEWER_TYPES, eval_set
from .privacy import NoisyAggregate, PrivacyLedger, noise_for_phases
from .robust import RobustMean
from .task import Settings, frames_psnr, get_weights, load_shipped, set_weights, settings_of

log = logging.getLogger("nerve.federated.server")
INFO = logging.INFO


class FleetAvg(FedAvg):
    """FedAvg over a set of eligible devices (a cluster, or all), uniform weights, robust mean,
    the per-round evaluation on the viewer types' unharvested clips, and the bytes of every update."""

    def __init__(self, settings: Settings, initial: list[np.ndarray], eligible: set[int] | None, fraction: float,
                 robust: RobustMean, history: dict[str, Any], phase: str, evaluate_sets: Any, offset: int = 0) -> None:
        super().__init__(fraction_fit=fraction, fraction_evaluate=0.0, min_fit_clients=1, min_available_clients=1,
                         initial_parameters=ndarrays_to_parameters(initial), accept_failures=True)
        self.s, self.eligible, self.fraction, self.robust = settings, eligible, fraction, robust
        self.history, self.phase, self.sets, self.offset = history, phase, evaluate_sets, offset
        self.current = [w.copy() for w in initial]
        self.rng = np.random.default_rng(settings.seed + offset)
        self.sampled = 0

    def num_sampled(self, available: int) -> int:
        return max(1, int(round(self.fraction * available)))

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager: ClientManager
                      ) -> list[tuple[ClientProxy, FitIns]]:
        self.current = parameters_to_ndarrays(parameters)
        proxies = [p for p in client_manager.all().values() if self.eligible is None or p.node_id in self.eligible]
        proxies.sort(key=lambda p: p.node_id)
        k = min(len(proxies), self.num_sampled(len(proxies)))
        pick = self.rng.choice(len(proxies), size=k, replace=False)
        self.sampled = k
        self.fit_started = time.time()
        config: dict[str, Scalar] = {"server-round": server_round + self.offset, "local-steps": self.s.local_steps,
                                     "local-lr": self.s.local_lr}
        return [(proxies[int(i)], FitIns(parameters, dict(config))) for i in sorted(pick)]

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
                      failures: list[Any]) -> tuple[Parameters | None, dict[str, Scalar]]:
        dropped = max(len(failures), self.dropped)
        self.dropped = 0
        updates = [(str(p.node_id), parameters_to_ndarrays(r.parameters)) for p, r in results]
        sent = [sum(len(t) for t in r.parameters.tensors) for _, r in results]
        new = self.robust(server_round + self.offset, self.current, updates)
        rec = {"phase": self.phase, "round": server_round + self.offset, "sampled": self.sampled, "replies": len(results),
               "failures": dropped, "aggregated": new is not None, "bytes_per_device": float(np.mean(sent)) if sent else 0.0,
               "fit_seconds": time.time() - self.fit_started, "median_update_norm": self.robust.last_median}
        self.history.setdefault("fit", []).append(rec)
        if new is None:
            return None, {}
        return ndarrays_to_parameters(new), {}

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Scalar]] | None:
        if not self.sets or (server_round % max(1, self.s.eval_every) and server_round != self.num_rounds):
            return None
        model = set_weights(load_shipped(), parameters_to_ndarrays(parameters))
        per = {v: frames_psnr(model, sets) for v, sets in self.sets.items()}
        self.history.setdefault("eval", []).append({"phase": self.phase, "round": server_round + self.offset,
                                                   "psnr": per})
        return 0.0, {}

    num_rounds = 0
    fit_started = 0.0
    dropped = 0  # devices that dropped out of the round (set by NoisyAggregate, which hides failures)


def wait_for_nodes(grid: Grid, n: int, timeout: float = 300.0) -> list[int]:
    start = time.time()
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= n or time.time() - start > timeout:
            return nodes
        time.sleep(1.0)


def ask_statistics(grid: Grid, nodes: list[int]) -> dict[int, list[float]]:
    msgs = [Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=n, message_type="query") for n in nodes]
    out = {}
    for reply in grid.send_and_receive(msgs):
        if reply.has_error():
            continue
        out[reply.metadata.src_node_id] = [float(x) for x in reply.content.metric_records["stats"]["content"]]
    return out


def run_phase(grid: Grid, context: Context, s: Settings, strategy: FleetAvg, rounds: int, nodes: int,
              secagg: bool) -> list[np.ndarray]:
    wrapped: Any = strategy
    sampled = strategy.num_sampled(nodes)
    if s.noise > 0 and s.clip > 0:
        wrapped = NoisyAggregate(strategy, noise_multiplier=s.noise, clipping_norm=s.clip, num_sampled_clients=sampled)
    elif s.clip > 0:
        wrapped = NoisyAggregate(strategy, noise_multiplier=0.0, clipping_norm=s.clip, num_sampled_clients=sampled)
    strategy.num_rounds = rounds
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=rounds), strategy=wrapped)
    fit = None
    if secagg:
        fit = SecAggPlusWorkflow(num_shares=min(s.secagg_shares, sampled), reconstruction_threshold=min(
            s.secagg_threshold, sampled), timeout=s.secagg_timeout, max_weight=1.0, clipping_range=8.0)
    DefaultWorkflow(fit_workflow=fit)(grid, legacy)
    arrays = legacy.state.array_records["parameters"]
    return arrays.to_numpy_ndarrays()


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    s = settings_of(dict(context.run_config))
    out = Path(s.out_dir or "out/federated/run")
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    nodes = wait_for_nodes(grid, s.min_nodes)
    flog(INFO, "nerve federated: %s devices connected", len(nodes))
    sets = {v: eval_set(v, cache=Path(s.eval_cache)) for v in VIEWER_TYPES} if s.eval_cache else {}
    history: dict[str, Any] = {"settings": s.__dict__, "devices": len(nodes)}
    robust = RobustMean(clip_to_median=s.robust)
    ledger = PrivacyLedger(delta=s.delta)
    shipped = get_weights(load_shipped())

    # 1. statistics -> clusters
    labels: dict[int, int] = {}
    centroids = np.zeros((0, 4))
    if s.cluster_rounds > 0 and s.clusters > 1:
        stats = ask_statistics(grid, nodes)
        ids = sorted(stats)
        points = np.array([stats[i] for i in ids])
        lab = kmeans(points, s.clusters, np.random.default_rng(s.seed))
        labels = {i: int(l) for i, l in zip(ids, lab)}
        centroids = np.stack([points[lab == c].mean(0) for c in range(int(lab.max()) + 1)])
        history["cluster_sizes"] = [int((lab == c).sum()) for c in range(len(centroids))]
    # DP: with a target epsilon, the noise is the smallest that keeps the whole run (global rounds,
    # then the rounds of the largest-rate cluster) within it, known now that the clusters are.
    if s.target_epsilon > 0 and s.clip > 0:
        q1 = max(1, int(round(s.fraction * len(nodes)))) / len(nodes)
        sizes = history.get("cluster_sizes", [])
        q2 = max((max(1, int(round(s.cluster_fraction * n))) / n for n in sizes if n), default=0.0)
        phases = [(q1, s.rounds)] + ([(q2, s.cluster_rounds)] if sizes and s.cluster_rounds > 0 else [])
        s.noise = noise_for_phases(s.target_epsilon, phases, s.delta)
        history["noise_multiplier"] = s.noise
        flog(INFO, "nerve federated: noise multiplier %.2f for epsilon <= %g at delta %g", s.noise,
             s.target_epsilon, s.delta)
    # 2. global rounds
    t0 = time.time()
    strategy = FleetAvg(s, shipped, None, s.fraction, robust, history, "global", sets)
    global_w = run_phase(grid, context, s, strategy, s.rounds, len(nodes), s.secagg)
    history["global_seconds"] = time.time() - t0
    history["round_seconds"] = (time.time() - t0) / max(1, s.rounds)
    if s.noise > 0:
        ledger.add(s.noise, strategy.num_sampled(len(nodes)) / len(nodes), s.rounds)
    np.savez(out / "global.npz", *global_w)
    # 3. per-cluster rounds
    cluster_models: dict[int, list[np.ndarray]] = {}
    if labels:
        worst_rate = 0.0
        for c in range(len(centroids)):
            members = {n for n, l in labels.items() if l == c}
            if not members:
                continue
            st = FleetAvg(s, global_w, members, s.cluster_fraction, robust, history, f"cluster-{c}", {},
                          offset=s.rounds)
            cluster_models[c] = run_phase(grid, context, s, st, s.cluster_rounds, len(members), False)
            worst_rate = max(worst_rate, st.num_sampled(len(members)) / len(members))
            np.savez(out / f"cluster-{c}.npz", *cluster_models[c])
        if s.noise > 0:
            # a device is in one cluster: it pays for its own cluster's rounds (the largest rate, bound)
            ledger.add(s.noise, worst_rate, s.cluster_rounds)
        np.save(out / "centroids.npy", centroids)
    # 4. personalisation probe on devices' held-back patches
    if cluster_models:
        probe: dict[str, list[float]] = {}
        msgs = []
        for n in nodes:
            rec = RecordDict({"global": ArrayRecord(global_w), "config": ConfigRecord({"steps": s.local_steps})})
            if n in labels and labels[n] in cluster_models:
                rec["cluster"] = ArrayRecord(cluster_models[labels[n]])
            msgs.append(Message(rec, dst_node_id=n, message_type="query.personalise"))
        for reply in grid.send_and_receive(msgs):
            if reply.has_error():
                continue
            for k, v in reply.content.metric_records["metrics"].items():
                probe.setdefault(k, []).append(float(v))
        history["personalise_probe"] = {k: float(np.mean(v)) for k, v in probe.items()}
    first = [f for f in history.get("fit", []) if f["phase"] == "global"]
    if first:
        # (SecAgg+ reports a dropped device twice among its failures: count what did not reply)
        history["dropout_fraction"] = 1.0 - first[0]["replies"] / max(1, first[0]["sampled"])
        history["round_completed"] = all(f["aggregated"] for f in first)
    history["epsilon"] = ledger.epsilon() if s.noise > 0 else None
    history["delta"] = s.delta
    history["privacy_phases"] = ledger.phases
    history["rejections"] = [r.__dict__ for r in robust.rejections]
    history["labels"] = {str(k): v for k, v in labels.items()}
    history["seconds"] = time.time() - started
    (out / "history.json").write_text(json.dumps(history, indent=1, default=float))
    flog(INFO, "nerve federated: done in %.0f s; epsilon %s at delta %g", history["seconds"], history["epsilon"], s.delta)
