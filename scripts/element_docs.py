#!/usr/bin/env python3
"""Keep the generated part of docs/elements/<element>.md in step with gst-inspect-1.0.

For each element (nervesr, nerverecover, nervesalvage, nerveabr) this runs
`gst-inspect-1.0 ELEMENT` with GST_PLUGIN_PATH set to <repo>/target/release (unless the
environment already sets it) and renders a markdown section: the element's long name, class
and description, its pad templates with their caps, and a table of its properties (name, type,
range, default, flags, blurb). The section goes between the markers

    <!-- gst-inspect:begin -->
    <!-- gst-inspect:end -->

of docs/elements/<element>.md; everything outside the markers is hand-written and kept.

    python3 scripts/element_docs.py            # rewrite the pages
    python3 scripts/element_docs.py --check    # exit 1 and print a diff if a page is stale

The output is deterministic: values that depend on the machine or the instance (the plugin's
file name, the element's `name`, a read-only structure's current fields) are left out, and the
inherited GstObject properties `name` and `parent` are omitted. Inherited properties that change
behaviour (GstBaseTransform's `qos`) stay. Needs only the Python standard library and
gst-inspect-1.0; the plugins must be built (`cargo build --release --workspace`).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "elements"
ELEMENTS = ("nervesr", "nerverecover", "nervesalvage", "nerveabr")
BEGIN = "<!-- gst-inspect:begin -->"
END = "<!-- gst-inspect:end -->"
# Inherited from GstObject; their "default" is the instance's own name (nervesr0, ...).
OMITTED = frozenset({"name", "parent"})
# Continuation lines of a property are indented this far in gst-inspect-1.0's output.
PROP_INDENT = 24


@dataclass
class PadTemplate:
    name: str
    direction: str
    presence: str
    caps: list[str] = field(default_factory=list)


@dataclass
class Property:
    name: str
    blurb: str
    flags: list[str] = field(default_factory=list)
    type_line: str = ""
    enum_values: list[str] = field(default_factory=list)


@dataclass
class Inspection:
    element: str
    details: dict[str, str] = field(default_factory=dict)
    plugin: dict[str, str] = field(default_factory=dict)
    pads: list[PadTemplate] = field(default_factory=list)
    properties: list[Property] = field(default_factory=list)


def inspect(element: str) -> str:
    """gst-inspect-1.0's text for `element`, without colours or a pager."""
    env = dict(os.environ)
    env.setdefault("GST_PLUGIN_PATH", str(REPO / "target" / "release"))
    env["GST_INSPECT_NO_COLORS"] = "1"
    env["PAGER"] = "cat"
    env["LC_ALL"] = "C"
    proc = subprocess.run(
        ["gst-inspect-1.0", element], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(
            f"gst-inspect-1.0 {element} failed ({proc.returncode}); is the plugin built and "
            f"GST_PLUGIN_PATH={env['GST_PLUGIN_PATH']} right?\n{proc.stderr.strip()}"
        )
    return proc.stdout


def sections(text: str) -> dict[str, list[str]]:
    """Top-level sections ("Factory Details", "Pad Templates", ...) and their lines."""
    out: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line and not line[0].isspace():
            # A line at the margin ends the section; one ending in ":" starts the next.
            current = line.rstrip()[:-1] if line.rstrip().endswith(":") else ""
            if current:
                out[current] = []
        elif current:
            out[current].append(line.rstrip())
    return out


def key_values(lines: list[str]) -> dict[str, str]:
    """The `  Key     value` lines of the details sections."""
    out: dict[str, str] = {}
    for line in lines:
        m = re.match(r"^  (\S(?:.*?\S)?)\s{2,}(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def parse_pads(lines: list[str]) -> list[PadTemplate]:
    pads: list[PadTemplate] = []
    in_caps = False
    for line in lines:
        m = re.match(r"^  (SINK|SRC) template: '([^']+)'", line)
        if m:
            pads.append(PadTemplate(name=m.group(2), direction=m.group(1).lower(), presence=""))
            in_caps = False
            continue
        if not pads or not line.strip():
            continue
        stripped = line.strip()
        if stripped.startswith("Availability:"):
            pads[-1].presence = stripped.split(":", 1)[1].strip()
        elif stripped.startswith("Capabilities:"):
            in_caps = True
        elif in_caps:
            # Caps lines are indented by 6 (structure names) or more (fields).
            pads[-1].caps.append(line[6:] if line.startswith("      ") else stripped)
    return pads


def parse_properties(lines: list[str]) -> list[Property]:
    props: list[Property] = []
    for line in lines:
        if not line.strip():
            continue
        m = re.match(r"^  ([a-z0-9][a-z0-9-]*)\s*: ?(.*)$", line)
        if m and len(line) - len(line.lstrip()) == 2:
            props.append(Property(name=m.group(1), blurb=m.group(2).strip()))
            continue
        if not props:
            continue
        prop = props[-1]
        indent = len(line) - len(line.lstrip())
        stripped = line.strip()
        if stripped.startswith("flags:"):
            prop.flags = [f.strip() for f in stripped[len("flags:"):].split(",") if f.strip()]
        elif re.match(r"^\(\d+\): ", stripped) and prop.type_line.startswith(("Enum", "Flags")):
            prop.enum_values.append(stripped)
        elif not prop.type_line and indent == PROP_INDENT:
            prop.type_line = stripped
        # Anything else (a structure's current fields, "Current value: ...") depends on the
        # instance, not on the element: left out.
    return [p for p in props if p.name not in OMITTED]


def parse(element: str, text: str) -> Inspection:
    secs = sections(text)
    return Inspection(
        element=element,
        details=key_values(secs.get("Factory Details", [])),
        plugin=key_values(secs.get("Plugin Details", [])),
        pads=parse_pads(secs.get("Pad Templates", [])),
        properties=parse_properties(secs.get("Element Properties", [])),
    )


def cell(text: str) -> str:
    """Text made safe for a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ").strip()


def code(text: str) -> str:
    return f"`{text}`" if text else ""


def describe_type(prop: Property) -> tuple[str, str, str]:
    """(type, range, default) of a property from gst-inspect-1.0's type line."""
    line = prop.type_line
    default = ""
    m = re.search(r"Default:\s*(.*?)\s*$", line)
    if m:
        default = m.group(1)
        line = line[: m.start()].strip()
    rng = ""
    r = re.search(r"Range:\s*(.*?)\s*$", line)
    if r:
        lo_hi = re.split(r"\s+-\s+", r.group(1).strip(), maxsplit=1)
        rng = " – ".join(v.strip() for v in lo_hi)
        line = line[: r.start()].strip()
    kind = line.rstrip(". ")
    e = re.match(r'^(Enum|Flags) "([^"]+)"', kind)
    if e:
        kind = f"{e.group(1).lower()} {e.group(2)}"
        values = []
        for v in prop.enum_values:
            vm = re.match(r"^\((\d+)\): (\S+)\s+-\s+(.*)$", v)
            if vm:
                values.append(f"`{vm.group(2)}` ({vm.group(1)}): {vm.group(3).strip()}")
        rng = "; ".join(values)
        dm = re.match(r'^(\d+), "([^"]*)"$', default)
        if dm:
            default = dm.group(2)
    b = re.match(r'^Boxed pointer of type "([^"]+)"$', kind)
    if b:
        kind = f"boxed {b.group(1)}"
    o = re.match(r'^Object of type "([^"]+)"$', kind)
    if o:
        kind = f"object {o.group(1)}"
    kind = {
        "Boolean": "bool",
        "String": "string",
        "Unsigned Integer": "uint",
        "Integer": "int",
        "Unsigned Integer64": "uint64",
        "Integer64": "int64",
        "Unsigned Long": "ulong",
        "Long": "long",
        "Double": "double",
        "Float": "float",
    }.get(kind, kind)
    if default.startswith('"') and default.endswith('"'):
        default = default[1:-1]
        default = f'`"{default}"`' if default == "" else f"`{default}`"
    elif default:
        default = f"`{default}`"
    return kind, rng, default


def describe_flags(flags: list[str]) -> str:
    readable = "readable" in flags
    writable = "writable" in flags
    parts: list[str] = []
    if readable and not writable:
        parts.append("read-only")
    elif writable and not readable:
        parts.append("write-only")
    if writable:
        joined = " ".join(flags)
        if "PLAYING" in joined:
            parts.append("changeable in PLAYING")
        elif "READY" in joined:
            parts.append("changeable in NULL/READY only")
        elif "PAUSED" in joined:
            parts.append("changeable up to PAUSED")
        else:
            # No GST_PARAM_MUTABLE_* flag: the element sets no state restriction.
            parts.append("writable")
    for extra in ("controllable", "deprecated", "conditionally available"):
        if extra in flags:
            parts.append(extra)
    return ", ".join(parts)


def render(info: Inspection) -> str:
    d = info.details
    lines = [
        BEGIN,
        "<!-- Generated by scripts/element_docs.py from gst-inspect-1.0; do not edit by hand. -->",
        "",
        "## Element",
        "",
        "| | |",
        "|---|---|",
        f"| Long name | {cell(d.get('Long-name', ''))} |",
        f"| Class | `{cell(d.get('Klass', ''))}` |",
        f"| Description | {cell(d.get('Description', ''))} |",
        f"| Plugin | `{cell(info.plugin.get('Name', ''))}` |",
        f"| Rank | {cell(d.get('Rank', ''))} |",
        "",
        "## Pad templates",
        "",
    ]
    for pad in info.pads:
        lines.append(f"`{pad.name}` ({pad.direction}, {pad.presence.lower()}):")
        lines.append("")
        lines.append("```text")
        lines.extend(pad.caps or ["ANY"])
        lines.append("```")
        lines.append("")
    lines += [
        "## Properties",
        "",
        "| name | type | range / values | default | flags | description |",
        "|---|---|---|---|---|---|",
    ]
    for prop in sorted(info.properties, key=lambda p: p.name):
        kind, rng, default = describe_type(prop)
        lines.append(
            f"| `{prop.name}` | {cell(kind)} | {cell(rng)} | {cell(default)} | "
            f"{cell(describe_flags(prop.flags))} | {cell(prop.blurb)} |"
        )
    lines += ["", END]
    return "\n".join(lines)


def splice(page: str, generated: str, path: Path) -> str:
    start = page.find(BEGIN)
    stop = page.find(END)
    if start < 0 or stop < start:
        raise SystemExit(f"{path}: the markers {BEGIN} and {END} are missing or out of order")
    return page[:start] + generated + page[stop + len(END):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 with a diff when a page is stale")
    parser.add_argument("elements", nargs="*", default=list(ELEMENTS), help="elements to do (default: all)")
    args = parser.parse_args(argv)
    stale = 0
    for element in args.elements:
        path = DOCS / f"{element}.md"
        if not path.exists():
            raise SystemExit(f"{path} does not exist: write its hand-written part with the two markers first")
        page = path.read_text(encoding="utf-8")
        updated = splice(page, render(parse(element, inspect(element))), path)
        if updated == page:
            continue
        if args.check:
            stale += 1
            rel = path.relative_to(REPO)
            sys.stdout.writelines(
                difflib.unified_diff(
                    page.splitlines(keepends=True),
                    updated.splitlines(keepends=True),
                    fromfile=f"{rel} (on disk)",
                    tofile=f"{rel} (gst-inspect-1.0 now)",
                )
            )
        else:
            path.write_text(updated, encoding="utf-8")
            print(f"updated {path.relative_to(REPO)}")
    if stale:
        print(f"\n{stale} page(s) differ from gst-inspect-1.0: run python3 scripts/element_docs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
