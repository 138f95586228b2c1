"""Imports point down only: cli -> server -> model -> executor (DESIGN.md, "Layers").

Read from the source with ``ast`` (every import, also those inside functions), so a lazy
import that runs back up a layer fails here as well as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Package folder -> its layer's rank; a module may import its own layer or lower ones.
LAYERS = {"executor": 0, "model": 1, "server": 2, "asmopt": 3}
PACKAGE_OF = {
    "asmopt.executor": "executor",
    "asmopt.model": "model",
    "asmopt.server": "server",
}


def _layer_of_import(name: str) -> str | None:
    for prefix, layer in PACKAGE_OF.items():
        if name == prefix or name.startswith(prefix + "."):
            return layer
    if name.startswith("asmopt."):  # the CLI's modules (bare ``asmopt`` holds the version)
        return "asmopt"
    return None


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_no_import_runs_back_up_a_layer(folder):
    rank = LAYERS[folder]
    wrong = []
    for path in _modules(folder):
        for line, name in _imports(path):
            target = _layer_of_import(name)
            if target is not None and LAYERS[target] > rank:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not wrong, "imports up a layer:\n" + "\n".join(wrong)


# Inside asmopt.model: the jobs' sub-packages, in the same order (settings is shared by all).
MODEL_PARTS = {"settings": 0, "search": 1, "evaluation": 2, "training": 3}


def _model_part(name: str) -> str | None:
    parts = name.split(".")
    if parts[:2] != ["asmopt", "model"] or len(parts) < 3:
        return None
    return parts[2] if parts[2] in MODEL_PARTS else None


@pytest.mark.parametrize("part", sorted(MODEL_PARTS))
def test_model_parts_import_down_only(part):
    folder = ROOT / "model" / part
    paths = sorted(folder.rglob("*.py")) if folder.is_dir() else [folder.with_suffix(".py")]
    wrong = []
    for path in paths:
        for line, name in _imports(path):
            target = _model_part(name)
            if target is not None and MODEL_PARTS[target] > MODEL_PARTS[part]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not wrong, "imports up inside asmopt.model:\n" + "\n".join(wrong)


def test_every_model_module_is_in_a_part():
    shared = {"__init__", "settings"}
    loose = [p.name for p in (ROOT / "model").glob("*.py") if p.stem not in shared]
    assert not loose, f"modules outside search/, evaluation/, training/: {loose}"


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from asmopt.server.server import x\n")
    assert _layer_of_import(_imports(bad)[0][1]) == "server"
