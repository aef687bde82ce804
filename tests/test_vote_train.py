"""Training a vote U-Net (napari_adaqat/train/vote_train.py, also the U-Net reference's trainer): a stopped run
continues to the weights of an uninterrupted one; a finished run is not redone; other settings over a run are
refused in one line; the CLI writes what vote_file takes."""
import json

import pytest
import torch
from safetensors.torch import load_file

from napari_adaqat.model.vote_unet import VoteUNet
from napari_adaqat.train import vote_train
from napari_adaqat.train.vote_train import main, train_vote_unet

SMALL = dict(epochs=3, batch_size=2, width=2)


@pytest.fixture(scope="module")
def fold(cxr_dir, tmp_path_factory):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from cv_folds import write_fold_folders

    return write_fold_folders(cxr_dir, tmp_path_factory.mktemp("folds"), k=2, n_val=1)[0]


def test_a_stopped_run_resumes_to_the_same_weights(fold, tmp_path, monkeypatch):
    saved: dict[str, list] = {"a": [], "b": []}
    save = vote_train._save_resume

    def recording(run):
        def wrapper(path, net, *args):
            save(path, net, *args)
            saved[run].append({k: v.clone() for k, v in net.state_dict().items()})
            if run == "b" and len(saved["b"]) == 1 and not (tmp_path / "stopped").exists():
                (tmp_path / "stopped").touch()
                raise KeyboardInterrupt  # stopped after its first epoch was written
        return wrapper

    monkeypatch.setattr(vote_train, "_save_resume", recording("a"))
    train_vote_unet(fold, tmp_path / "a", **SMALL)
    monkeypatch.setattr(vote_train, "_save_resume", recording("b"))
    with pytest.raises(KeyboardInterrupt):
        train_vote_unet(fold, tmp_path / "b", **SMALL)
    assert (tmp_path / "b" / "resume.safetensors").is_file() and not (tmp_path / "b" / "unet.json").exists()
    train_vote_unet(fold, tmp_path / "b", **SMALL)
    assert len(saved["a"]) == 3 and len(saved["b"]) == 3  # the resumed run ran epochs 2 and 3 only
    for k, v in saved["a"][-1].items():
        assert torch.allclose(v, saved["b"][-1][k], atol=1e-5), k
    assert not (tmp_path / "b" / "resume.safetensors").exists()
    a, b = (json.loads((tmp_path / run / "unet.json").read_text()) for run in "ab")
    assert a["best_val_dice"] == pytest.approx(b["best_val_dice"], abs=1e-5) and a["width"] == 2


@pytest.mark.parametrize("change", [dict(epochs=4), dict(width=4), dict(batch_size=1), dict(lr=5e-4)], ids=str)
def test_other_settings_over_a_stopped_or_finished_run_are_refused(fold, tmp_path, monkeypatch, change):
    def stop_after_one(path, net, *args):
        save(path, net, *args)
        raise KeyboardInterrupt

    save = vote_train._save_resume
    monkeypatch.setattr(vote_train, "_save_resume", stop_after_one)
    with pytest.raises(KeyboardInterrupt):
        train_vote_unet(fold, tmp_path / "stopped", **SMALL)
    monkeypatch.setattr(vote_train, "_save_resume", save)
    name = next(iter(change))
    with pytest.raises(ValueError, match=rf"resume.safetensors: a run with other settings is here: .*{name}"):
        train_vote_unet(fold, tmp_path / "stopped", **{**SMALL, **change})
    done = train_vote_unet(fold, tmp_path / "stopped", **SMALL)  # the same settings continue it
    with pytest.raises(ValueError, match=rf"unet.json: a run with other settings is here: .*{name}"):
        train_vote_unet(fold, tmp_path / "stopped", **{**SMALL, **change})
    assert train_vote_unet(fold, tmp_path / "stopped", **SMALL) == done  # finished: not redone


def test_the_command_line_writes_a_vote_of_the_width_asked(fold, tmp_path, capsys):
    assert main([str(fold), str(tmp_path / "vote"), "--epochs", "1", "--width", "2"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["epochs"] == 1 and info["width"] == 2 and info["parameters"] == sum(
        p.numel() for p in VoteUNet(2).parameters())
    assert VoteUNet.from_state(load_file(str(tmp_path / "vote" / "unet.safetensors"))).head.in_channels == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for a GPU that this machine lacks")
def test_a_gpu_asked_for_on_a_machine_without_one_is_one_line_and_nothing_is_written(fold, tmp_path, capsys):
    assert main([str(fold), str(tmp_path / "vote"), "--epochs", "1", "--width", "2", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("no CUDA GPU is available") and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "vote").exists()


def test_a_missing_data_folder_is_one_line_and_nothing_is_written(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "vote")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("nowhere: data folder not found") and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "vote").exists()


def test_a_folder_of_one_film_is_refused_in_one_line(cxr_dir, tmp_path, capsys):
    import shutil
    for part in ("images", "masks"):
        (tmp_path / "one" / part).mkdir(parents=True)
        shutil.copy(sorted((cxr_dir / part).glob("*.png"))[0], tmp_path / "one" / part)
    assert main([str(tmp_path / "one"), str(tmp_path / "vote"), "--epochs", "1", "--width", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "validation set is empty" in err and "\n" not in err and "Traceback" not in err


def test_ctrl_c_is_one_line_and_the_rerun_goes_on(fold, tmp_path, monkeypatch, capsys):
    save = vote_train._save_resume

    def stop(path, net, *args):
        save(path, net, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(vote_train, "_save_resume", stop)
    try:
        code = main([str(fold), str(tmp_path / "vote"), "--epochs", "2", "--width", "2"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl+C escaped main as a traceback")
    assert code == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the data check
    assert "stopped; run the same command again" in err and "Traceback" not in err
    assert (tmp_path / "vote" / "resume.safetensors").is_file()
    monkeypatch.setattr(vote_train, "_save_resume", save)
    assert main([str(fold), str(tmp_path / "vote"), "--epochs", "2", "--width", "2"]) == 0
    assert "resuming after epoch 1/2" in capsys.readouterr().out


def test_an_out_that_is_a_file_or_a_damaged_record_is_one_line_and_kept(fold, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_:
        main([str(fold), str(tmp_path / "notes.txt"), "--epochs", "1", "--width", "2"])
    assert exit_.value.code == 2 and "notes.txt is a file: OUT must be a folder" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "unet.json").write_text("garbage")
    assert main([str(fold), str(tmp_path / "run"), "--epochs", "1", "--width", "2"]) == 2
    err = capsys.readouterr().err
    assert "unet.json: not a finished run's record" in err.strip().splitlines()[-1] and "Traceback" not in err
    assert (tmp_path / "run" / "unet.json").read_text() == "garbage"


def test_the_weights_are_readable_by_others_and_a_finished_run_says_so(fold, tmp_path, capsys):
    import os
    import stat
    old = os.umask(0o022)
    try:
        train_vote_unet(fold, tmp_path / "vote", epochs=1, batch_size=2, width=2)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "vote" / "unet.safetensors").stat().st_mode) == 0o644  # as unet.json
    capsys.readouterr()
    train_vote_unet(fold, tmp_path / "vote", epochs=1, batch_size=2, width=2)
    assert "already finished" in capsys.readouterr().err


def test_a_bad_pair_is_skipped_and_named_as_adaqat_train_does(cxr_dir, tmp_path, capsys):
    import shutil

    import numpy as np
    from PIL import Image
    shutil.copytree(cxr_dir / "images", tmp_path / "data" / "images")
    shutil.copytree(cxr_dir / "masks", tmp_path / "data" / "masks")
    bad = sorted((tmp_path / "data" / "masks").glob("*.png"))[0]
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(bad)  # a mask of another size
    assert main([str(tmp_path / "data"), str(tmp_path / "vote"), "--epochs", "1", "--width", "2"]) == 0
    err = capsys.readouterr().err
    assert "skipped 1" in err and bad.name in err and "Traceback" not in err
