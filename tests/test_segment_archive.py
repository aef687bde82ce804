"""Segmenting an archive (issue 29): one run per output folder, journaled bookkeeping, torchrun shards.

Real ``adaqat segment`` processes with a tiny random model (the bookkeeping is what is tested, not the
masks).  A run is held at its first mask write by a gate (a wrapper around ``write_mask`` that waits for
a file), so that "two runs at once" and "kill a rank mid-run" happen at a known moment.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import napari_adaqat.inference.batch as batch_mod
from napari_adaqat.inference import journal as J
from napari_adaqat.inference.batch import FolderBusy, segment_files
from napari_adaqat.inference.lock import LOCK_NAME, RunLock
from napari_adaqat.inference.predictor import BoxPredictor
from napari_adaqat.model.build import build_sam

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
GATED = """
import os, sys, time
from pathlib import Path
import napari_adaqat.inference.batch as batch
real, calls = batch.write_mask, []
gate, rank = Path(os.environ["GATE"]), os.environ.get("RANK", "0")
def gated(*args, **kwargs):
    calls.append(1)
    if rank == os.environ.get("GATE_RANK", rank) and len(calls) == int(os.environ.get("GATE_AT", "1")):
        (gate.parent / f"waiting-{{rank}}").write_text(str(os.getpid()))
        while not gate.exists():
            time.sleep(0.02)
    return real(*args, **kwargs)
batch.write_mask = gated
from napari_adaqat.cli import main
sys.exit(main({argv!r} + sys.argv[1:]))
"""


def films(folder: Path, cxr_dir: Path, n: int) -> Path:
    """``n`` development films: the 4 shipped ones under different names."""
    folder.mkdir(parents=True)
    images = sorted((cxr_dir / "images").glob("*.png"))
    for i in range(n):
        shutil.copy(images[i % len(images)], folder / f"film{i:03d}.png")
    return folder


def model_args(nano_pth: Path) -> list[str]:
    return ["--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu"]


def rows_of(out: Path) -> list[dict]:
    with (out / J.RESULTS_CSV).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def check_folder(out: Path, inputs: list[Path]) -> None:
    """Exactly one ok row per input, every mask pointed to, no orphan mask, no journal or temp left."""
    rows = rows_of(out)
    assert sorted(Path(r["file"]).name for r in rows) == sorted(p.name for p in inputs)
    assert all(r["status"] == "ok" for r in rows), rows
    assert sorted(Path(r["mask"]).name for r in rows) == sorted(p.name for p in out.glob("*_mask.png"))
    assert not (out / J.JOURNAL_DIR).exists() and not [p for p in out.iterdir() if ".tmp" in p.name]
    assert not (out / LOCK_NAME).exists()  # released cleanly


@pytest.mark.parametrize("same_inputs", [True, False], ids=["same-inputs", "different-inputs"])
def test_two_runs_into_one_folder(tmp_path, cxr_dir, nano_pth, same_inputs):
    first = films(tmp_path / "a", cxr_dir, 6)
    second = first if same_inputs else films(tmp_path / "b", cxr_dir, 5)
    out, gate, script = tmp_path / "out", tmp_path / "gate", tmp_path / "gated.py"
    script.write_text(GATED.format(argv=[]))
    env = {**ENV, "GATE": str(gate)}  # whichever run gets the folder waits at its first mask
    procs = [subprocess.Popen([sys.executable, str(script), "segment", str(folder), "--out", str(out),
                               *model_args(nano_pth)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for folder in (first, second)]
    end = time.monotonic() + 120
    while all(p.poll() is None for p in procs):  # the refused one ends; the other waits at the gate
        assert time.monotonic() < end, "neither run was refused"
        time.sleep(0.05)
    refused = next(i for i, p in enumerate(procs) if p.poll() is not None)
    winner = 1 - refused
    err = procs[refused].stderr.read()
    assert procs[refused].returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"is in use by another run (pid {procs[winner].pid} on {socket.gethostname()}" in lines[0], lines[0]
    assert (tmp_path / "waiting-0").read_text() == str(procs[winner].pid)
    gate.write_text("go")
    assert procs[winner].wait(timeout=120) == 0, procs[winner].stderr.read()[-2000:]
    check_folder(out, sorted((first, second)[winner].iterdir()))


def test_a_killed_runs_lock_is_taken_over(tmp_path, cxr_dir, nano_pth):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}) + "\n")
    with RunLock(out) as lock:  # nobody holds the OS lock: the file was left by a killed run
        assert f"pid {int(dead.stdout)}" in lock.note()
        with pytest.raises(FolderBusy, match=rf"in use by another run \(pid {os.getpid()} on "):
            RunLock(out)
        model = BoxPredictor(build_sam("vit_nano"))
        with pytest.raises(FolderBusy):  # the Batch dock's path: segment_files refuses the folder
            next(segment_files(sorted(films(tmp_path / "in", cxr_dir, 1).iterdir()), model, out))
    assert not (out / LOCK_NAME).exists()


def test_results_csv_is_written_once_and_the_journal_has_a_line_per_file(tmp_path, cxr_dir, monkeypatch):
    monkeypatch.setattr(batch_mod, "COMPACT_FIRST_S", 1e9)  # no compaction while running (timing-free)
    writes = []
    real = J.write_results
    monkeypatch.setattr(J, "write_results", lambda path, rows: writes.append(path) or real(path, rows))
    folder = films(tmp_path / "in", cxr_dir, 5)
    files = sorted(folder.iterdir())
    model = BoxPredictor(build_sam("vit_nano"))
    out = tmp_path / "out"
    seen = []
    for row in segment_files(files, model, out):
        journal = (out / J.JOURNAL_DIR / "rank-00000.jsonl").read_text().splitlines()
        seen.append(sum("claim" not in json.loads(line) for line in journal))
        assert not (out / J.RESULTS_CSV).exists()  # a short run compacts once, at its end
    assert seen == [1, 2, 3, 4, 5] and writes == [out / J.RESULTS_CSV]
    rows = rows_of(out)
    assert [Path(r["file"]).name for r in rows] == [f.name for f in files]
    assert all(r["quality"] != "" and r["review"] in ("0", "1") for r in rows)
    assert [r.status for r in segment_files(files, model, out)] == ["skipped"] * 5
    monkeypatch.setattr(batch_mod, "COMPACT_FIRST_S", 0.0)
    monkeypatch.setattr(batch_mod, "COMPACT_EVERY", 0)  # compaction after every file
    again = tmp_path / "again"
    for count, _row in enumerate(segment_files(files, model, again), start=1):
        assert len(rows_of(again)) == count  # results.csv follows the run


def torchrun(script_or_module: list[str], argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           *script_or_module, *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env or ENV)


def without_seconds(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows_of(out)]


def masks_of(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*_mask.png"))}


def test_torchrun_two_ranks_equal_one_process_and_a_killed_rank_is_finished(tmp_path, cxr_dir, nano_pth):
    folder = films(tmp_path / "films", cxr_dir, 20)
    one = tmp_path / "one"
    single = subprocess.run([sys.executable, "-m", "napari_adaqat", "segment", str(folder), "--out", str(one),
                             *model_args(nano_pth)], capture_output=True, text=True, timeout=300, env=ENV)
    assert single.returncode == 0, single.stderr[-2000:]

    two = tmp_path / "two"
    run = torchrun(["-m", "napari_adaqat"], ["segment", str(folder), "--out", str(two), *model_args(nano_pth)])
    assert run.returncode == 0, run.stderr[:4000]
    assert run.stdout.count("20 segmented, 0 already done, 0 failed") == 1  # one summary, from rank 0
    assert without_seconds(two) == [{**r, "mask": r["mask"].replace(str(one), str(two))} for r in without_seconds(one)]
    assert masks_of(two) == masks_of(one)
    check_folder(two, sorted(folder.iterdir()))

    # rank 1 stops at its 3rd mask and is killed with SIGKILL; torchrun ends rank 0 too
    killed, gate = tmp_path / "killed", tmp_path / "gate"
    script = tmp_path / "gated.py"
    script.write_text(GATED.format(argv=[]))
    env = {**ENV, "GATE": str(gate), "GATE_RANK": "1", "GATE_AT": "3"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
           "segment", str(folder), "--out", str(killed), *model_args(nano_pth)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    waiting = tmp_path / "waiting-1"
    end = time.monotonic() + 240
    while not waiting.exists():
        assert proc.poll() is None and time.monotonic() < end, proc.stderr.read()[-3000:] if proc.poll() else "timeout"
        time.sleep(0.05)
    journals = killed / J.JOURNAL_DIR
    while len((journals / "rank-00000.jsonl").read_text().splitlines()) < 20:  # rank 0 did its 10 (claim + row each)
        assert proc.poll() is None and time.monotonic() < end
        time.sleep(0.05)
    os.kill(int(waiting.read_text()), signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert not (killed / J.RESULTS_CSV).exists()  # nothing compacted: the journals are the state
    finished = sum(1 for path in journals.glob("rank-*.jsonl") for line in path.read_text().splitlines()
                   if json.loads(line).get("status") == "ok")
    assert finished == 12  # rank 0: 10, rank 1: 2 (its 3rd was claimed, never written)

    rerun = torchrun(["-m", "napari_adaqat"], ["segment", str(folder), "--out", str(killed), *model_args(nano_pth)])
    assert rerun.returncode == 0, rerun.stderr[:4000]
    assert "8 segmented, 12 already done, 0 failed" in rerun.stdout
    assert "merged what a stopped run left" in rerun.stderr
    check_folder(killed, sorted(folder.iterdir()))
    key = lambda r: r["file"]  # noqa: E731 - the rerun appends what was missing after what was done
    assert sorted(without_seconds(killed), key=key) == sorted(
        [{**r, "mask": r["mask"].replace(str(one), str(killed))} for r in without_seconds(one)], key=key)
    assert masks_of(killed) == masks_of(one)


def test_batch_dock_refuses_a_held_folder_and_sorts_by_quality(qtbot, tmp_path, cxr_dir):
    pytest.importorskip("napari")
    from napari_adaqat.widgets.batch import COLUMNS, BatchWidget

    folder = films(tmp_path / "in", cxr_dir, 2)
    out = tmp_path / "out"
    widget = BatchWidget(None)
    widget.input_folder.value, widget.out.value, widget.device.value = str(folder), str(out), "cpu"
    with RunLock(out):  # e.g. an adaqat segment in a terminal
        assert widget.run() is False
        assert widget.status.value.count("\n") == 0
        assert f"is in use by another run (pid {os.getpid()} on {socket.gethostname()}" in widget.status.value
    assert widget.run()  # the bundled model, 2 films
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    assert widget.last_error is None and widget.table.isSortingEnabled()
    quality = COLUMNS.index("quality")
    widget.table.sortItems(quality)
    shown = [float(r["quality"]) for r in widget.table_rows()]
    assert shown == sorted(shown) and all(0.5 < q <= 1 for q in shown)
    assert [round(float(r["quality"]), 3) for r in sorted(rows_of(out), key=lambda r: float(r["quality"]))] == shown


def test_gpu_check_dry_run(tmp_path):
    """benchmarks/gpu_check.sh --dry-run: its CPU-safe parts (tiny models, 2-4 films) and its one JSON."""
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(["bash", str(root / "benchmarks" / "gpu_check.sh"), "--dry-run", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, env=ENV, cwd=root)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry_run"] and all(part["rc"] == 0 for part in report["parts"].values())
    assert report["bench"]["mask_iou"] > 0.9 and report["segment"]["throughput"]["ok_rows"] == 2
    assert report["train_step"]["peak_mem_mb"] > 0 and report["torchrun_rows"] == 4
    assert "4 segmented" in report["torchrun_summary"] and "gpu_check (dry run, CPU)" in run.stdout
    assert report["clicks"]["prompts"] >= 4 and report["clicks"]["min_dice_vs_cpu"] == 1.0  # a voted model's paths
