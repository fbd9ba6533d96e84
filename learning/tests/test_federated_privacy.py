"""What leaves a device: the real outgoing Messages of the ClientApp (train, evaluate, query,
query.personalise, with Flower's clipping mod on), inspected record by record. Only the model's
arrays (same names' shapes as the student), the four agreed statistics, PSNR figures and a loss
may leave; no patch pixels, no memory metadata (sources, positions, frames, times, codecs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.common import FitIns, ndarrays_to_parameters
from flwr.compat.common import recorddict_compat as compat

from nerve_learning.data.memory import EpisodicMemory, MemoryConfig, patch_stats
from nerve_learning.federated import client_app
from nerve_learning.federated.task import Settings, get_weights, load_shipped

PROTOCOL = {"code", "message"}
SECRET_SOURCE = "harvest:videos/private/holiday-at-home.mp4"
ALLOWED_METRICS = {"loss", "psnr-y", "num-examples", "num_examples", "content", "global", "global+ft", "cluster",
                   "cluster+ft"}


@pytest.fixture()
def device(tmp_path: Path) -> tuple[Context, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    mem = EpisodicMemory(tmp_path / "fleet" / "device-0000", MemoryConfig(capacity=1000, durable=False))
    patches = []
    for f in range(10):
        hr = rng.integers(0, 255, (64, 64), dtype=np.uint8)
        lr = hr[::2, ::2].copy()
        patches += [hr, lr]
        mem.add(hr, lr, source=SECRET_SOURCE, frame=f, x=128 + f, y=64, codec="x264", crf=28, width=1280,
                height=720, stats=patch_stats(hr), task="talking_head")
    s = Settings(fleet_dir=str(tmp_path / "fleet"), out_dir=str(tmp_path / "out"), local_steps=2, batch=4, clip=0.05)
    cfg = tmp_path / "settings.json"
    s.save(cfg)
    client_app._device.cache_clear()
    from flwr.supercore.task_identity import TaskIdentity

    # What a SuperLink/SuperNode process sets before a Message can be made outside a run.
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    ctx = Context(run_id=1, node_id=11, node_config={"partition-id": 0, "num-partitions": 1}, state=RecordDict(),
                  run_config={"config": str(cfg)})
    return ctx, patches


def _incoming(content: RecordDict, kind: str) -> Message:
    msg = Message(content, dst_node_id=11, message_type=kind)
    msg.metadata.__dict__["_message_id"] = "m-" + kind  # as the SuperLink would set it
    return msg


def _inspect(reply: Message, patches: list[np.ndarray], model_shapes: list[tuple[int, ...]]) -> dict[str, object]:
    assert not reply.has_error(), reply.error
    blobs: list[bytes] = []
    seen: dict[str, object] = {}
    for name, rec in reply.content.array_records.items():
        shapes = [tuple(a.numpy().shape) for a in rec.values()]  # (legacy FitRes arrays travel as .npy bytes)
        assert shapes == model_shapes, f"array record {name} is not the model: {shapes}"
        blobs += [a.data for a in rec.values()]
    for rec in (*reply.content.config_records.values(), *reply.content.metric_records.values()):
        for k, v in rec.items():
            if k in PROTOCOL:  # Flower's legacy FitRes status: a code and an empty message
                assert v in (0, ""), f"{k} = {v!r}"
                continue
            seen[k] = v
            assert k in ALLOWED_METRICS, f"unexpected key {k!r} leaves the device"
            values = v if isinstance(v, list) else [v]
            assert all(isinstance(x, (int, float)) for x in values), f"{k} carries {v!r}"
    text = json.dumps({k: str(v) for k, v in seen.items()})
    for leak in ("holiday", "harvest:", "x264", "talking_head", "1280"):
        assert leak not in text
    for p in patches:  # no patch (or a row of one) inside any array sent
        row = p[len(p) // 2].tobytes()
        assert not any(row in b for b in blobs)
    return seen


def test_nothing_but_model_arrays_and_agreed_statistics_leave_a_device(device: tuple[Context, list[np.ndarray]]) -> None:
    ctx, patches = device
    model = load_shipped()
    weights = get_weights(model)
    shapes = [tuple(w.shape) for w in weights]
    # train, through Flower's fixedclipping_mod (the DP bound the server sends)
    fitins = FitIns(ndarrays_to_parameters(weights), {"server-round": 1, "local-steps": 2, "clipping_norm": 0.05})
    reply = client_app.app(_incoming(compat.fitins_to_recorddict(fitins, keep_input=True), "train"), ctx)
    seen = _inspect(reply, patches, shapes)
    assert set(seen) <= {"loss", "num_examples"}
    sent = compat.recorddict_to_fitres(reply.content, keep_input=True)
    assert sent.num_examples == 1  # every device weighs the same: the count of its patches stays home
    # the update really is clipped to the bound
    from flwr.common import parameters_to_ndarrays

    new = parameters_to_ndarrays(sent.parameters)
    norm = float(np.sqrt(sum(((n - w) ** 2).sum() for n, w in zip(new, weights))))
    assert 0 < norm <= 0.05 + 1e-6
    # statistics: exactly four finite numbers
    reply = client_app.app(_incoming(RecordDict({"config": ConfigRecord({})}), "query"), ctx)
    seen = _inspect(reply, patches, shapes)
    assert set(seen) == {"content"} and len(seen["content"]) == 4  # type: ignore[arg-type]
    # evaluation and the personalisation probe: PSNR figures only
    rec = RecordDict({"global": ArrayRecord(weights)})
    seen = _inspect(client_app.app(_incoming(rec, "evaluate"), ctx), patches, shapes)
    assert set(seen) <= {"psnr-y", "num-examples"}
    rec = RecordDict({"global": ArrayRecord(weights), "cluster": ArrayRecord(weights),
                      "config": ConfigRecord({"steps": 2})})
    seen = _inspect(client_app.app(_incoming(rec, "query.personalise"), ctx), patches, shapes)
    assert set(seen) == {"global", "global+ft", "cluster", "cluster+ft"}


def test_the_inspection_catches_a_leak(device: tuple[Context, list[np.ndarray]]) -> None:
    """The checks above can fail: a reply carrying a patch or a source name is caught."""
    ctx, patches = device
    shapes = [tuple(w.shape) for w in get_weights(load_shipped())]
    leaky = Message(RecordDict({"arrays": ArrayRecord([patches[0]])}), reply_to=_incoming(RecordDict(), "query"))
    with pytest.raises(AssertionError):
        _inspect(leaky, patches, shapes)
    leaky = Message(RecordDict({"m": ConfigRecord({"source": SECRET_SOURCE})}), reply_to=_incoming(RecordDict(), "query"))
    with pytest.raises(AssertionError):
        _inspect(leaky, patches, shapes)
