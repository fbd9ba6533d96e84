"""The model registry: every model a device (or a fleet) trains, versioned in MLflow's model registry.

Vocabulary is MLflow's: a *registered model* (e.g. ``nerve-sr-x2``) has numbered *versions*; an
*alias* names one version (``champion``: what players should run, ``candidate``: what the local
trainer proposes); *tags* carry what MLflow has no field for. Each version is backed by one MLflow
run whose ``model/`` artifact directory holds the ONNX file, its manifest entry (the same
``[[model]]`` contract as ``models/manifest.toml``) and ``lineage.json``; the run holds the
metrics. The version's tags hold the sha256, the parent version and a summary of the data it saw.

Two stores, one code path (MLflow's ``MlflowClient``):
- embedded (default): ``sqlite:///<root>/mlflow.db`` with artifacts under ``<root>/artifacts``; no
  server, nothing leaves the device;
- a real tracking server (``http://host:port``) for several devices: artifacts travel through
  the server (``mlflow server --artifacts-destination``).

Promotion history: ``champion`` moves with :meth:`Registry.promote`; the registered model's tag
``nerve.champion_stack`` is the list of versions that were champion (top = current), so
:meth:`Registry.rollback` pops it; ``nerve.champion_history`` logs every move with its time.

:meth:`Registry.materialize` writes a version as a model location that ``nervesr`` follows: a
directory with the ONNX file and a ``manifest.toml`` naming it, written atomically (files first,
the manifest last, each as a temporary file then ``rename(2)``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..manifest import manifest_entry

EXPERIMENT = "nerve-models"
CHAMPION = "champion"
CANDIDATE = "candidate"
TAG_SHA = "nerve.sha256"
TAG_PARENT = "nerve.parent_version"
TAG_DATA = "nerve.data"
TAG_SCALE = "nerve.scale"
TAG_FRAMES = "nerve.frames"
TAG_FILE = "nerve.file"
TAG_STACK = "nerve.champion_stack"
TAG_HISTORY = "nerve.champion_history"
HISTORY_KEEP = 100  # promotion events kept in the tag (MLflow tag values are bounded)
ARTIFACT_DIR = "model"


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (unknown model/version, nothing to roll back to,
    a file whose sha256 does not match its version)."""


def default_root() -> Path:
    """`NERVE_REGISTRY` or ~/.local/share/nerve/registry: where the embedded store lives."""
    env = os.environ.get("NERVE_REGISTRY")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "nerve" / "registry"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Version:
    """One registered model version, as the registry reports it."""

    name: str
    version: int
    aliases: list[str]
    sha256: str
    scale: int
    frames: int
    file: str
    parent: int | None
    data: dict[str, Any]
    metrics: dict[str, float]
    run_id: str
    source: str
    created: float  # unix seconds
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _quiet_mlflow() -> None:
    # MLflow logs database migrations, run links and artifact progress bars at INFO; a CLI whose
    # output is a table should not print them.
    for name in ("mlflow", "alembic", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def check_onnx(path: Path, scale: int, frames: int) -> None:
    """Refuses a file that is not the SR model contract: ONNX with input `lr` (N, frames, h, w)
    and output `hr`, whose real output is `scale` times the input (one probe run)."""
    import numpy as np
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise RegistryError(f"{path} is not a loadable ONNX model: {e}") from e
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != ["lr"] or [o.name for o in outputs] != ["hr"]:
        raise RegistryError(f"{path}: expected input 'lr' and output 'hr', got "
                            f"{[i.name for i in inputs]} -> {[o.name for o in outputs]}")
    probe = np.random.default_rng(0).random((1, frames, 11, 13), dtype=np.float32)
    try:
        out = session.run(None, {"lr": probe})[0]
    except Exception as e:
        raise RegistryError(f"{path}: a probe run with {frames} frame(s) failed: {e}") from e
    if out.shape != (1, 1, 11 * scale, 13 * scale):
        raise RegistryError(f"{path}: output {out.shape} is not x{scale} of input (1, {frames}, 11, 13)")


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """{"talking_head/x264-crf23": {"psnr_y": 33.1}} -> {"talking_head/x264-crf23/psnr_y": 33.1}."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_metrics(v, key + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


class Registry:
    """The model registry behind `nerve-learn registry`.

    `uri`: None or a directory for the embedded SQLite store (default :func:`default_root`),
    `sqlite:///...` for another SQLite file, or `http(s)://...` for an MLflow tracking server."""

    def __init__(self, uri: str | Path | None = None) -> None:
        from mlflow import MlflowClient

        _quiet_mlflow()  # after the import: importing mlflow sets its loggers to INFO

        self.artifact_root: str | None = None
        text = str(uri) if uri is not None else ""
        if text.startswith(("http://", "https://", "sqlite:", "postgresql:", "mysql:")):
            self.uri = text
        else:
            root = Path(text) if text else default_root()
            root.mkdir(parents=True, exist_ok=True)
            self.uri = f"sqlite:///{root.resolve() / 'mlflow.db'}"
            # A SQL store keeps artifacts wherever the experiment says; without this they would
            # land in ./mlruns of whatever directory the command ran in.
            self.artifact_root = (root.resolve() / "artifacts").as_uri()
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self._experiment_id: str | None = None

    # --- helpers -------------------------------------------------------------------------------

    def _experiment(self) -> str:
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(EXPERIMENT)
            if exp is None:
                self._experiment_id = self.client.create_experiment(EXPERIMENT, artifact_location=self.artifact_root)
            else:
                self._experiment_id = exp.experiment_id
        return self._experiment_id

    def _registered(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(name)
        except MlflowException as e:
            raise RegistryError(f"no registered model {name!r} in {self.uri}") from e

    def _stack(self, name: str) -> list[int]:
        tags = self._registered(name).tags
        return [int(v) for v in json.loads(tags.get(TAG_STACK, "[]"))]

    def _record(self, name: str, stack: list[int], event: dict[str, Any]) -> None:
        tags = self._registered(name).tags
        history = json.loads(tags.get(TAG_HISTORY, "[]"))
        history = (history + [event])[-HISTORY_KEEP:]
        self.client.set_registered_model_tag(name, TAG_STACK, json.dumps(stack))
        self.client.set_registered_model_tag(name, TAG_HISTORY, json.dumps(history))

    def _version(self, mv: Any, aliases: dict[str, list[str]] | None = None) -> Version:
        tags = dict(mv.tags or {})
        metrics: dict[str, float] = {}
        if mv.run_id:
            metrics = dict(self.client.get_run(mv.run_id).data.metrics)
        if aliases is None:
            aliases = self._aliases(mv.name)
        parent = tags.get(TAG_PARENT)
        return Version(
            name=mv.name, version=int(mv.version), aliases=sorted(aliases.get(str(mv.version), [])),
            sha256=tags.get(TAG_SHA, ""), scale=int(tags.get(TAG_SCALE, "0")), frames=int(tags.get(TAG_FRAMES, "1")),
            file=tags.get(TAG_FILE, ""), parent=int(parent) if parent else None,
            data=json.loads(tags.get(TAG_DATA, "{}")), metrics=metrics, run_id=mv.run_id or "", source=mv.source,
            created=mv.creation_timestamp / 1000.0, description=mv.description or "", tags=tags,
        )

    def _aliases(self, name: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for alias, version in (self._registered(name).aliases or {}).items():
            out.setdefault(str(version), []).append(alias)
        return out

    # --- queries -------------------------------------------------------------------------------

    def models(self) -> list[str]:
        return sorted(m.name for m in self.client.search_registered_models())

    def versions(self, name: str) -> list[Version]:
        aliases = self._aliases(name)
        mvs = self.client.search_model_versions(f"name='{name}'")
        return sorted((self._version(mv, aliases) for mv in mvs), key=lambda v: v.version)

    def get(self, name: str, ref: str | int) -> Version:
        """`ref`: a version number or an alias (`champion`, `candidate`, ...)."""
        from mlflow.exceptions import MlflowException

        self._registered(name)
        try:
            if isinstance(ref, int) or str(ref).isdigit():
                mv = self.client.get_model_version(name, str(ref))
            else:
                mv = self.client.get_model_version_by_alias(name, str(ref))
        except MlflowException as e:
            raise RegistryError(f"{name} has no version or alias {ref!r}") from e
        return self._version(mv)

    def champion(self, name: str) -> Version | None:
        try:
            self._settle(name)
            return self.get(name, CHAMPION)
        except RegistryError:
            return None

    def _settle(self, name: str) -> None:
        """Finishes a promotion or rollback that a crash cut short. Both write the champion stack
        (the decision) before they move the alias, so a stack whose top is not the alias's version
        is a move decided and not yet made: the alias follows the stack. Without this, a kill
        between the two writes left `champion` on a version the stack did not know, and the next
        rollback went to the wrong version (learning/tests/test_faults.py found it)."""
        from mlflow.exceptions import MlflowException

        stack = self._stack(name)
        if not stack:
            return
        try:
            current: int | None = int(self.client.get_model_version_by_alias(name, CHAMPION).version)
        except MlflowException:
            current = None
        if current != stack[-1]:
            logging.getLogger(__name__).warning(
                "%s: champion alias on v%s but the champion stack ends at v%s (a promotion or rollback cut "
                "short): moving the alias to v%s", name, current, stack[-1], stack[-1])
            self.client.set_registered_model_alias(name, CHAMPION, str(stack[-1]))

    def history(self, name: str) -> list[dict[str, Any]]:
        return list(json.loads(self._registered(name).tags.get(TAG_HISTORY, "[]")))

    # --- changes -------------------------------------------------------------------------------

    def register(
        self, onnx_path: Path, name: str, *, scale: int, frames: int = 1, metrics: dict[str, Any] | None = None,
        parent: int | None = None, data: dict[str, Any] | None = None, description: str = "",
        alias: str | None = None, card: Path | None = None, params: dict[str, Any] | None = None,
    ) -> Version:
        """Adds a version of `name` (created on first use) holding `onnx_path`, after checking that
        the file is the SR model contract for `scale` and `frames`."""
        from mlflow.exceptions import MlflowException

        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise RegistryError(f"no such model file: {onnx_path}")
        check_onnx(onnx_path, scale, frames)
        if parent is not None:
            self.get(name, parent)  # the parent must exist
        sha = sha256_of(onnx_path)
        data = data or {}
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name, description="nerve super-resolution model (ONNX, luma)")
        run = self.client.create_run(self._experiment(), run_name=f"{name}-{time.strftime('%Y%m%dT%H%M%S')}",
                                     tags={TAG_SHA: sha, "nerve.model": name})
        run_id = run.info.run_id
        try:
            for k, v in (params or {}).items():
                self.client.log_param(run_id, k, v)
            for k, v in flatten_metrics(metrics or {}).items():
                self.client.log_metric(run_id, k, v)
            with tempfile.TemporaryDirectory() as tmp:
                stage = Path(tmp) / ARTIFACT_DIR
                stage.mkdir()
                file = f"{name}.onnx"
                shutil.copyfile(onnx_path, stage / file)
                (stage / "manifest_entry.toml").write_text(
                    manifest_entry(name, file, scale, frames, sha, True, None))
                (stage / "lineage.json").write_text(json.dumps(
                    {"parent_version": parent, "data": data, "source_file": str(onnx_path.resolve())}, indent=2))
                if metrics:
                    (stage / "metrics.json").write_text(json.dumps(metrics, indent=2))
                if card is not None and Path(card).is_file():
                    shutil.copyfile(card, stage / "card.md")
                self.client.log_artifacts(run_id, str(stage), ARTIFACT_DIR)
            self.client.set_terminated(run_id)
        except Exception:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        tags = {TAG_SHA: sha, TAG_SCALE: str(scale), TAG_FRAMES: str(frames), TAG_FILE: file,
                TAG_DATA: json.dumps(data)[:5000]}
        if parent is not None:
            tags[TAG_PARENT] = str(parent)
        mv = self.client.create_model_version(name, f"runs:/{run_id}/{ARTIFACT_DIR}", run_id=run_id, tags=tags,
                                              description=description)
        if alias == CHAMPION:
            self.promote(name, int(mv.version))
        elif alias:
            self.client.set_registered_model_alias(name, alias, mv.version)
        return self.get(name, int(mv.version))

    def set_alias(self, name: str, alias: str, version: int) -> None:
        if alias == CHAMPION:
            self.promote(name, version)
            return
        self.get(name, version)
        self.client.set_registered_model_alias(name, alias, str(version))

    def promote(self, name: str, version: int, alias: str = CHAMPION) -> Version:
        """Moves `champion` to `version` and pushes it on the champion stack."""
        self._settle(name)
        target = self.get(name, version)
        stack = self._stack(name)
        if stack and stack[-1] == target.version and CHAMPION in target.aliases:
            return target
        # The decision first, then the alias: a crash in between is finished by _settle.
        stack = (stack + [target.version])[-HISTORY_KEEP:]
        self._record(name, stack, {"action": "promote", "version": target.version, "at": time.time()})
        self.client.set_registered_model_alias(name, alias, str(target.version))
        self.client.set_model_version_tag(name, str(target.version), "nerve.promoted_at", f"{time.time():.3f}")
        # A promoted candidate is no longer a candidate.
        if CANDIDATE in target.aliases:
            self.client.delete_registered_model_alias(name, CANDIDATE)
        return self.get(name, target.version)

    def rollback(self, name: str) -> Version:
        """Moves `champion` back to the version that held it before the current one."""
        self._settle(name)
        stack = self._stack(name)
        if len(stack) < 2:
            raise RegistryError(f"{name}: no earlier champion to roll back to (champion stack {stack})")
        bad, previous = stack[-1], stack[-2]
        # As in promote: the decision first, then the alias.
        self._record(name, stack[:-1], {"action": "rollback", "from": bad, "version": previous, "at": time.time()})
        self.client.set_registered_model_alias(name, CHAMPION, str(previous))
        self.client.set_model_version_tag(name, str(bad), "nerve.rolled_back_at", f"{time.time():.3f}")
        return self.get(name, previous)

    # --- materialize ---------------------------------------------------------------------------

    def download(self, v: Version, dest: Path) -> Path:
        """Fetches the version's ONNX file into `dest` (a directory) and checks its sha256."""
        dest.mkdir(parents=True, exist_ok=True)
        got = Path(self.client.download_artifacts(v.run_id, f"{ARTIFACT_DIR}/{v.file}", str(dest)))
        actual = sha256_of(got)
        if actual != v.sha256:
            raise RegistryError(f"{v.name} v{v.version}: downloaded file has sha256 {actual}, registered {v.sha256}")
        return got

    def materialize(self, name: str, ref: str | int, directory: Path, keep: int = 2) -> Path:
        """Writes version `ref` (a number or alias) of `name` into `directory` as a model location
        nervesr can follow: `<name>-v<version>.onnx` plus a `manifest.toml` whose only entry is it
        (the default for its scale). Atomic for readers: the ONNX file is complete under its final
        name before the manifest that names it is renamed into place. The `keep` newest ONNX files
        stay, so a reader that read the previous manifest can still open what it names. Returns
        the manifest path."""
        v = self.get(name, ref)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        file = f"{name}-v{v.version}.onnx"
        final = directory / file
        if not (final.is_file() and sha256_of(final) == v.sha256):
            with tempfile.TemporaryDirectory(dir=directory, prefix=".fetch-") as tmp:
                got = self.download(v, Path(tmp))
                os.replace(got, final)
        parent = f"{name}-v{v.parent}" if v.parent is not None else None
        entry = manifest_entry(name, file, v.scale, v.frames, v.sha256, True, None, parent=parent, version=str(v.version))
        text = (f"# written by `nerve-learn registry export` from {self.uri}: {name} v{v.version}"
                f" ({', '.join(v.aliases) or 'no alias'})\n\n{entry}")
        tomllib.loads(text)  # never write a manifest the engine cannot parse
        manifest = directory / "manifest.toml"
        tmp_manifest = directory / ".manifest.toml.tmp"
        with tmp_manifest.open("w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_manifest, manifest)
        olds = sorted((p for p in directory.glob(f"{name}-v*.onnx") if p != final), key=lambda p: p.stat().st_mtime)
        for p in olds[: max(0, len(olds) - (keep - 1))]:
            p.unlink()
        return manifest

    def follow(self, name: str, alias: str, directory: Path, interval: float, rounds: int | None = None) -> Iterator[int]:
        """Materializes `alias` whenever it moves; yields each version written."""
        current: int | None = None
        n = 0
        while rounds is None or n < rounds:
            n += 1
            try:
                v = self.get(name, alias)
            except RegistryError:
                v = None
            if v is not None and v.version != current:
                self.materialize(name, v.version, directory)
                current = v.version
                yield v.version
            if rounds is None or n < rounds:
                time.sleep(interval)
