"""Sequential tests that stay valid however often they are looked at.

The normal-mixture confidence sequence (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon,
"Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist. 2021): for an
estimate with variance V of a mean theta, the mixture over a N(0, tau^2) prior of the Gaussian
likelihood ratios is a martingale under theta, so

    |estimate - theta| <= sqrt( 2 V (V + tau^2) / tau^2 * log( sqrt((V + tau^2) / V) / alpha ) )

holds at every sample size at once with probability >= 1 - alpha. Its mixture likelihood ratio
against theta = 0 is the mSPRT statistic (Johari, Pekelis & Walsh, "Always valid inference",
2017); 1/max(ratio) is an always-valid p-value. A canary can therefore decide after every report
without inflating its error rate, which a t-test looked at repeatedly would.

V is estimated from the data (sample variance / n), as the mSPRT in practice does; a variance
from a handful of samples is often far too small, so no interval is given before `min_n` samples
(8: with Gaussian data and a look after every sample the 95% sequence then misses the true mean in
about 5% of runs, whatever the spread; from the third sample on it missed in 14%,
test_rollout_units checks this). `tau` is the effect size the test is tuned to detect fastest
(in the statistic's units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    n: float

    @property
    def valid(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


def radius(variance: float, tau: float, alpha: float) -> float:
    """Half-width of the normal-mixture confidence sequence for an estimate of variance `variance`."""
    if variance <= 0:
        variance = 1e-12
    t2 = tau * tau
    return math.sqrt(2.0 * variance * (variance + t2) / t2 * math.log(math.sqrt((variance + t2) / variance) / alpha))


def mixture_ratio(estimate: float, variance: float, tau: float, theta: float = 0.0) -> float:
    """The mSPRT statistic: the N(theta, tau^2)-mixture likelihood ratio against `theta`."""
    variance = max(variance, 1e-12)
    t2 = tau * tau
    return math.sqrt(variance / (variance + t2)) * math.exp(t2 * (estimate - theta) ** 2 / (2 * variance * (variance + t2)))


MIN_N = 8


def mean_cs(n: float, total: float, total_sq: float, tau: float, alpha: float, min_sd: float = 0.0,
            min_n: int = MIN_N) -> Interval:
    """Confidence sequence for a mean from running sums (n, sum x, sum x^2). `min_sd` floors
    the standard deviation (a handful of identical samples must not give a zero-width interval)."""
    if n < max(2, min_n):
        return Interval(total / n if n else 0.0, -math.inf, math.inf, n)
    mean = total / n
    var = max((total_sq - n * mean * mean) / (n - 1), min_sd * min_sd, 0.0)
    r = radius(var / n, tau, alpha)
    return Interval(mean, mean - r, mean + r, n)


def diff_cs(a: tuple[float, float, float], b: tuple[float, float, float], tau: float, alpha: float,
            min_sd: float = 0.0, min_n: int = MIN_N) -> Interval:
    """Confidence sequence for mean(a) - mean(b), each given as running sums (n, sum, sum of squares)."""
    (na, sa, qa), (nb, sb, qb) = a, b
    if min(na, nb) < max(2, min_n):
        return Interval(0.0, -math.inf, math.inf, min(na, nb))
    ma, mb = sa / na, sb / nb
    va = max((qa - na * ma * ma) / (na - 1), min_sd * min_sd, 0.0)
    vb = max((qb - nb * mb * mb) / (nb - 1), min_sd * min_sd, 0.0)
    r = radius(va / na + vb / nb, tau, alpha)
    d = ma - mb
    return Interval(d, d - r, d + r, min(na, nb))


def rate_cs(events_a: float, n_a: float, events_b: float, n_b: float, tau: float, alpha: float) -> Interval:
    """Confidence sequence for rate(a) - rate(b) of Bernoulli-like counts (events per unit)."""
    # a count of events over n units as a sum of 0/1 outcomes (sum of squares = sum); counts above
    # n (several errors in one frame) are capped at n, the variance's meaning
    ea, eb = min(events_a, n_a), min(events_b, n_b)
    return diff_cs((n_a, ea, ea), (n_b, eb, eb), tau, alpha, min_sd=0.5 / max(n_a, n_b, 1.0) ** 0.5)


@dataclass(frozen=True)
class Guardrail:
    """Harm when the candidate's rate exceeds the champion's by more than `tolerance` with
    confidence (the confidence sequence's lower end above it)."""

    name: str
    tolerance: float
    tau: float = 0.05


def guardrail_breached(g: Guardrail, ci: Interval) -> bool:
    return ci.valid and ci.low > g.tolerance
