"""SIGKILL in the middle of ``adaqat segment`` and ``adaqat export``: what is on disk stays usable.

A killed segment run leaves a valid ``results.csv`` and only complete masks (each is written to a
hidden temp name and renamed); the rerun does only what is missing and removes the dead run's temp
files.  A killed export leaves no model file (or a complete one) and nothing that blocks a rerun.
Two ways to kill: at a random point of a real run, and exactly while a file is half written (a
writer that writes half of the data and then waits to be killed).
"""
from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from napari_adaqat.inference.batch import compact_folder
from napari_adaqat.io import read_mask
from napari_adaqat.model.loading import load_model

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SLOW_WRITER = """
import sys, time
import {module} as target
real = target.{name}
calls = []
def half_then_wait(*args, **kwargs):
    calls.append(1)
    if len(calls) < {nth}:
        return real(*args, **kwargs)
    path = str(args[{path_arg}])
    real(*args, **kwargs)  # the real bytes, then keep only half of them: killed mid-write
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    print("HALF-WRITTEN", path, flush=True)
    time.sleep(600)
target.{name} = half_then_wait
from napari_adaqat.cli import main
sys.exit(main(sys.argv[1:]))
"""


def start(args: list[str], writer: dict | None = None) -> subprocess.Popen:
    code = ["-c", SLOW_WRITER.format(**writer)] if writer else ["-m", "napari_adaqat"]
    return subprocess.Popen([sys.executable, *code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"ended before the kill (rc {proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError("timed out waiting for the moment to kill")
        time.sleep(0.005)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def ok_rows(csv_path: Path) -> int:
    """Rows marked ok, read the way a user would read the file: any parse error fails the test."""
    if not csv_path.is_file():
        return 0
    with csv_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    assert header[:3] == ["file", "status", "error"] and all(len(r) == len(header) for r in body), rows
    return sum(r[1] == "ok" for r in body)


@pytest.fixture()
def scans(tmp_path, cxr_dir) -> Path:
    """40 real radiographs: the 4 shipped ones, copied 10 times."""
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(10):
        for image in sorted((cxr_dir / "images").glob("*.png")):
            shutil.copy(image, folder / f"{i:02d}_{image.name}")
    return folder


def check_after_kill(out: Path) -> int:
    """results.csv valid (after compacting the killed run's journal, as ``adaqat segment --compact`` does),
    every mask complete; returns the number of finished files."""
    compact_folder(out)
    finished = ok_rows(out / "results.csv")
    for mask in out.glob("*_mask.png"):
        assert read_mask(mask).shape[0] > 100, mask  # a complete PNG: a half-written one does not decode
    return finished  # (a results.csv.tmp cut short by the kill is replaced by the next run)


def rerun_segment(scans: Path, out: Path, finished: int, total: int) -> None:
    result = subprocess.run([sys.executable, "-m", "napari_adaqat", "segment", str(scans), "--out", str(out),
                             "--device", "cpu"], capture_output=True, text=True, timeout=300, env=ENV)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{total - finished} segmented, {finished} already done, 0 failed" in result.stdout
    assert ok_rows(out / "results.csv") == total
    with (out / "results.csv").open(newline="") as fh:
        masks = {Path(r["mask"]).name for r in csv.DictReader(fh)}
    assert len(masks) == total and all(read_mask(out / m).any() for m in masks)
    assert [p.name for p in out.iterdir() if ".tmp" in p.name] == []  # the dead run's temp files are gone


def test_segment_killed_at_a_random_point(scans, tmp_path):
    out = tmp_path / "out"
    proc = start(["segment", str(scans), "--out", str(out), "--device", "cpu"])  # the bundled model
    wait_for(lambda: ok_rows(out / "results.csv") >= 3, proc)
    kill(proc)
    finished = check_after_kill(out)
    assert 3 <= finished < 40
    rerun_segment(scans, out, finished, 40)


def test_segment_killed_while_a_mask_is_half_written(scans, tmp_path):
    out = tmp_path / "out"
    writer = {"module": "skimage.io", "name": "imsave", "nth": 5, "path_arg": 0}
    proc = start(["segment", str(scans), "--out", str(out), "--device", "cpu"], writer)
    line = proc.stdout.readline()  # blocks until the 5th mask is half written
    assert line.startswith("HALF-WRITTEN"), (line, proc.stderr.read()[-2000:] if proc.poll() is not None else "")
    temp = Path(line.split(maxsplit=1)[1].strip())
    kill(proc)
    match = re.fullmatch(r"\.(.+_mask\.png)\.\d+\.[0-9a-f]{8}\.tmp\.png", temp.name)  # util/atomic.py's names
    assert match and temp.is_file(), temp
    assert not (out / match.group(1)).exists()  # the half-written data never reached the mask's own name
    assert check_after_kill(out) == 4
    rerun_segment(scans, out, 4, 40)


def export_args(source: Path, out: Path, model_type: str) -> list[str]:
    return ["export", str(source), "--model-type", model_type, "--out", str(out), "--profile", "deploy"]


def check_export_rerun(source: Path, out: Path, model_type: str) -> None:
    result = subprocess.run([sys.executable, "-m", "napari_adaqat", *export_args(source, out, model_type)],
                            capture_output=True, text=True, timeout=300, env=ENV)
    assert result.returncode == 0, result.stderr[-2000:]
    assert load_model(out).meta["format"] == "adaqat-model"
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temp file left


def test_export_killed_while_the_model_file_is_half_written(tmp_path, nano_pth):
    out = tmp_path / "models" / "nano_int8.safetensors"
    writer = {"module": "safetensors.torch", "name": "save_file", "nth": 1, "path_arg": 1}
    proc = start(export_args(nano_pth, out, "vit_nano"), writer)
    line = proc.stdout.readline()
    assert line.startswith("HALF-WRITTEN"), (line, proc.stderr.read()[-2000:] if proc.poll() is not None else "")
    kill(proc)
    temps = list(out.parent.iterdir())
    assert len(temps) == 1 and re.fullmatch(rf"\.{re.escape(out.name)}\.{proc.pid}\.[0-9a-f]{{8}}\.tmp\.safetensors",
                                            temps[0].name), temps  # only the temp, never the model's name
    check_export_rerun(nano_pth, out, "vit_nano")


def test_export_killed_when_its_temp_file_appears(tmp_path):
    """A real export of a bigger model (vit_tiny, 15 MB .pth), killed as soon as the temp file shows."""
    import torch

    from napari_adaqat.model.build import build_sam

    torch.manual_seed(0)
    source = tmp_path / "tiny.pth"
    torch.save(build_sam("vit_tiny").state_dict(), source)
    out = tmp_path / "models" / "tiny_int8.safetensors"
    out.parent.mkdir()
    proc = start(export_args(source, out, "vit_tiny"))
    end = time.monotonic() + 240
    while proc.poll() is None and not any(p.name.startswith(f".{out.name}.tmp") for p in out.parent.iterdir()):
        assert time.monotonic() < end, "export never started writing"
        time.sleep(0.0005)
    if proc.poll() is None:
        kill(proc)
    if out.exists():  # the kill came after the rename: the file must then be complete
        load_model(out)
        out.unlink()
    check_export_rerun(source, out, "vit_tiny")
