"""Shared fixtures: small real radiographs and tiny random SAM checkpoints."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
# Triton (which torch._dynamo imports) crashes a process where a viewer has already mapped Mesa's libLLVM
# (napari_adaqat/widgets/_compat.py): load it now, before any GUI test, so that a training test run after
# a GUI test in one process (any subset, any order) does not segfault.
import torch._dynamo  # noqa: E402,F401

DATA = Path(__file__).parent / "data"
CXR = DATA / "cxr"
# the Annotate dock's copy of work that a read-only dataset folder could not take, made when a test's window closes:
# never into the user's ~/.cache (widgets/_annotate_drafts.py)
os.environ.setdefault("ADAQAT_UNSAVED_DIR", str(Path(tempfile.mkdtemp(prefix="adaqat-unsaved-"))))


@pytest.fixture(autouse=True)
def user_config(tmp_path_factory, monkeypatch) -> Path:
    """Each test's own user settings folder (util/recent.py): the folders a dock opened in one test are not
    offered by a dock of the next, and the developer's own ~/.config is never written."""
    folder = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("ADAQAT_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture(autouse=True)
def dock_code_loaded(request) -> None:
    """Tests with a viewer get each dock's widget from napari's Plugins-menu call at once, as a user does from the
    second opening on: the docks' code is imported first (the first opening's "Loading…" shell, built in a
    thread, has its own tests in test_loading_dock.py)."""
    if "make_napari_viewer" in request.fixturenames:
        import importlib

        for name in ("segment", "annotate", "batch", "train"):
            importlib.import_module(f"napari_adaqat.widgets.{name}")


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """Where GUI tests save screenshots: ``$ADAQAT_SCREENSHOTS`` (``docs`` refreshes the README's), else build/screenshots."""
    root = Path(__file__).resolve().parents[1]
    out = Path(os.environ.get("ADAQAT_SCREENSHOTS", root / "build" / "screenshots"))
    out = out if out.is_absolute() else root / out
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="session")
def cxr_dir() -> Path:
    """4 real CC-BY radiographs with lung masks (test split of the default model)."""
    return CXR


@pytest.fixture()
def films(tmp_path, cxr_dir) -> Path:
    """A folder of copies of :func:`cxr_dir`'s 4 films (no masks): what the Annotate dock opens."""
    folder = tmp_path / "films"
    shutil.copytree(cxr_dir / "images", folder)
    return folder


@pytest.fixture(scope="session")
def nano_pth(tmp_path_factory) -> Path:
    """An official-format SAM .pth of the vit_nano preset with random weights."""
    from napari_adaqat.model.build import build_sam

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "nano.pth"
    torch.save(build_sam("vit_nano").state_dict(), path)
    return path


@pytest.fixture(scope="module")
def nano_models(tmp_path_factory) -> tuple[Path, Path]:
    """Two different random vit_nano checkpoints: 'model' and 'baseline' (the docks' GUI tests)."""
    from napari_adaqat.model.build import build_sam

    folder = tmp_path_factory.mktemp("nano")
    paths = []
    for seed, name in ((0, "model.pth"), (1, "baseline.pth")):
        torch.manual_seed(seed)
        torch.save(build_sam("vit_nano").state_dict(), folder / name)
        paths.append(folder / name)
    return paths[0], paths[1]


@pytest.fixture()
def dataset(tmp_path, cxr_dir):
    """The 4 shipped radiographs, all used for training and validation."""
    root = tmp_path / "data"
    shutil.copytree(cxr_dir, root, ignore=shutil.ignore_patterns("*.md", "*.csv"))
    names = sorted(p.stem for p in (root / "images").glob("*.png"))
    (root / "split.json").write_text(json.dumps({"train": names, "val": names, "test": [],
                                                    "val_overlaps_train": True}))  # on purpose: 4 films
    return root


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Let napari worker threads still running (a dock's prefetch, say) finish before Python tears Qt down:
    a worker that ends during interpreter exit emits on deleted signals and aborts the process (rc 134)
    after every test has passed."""
    import sys

    if "qtpy" in sys.modules:
        from qtpy.QtCore import QThreadPool

        QThreadPool.globalInstance().waitForDone(120_000)
