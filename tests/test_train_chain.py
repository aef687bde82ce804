"""The chain Stage 1 → Stage 2 → export (``adaqat train --stage all``, napari_adaqat/train/chain.py).

One real run on 12 development radiographs from the bundled model's FP32 file (``--checkpoint default``,
the ``finetune`` preset, tiny epochs): killed with SIGKILL in Stage 2, then ``--resume`` finishes without
redoing Stage 1 and writes both model files. The rest checks the chain's configuration without training.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_adaqat.cli import build_parser, main
from napari_adaqat.cli.train_cmd import chain_from_args
from napari_adaqat.train.chain import Chain, chain_paths, config_args, stage_options
from napari_adaqat.train.config import make_config
from napari_adaqat.train.paths import run_paths
from napari_adaqat.train.progress import read_progress

DEV_SET = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr" / "permissive_512"
TINY = ["--epochs", "1", "--qat-epochs", "2", "--batch-size", "2", "--max-steps-per-epoch", "1", "--device", "cpu"]


@pytest.fixture()
def dev12(tmp_path, cxr_dir) -> Path:
    """12 development radiographs with their lung masks: real ones from ../shared when it is there, else the 4
    shipped films and their mirror images and 20-px shifts (tests/data/cxr)."""
    root = tmp_path / "dev12"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    if (DEV_SET / "images").is_dir():
        for image in sorted((DEV_SET / "images").glob("*.png"))[:12]:
            shutil.copy(image, root / "images" / image.name)
            shutil.copy(DEV_SET / "masks" / image.name, root / "masks" / image.name)
        return root
    variants = {"": lambda a: a, "_flip": lambda a: a[:, ::-1], "_shift": lambda a: np.roll(a, 20, axis=1)}
    for image in sorted((cxr_dir / "images").glob("*.png")):
        for tag, change in variants.items():
            for sub, src in (("images", image), ("masks", cxr_dir / "masks" / image.name)):
                Image.fromarray(change(np.array(Image.open(src)))).save(root / sub / f"{image.stem}{tag}.png")
    return root


def _adaqat(*args: str) -> list[str]:
    return [sys.executable, "-m", "napari_adaqat", *args]


def test_chain_from_the_bundled_model_survives_sigkill_in_stage2_and_resumes(dev12, tmp_path):
    run = tmp_path / "run"
    cmd = _adaqat("train", "--stage", "all", "--preset", "finetune", "--checkpoint", "default", "--data", str(dev12),
                  "--out", str(run), "--vote-epochs", "1", *TINY)
    stage2_progress = run_paths(chain_paths(run)["stage2"])["progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # kill once Stage 2 has saved its first epoch (a resumable checkpoint) and goes on
        deadline = time.monotonic() + 240
        while not any(r.get("kind") == "epoch" for r in read_progress(stage2_progress)):
            assert proc.poll() is None, "the chain ended before Stage 2 wrote an epoch"
            assert time.monotonic() < deadline, "Stage 2 did not reach its first epoch"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    paths = chain_paths(run)
    assert not paths["int8"].exists() and not paths["fp32"].exists()
    stage1 = run_paths(paths["stage1"])
    stamps = {k: stage1[k].stat().st_mtime_ns for k in ("best", "last", "progress")}
    assert run_paths(paths["stage2"])["last"].is_file()

    refused = subprocess.run(cmd, capture_output=True, text=True)  # no --resume: nothing is overwritten
    assert refused.returncode == 2 and "already holds a chain run; pass --resume" in refused.stderr
    done = subprocess.run(_adaqat("train", "--stage", "all", "--out", str(run), "--resume"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(summary["int8"]) == paths["int8"] and paths["int8"].is_file() and paths["fp32"].is_file()
    assert paths["int8"].stat().st_size < paths["fp32"].stat().st_size  # INT8 (deploy) against FP32
    # Stage 1 was not redone: its files are untouched and the chain log says "skipped"
    assert {k: stage1[k].stat().st_mtime_ns for k in stamps} == stamps
    chain_log = [r for r in read_progress(paths["progress"]) if r["kind"] == "chain"]
    assert [(r["step"], r["status"]) for r in chain_log if r["status"] != "start"][-5:] == \
        [("stage1", "skipped"), ("stage2", "done"), ("int8", "done"), ("fp32", "done"), ("vote", "done")]
    starts = [r for r in read_progress(run_paths(paths["stage2"])["progress"]) if r["kind"] == "start"]
    assert starts[-1]["resumed_from"] == 1  # Stage 2 went on from its saved epoch
    # both files know where they come from: the bundled model's FP32 file and this chain's Stage 1
    from napari_adaqat.model.formats.container import read_adaqat_metadata
    from napari_adaqat.model.loading import DEFAULT_BASELINE

    meta = read_adaqat_metadata(paths["fp32"])["provenance"]
    assert meta["start"]["source"] == str(DEFAULT_BASELINE) and meta["train_config"]["preset"] == "finetune"
    assert read_adaqat_metadata(paths["int8"])["spec"] == read_adaqat_metadata(DEFAULT_BASELINE)["spec"]  # vote too
    own = read_adaqat_metadata(DEFAULT_BASELINE)["spec"]["name"]  # QA9: config.json said vit_b for this run
    assert [json.loads(run_paths(paths[s])["config"].read_text())["model_type"] for s in ("stage1", "stage2")] == \
        [own, own]
    assert meta["train_config"]["model_type"] == own  # (the checkpoints' and the export's record: Table 2 reads it)
    from napari_adaqat.train.preflight import start_architecture
    assert start_architecture(str(run_paths(paths["stage1"])["best"])) == own  # --print-config of Stage 2 --from


def test_print_config_names_the_architecture_that_will_train(cxr_dir, tmp_path, capsys):
    """--print-config showed model_type vit_b for a run from the bundled model, which trains hybrid_tiny."""
    from napari_adaqat.cli import main
    from napari_adaqat.model.formats.container import read_adaqat_metadata
    from napari_adaqat.model.loading import DEFAULT_BASELINE

    own = read_adaqat_metadata(DEFAULT_BASELINE)["spec"]["name"]
    args = ["train", "--preset", "finetune", "--checkpoint", "default", "--data", str(cxr_dir), "--out",
            str(tmp_path / "r"), "--print-config"]
    assert main(args[:1] + ["--stage", "all"] + args[1:]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["stage1"]["model_type"] == shown["stage2"]["model_type"] == own
    assert main(args[:1] + ["--stage", "1"] + args[1:]) == 0
    assert json.loads(capsys.readouterr().out)["model_type"] == own
    assert not (tmp_path / "r").exists()


def test_stage2_takes_the_common_options_and_its_own(tmp_path):
    chain = Chain(out=str(tmp_path / "r"), preset="finetune",
                  options={"data": "D", "epochs": 3, "device": "cpu", "stage2.epochs": 1, "batch_size": 2})
    s1, s2 = chain.stage1(), chain.stage2()
    assert (s1.epochs, s1.checkpoint, s1.mode, s1.adalora.fixed_rank) == (3, "default", "adalora", True)
    assert (s2.stage, s2.epochs, s2.device, s2.batch_size) == (2, 1, "cpu", 2)
    assert s2.from_run == str(tmp_path / "r" / "stage1") and s2.out == str(tmp_path / "r" / "stage2")
    assert s2.lr_decoder == make_config("finetune", 2, {}).lr_decoder  # Stage-1 rates stay in Stage 1
    assert stage_options({"mode": "full", "stage1.epochs": 4}, 2) == {}
    decoder_only = Chain(out="r", preset="paper", options={"data": "D", "mode": "decoder", "checkpoint": "x.pth"})
    assert decoder_only.stage2().qat.trainable == "authors"  # no adapters: Λ cannot train


def test_the_command_line_rebuilds_the_same_chain_and_config(tmp_path):
    cfg = make_config("paper", 1, {"data": "D", "out": "R", "model_type": "vit_nano", "mode": "full",
                                   "epochs": 2, "augment": True, "adalora.r_init": 40})
    chain = Chain.from_config(cfg, tmp_path / "chain", profile="paper")
    chain.options["stage2.epochs"] = 1
    assert chain_from_args(build_parser().parse_args(chain.argv())) == chain
    assert chain.stage1() == make_config("paper", 1, {**cfg.to_dict(), "out": str(tmp_path / "chain" / "stage1")})
    args = config_args(cfg)
    assert args[:4] == ["train", "--stage", "1", "--preset"] and "--epochs" in args and "--augment" in args
    from napari_adaqat.cli.train_cmd import explicit_options
    from napari_adaqat.train.run import resolve_config

    ns = build_parser().parse_args(args)
    assert resolve_config(ns.preset, int(ns.stage), explicit_options(ns)) == cfg


def test_refusals_are_one_line_and_write_nothing(tmp_path, capsys, dev12):
    run = tmp_path / "run"
    assert main(["train", "--stage", "all", "--out", str(run), "--resume"]) == 2
    assert "nothing to resume (no chain.json)" in capsys.readouterr().err
    assert main(["train", "--stage", "all", "--data", str(dev12), "--out", str(run), "--preset", "paper"]) == 2
    err = capsys.readouterr().err
    assert "needs pretrained weights: pass --checkpoint default" in err and err.count("\n") == 1
    assert main(["train", "--stage", "all", "--data", str(dev12), "--out", str(dev12 / "r"), "--preset",
                 "finetune"]) == 2
    assert "is inside the data folder" in capsys.readouterr().err
    assert main(["train", "--stage", "1", "--profile", "paper", "--data", str(dev12), "--out", str(run)]) == 2
    assert "belong to --stage all" in capsys.readouterr().err
    (tmp_path / "scores.json").write_text("")  # (a QA find: read only after both stages had trained)
    assert main(["train", "--stage", "all", "--preset", "finetune", "--checkpoint", "default", "--data", str(dev12),
                 "--out", str(run), "--scores", str(tmp_path / "scores.json")]) == 2
    assert "scores.json: not a JSON file of scores (Expecting value" in capsys.readouterr().err
    assert not run.exists() and not (dev12 / "r").exists()


def test_resume_of_a_chains_folder_needs_no_stage_and_a_finished_one_says_what_it_ignores(cxr_dir, tmp_path,
                                                                                          capsys):
    """A QA find: ``--resume --out CHAIN`` said "no config.json; run without --resume", and without --resume
    "already holds a chain run; pass --resume".  And --epochs 5 on a finished chain was dropped without a word."""
    run = tmp_path / "run"
    assert main(["train", "--stage", "all", "--preset", "finetune", "--checkpoint", "default", "--data",
                 str(cxr_dir), "--out", str(run), "--device", "cpu", "--epochs", "1", "--qat-epochs", "1",
                 "--max-steps-per-epoch", "1", "--vote-epochs", "0"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "step 1/4 stage1: done already" in err and "is finished" not in err
    assert main(["train", "--resume", "--out", str(run), "--epochs", "5"]) == 0
    assert f"adaqat train: {run} is finished; --epochs change nothing in it (a finished run is not extended: " \
           "train into a new --out)" in capsys.readouterr().err.splitlines()


def test_train_stage_all_in_python_checks_before_writing(tmp_path, dev12):
    from napari_adaqat import train

    with pytest.raises(ValueError, match="unknown preset"):
        train(data=dev12, out=tmp_path / "r", stage="all", preset="nope")
    with pytest.raises(ValueError, match="needs pretrained weights"):
        train(data=dev12, out=tmp_path / "r", stage="all", preset="paper", epochs=1)
    assert not (tmp_path / "r").exists()
