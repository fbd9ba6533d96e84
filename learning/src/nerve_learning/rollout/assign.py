"""Which arm a device is in: a stable hash of its id, salted per experiment.

`bucket(device, salt)` is a point in [0, 1) fixed by sha256(salt + device id): the same device
gets the same point every time on every machine (no state to keep or lose), different rollouts
(salts) shuffle the fleet independently, and a device in a canary of fraction f stays in it when
the rollout widens to f' > f (bucket < f implies bucket < f'), so no device flips back and forth.
"""

from __future__ import annotations

import hashlib

CANDIDATE, CHAMPION = "t", "c"  # treatment (the candidate runs), control (the champion runs)


def bucket(device_id: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}\x00{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def arm(device_id: str, salt: str, fraction: float) -> str:
    """CANDIDATE when the device's bucket falls under `fraction`, else CHAMPION."""
    return CANDIDATE if bucket(device_id, salt) < fraction else CHAMPION


def threshold_for(devices: list[str], salt: str, fraction: float, min_devices: int) -> float:
    """The bucket threshold of a step over the known devices: the `max(min_devices,
    floor(fraction * len(devices)))` devices with the lowest buckets fall under it, no more (a
    raw threshold of 5% puts Binomial(n, 0.05) devices in the canary: 3 of 20 in one rollout, 15%),
    and at least `min_devices` (a small fleet's 5% may hold nobody, and a canary with no device
    learns nothing). Still the hash's order, so a device under one step stays under the next.
    A fraction of 1 (or more) is everyone. Returns a threshold in (0, 1]."""
    if fraction >= 1.0 or not devices:
        return max(fraction, 1.0) if fraction >= 1.0 else fraction
    points = sorted(bucket(d, salt) for d in devices)
    k = min(len(points), max(min_devices, int(fraction * len(points) + 1e-9)))
    if k == 0:
        return points[0] / 2
    if k >= len(points):
        return 1.0
    return (points[k - 1] + points[k]) / 2


def fraction_under(devices: list[str], salt: str, threshold: float) -> float:
    """The share of `devices` on the candidate at `threshold`."""
    if not devices:
        return 0.0
    return sum(bucket(d, salt) < threshold for d in devices) / len(devices)
