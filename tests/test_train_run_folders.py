"""A run folder is never mixed with another kind of run, and bad numbers are refused before any work (a QA
pass: ``--stage 1`` into a finished chain replaced the chain's log, ``--stage 2 --resume`` on a Stage-1 run
went on with Stage 1 and called it Stage 2, ``--batch-size 0`` ended in a ZeroDivisionError)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from napari_adaqat.cli import main
from napari_adaqat.train.config import TrainConfig


def _train(*args: str | Path) -> list[str]:
    return ["train", "--preset", "finetune", "--device", "cpu", *map(str, args)]


def _chain_run(root: Path) -> bytes:
    """A finished chain's folder as `adaqat train --stage all` leaves it; returns its progress log."""
    (root / "stage1" / "checkpoints").mkdir(parents=True)
    (root / "chain.json").write_text(json.dumps({"preset": "finetune"}))
    log = b'{"kind": "chain", "step": "stage1"}\n{"kind": "chain_done"}\n'
    (root / "progress.jsonl").write_bytes(log)
    return log


def _stage_run(root: Path, stage: int) -> None:
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "last.safetensors").write_bytes(b"not read")
    (root / "config.json").write_text(json.dumps({"stage": stage, "seed": 0}))
    (root / "progress.jsonl").write_text('{"kind": "epoch"}\n')


@pytest.mark.parametrize("stage", ["1", "2"])
def test_a_stage_run_into_a_chain_run_folder_is_refused_and_its_log_kept(tmp_path, cxr_dir, capsys, stage):
    run = tmp_path / "R1"
    log = _chain_run(run)
    source = ["--from", tmp_path / "R0"] if stage == "2" else []
    assert main(_train("--stage", stage, "--data", cxr_dir, "--out", run, *source, "--epochs", "1")) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"adaqat train: error: {run} holds a chain run (adaqat train --stage all); continue it with --stage all "
        "--resume, or choose another --out")
    assert (run / "progress.jsonl").read_bytes() == log and not (run / "config.json").exists()


def test_a_chain_into_a_stage_run_folder_is_refused(tmp_path, cxr_dir, capsys):
    run = tmp_path / "R1"
    _stage_run(run, 1)
    assert main(_train("--stage", "all", "--data", cxr_dir, "--out", run)) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"adaqat train: error: {run} holds a Stage-1 run (adaqat train --stage 1); choose another --out "
        f"(--from {run} starts the chain from it)")
    assert not (run / "chain.json").exists()


def test_resume_with_another_stage_than_the_runs_is_refused(tmp_path, cxr_dir, capsys):
    run = tmp_path / "R2"
    _stage_run(run, 1)
    before = (run / "checkpoints" / "last.safetensors").read_bytes()
    assert main(_train("--stage", "2", "--data", cxr_dir, "--out", run, "--resume")) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"adaqat train: error: {run} is a Stage-1 run: --resume continues it with --stage 1; Stage 2 from it: "
        f"--stage 2 --from {run} --out {run}_stage2")
    assert (run / "checkpoints" / "last.safetensors").read_bytes() == before


@pytest.mark.parametrize("option, value, line", [
    ("--epochs", "0", "epochs must be a number of epochs, at least 1; got 0"),
    ("--batch-size", "0", "batch_size must be a number of images, at least 1; got 0"),
    ("--accumulate", "0", "accumulate must be a number of steps, at least 1; got 0"),
    ("--patience", "-1", "patience must be a number of epochs (0 = off), at least 0; got -1"),
    ("--lr-adapter", "-1", "lr_adapter must be a learning rate above 0 (e.g. 1e-4); got -1.0"),
    ("--lr-decoder", "nan", "lr_decoder must be a learning rate above 0 (e.g. 1e-4); got nan"),
    ("--qat-epochs", "-2", "epochs must be a number of epochs, at least 1; got -2"),
    ("--set", "jitter_px=abc", "option jitter_px expects a whole number, got 'abc'"),
    ("--set", "lr_decoder=fast", "option lr_decoder expects a number, got 'fast'"),
])
def test_bad_training_numbers_are_refused_before_any_work(tmp_path, cxr_dir, capsys, option, value, line):
    stage = "all" if option == "--qat-epochs" else "1"
    out = tmp_path / "run"
    assert main(_train("--stage", stage, "--data", cxr_dir, "--out", out, option, value)) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"adaqat train: error: {line}"
    assert not out.exists()


def test_the_numbers_are_checked_in_the_config_itself():
    """The Train dock and the Python API build the same TrainConfig, so they get the same refusal."""
    with pytest.raises(ValueError, match=r"^batch_size must be a number of images, at least 1; got 0$"):
        TrainConfig(batch_size=0)
    assert TrainConfig(stage=2).lr_adapter > 0 and TrainConfig(epochs=1, patience=0).epochs == 1
    assert TrainConfig(max_steps_per_epoch=0).max_steps_per_epoch == 0  # 0 = every step (the dock's "0 = all")
    assert TrainConfig.from_dict({"jitter_px": 20.0}).jitter_px == 20  # a whole number written as a float


def test_the_python_api_refuses_resume_with_another_stage_as_the_cli_does(tmp_path, cxr_dir):
    from napari_adaqat import train

    run = tmp_path / "R3"
    _stage_run(run, 1)
    before = (run / "checkpoints" / "last.safetensors").read_bytes()
    with pytest.raises(ValueError, match=r"is a Stage-1 run: --resume continues it with --stage 1; Stage 2 from it"):
        train(data=cxr_dir, out=run, stage=2, resume=True)
    assert (run / "checkpoints" / "last.safetensors").read_bytes() == before


def test_the_package_level_train_shows_the_same_arguments_as_the_function():
    """``napari_adaqat.train`` is the subpackage made callable: inspect and IDEs see train.run.train's
    arguments (names, kinds, defaults), not ``(*args, **kwargs)``."""
    import inspect

    import napari_adaqat
    from napari_adaqat.train.run import train

    def shape(fn):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    assert shape(napari_adaqat.train) == shape(train)


def test_an_unknown_model_type_is_said_as_such(tmp_path, cxr_dir, capsys):
    """A QA find: ``--model-type vit_q`` was answered "--mode adalora needs pretrained weights"."""
    with pytest.raises(SystemExit) as exited:  # (argparse's usage error)
        main(["train", "--data", str(cxr_dir), "--out", str(tmp_path / "run"), "--model-type", "vit_q"])
    assert exited.value.code == 2
    assert "argument --model-type: invalid choice: 'vit_q'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="model_type must be one of"):
        TrainConfig(model_type="vit_q")

