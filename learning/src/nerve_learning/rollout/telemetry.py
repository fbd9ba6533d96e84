"""What a device reports for release decisions, spooled on the device and sent when it can.

A report is one played session: the model it ran (version and sha256), what `nervesr` counted
(frames enhanced / classical, inference errors and mean ms, fallback, swaps refused; the
`nervesr-stats` element message), real-time misses, CPU seconds per second of video (the energy
guardrail: CPU time is what a battery pays for), artifacts refused (sha256), and the quality both
models reach on sampled patches of what the viewer watched (shadow mode's fields when nervesr
posts them, otherwise the device's own scoring of the same kind).

Spool: append-only JSON lines, each written with one write(2) and fsync(2) before it counts as
made; a line cut by a crash has no newline and is ignored. What has been sent is a watermark
(the last sequence number the server acknowledged) in its own file, replaced atomically after
the server said yes. So a report is either in the spool or not made, and the spool is only ever
read forward from the watermark: nothing is lost when the server is down or the device dies.

Upload is idempotent: every value goes to the device's MLflow run as a metric at
`step = seq` with `timestamp = the report's own creation time`; MLflow keeps one row per
(key, step, timestamp, value), so sending a report twice (the watermark write lost in a crash)
adds nothing. Beside each report's own values the device logs running totals per arm
(`t.*` candidate, `c.*` champion), so the latest value of each key (one `search_runs` call for the
whole fleet) is the device's sufficient statistics for the sequential tests.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FLEET_EXPERIMENT = "nerve-fleet"
TAG_DEVICE = "nerve.device"
TAG_ROLLOUT = "nerve.rollout_id"

# ---- nervesr-stats --------------------------------------------------------------------------

_FIELD = re.compile(r'([a-z0-9-]+)=\(([a-z0-9]+)\)("(?:[^"\\]|\\.)*"|[^,;]*)')


def parse_structure(text: str) -> tuple[str, dict[str, Any]]:
    """A GstStructure as text (`name, key=(type)value, ...;`, what `gst-launch-1.0 -m` prints
    and `gst_structure_to_string` writes) -> (name, typed fields)."""
    text = text.strip().rstrip(";")
    name, _, rest = text.partition(",")
    fields: dict[str, Any] = {}
    for key, kind, raw in _FIELD.findall(rest):
        raw = raw.strip()
        if kind in ("string", "str"):
            value: Any = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\") if raw.startswith('"') else raw
            if value == "NULL":
                value = None
        elif kind in ("boolean", "bool"):
            value = raw.lower() in ("true", "1", "yes")
        elif kind in ("double", "float"):
            value = float(raw)
        elif kind in ("guint64", "gint64", "uint", "int", "guint", "gint"):
            value = int(raw)
        else:
            value = raw
        fields[key] = value
    return name.strip(), fields


def stats_messages(output: str) -> list[dict[str, Any]]:
    """Every `nervesr-stats` message in `gst-launch-1.0 -m` output, in order."""
    out = []
    for line in output.splitlines():
        i = line.find("nervesr-stats,")
        if i >= 0:
            out.append(parse_structure(line[i:])[1])
    return out


# ---- reports --------------------------------------------------------------------------------

@dataclass
class Report:
    device: str
    seq: int
    created_ms: int
    rollout: str
    arm: str  # "t": the candidate ran; "c": the champion ran
    model_version: int
    model_sha256: str
    video_s: float
    frames_enhanced: int = 0
    frames_classical: int = 0
    inference_errors: int = 0
    mean_inference_ms: float = 0.0
    falling_back: bool = False
    swaps_refused: int = 0
    realtime_miss: int = 0  # 1 when inference did not keep up with the frame rate
    cpu_s: float = 0.0
    refused_artifacts: int = 0  # downloads whose sha256 did not match the registry
    shadow_samples: int = 0
    champion_psnr: float | None = None
    candidate_psnr: float | None = None
    bicubic_psnr: float | None = None
    gain_db: float | None = None  # candidate - champion on the same patches (paired)
    content: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


SUMMED = ("video_s", "frames_enhanced", "frames_classical", "inference_errors", "realtime_miss", "cpu_s",
          "refused_artifacts", "swaps_refused")


def totals_after(prev: dict[str, float], r: Report) -> dict[str, float]:
    """Running totals per arm after report `r` (prefix `t.` or `c.`)."""
    out = dict(prev)
    p = f"{r.arm}."
    out[p + "sessions"] = out.get(p + "sessions", 0.0) + 1
    for k in SUMMED:
        out[p + k] = out.get(p + k, 0.0) + float(getattr(r, k))
    if r.gain_db is not None:
        out[p + "n"] = out.get(p + "n", 0.0) + 1
        out[p + "gain_sum"] = out.get(p + "gain_sum", 0.0) + r.gain_db
        out[p + "gain_sq"] = out.get(p + "gain_sq", 0.0) + r.gain_db**2
    if r.champion_psnr is not None and r.bicubic_psnr is not None:
        # the running model's gain over bicubic on the viewer's patches (the A/B outcome)
        own = r.candidate_psnr if r.arm == "t" and r.candidate_psnr is not None else r.champion_psnr
        out[p + "q_n"] = out.get(p + "q_n", 0.0) + 1
        out[p + "q_sum"] = out.get(p + "q_sum", 0.0) + (own - r.bicubic_psnr)
        out[p + "q_sq"] = out.get(p + "q_sq", 0.0) + (own - r.bicubic_psnr) ** 2
    return out


class Spool:
    """The device's append-only report log and its sent watermark."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = self.root / "spool.jsonl"
        self.mark = self.root / "sent"

    def records(self) -> list[dict[str, Any]]:
        if not self.log.is_file():
            return []
        out = []
        for line in self.log.read_bytes().split(b"\n")[:-1]:  # the part after the last newline: cut by a crash
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def append(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, sort_keys=True) + "\n").encode()
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            # a cut line from an earlier crash would swallow this one: start on a fresh line
            if os.fstat(fd).st_size and not self._ends_with_newline():
                data = b"\n" + data
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _ends_with_newline(self) -> bool:
        with self.log.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def sent(self) -> int:
        try:
            return int(self.mark.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def mark_sent(self, seq: int) -> None:
        tmp = self.mark.with_suffix(".tmp")
        with tmp.open("w") as f:
            f.write(str(seq))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.mark)

    def pending(self) -> list[dict[str, Any]]:
        done = self.sent()
        return [r for r in self.records() if int(r["report"]["seq"]) > done]

    def last(self) -> dict[str, Any] | None:
        recs = self.records()
        return recs[-1] if recs else None


class Device:
    """A device's telemetry: makes reports (numbered, with running totals) into its spool, and
    sends what is pending to its run on the tracking server."""

    def __init__(self, device_id: str, root: Path, uri: str, rollout: str) -> None:
        self.id, self.uri, self.rollout = device_id, uri, rollout
        self.spool = Spool(Path(root) / "spool" / rollout)
        last = self.spool.last()
        self.seq = int(last["report"]["seq"]) if last else 0
        self.totals: dict[str, float] = dict(last["totals"]) if last else {}
        self._run_id_file = self.spool.root / "run_id"
        self._client: Any = None

    def record(self, report: Report) -> None:
        self.seq += 1
        report.seq, report.created_ms = self.seq, int(time.time() * 1000)
        self.totals = totals_after(self.totals, report)
        self.spool.append({"report": asdict(report), "totals": self.totals})

    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            from ..registry.store import _quiet_mlflow

            _quiet_mlflow()
            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    def run_id(self) -> str:
        """The device's run for this rollout, created once (found again by its tags after a crash
        between creating it and remembering it)."""
        if self._run_id_file.is_file():
            return self._run_id_file.read_text().strip()
        c = self.client()
        exp = c.get_experiment_by_name(FLEET_EXPERIMENT)
        exp_id = exp.experiment_id if exp else _create_experiment(c)
        found = c.search_runs([exp_id], f"tags.`{TAG_DEVICE}` = '{self.id}' and tags.`{TAG_ROLLOUT}` = '{self.rollout}'")
        if found:
            rid = found[0].info.run_id
        else:
            rid = c.create_run(exp_id, run_name=f"{self.rollout}/{self.id}",
                               tags={TAG_DEVICE: self.id, TAG_ROLLOUT: self.rollout}).info.run_id
        tmp = self._run_id_file.with_suffix(".tmp")
        tmp.write_text(rid)
        os.replace(tmp, self._run_id_file)
        return rid

    def flush(self, max_batch: int = 20) -> int:
        """Sends pending reports (oldest first); returns how many went. Any error (server down,
        killed, refusing) leaves them pending for the next call."""
        from mlflow.entities import Metric

        pending = self.spool.pending()
        if not pending:
            return 0
        sent = 0
        try:
            rid = self.run_id()
            for i in range(0, len(pending), max_batch):
                chunk = pending[i : i + max_batch]
                metrics = []
                for rec in chunk:
                    r, ts = rec["report"], int(rec["report"]["created_ms"])
                    step = int(r["seq"])
                    values = {k: float(v) for k, v in rec["totals"].items()}
                    values["reports"] = float(step)
                    for k in ("mean_inference_ms", "gain_db", "champion_psnr", "candidate_psnr", "model_version"):
                        if r.get(k) is not None:
                            values[f"r.{k}"] = float(r[k])
                    metrics.extend(Metric(k, v, ts, step) for k, v in values.items())
                self.client().log_batch(rid, metrics=metrics)
                self.spool.mark_sent(int(chunk[-1]["report"]["seq"]))
                sent += len(chunk)
        except Exception:  # the server is down or restarting: the reports stay in the spool
            return sent
        return sent


def _create_experiment(client: Any) -> str:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.create_experiment(FLEET_EXPERIMENT))
    except MlflowException:  # another device created it first
        return str(client.get_experiment_by_name(FLEET_EXPERIMENT).experiment_id)


def fleet_totals(uri: str, rollout: str) -> dict[str, dict[str, float]]:
    """Latest running totals of every device of a rollout, from one search of the server."""
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name(FLEET_EXPERIMENT)
    if exp is None:
        return {}
    out: dict[str, dict[str, float]] = {}
    token = None
    while True:
        page = c.search_runs([exp.experiment_id], f"tags.`{TAG_ROLLOUT}` = '{rollout}'", max_results=1000,
                             page_token=token)
        for run in page:
            out[run.data.tags.get(TAG_DEVICE, run.info.run_id)] = dict(run.data.metrics)
        token = page.token
        if not token:
            return out
