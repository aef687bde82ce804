"""Training engine on real radiographs: learning, resume after SIGKILL, torchrun, bad data."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from skimage.io import imsave

from napari_adaqat.model.formats.checkpoint import load_checkpoint_model
from napari_adaqat.train.config import make_config
from napari_adaqat.data.dataset import DataError, check_pairs, discover, load_pair
from napari_adaqat.train.loop import film_batches
from napari_adaqat.train.run import run as train
from napari_adaqat.train.progress import read_progress


def _config(data, out, **kw):
    base = dict(data=str(data), out=str(out), model_type="vit_nano", device="cpu", batch_size=4, patience=0)
    base.update(kw)
    return make_config(None, kw.pop("stage", 1), base)


def test_full_training_loss_falls_on_real_radiographs(dataset, tmp_path):
    cfg = _config(dataset, tmp_path / "run", mode="full", epochs=12, lr_decoder=2e-3, lr_other=2e-3, keep="best")
    summary = train(cfg)
    epochs = [r for r in read_progress(tmp_path / "run" / "progress.jsonl") if r["kind"] == "epoch"]
    assert len(epochs) == 12 and summary["epochs_run"] == 12
    assert epochs[-1]["loss"] < 0.8 * epochs[0]["loss"]
    steps = [r for r in read_progress(tmp_path / "run" / "progress.jsonl") if r["kind"] == "step"]
    assert steps and {"loss", "lr", "epoch"} <= set(steps[0])
    assert {"val_dice", "rank_budget", "seconds", "eta_s", "lr"} <= set(epochs[-1])
    per_epoch = (epochs[5]["seconds"] - epochs[0]["seconds"]) / 5  # the ETA leaves out the first epoch's start-up
    assert epochs[5]["eta_s"] == pytest.approx(per_epoch * 6, abs=0.2) and epochs[-1]["eta_s"] == 0
    sam = load_checkpoint_model(tmp_path / "run" / "checkpoints" / "best.safetensors")
    meta = sam.meta
    assert meta["metrics"]["best_val_dice"] == pytest.approx(max(e["val_dice"] for e in epochs), abs=1e-4)
    assert json.loads((tmp_path / "run" / "split.json").read_text())["train"]


def test_a_validation_set_of_few_films_keeps_the_last_epoch(dataset, tmp_path, capsys):
    """keep=auto: with 4 validation films the run keeps its last epoch, not the one a Dice on 4 films happened to
    favour (a QA find: on 1 film, epoch 2 of 8 was kept, 0.923 on held-out films against the last epoch's 0.943)."""
    train(_config(dataset, tmp_path / "run", mode="full", epochs=3, lr_decoder=2e-3, lr_other=2e-3))
    epochs = [r for r in read_progress(tmp_path / "run" / "progress.jsonl") if r["kind"] == "epoch"]
    meta = load_checkpoint_model(tmp_path / "run" / "checkpoints" / "best.safetensors").meta
    assert meta["epoch"] == 3 and meta["metrics"]["val_dice"] == pytest.approx(epochs[-1]["val_dice"], abs=1e-4)
    assert "4 validation film(s): the last epoch is kept as the model" in capsys.readouterr().out


def _cli(*args):
    return [sys.executable, "-m", "napari_adaqat", "train", *args]


def test_resume_after_sigkill_matches_uninterrupted_run(dataset, tmp_path, nano_pth):
    common = ["--stage", "1", "--mode", "adalora", "--model-type", "vit_nano", "--checkpoint", str(nano_pth),
              "--data", str(dataset), "--batch-size", "2", "--epochs", "4", "--device", "cpu", "--patience", "0",
              "--lr-adapter", "1e-3", "--lr-decoder", "1e-3", "--set", "r_init=8", "--set", "r_target=4",
              "--set", "prune_epochs=[2]"]
    straight = tmp_path / "straight"
    subprocess.run(_cli(*common, "--out", str(straight)), check=True, capture_output=True)
    run = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*common, "--out", str(run)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = run / "progress.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill mid-epoch 2, after the first checkpoint
        if progress.is_file() and any(r["kind"] == "step" and r["epoch"] == 2 for r in read_progress(progress)):
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    # what a kill during a checkpoint write would leave; --resume clears it
    (run / "checkpoints" / ".last.safetensors.99999.0badc0de.tmp.safetensors").write_bytes(b"half a checkpoint")
    result = subprocess.run(_cli(*common, "--out", str(run), "--resume"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    start = [r for r in read_progress(progress) if r["kind"] == "start"]
    assert start[-1]["resumed_from"] >= 1
    a = load_checkpoint_model(straight / "checkpoints" / "last.safetensors")
    b = load_checkpoint_model(run / "checkpoints" / "last.safetensors")
    meta = b.meta
    assert meta["epoch"] == 4
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(x, y, atol=1e-6), name
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


def test_sigterm_exits_cleanly_so_no_temp_file_survives(dataset, tmp_path):
    """The Train dock's Stop sends SIGTERM: it must become SystemExit (exit 143), running ``finally``."""
    run = tmp_path / "run"
    cmd = _cli("--stage", "1", "--mode", "full", "--model-type", "vit_nano", "--data", str(dataset),
               "--out", str(run), "--epochs", "50", "--batch-size", "1", "--device", "cpu")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    progress = run / "progress.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if progress.is_file() and any(r["kind"] == "epoch" for r in read_progress(progress)):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()[-1000:]
    assert err.decode().rstrip().endswith("the same command with --resume goes on from it")  # (was silent)
    assert (run / "checkpoints" / "last.safetensors").is_file()
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


def test_torchrun_two_processes_on_cpu(dataset, tmp_path):
    """3 training images on 2 ranks: the shards are padded to equal length, so no rank hangs."""
    split = json.loads((dataset / "split.json").read_text())
    split["train"] = split["train"][:3]
    (dataset / "split.json").write_text(json.dumps(split))
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "napari_adaqat.cli", "train", "--stage", "1", "--mode", "full", "--model-type", "vit_nano",
           "--data", str(dataset), "--out", str(out), "--epochs", "1", "--batch-size", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    starts = [r for r in read_progress(out / "progress.jsonl") if r["kind"] == "start"]
    assert len(starts) == 1 and starts[0]["world_size"] == 2  # only rank 0 writes
    sam = load_checkpoint_model(out / "checkpoints" / "last.safetensors")
    meta = sam.meta
    assert meta["format"] == "adaqat-checkpoint" and meta["epoch"] == 1


def test_bad_data_is_named_and_skipped(dataset, tmp_path):
    img = np.zeros((40, 50), np.uint8)
    mask = np.zeros((40, 50), np.uint8)
    mask[10:30, 10:40] = 255
    cases = {}
    for name, (im, mk) in {
        "size": (img, mask[:30]), "nonbinary": (img, (np.arange(2000).reshape(40, 50) % 3 * 100).astype(np.uint8)),
        "missing": (img, None),
    }.items():
        imsave(dataset / "images" / f"bad_{name}.png", im, check_contrast=False)
        if mk is not None:
            imsave(dataset / "masks" / f"bad_{name}.png", mk, check_contrast=False)
        cases[name] = dataset / "images" / f"bad_{name}.png"
    pairs, _ = discover(dataset)
    messages = {}
    for name in cases:
        with pytest.raises(DataError) as exc:
            load_pair(pairs[f"bad_{name}"])
        messages[name] = str(exc.value)
        assert "\n" not in messages[name] and f"bad_{name}" in messages[name]
    assert "differs" in messages["size"] and "not binary" in messages["nonbinary"] and "missing mask" in messages["missing"]
    good, warnings = check_pairs(list(pairs.values()))
    assert len(good) == 4 and len(warnings) == 3
    split = json.loads((dataset / "split.json").read_text())
    split["train"] += ["bad_size"]
    (dataset / "split.json").write_text(json.dumps(split))
    cfg = _config(dataset, tmp_path / "run", mode="full", epochs=1)
    train(cfg)  # the bad pair is skipped, not fatal
    assert "bad_size" in (tmp_path / "run" / "train.log").read_text()
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="empty dataset"):
        discover(empty)


def test_run_folder_contract(dataset, tmp_path, capsys):
    from napari_adaqat.cli import main

    run = tmp_path / "run"
    args = ["train", "--stage", "1", "--mode", "full", "--model-type", "vit_nano", "--data", str(dataset),
            "--out", str(run), "--epochs", "1", "--batch-size", "4", "--device", "cpu"]
    assert main([*args, "--resume"]) == 2  # nothing to resume yet
    assert "nothing to resume" in capsys.readouterr().err
    assert main(args) == 0
    stamp = (run / "checkpoints" / "last.safetensors").stat().st_mtime_ns
    assert main(args) == 2  # an existing run is never overwritten
    assert "--resume" in capsys.readouterr().err
    assert (run / "checkpoints" / "last.safetensors").stat().st_mtime_ns == stamp
    # --resume needs no repeated options: the run's config.json is the base
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2"]) == 0
    assert [r["epoch"] for r in read_progress(run / "progress.jsonl") if r["kind"] == "epoch"] == [1, 2]
    assert main([*args[:-8], "--out", str(dataset / "runs"), "--epochs", "1", "--device", "cpu"]) == 2
    assert "inside the data folder" in capsys.readouterr().err
    assert main(["train", "--stage", "2", "--from", str(run), "--data", str(dataset), "--out", str(run)]) == 2
    assert main(["train", "--stage", "2", "--out", str(run), "--resume"]) == 2  # not silently Stage 1 again
    assert capsys.readouterr().err.strip().endswith(f"{run} is a Stage-1 run: --resume continues it with --stage 1; "
                                                    f"Stage 2 from it: --stage 2 --from {run} --out {run}_stage2")
    model = tmp_path / "s1_int8.safetensors"  # a Stage-1 run exported as if it were INT8: said, not silent
    assert main(["export", str(run), "--out", str(model), "--profile", "deploy"]) == 0
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"adaqat export: warning: {model} holds no INT8 layer ({run} had no QAT): train Stage 2 from it (adaqat "
        "train --stage 2 --from RUN), or add --ptq for post-training INT8")


def test_extensionless_dicom_names_with_dots_pair_with_their_masks(tmp_path, cxr_dir):
    """`1.2.840.113.1` and `1.2.840.113.2` are two samples (their masks `<name>.png`), not one `1.2.840.113`."""
    import shutil

    from skimage.io import imread

    from test_dicom import make_dicom  # tests/ is on sys.path (pytest rootdir-less import)

    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    first = sorted((cxr_dir / "images").glob("*.png"))[0]
    gray = imread(first)
    gray = gray[..., 0] if gray.ndim == 3 else gray
    for name in ("1.2.840.113.1", "1.2.840.113.2"):
        make_dicom(root / "images" / name, gray.astype("uint16") * 16)
        shutil.copy(cxr_dir / "masks" / first.name, root / "masks" / f"{name}.png")
    pairs, _ = discover(root)
    assert sorted(pairs) == ["1.2.840.113.1", "1.2.840.113.2"]
    assert all(p.mask is not None for p in pairs.values())


def test_a_last_batch_of_one_film_takes_one_from_the_batch_before(dataset, tmp_path):
    """4 films at batch 3: steps of 2 and 2 an epoch, not 3 + 1 (a one-film step is one film's noisy gradient), and
    never a step above the batch size (what fits a GPU's memory)."""
    assert film_batches(9, 8) == [list(range(7)), [7, 8]]
    assert film_batches(17, 8) == [list(range(8)), list(range(8, 15)), [15, 16]]
    assert film_batches(16, 8) == [list(range(8)), list(range(8, 16))]
    assert film_batches(1, 8) == [[0]] and film_batches(3, 1) == [[0], [1], [2]]
    assert film_batches(3, 2) == [[0, 1], [2]]  # (at batch 2 only a step of 3 would avoid it)
    for films in range(1, 40):
        for size in range(1, 10):
            batches = film_batches(films, size)
            assert sum(batches, []) == list(range(films)) and max(map(len, batches)) <= size
    train(_config(dataset, tmp_path / "run", mode="full", epochs=2, batch_size=3))
    steps = [r for r in read_progress(tmp_path / "run" / "progress.jsonl") if r["kind"] == "step"]
    assert [(r["epoch"], r["step"], r["steps"]) for r in steps] == [(1, 1, 2), (1, 2, 2), (2, 1, 2), (2, 2, 2)]


def test_a_run_is_not_written_into_a_folder_of_segment_results(tmp_path):
    """`adaqat train --out masks/` where masks/ holds `adaqat segment` results: refused in one line (before, the run's
    checkpoints, config.json and split.json were mixed in with the masks and results.csv)."""
    from napari_adaqat.train.paths import check_run_folder

    out = tmp_path / "masks"
    out.mkdir()
    (out / "results.csv").write_text("file,status,error,box,area_px,seconds,mask\n")
    (tmp_path / "data").mkdir()
    with pytest.raises(FileExistsError, match=r"holds the results of adaqat segment .* choose another --out folder"):
        check_run_folder(out, tmp_path / "data", resume=False)


def test_ctrl_c_before_the_first_epoch_says_there_is_nothing_to_resume(tmp_path, capsys):
    """Newcomer QA: Ctrl-C before any epoch finished ended in a bare "adaqat: interrupted" (the --resume hint is
    given only where an epoch was kept)."""
    import argparse

    from napari_adaqat.cli.train_cmd import RESUME_HINT, _hint_resume

    _hint_resume(argparse.Namespace(out=str(tmp_path / "run")))
    err = capsys.readouterr().err
    assert RESUME_HINT not in err and "holds nothing to resume: the same command starts again" in err
    (tmp_path / "chain").mkdir()  # a --stage all run keeps its chain.json: the same command would be refused
    (tmp_path / "chain" / "chain.json").write_text("{}")
    _hint_resume(argparse.Namespace(out=str(tmp_path / "chain")))
    assert "the same command with --resume starts" in capsys.readouterr().err
