"""A fine-tune keeps its start model's vote, taught the run's films too (train/vote_finetune.py): the chain's
fifth step, on both files, resumable, and off with --vote-epochs 0."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from napari_adaqat import open_model
from napari_adaqat.cli import main
from napari_adaqat.model.build import build_sam
from napari_adaqat.model.formats.model_file import export_model, read_model_metadata
from napari_adaqat.model.formats.vote_file import PREFIX, add_vote
from napari_adaqat.model.vote_unet import VoteUNet
from napari_adaqat.train.chain import chain_paths
from napari_adaqat.train.progress import read_progress
from napari_adaqat.train.vote_finetune import carries_vote, start_vote, tune_vote
from napari_adaqat.widgets._train_process import status_text

TINY = ["--epochs", "1", "--qat-epochs", "1", "--batch-size", "2", "--max-steps-per-epoch", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def voted(tmp_path_factory):
    """A hybrid_nano_refine model file carrying a 2-channel vote."""
    root = tmp_path_factory.mktemp("voted")
    torch.manual_seed(0)
    model = root / "model.safetensors"
    export_model(build_sam("hybrid_nano_refine"), model, profile="fp32")
    save_file(VoteUNet(2).state_dict(), str(root / "unet.safetensors"))
    return add_vote(model, root / "unet.safetensors", root / "voted.safetensors", {"epochs": 60})


def _vote(path) -> dict:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k).float() for k in f.keys() if k.startswith(PREFIX)}


def test_a_chain_from_a_voted_model_fine_tunes_its_vote_on_the_same_films(voted, cxr_dir, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--stage", "all", "--preset", "finetune", "--checkpoint", str(voted), "--data", str(cxr_dir),
            "--out", str(run), "--vote-epochs", "2", *TINY]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "step 5/5 vote → " in err
    paths = chain_paths(run)
    start = _vote(voted)
    for name in ("int8", "fp32"):
        meta = read_model_metadata(paths[name])
        assert meta["spec"]["vote_unet"] == 2 and meta["vote"]["fine_tuned_from"] == str(voted)
        assert meta["vote"]["epochs"] == 2 and meta["vote"]["kept"] == "last"
        tuned = _vote(paths[name])
        assert set(tuned) == set(start) and any(not torch.allclose(tuned[k], start[k], atol=1e-3) for k in start)
    info = json.loads((paths["vote"] / "unet.json").read_text())
    split = json.loads((run / "stage1" / "split.json").read_text())
    assert info["start"] == str(voted) and info["steps_per_epoch"] == -(-len(split["train"]) // 8)  # its train films
    seg = open_model(paths["int8"], device="cpu")  # the files load and segment, the vote with them
    assert seg.sam.vote_unet is not None
    steps = [(r["step"], r["status"]) for r in read_progress(paths["progress"]) if r["kind"] == "chain"]
    assert steps[-2:] == [("vote", "start"), ("vote", "done")]
    votes = [r for r in read_progress(paths["progress"]) if r["kind"] == "vote_epoch"]  # the Train dock's bar
    assert [(r["epoch"], r["epochs"]) for r in votes] == [(1, 2), (2, 2)] and votes[-1]["eta_s"] == 0
    assert 0 <= votes[-1]["val_dice"] <= 1 and status_text(votes[0]).startswith("The vote: epoch 1/2 · loss ")

    assert main(["train", "--stage", "all", "--out", str(run), "--resume"]) == 0  # finished: nothing redone
    assert "step 5/5 vote: done already" in capsys.readouterr().err


def test_vote_epochs_0_leaves_the_vote_out_and_a_stopped_step_goes_on(voted, cxr_dir, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--stage", "all", "--preset", "finetune", "--checkpoint", str(voted), "--data",
                 str(cxr_dir), "--out", str(run), "--vote-epochs", "0", *TINY]) == 0
    paths = chain_paths(run)
    assert not carries_vote(paths["int8"]) and not carries_vote(paths["fp32"]) and not paths["vote"].exists()
    assert [r["steps"] for r in read_progress(paths["progress"]) if r["kind"] == "chain"][-1] == 4
    # the step stopped between its two files: the first carries the vote, the second is given it, the first kept
    tune_vote(str(voted), str(cxr_dir), run / "stage1" / "split.json", paths["vote"], 1, [paths["int8"]])
    first = paths["int8"].read_bytes()
    tune_vote(str(voted), str(cxr_dir), run / "stage1" / "split.json", paths["vote"], 1,
              [paths["int8"], paths["fp32"]])
    assert paths["int8"].read_bytes() == first and carries_vote(paths["fp32"])
    assert start_vote(str(paths["fp32"])) is not None and start_vote(str(run / "stage1" / "split.json")) is None
    with pytest.raises(ValueError, match=r"best\.safetensors: no vote to fine-tune there \(the start file is gone or "
                                         r"has none\); --vote-epochs 0 leaves the vote out"):
        tune_vote(str(run / "stage1" / "checkpoints" / "best.safetensors"), str(cxr_dir),
                  run / "stage1" / "split.json", tmp_path / "v", 1, [])


def test_a_chain_from_a_stage1_run_and_masks_as_given_keep_the_vote_too(voted, cxr_dir, tmp_path, capsys):
    """--stage all --from RUN (the Train dock's Continue) takes the start file, data and options Stage 1 saved,
    but this run's --device (Stage 1 ran on a GPU that this machine lacks); a run on masks that all look
    inverted, trained with --masks-as-given, is not refused at the vote step."""
    import numpy as np
    from PIL import Image

    data = tmp_path / "inverted"
    (data / "masks").mkdir(parents=True)
    (data / "images").symlink_to(cxr_dir / "images")
    for mask in (cxr_dir / "masks").glob("*.png"):  # lung 0 on background 255: refused unless --masks-as-given
        Image.fromarray(255 - np.asarray(Image.open(mask).convert("L"))).save(data / "masks" / mask.name)
    first = tmp_path / "s1"
    assert main(["train", "--stage", "1", "--preset", "finetune", "--checkpoint", str(voted), "--data", str(data),
                 "--out", str(first), "--masks-as-given", "--epochs", "1", "--batch-size", "2",
                 "--max-steps-per-epoch", "1", "--device", "cpu"]) == 0
    saved = json.loads((first / "config.json").read_text())  # (a review find: the vote took Stage 1's device,
    (first / "config.json").write_text(json.dumps({**saved, "device": "cuda"}))  # a GPU's run continued on a laptop)
    run = tmp_path / "run"
    assert main(["train", "--stage", "all", "--from", str(first), "--out", str(run), "--qat-epochs", "1",
                 "--vote-epochs", "1", "--batch-size", "2", "--max-steps-per-epoch", "1", "--device", "cpu"]) == 0
    assert "step 5/5 vote → " in capsys.readouterr().err
    paths = chain_paths(run)
    assert carries_vote(paths["int8"]) and carries_vote(paths["fp32"])
    info = json.loads((paths["vote"] / "unet.json").read_text())
    assert info["data"] == str(data.resolve()) and info["epochs"] == 1 and info["start"] == str(voted)
