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


@pytest.mark.parametrize("change", [dict(epochs=4), dict(width=4), dict(batch_size=1)], ids=str)
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
    with pytest.raises(SystemExit, match=rf"resume.safetensors: a run with other settings is here: .*{name}"):
        train_vote_unet(fold, tmp_path / "stopped", **{**SMALL, **change})
    done = train_vote_unet(fold, tmp_path / "stopped", **SMALL)  # the same settings continue it
    with pytest.raises(SystemExit, match=rf"unet.json: a run with other settings is here: .*{name}"):
        train_vote_unet(fold, tmp_path / "stopped", **{**SMALL, **change})
    assert train_vote_unet(fold, tmp_path / "stopped", **SMALL) == done  # finished: not redone


def test_the_command_line_writes_a_vote_of_the_width_asked(fold, tmp_path, capsys):
    assert main([str(fold), str(tmp_path / "vote"), "--epochs", "1", "--width", "2"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["epochs"] == 1 and info["width"] == 2 and info["parameters"] == sum(
        p.numel() for p in VoteUNet(2).parameters())
    assert VoteUNet.from_state(load_file(str(tmp_path / "vote" / "unet.safetensors"))).head.in_channels == 2


def test_a_missing_data_folder_is_one_line_and_nothing_is_written(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "vote")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("nowhere: data folder not found") and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "vote").exists()
