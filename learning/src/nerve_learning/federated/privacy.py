"""Differential privacy of the federated run: what a device's update may be (clipped to an L2
norm), how much Gaussian noise the server adds to the aggregate, and what that costs in
(epsilon, delta), by Opacus' RDP accountant over every release a device can be part of.

Clipping happens on the device (Flower's `fixedclipping_mod`, so it also holds under SecAgg+,
where the server only ever sees the sum) and the noise is added once to the aggregate by the
server (`NoisyAggregate`, Flower's `DifferentialPrivacyClientSideFixedClipping`, which refuses
any round with a failure: a device dropping out of a SecAgg+ round would then cancel it, so the
subclass aggregates what arrived, with the noise scaled to the devices that did contribute).

Accounting: client-level DP (neighbouring fleets differ by one device's whole memory). Each round
is a subsampled Gaussian mechanism with noise multiplier z and sampling rate q (devices per round
/ devices eligible); rounds of the cluster phase only involve the devices of one cluster, so a
device pays for the global rounds plus its own cluster's rounds (parallel composition across
disjoint clusters). Flower samples a fixed number of devices without replacement while the RDP
analysis assumes Poisson sampling at the same rate, the usual approximation (McMahan et al.
2018, "Learning differentially private recurrent language models"). The four content statistics
a device shares once for clustering are not covered by the accountant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from logging import INFO, WARNING

from flwr.common import FitRes, Parameters, Scalar
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping
from flwr.common.logger import log
from opacus.accountants import RDPAccountant


@dataclass
class PrivacyLedger:
    """The (noise multiplier, sampling rate, rounds) of every phase; epsilon at `delta`."""

    delta: float = 1e-5
    phases: list[tuple[float, float, int]] = field(default_factory=list)

    def add(self, noise_multiplier: float, sample_rate: float, rounds: int = 1) -> None:
        if noise_multiplier > 0 and rounds > 0:
            self.phases.append((float(noise_multiplier), float(min(1.0, sample_rate)), int(rounds)))

    def epsilon(self) -> float:
        if not self.phases:
            return float("inf")
        acc = RDPAccountant()
        acc.history = list(self.phases)
        return float(acc.get_epsilon(self.delta))


def epsilon_of(noise_multiplier: float, sample_rate: float, rounds: int, delta: float = 1e-5) -> float:
    ledger = PrivacyLedger(delta)
    ledger.add(noise_multiplier, sample_rate, rounds)
    return ledger.epsilon()


def noise_for(target_epsilon: float, sample_rate: float, rounds: int, delta: float = 1e-5) -> float:
    """The smallest noise multiplier (to 0.01) that keeps `rounds` releases within `target_epsilon`."""
    lo, hi = 0.3, 50.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if epsilon_of(mid, sample_rate, rounds, delta) > target_epsilon:
            lo = mid
        else:
            hi = mid
    return round(hi + 0.005, 2)


def noise_for_phases(target_epsilon: float, phases: list[tuple[float, int]], delta: float = 1e-5) -> float:
    """The smallest noise multiplier (to 0.01 above) that keeps every (sampling rate, rounds)
    phase together within `target_epsilon`."""
    lo, hi = 0.3, 50.0
    for _ in range(40):
        mid = (lo + hi) / 2
        ledger = PrivacyLedger(delta)
        for q, r in phases:
            ledger.add(mid, q, r)
        lo, hi = (mid, hi) if ledger.epsilon() > target_epsilon else (lo, mid)
    return round(hi + 0.005, 2)


class NoisyAggregate(DifferentialPrivacyClientSideFixedClipping):
    """Flower's client-side fixed-clipping wrapper, aggregating the devices that replied even when
    some dropped out (SecAgg+ reports dropouts as failures), the noise's standard deviation
    z * C / n taken over the n devices that actually contributed."""

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
                      failures: list[tuple[ClientProxy, FitRes] | BaseException]
                      ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if failures:
            self.strategy.dropped = len(failures)  # type: ignore[attr-defined]
            log(WARNING, "round %s: %s device(s) dropped out; aggregating the %s that replied", server_round,
                len(failures), len(results))
        if not results:
            return None, {}
        sampled = self.num_sampled_clients
        # SecAgg+ hands back one result per surviving device, each carrying the same sum.
        self.num_sampled_clients = len(results)
        try:
            return super().aggregate_fit(server_round, results, [])
        finally:
            self.num_sampled_clients = sampled
            log(INFO, "round %s: DP noise for %s contributing devices", server_round, len(results))
