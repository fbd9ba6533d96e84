"""The package's shape: capabilities import each other in one direction only (no import circles,
at module level or between capabilities), and every sub-command's parser sits beside its code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from nerve_learning.cli import parser

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "nerve_learning"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Modules of the package that `path` imports, at any depth of the file (lazy imports inside
    functions count too: a circle through them is still a circle)."""
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("nerve_learning"):
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if module_path(candidate) else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("nerve_learning"))
    return {m for m in found if module_path(m)} - {own}


def module_path(name: str) -> Path | None:
    rel = Path(*name.split(".")[1:])
    for candidate in (PACKAGE / rel.with_suffix(".py"), PACKAGE / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def capability(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else "(shared)"


def test_cycle_finder_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_module_imports_itself_in_a_circle() -> None:
    edges = graph()
    assert len(edges) > 20, "the package was not found"
    assert find_cycle(edges) is None


def test_capabilities_depend_in_one_direction() -> None:
    edges: dict[str, set[str]] = {}
    for src, targets in graph().items():
        if src == "nerve_learning.cli":
            continue  # the top-level command line puts every capability's parsers together
        for dst in targets:
            a, b = capability(src), capability(dst)
            if a != b and "(shared)" not in (a, b):
                edges.setdefault(a, set()).add(b)
    assert find_cycle(edges) is None, edges
    # shared modules (metrics, paths, manifest, quality) sit below every capability
    shared_up = {dst for src, targets in graph().items() if capability(src) == "(shared)" and src != "nerve_learning.cli"
                 for dst in targets if capability(dst) not in ("(shared)", "data")}
    assert not shared_up, f"shared helpers reach up into {shared_up}"


@pytest.mark.parametrize("command", ["train-sr", "int8", "pack", "pack-images", "continual", "registry", "harvest",
                                     "local-train", "ondevice-loop", "train-recovery", "compare"])
def test_every_sub_command_parses_its_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        parser().parse_args([command, "--help"])
    assert done.value.code == 0
    assert command in capsys.readouterr().out
