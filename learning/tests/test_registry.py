"""The model registry against the embedded SQLite store and against a real `mlflow server` on
loopback: register, list, promote, roll back, export a model location nervesr can follow."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from nerve_learning.cli import main
from nerve_learning.registry.store import Registry, RegistryError

MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED = MODELS / "nerve-sr-x2.onnx"
OTHER = MODELS / "nerve-sr-x2-kd.onnx"  # another x2 single-frame model, standing in for a fine-tuned one


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server on loopback: SQLite backend, artifacts proxied by the server
    into a local directory. Stopped (its whole process group) at the end."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe) if exe.exists() else "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--artifacts-destination", str(root / "artifacts")]
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def manifest_model(directory: Path) -> dict:
    models = tomllib.loads((directory / "manifest.toml").read_text())["model"]
    assert len(models) == 1
    return models[0]


def exercise(reg: Registry, tmp_path: Path) -> None:
    """The whole life of a model: shipped version champion, a candidate, promotion, the model
    location following it, rollback."""
    v1 = reg.register(SHIPPED, "sr-x2", scale=2, frames=1, metrics={"talking_head/x264-crf23": {"psnr_y": 35.78}},
                      description="shipped", alias="champion")
    assert v1.version == 1 and v1.aliases == ["champion"] and v1.parent is None
    assert v1.sha256 == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    assert v1.metrics["talking_head/x264-crf23/psnr_y"] == pytest.approx(35.78)
    v2 = reg.register(OTHER, "sr-x2", scale=2, frames=1, parent=1, alias="candidate",
                      data={"store": "harvest", "items": 12, "content": ["talking_head"]})
    assert (v2.version, v2.parent, v2.aliases, v2.data["items"]) == (2, 1, ["candidate"], 12)
    assert [v.version for v in reg.versions("sr-x2")] == [1, 2]

    loc = tmp_path / "location"
    reg.materialize("sr-x2", "champion", loc)
    entry = manifest_model(loc)
    assert (entry["name"], entry["version"], entry["default"], entry["scale"]) == ("sr-x2", "1", True, 2)
    assert hashlib.sha256((loc / entry["file"]).read_bytes()).hexdigest() == entry["sha256"] == v1.sha256

    promoted = reg.promote("sr-x2", 2)
    assert promoted.aliases == ["champion"]  # the candidate alias went with the promotion
    assert reg.get("sr-x2", "champion").version == 2
    reg.materialize("sr-x2", "champion", loc)
    entry = manifest_model(loc)
    assert (entry["version"], entry["parent"], entry["sha256"]) == ("2", "sr-x2-v1", v2.sha256)
    assert (loc / "sr-x2-v1.onnx").exists(), "the previous file stays for readers of the old manifest"
    assert not list(loc.glob(".*tmp*")) and not list(loc.glob(".fetch-*"))

    back = reg.rollback("sr-x2")
    assert back.version == 1 and reg.get("sr-x2", "champion").version == 1
    assert "nerve.rolled_back_at" in reg.get("sr-x2", 2).tags
    assert [e["action"] for e in reg.history("sr-x2")] == ["promote", "promote", "rollback"]
    with pytest.raises(RegistryError, match="no earlier champion"):
        reg.rollback("sr-x2")
    with pytest.raises(RegistryError, match="no version or alias"):
        reg.get("sr-x2", 9)


def test_embedded_store(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry")
    assert reg.uri.startswith("sqlite:///")
    exercise(reg, tmp_path)
    # The store is on disk: a second client (another process on the device) sees the same state.
    again = Registry(tmp_path / "registry")
    assert again.get("sr-x2", "champion").version == 1


def test_mlflow_server_on_loopback(mlflow_server: str, tmp_path: Path) -> None:
    reg = Registry(mlflow_server)
    exercise(reg, tmp_path)
    # A second device, another client of the same server, follows the champion.
    other = Registry(mlflow_server)
    loc = tmp_path / "device-b"
    assert list(other.follow("sr-x2", "champion", loc, interval=0, rounds=1)) == [1]
    assert manifest_model(loc)["version"] == "1"


def test_refuses_what_is_not_a_model_or_was_tampered_with(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry")
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not onnx")
    with pytest.raises(RegistryError, match="not a loadable ONNX"):
        reg.register(bogus, "sr-x2", scale=2)
    with pytest.raises(RegistryError, match="not x3"):
        reg.register(SHIPPED, "sr-x2", scale=3)
    with pytest.raises(RegistryError, match="probe run"):
        reg.register(SHIPPED, "sr-x2", scale=2, frames=2)
    reg.register(SHIPPED, "sr-x2", scale=2, alias="champion")
    loc = tmp_path / "location"
    reg.materialize("sr-x2", "champion", loc)
    before = (loc / "manifest.toml").read_text()
    reg.register(OTHER, "sr-x2", scale=2, parent=1)
    # Corrupt the stored artifact: export must refuse it and leave the location as it was.
    stored = [p for p in (tmp_path / "registry" / "artifacts").rglob("sr-x2.onnx")
              if hashlib.sha256(p.read_bytes()).hexdigest() == reg.get("sr-x2", 2).sha256][0]
    stored.write_bytes(stored.read_bytes()[:-1] + b"\0")
    with pytest.raises(RegistryError, match="sha256"):
        reg.materialize("sr-x2", 2, loc)
    assert (loc / "manifest.toml").read_text() == before
    assert not (loc / "sr-x2-v2.onnx").exists()


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "registry")
    models = tmp_path / "models"  # a copy of the shipped manifest directory
    models.mkdir()
    for f in ("manifest.toml", "nerve-sr-x2.onnx", "nerve-sr-x2.md", "nerve-sr-x2.metrics.json", "nerve-sr-x2-kd.onnx"):
        shutil.copyfile(MODELS / f, models / f)
    reg = ["registry", "--tracking-uri", store]
    assert main([*reg, "register", "--model", str(models / "nerve-sr-x2.onnx"), "--alias", "champion"]) == 0
    assert main([*reg, "register", "--model", str(models / "nerve-sr-x2-kd.onnx"), "--name", "nerve-sr-x2",
                 "--parent", "1", "--alias", "candidate", "--data", '{"items": 3}']) == 0
    capsys.readouterr()
    assert main([*reg, "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert "champion" in listing[1] and "candidate" in listing[2]
    assert main([*reg, "promote", "nerve-sr-x2", "candidate"]) == 0
    assert main([*reg, "export", "nerve-sr-x2", "--dir", str(tmp_path / "loc")]) == 0
    assert manifest_model(tmp_path / "loc")["version"] == "2"
    assert main([*reg, "rollback", "nerve-sr-x2"]) == 0
    assert main([*reg, "rollback", "nerve-sr-x2"]) == 2  # nothing earlier: a clear error, not a traceback
    assert "no earlier champion" in capsys.readouterr().out
    # The shipped model's metrics and card came along from beside the file.
    v1 = Registry(store).get("nerve-sr-x2", 1)
    assert v1.metrics["talking_head/x264-crf23/psnr_y"] > 30 and v1.scale == 2


def test_a_promotion_or_rollback_cut_short_is_finished_on_the_next_read(tmp_path: Path) -> None:
    """promote and rollback write the champion stack before they move the alias; a crash between
    the two (simulated by writing only the stack) is finished by the next read, so `champion`
    and the stack agree and a rollback goes back to where it should."""
    reg = Registry(tmp_path / "registry")
    reg.register(MODELS / "nerve-sr-x2.onnx", "sr", scale=2, alias="champion")
    reg.register(MODELS / "nerve-sr-x2-kd.onnx", "sr", scale=2, parent=1)
    reg.register(MODELS / "nerve-sr-x2.onnx", "sr", scale=2, parent=2)
    reg.promote("sr", 2)
    # A promotion of v3 killed after its stack write: the alias still names v2.
    reg._record("sr", reg._stack("sr") + [3], {"action": "promote", "version": 3})
    assert int(reg.client.get_model_version_by_alias("sr", "champion").version) == 2
    champion = reg.champion("sr")
    assert champion is not None and champion.version == 3
    assert reg.rollback("sr").version == 2
    # A rollback killed after its stack write: the alias still names v2, the stack ends at v1.
    reg._record("sr", reg._stack("sr")[:-1], {"action": "rollback", "version": 1})
    assert int(reg.client.get_model_version_by_alias("sr", "champion").version) == 2
    assert reg.promote("sr", 3).version == 3 and reg._stack("sr") == [1, 3]
