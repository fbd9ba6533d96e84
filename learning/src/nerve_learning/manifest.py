"""The model manifest (`models/manifest.toml` and every model location): the contract between the
learning side and the elements. An entry names the file, its task, scale, frame count, tensor
layout and sha256; the elements read only this and the ONNX file, never the registry."""

from __future__ import annotations

import re
from pathlib import Path


def manifest_entry(name: str, file: str, scale: int, frames: int, sha256: str, default: bool, card: str | None,
                   parent: str | None = None, version: str = "1") -> str:
    """The `[[model]]` table of a super-resolution model (luma in and out, NCHW, 0..1)."""
    return "\n".join([
        "[[model]]",
        f'name = "{name}"',
        f'file = "{file}"',
        'task = "super-resolution"',
        f"scale = {scale}",
        f"frames = {frames}",
        f"default = {'true' if default else 'false'}",
        f'version = "{version}"',
        *([f'card = "{card}"'] if card else []),
        *([f'parent = "{parent}"'] if parent else []),
        f'sha256 = "{sha256}"',
        'input = { name = "lr", layout = "NCHW", planes = "Y", range = "unit" }',
        'output = { name = "hr", layout = "NCHW", planes = "Y", range = "unit" }',
        "",
    ])


def next_version(manifest: Path, name: str, sha256: str) -> str:
    """The version a new file for `name` gets: the entry's own when the file is unchanged, one
    more than the entry's when it replaces it, "1" for a new model."""
    text = manifest.read_text() if manifest.exists() else ""
    table = next((t for t in re.split(r"(?m)^(?=\[\[model\]\])", text) if f'name = "{name}"' in t), "")
    found = re.search(r'(?m)^version = "(\d+)"', table)
    if not found:
        return "1"
    return found.group(1) if f'sha256 = "{sha256}"' in table else str(int(found.group(1)) + 1)


def _field(table: str, key: str) -> str | None:
    found = re.search(rf'(?m)^{key} = "?([^"\n]*)"?$', table)
    return found.group(1) if found else None


def upsert_manifest(manifest: Path, name: str, entry: str) -> None:
    """Replaces the `[[model]]` table called `name` in the manifest, or appends it. A new default
    takes the place of the old one: other entries of its task and scale stop being the default
    (the element takes the first default it finds, so two would make the choice the file's order).
    A replaced entry's `default_from_rows` (the default for large inputs, set by hand in the
    manifest) carries over unless the new entry sets its own: a re-export must not quietly take
    the real-time default away from 1080p."""
    text = manifest.read_text() if manifest.exists() else "# nerve model manifest: see models/README.md\n\n"
    tables = re.split(r"(?m)^(?=\[\[model\]\])", text)
    replaced = [t for t in tables if f'name = "{name}"' in t]
    kept = [t for t in tables if f'name = "{name}"' not in t]
    rows = next((_field(t, "default_from_rows") for t in replaced if _field(t, "default_from_rows")), None)
    if rows is not None and _field(entry, "default_from_rows") is None:
        entry = re.sub(r"(?m)^(default = (?:true|false))$", rf"\1\ndefault_from_rows = {rows}", entry, count=1)
    if _field(entry, "default") == "true":
        same = (_field(entry, "task"), _field(entry, "scale"))
        kept = [t.replace("default = true", "default = false")
                if t.startswith("[[model]]") and (_field(t, "task"), _field(t, "scale")) == same else t for t in kept]
    manifest.write_text("".join(kept).rstrip("\n") + "\n\n" + entry)
