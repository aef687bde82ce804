"""The package's shape: imports run one way (util → io → data → model → inference / train → report → cli and
widgets), no import cycle is hidden inside a function, the core needs no napari/Qt, and
``import napari_adaqat`` stays free of torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "napari_adaqat"

# rank of each layer; a module may import its own layer and lower ranks, never a sibling of equal rank
RANKS = {"util": -1, "io": 0, "data": 1, "metrics": 1, "model": 2, "inference": 3, "train": 3, "report": 4, "bench": 4,
         "cli": 5, "widgets": 5}
GUI = ("napari", "qtpy", "magicgui", "PyQt5", "PyQt6", "vispy")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function?) of every import statement in ``path``."""
    tree = ast.parse(path.read_text())
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested.update(id(n) for n in ast.walk(node) if n is not node)
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, id(node) in nested) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, node.lineno, id(node) in nested))
            # `from pkg import module` imports a module too
            found += [(f"{base}.{a.name}", node.lineno, id(node) in nested) for a in node.names
                      if (PACKAGE.parent / Path(*f"{base}.{a.name}".split("."))).with_suffix(".py").is_file()]
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANKS) else None


FILES = sorted(PACKAGE.rglob("*.py"))


def test_imports_only_run_downward():
    wrong = []
    for path in FILES:
        mine = _layer(_module_name(path))
        if mine is None:
            continue  # plugin entry points and the package itself sit on top
        for target, line, _ in _imports(path):
            theirs = _layer(target) if target.startswith("napari_adaqat.") else None
            if theirs is None or theirs == mine:
                continue
            if RANKS[theirs] >= RANKS[mine]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} ({mine}) imports {target} ({theirs})")
    assert not wrong, "imports that run up or sideways:\n" + "\n".join(wrong)


def test_no_import_cycle_even_through_function_level_imports():
    """With every import counted, function-level ones included, the module graph has no cycle: so no
    function-level import exists only to dodge one (those left are for cost: torch, matplotlib, Qt)."""
    names = {_module_name(p) for p in FILES}
    graph = {}
    for path in FILES:
        me = _module_name(path)
        graph[me] = {t for t, _, _ in _imports(path) if t in names and t != me and not me.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_core_needs_no_napari_or_qt():
    core = [p for p in FILES if _layer(_module_name(p)) not in (None, "widgets")]
    hits = [f"{p.relative_to(PACKAGE)}:{line} imports {t}" for p in core for t, line, _ in _imports(p)
            if t.split(".")[0] in GUI]
    assert not hits, "\n".join(hits)


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_importing_the_package_does_not_import_torch():
    code = ("import sys, napari_adaqat, napari_adaqat.train, napari_adaqat.inference, napari_adaqat.data; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    assert _fresh(code) == "[]"


def test_public_api_names_resolve():
    import napari_adaqat

    for name in napari_adaqat.__all__:
        assert getattr(napari_adaqat, name) is not None, name
    assert callable(napari_adaqat.train)


def test_report_reads_no_training_code_and_the_model_layer_draws_nothing():
    """Evaluation and reports stand beside training, not on it; figures are report's, not the model's."""
    hits = [f"{p.relative_to(PACKAGE)}:{line} imports {t}" for p in FILES for t, line, _ in _imports(p)
            if (_layer(_module_name(p)) == "report" and t.startswith("napari_adaqat.train"))
            or (_layer(_module_name(p)) == "model" and t.split(".")[0] == "matplotlib")]
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize("definition", [
    "def first_line(", "def remove_stale_temps(", "def atomic_path(", "def unpack_int8(", "def pack_int8(",
    "def check_state_keys(", "DEVICES = (", "def open_model(", "def load_model(", "def run_paths(",
])
def test_one_home_each(definition):
    """One atomic writer, one first_line, one INT8 pack/unpack, one key check, one device list, one loader."""
    homes = [str(p.relative_to(PACKAGE)) for p in FILES if definition in p.read_text()]
    assert len(homes) == 1, homes
