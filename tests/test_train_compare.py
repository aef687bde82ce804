"""The new model against the model it started from (napari_adaqat/train/compare.py; a QA find: the dock said
"Model ready" while validation Dice fell from 0.962 to 0.942, and nothing compared the result with the start model).

Stage 1 validates its start model before training ("epoch 0", the ``start_val`` record), each stage's ``done``
record holds the Dice of the epoch it keeps, and ``adaqat train --stage all`` ends with one comparison line.
"""
from __future__ import annotations

import json

import pytest
import torch

from napari_adaqat.train.progress import read_progress


def test_the_line_says_what_to_do_when_the_new_model_is_not_better():
    from napari_adaqat.train.compare import Comparison

    worse = Comparison(new=0.942, start=0.962, films=1, start_films=1)
    assert not worse.better
    assert worse.line() == ("Validation Dice 0.942, below the starting model's 0.962 on the same 1 film (from only "
                            "1 film: a rough figure): keep using the old model, or annotate more films and train again")
    same = Comparison(new=0.96204, start=0.9618, films=12, start_films=12)
    assert not same.better and same.line().startswith("Validation Dice 0.962, the same as the starting model's 0.962 "
                                                      "on the same 12 films: keep using the old model")
    better = Comparison(new=0.968, start=0.962, films=2, start_films=2)
    assert better.better and better.line() == ("Validation Dice 0.968, up from the starting model's 0.962 on the same "
                                               "2 films (from only 2 films: a rough figure)")
    assert "rough" not in Comparison(new=0.97, start=0.96, films=8, start_films=8).line()
    other = Comparison(new=0.95, start=0.96, films=8, start_films=6)  # (other films: no verdict, no advice)
    assert other.better and other.line() == ("Validation Dice 0.950 on 8 films; the starting model's 0.960 was "
                                             "measured on 6 films, so the two are not compared")


def test_the_start_view_predicts_as_the_start_file(nano_pth, dataset, tmp_path):
    """Fresh adapters start at Λ = init_lambda (not zero): the start model's Dice must be measured without them."""
    from napari_adaqat.model.loading import load_model
    from napari_adaqat.train.config import make_config
    from napari_adaqat.train.start_model import as_started, build_stage1

    cfg = make_config(None, 1, dict(data=str(dataset), out=str(tmp_path / "r"), model_type="vit_nano",
                                    checkpoint=str(nano_pth), mode="adalora", device="cpu"))
    sam, _, _ = build_stage1(cfg)
    start = load_model(nano_pth, model_type="vit_nano").eval()
    sam.eval()
    x = torch.rand(1, 3, start.image_encoder.img_size, start.image_encoder.img_size)
    with torch.no_grad():
        own, trained = start.image_encoder(x), sam.image_encoder(x)
        with as_started(sam) as seen:
            shown = sam.image_encoder(x)
        again = sam.image_encoder(x)
    assert seen and not torch.allclose(own, trained, atol=1e-5)  # the adapters change it ...
    assert torch.allclose(own, shown, atol=1e-5)  # ... but not within as_started
    assert torch.equal(again, trained)  # and they are back afterwards


def test_a_chain_records_its_start_models_dice_and_ends_with_the_comparison(nano_pth, dataset, tmp_path, capsys):
    from napari_adaqat.train import train

    run = tmp_path / "chain"
    summary = train(data=dataset, out=run, stage="all", preset="paper", model_type="vit_nano", mode="adalora",
                    checkpoint=str(nano_pth), epochs=1, batch_size=2, max_steps_per_epoch=1, device="cpu",
                    **{"stage2.epochs": 2})
    first = read_progress(run / "stage1" / "progress.jsonl")
    kinds = [r["kind"] for r in first]
    assert kinds.index("start") < kinds.index("start_val") < kinds.index("epoch")  # epoch 0, before training
    start = next(r for r in first if r["kind"] == "start_val")
    assert start["val"] == 4 and 0.0 <= start["val_dice"] <= 1.0
    second = read_progress(run / "stage2" / "progress.jsonl")
    assert "start_val" not in [r["kind"] for r in second]  # (Stage 2 starts from Stage 1's model: nothing to add)
    last = [r for r in second if r["kind"] == "epoch"][-1]  # 4 validation films: the last epoch is kept
    assert next(r for r in second if r["kind"] == "done")["kept_dice"] == last["val_dice"]

    from napari_adaqat.train.compare import compare_runs

    compared = compare_runs(run / "stage1", run / "stage2")
    assert (compared.start, compared.new, compared.films) == (start["val_dice"], last["val_dice"], 4)
    assert summary["compared"] == compared.to_dict()
    done = [r for r in read_progress(run / "progress.jsonl") if r["kind"] == "chain_done"][-1]
    assert done["compared"] == json.loads(json.dumps(compared.to_dict()))
    out, err = capsys.readouterr()
    assert f"adaqat train --stage all: {compared.line()}\n" in err and "epoch 0 (the start model" in out


def test_a_start_from_random_weights_has_nothing_to_compare_with(dataset, tmp_path):
    from napari_adaqat.train import train

    train(data=dataset, out=tmp_path / "r", model_type="vit_nano", mode="full", epochs=1, batch_size=4,
          max_steps_per_epoch=1, device="cpu")
    records = read_progress(tmp_path / "r" / "progress.jsonl")
    assert "start_val" not in [r["kind"] for r in records] and records[-1]["kept_dice"] is not None
    from napari_adaqat.train.compare import compare_runs

    assert compare_runs(tmp_path / "r", tmp_path / "r") is None


@pytest.mark.parametrize("resume", [False, True])
def test_kept_dice_is_the_kept_epochs(dataset, tmp_path, nano_pth, resume):
    """A run of 4 validation films keeps its last epoch: ``kept_dice`` is that epoch's (also when a resume runs no
    epoch), and compare_runs on the Stage-1 run compares it with the start model."""
    from napari_adaqat.train import train

    options = dict(model_type="vit_nano", mode="adalora", checkpoint=str(nano_pth), batch_size=4,
                   max_steps_per_epoch=1, device="cpu")
    train(data=dataset, out=tmp_path / "r", epochs=2, **options)
    if resume:
        train(out=tmp_path / "r", epochs=2, resume=True, **options)
    records = read_progress(tmp_path / "r" / "progress.jsonl")
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert records[-1]["kind"] == "done" and records[-1]["kept_dice"] == epochs[-1]["val_dice"]
    from napari_adaqat.train.compare import compare_runs

    compared = compare_runs(tmp_path / "r", tmp_path / "r")
    assert compared is not None and compared.new == epochs[-1]["val_dice"]
