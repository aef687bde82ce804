"""Malicious checkpoints: pickles whose loading would run code (touch a marker file), offered to every
command and dock that takes a model.  The marker never appears and each refusal is one line."""
from __future__ import annotations

import os
import pathlib
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch

from napari_adaqat.cli import main
from napari_adaqat.model.build import ModelLoadError
from napari_adaqat.model.loading import load_model

try:  # imported at collection, before any viewer creates an OpenGL context (see widgets/_compat.py)
    from napari_adaqat.widgets.segment import SegmentWidget
except ImportError:  # napari is not installed: the dock test is skipped
    SegmentWidget = None

REFUSED = r"(refused: the checkpoint holds Python objects besides tensors \(.+\) that could run code when loaded; " \
          r"only plain state_dicts of tensors are read|is a pickle/zip file; only safetensors model files are accepted)"


class TouchOnLoad:
    """Unpickling this creates ``marker`` (a stand-in for any code an attacker wants run)."""

    def __init__(self, marker: Path, shell: bool = False) -> None:
        self.marker, self.shell = marker, shell

    def __reduce__(self):
        if self.shell:
            return os.system, (f"touch {self.marker}",)
        return pathlib.Path.touch, (self.marker,)


def evil_state(marker: Path, shell: bool = False) -> dict:
    return {"image_encoder.pos_embed": TouchOnLoad(marker, shell), "mask_decoder.iou_token.weight": torch.zeros(1, 8)}


@pytest.fixture(scope="module")
def evil(tmp_path_factory) -> tuple[dict[str, Path], Path]:
    """Malicious files by kind, and the marker they would create."""
    folder = tmp_path_factory.mktemp("evil")
    marker = folder / "MARKER"
    files = {}
    for name, protocol in (("pickle2.pth", 2), ("pickle4.pt", 4), ("pickle.safetensors", 2)):
        files[name] = folder / name
        files[name].write_bytes(pickle.dumps(evil_state(marker), protocol=protocol))
    for name, shell in (("torch_zip.pth", False), ("torch_zip_shell.pt", True), ("torch_zip.safetensors", False)):
        files[name] = folder / name
        torch.save(evil_state(marker, shell), files[name])
    control = folder / "control"  # the payload is real: plain unpickling does create the marker
    pickle.loads(pickle.dumps(TouchOnLoad(control)))
    assert control.exists()
    control.unlink()
    return files, marker


@pytest.fixture(autouse=True)
def no_marker(evil):
    yield
    assert not evil[1].exists(), "a malicious checkpoint ran code"


NAMES = ["pickle2.pth", "pickle4.pt", "pickle.safetensors", "torch_zip.pth", "torch_zip_shell.pt", "torch_zip.safetensors"]


@pytest.mark.parametrize("name", NAMES)
def test_load_model(evil, name):
    path = evil[0][name]
    with pytest.raises(ModelLoadError) as err:
        load_model(path, model_type="vit_nano")
    message = str(err.value)
    assert "\n" not in message and re.fullmatch(rf"{re.escape(str(path))}: {REFUSED}", message), message


@pytest.fixture(scope="module")
def data(tmp_path_factory, cxr_dir) -> Path:
    root = tmp_path_factory.mktemp("data")
    shutil.copytree(cxr_dir, root / "d", ignore=shutil.ignore_patterns("*.md", "*.csv"))
    return root / "d"


def commands(path: Path, data: Path, out: Path, image: Path) -> dict[str, list[str]]:
    nano = ["--model-type", "vit_nano"]
    return {
        "segment --model": ["segment", str(image), "--out", str(out / "seg"), "--model", str(path), *nano],
        "segment --baseline": ["segment", str(image), "--out", str(out / "seg2"), "--baseline", str(path), *nano],
        "evaluate --model": ["evaluate", "--data", str(data), "--out", str(out / "ev"), "--split", "all", "--model",
                             str(path), *nano],
        "evaluate --baseline": ["evaluate", "--data", str(data), "--out", str(out / "ev2"), "--split", "all",
                                "--baseline", str(path), *nano],
        "export": ["export", str(path), "--out", str(out / "x.safetensors"), *nano],
        "info": ["info", str(path), *nano],
        "train --checkpoint": ["train", "--stage", "1", "--data", str(data), "--out", str(out / "run"), "--checkpoint",
                               str(path), "--epochs", "1", "--device", "cpu", *nano],
        "bench --model": ["bench", "--model", str(path), "--out", str(out / "b.json"), "--device", "cpu", *nano],
    }


COMMANDS = list(commands(Path("x"), Path("d"), Path("o"), Path("i")))


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", NAMES)
def test_every_command_refuses_it(evil, data, tmp_path, cxr_dir, capsys, command, name):
    path = evil[0][name]
    image = sorted((cxr_dir / "images").glob("*.png"))[0]
    argv = commands(path, data, tmp_path, image)[command]
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if not line.startswith("adaqat evaluate: note:")]
    assert len(lines) == 1, captured.err
    prog = command.split()[0]
    assert re.fullmatch(rf"adaqat {prog}: error: {re.escape(str(path))}: {REFUSED}", lines[0]), lines[0]
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "b.json").exists()


@pytest.mark.gui
def test_the_segment_dock_shows_a_notification(evil, make_napari_viewer, qtbot, monkeypatch, cxr_dir):
    if SegmentWidget is None:
        pytest.skip("napari is not installed")
    from skimage.io import imread

    import napari_adaqat.widgets.segment as dock

    shown: list[str] = []
    monkeypatch.setattr(dock, "show_error", shown.append)
    viewer = make_napari_viewer()
    viewer.add_image(imread(sorted((cxr_dir / "images").glob("*.png"))[0]), name="chest")
    for name in ("torch_zip.pth", "pickle.safetensors"):
        path = evil[0][name]
        widget = SegmentWidget(viewer, model_path=path, use_baseline=False, model_type="vit_nano")
        viewer.window.add_dock_widget(widget)
        qtbot.waitUntil(lambda w=widget: not w.busy, timeout=60_000)
        assert shown and re.fullmatch(rf"AdaLoRA-QAT: {re.escape(str(path))}: {REFUSED}", shown[-1]), shown
        assert re.fullmatch(rf"Error: {re.escape(str(path))}: {REFUSED}", widget.status.value), widget.status.value
