"""The device side of the Flower app (a `ClientApp`, Message API).

A device holds its episodic memory (filled by nervesr's harvester) and answers three messages:
- `query`: the agreed content statistics of its memory (four means, see fleet.content_statistics),
  used by the server to put it in a cluster;
- `train`: fine-tune the model it is sent for a few steps on its memory's training part and send
  the weights back (`num_examples` 1: every device weighs the same, as DP needs);
- `evaluate` / `query.personalise`: PSNR-Y on its held-back patches, of the model it was sent and
  of the personalisation options (fine-tuned a few steps from the global or cluster model);
  nothing but those numbers goes back.

Mods (Flower's, in this order around the handlers): `secaggplus_mod` masks what leaves the device
when the run uses SecAgg+; `fixedclipping_mod` clips the update to the DP bound the server sends.
What leaves a device is only ever: model arrays, the four statistics, PSNR figures, a loss and
SecAgg+'s protocol fields; tests/test_federated_privacy.py inspects the real messages.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.client.mod import fixedclipping_mod, secaggplus_mod
from flwr.client.mod.utils import make_ffn
from flwr.clientapp import ClientApp
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat

from ..data.memory import EpisodicMemory, MemoryConfig
from .fleet import content_statistics, split_memory
from .task import Settings, get_weights, load_shipped, memory_pairs, pairs_psnr, set_weights, settings_of, train_local

log = logging.getLogger("nerve.federated.client")
POISON_KINDS = ("scaled", "nan", "random")


def partition(context: Context) -> int:
    return int(context.node_config.get("partition-id", 0))


@functools.lru_cache(maxsize=8)
def _device(fleet_dir: str, pid: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[float]]:
    memory = EpisodicMemory(Path(fleet_dir) / f"device-{pid:04d}", MemoryConfig(capacity=100_000, durable=False))
    train_ids, held_ids = split_memory(memory)
    return memory_pairs(memory, train_ids), memory_pairs(memory, held_ids), content_statistics(memory)


def device_data(context: Context) -> tuple[Settings, tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[float]]:
    s = settings_of(dict(context.run_config))
    train, held, stats = _device(s.fleet_dir, partition(context))
    return s, train, held, stats


def poison_kind(pid: int, settings: Settings, nodes: int) -> str | None:
    """Which attack this device runs, if it is one of the poisoned share (a fixed random set)."""
    if settings.poison_fraction <= 0:
        return None
    bad = np.random.default_rng(1234).permutation(nodes)[: int(round(settings.poison_fraction * nodes))]
    if pid not in set(int(b) for b in bad):
        return None
    return POISON_KINDS[int(np.where(bad == pid)[0][0]) % len(POISON_KINDS)]


def poison(weights: list[np.ndarray], start: list[np.ndarray], kind: str, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "scaled":  # the update, reversed and blown up
        return [s - 20.0 * (w - s) for w, s in zip(weights, start)]
    if kind == "nan":
        out = [w.copy() for w in weights]
        out[0].flat[0] = np.nan
        out[-1].flat[-1] = np.inf
        return out
    return [s + rng.normal(0, 1.0, s.shape).astype(np.float32) for s in start]  # random


def privacy_mods(msg: Message, context: Context, call_next):  # type: ignore[no-untyped-def]
    """Flower's SecAgg+ and clipping mods, each only when the run uses it."""
    s = settings_of(dict(context.run_config))
    mods = []
    if s.secagg:
        mods.append(secaggplus_mod)
    if s.clip > 0:
        mods.append(fixedclipping_mod)
    return make_ffn(call_next, mods)(msg, context)


app = ClientApp(mods=[privacy_mods])


@app.train()
def train(msg: Message, context: Context) -> Message:
    s, (lr, hr), _, _ = device_data(context)
    pid = partition(context)
    if str(pid) in [p.strip() for p in s.drop_partitions.split(",") if p.strip()]:
        # A device that goes away mid-round (after SecAgg+'s key sharing): it sends no update.
        raise RuntimeError(f"device {pid} dropped out mid-round")
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    start = parameters_to_ndarrays(fitins.parameters)
    model = set_weights(load_shipped(), start)
    rnd = int(fitins.config.get("server-round", 0))
    loss = train_local(model, lr, hr, int(fitins.config.get("local-steps", s.local_steps)), s.batch,
                       float(fitins.config.get("local-lr", s.local_lr)), seed=s.seed * 100_003 + rnd * 1009 + pid)
    weights = get_weights(model)
    kind = poison_kind(pid, s, int(context.node_config.get("num-partitions", 1)))
    if kind is not None:
        weights = poison(weights, start, kind, seed=rnd * 7 + pid)
    res = FitRes(status=Status(Code.OK, ""), parameters=ndarrays_to_parameters(weights), num_examples=1,
                 metrics={"loss": float(loss)})
    return Message(compat.fitres_to_recorddict(res, keep_input=False), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    _, _, (lr, hr), _ = device_data(context)
    arrays = next(iter(msg.content.array_records.values()))
    model = set_weights(load_shipped(), arrays.to_numpy_ndarrays())
    metrics = MetricRecord({"psnr-y": pairs_psnr(model, lr, hr), "num-examples": 1})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)


@app.query()
def query(msg: Message, context: Context) -> Message:
    """The agreed statistics (four floats), nothing else."""
    _, _, _, stats = device_data(context)
    return Message(RecordDict({"stats": MetricRecord({"content": stats})}), reply_to=msg)


@app.query("personalise")
def personalise(msg: Message, context: Context) -> Message:
    """PSNR-Y on the held-back patches of each model sent, as sent and fine-tuned `steps` steps on
    the training patches (what a device would keep): the server picks the option that wins on
    devices' own data."""
    s, (lr, hr), (hlr, hhr), _ = device_data(context)
    steps = int(msg.content.config_records["config"].get("steps", 5))
    out: dict[str, float] = {}
    for name, arrays in msg.content.array_records.items():
        model = set_weights(load_shipped(), arrays.to_numpy_ndarrays())
        out[name] = pairs_psnr(model, hlr, hhr)
        train_local(model, lr, hr, steps, s.batch, s.local_lr, seed=partition(context))
        out[f"{name}+ft"] = pairs_psnr(model, hlr, hhr)
    return Message(RecordDict({"metrics": MetricRecord(out)}), reply_to=msg)
