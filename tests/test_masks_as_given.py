"""Masks that look inverted: a site whose films are cropped to the lung fields trains; truly inverted masks
(white background around black lungs) are refused in one line that names the way through, --masks-as-given,
which then trains them as they are (CLI, Python, the chain and the Train dock's data check)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_adaqat.cli import main
from napari_adaqat.data.check import check_data, looks_inverted, training_sets
from napari_adaqat.data.dataset import DataError, discover

DEV_SET = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr" / "permissive_512"
TRAIN = ["train", "--mode", "full", "--model-type", "vit_nano", "--epochs", "1", "--batch-size", "2", "--device",
         "cpu", "--max-steps-per-epoch", "1"]


def _lung_box(mask: np.ndarray) -> tuple[slice, slice]:
    ys, xs = np.nonzero(mask > 127)
    return slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)


def _site(tmp_path: Path, cxr_dir: Path, crop: bool = False, invert: bool = False) -> Path:
    """The 4 real films and masks, each film + mask cropped to its lung box (``crop``), masks inverted (``invert``)."""
    data = tmp_path / "site"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for path in sorted((cxr_dir / "images").glob("*.png")):
        image = np.asarray(Image.open(path))
        mask = np.asarray(Image.open(cxr_dir / "masks" / path.name).convert("L"))
        if crop:
            box = _lung_box(mask)
            image, mask = image[box], mask[box]
        Image.fromarray(image).save(data / "images" / path.name)
        Image.fromarray(255 - mask if invert else mask).save(data / "masks" / path.name)
    return data


def _masks(data: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("L")) > 127 for p in sorted((data / "masks").glob("*.png"))]


def _touches_all_borders(mask: np.ndarray) -> bool:
    return all(side.any() for side in (mask[0], mask[-1], mask[:, 0], mask[:, -1]))


def test_a_site_cropped_to_the_lungs_trains(tmp_path, cxr_dir, capsys):
    data = _site(tmp_path, cxr_dir, crop=True)
    masks = _masks(data)
    assert all(_touches_all_borders(m) for m in masks) and min(m.mean() for m in masks) > 0.45  # the old refusal's case
    assert not any(looks_inverted(m) for m in masks)
    report = check_data(data)
    assert report.error is None and report.inverted == 0 and "inverted" not in report.text(), report.text()
    training_sets(data, *discover(data))
    out = tmp_path / "run"
    assert main([*TRAIN, "--data", str(data), "--out", str(out)]) == 0, capsys.readouterr().err
    assert (out / "checkpoints" / "last.safetensors").is_file()


@pytest.mark.parametrize("crop", [False, True], ids=["full films", "cropped to the lungs"])
def test_truly_inverted_masks_are_refused_naming_the_way_through_which_trains_them(tmp_path, cxr_dir, capsys, crop):
    data = _site(tmp_path, cxr_dir, crop=crop, invert=True)
    report = check_data(data)
    assert not report.usable and report.inverted == 4
    assert report.error.startswith("all 4 usable masks look inverted (white along most of the image's edge")
    assert "lung = 255 (white)" in report.error and "--masks-as-given" in report.error
    assert "tick 'masks are right as given'" in report.error and "\n" not in report.error
    with pytest.raises(DataError, match="--masks-as-given"):
        training_sets(data, *discover(data))
    out = tmp_path / "run"
    assert main([*TRAIN, "--data", str(data), "--out", str(out)]) != 0
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "look inverted" in errors[0] and "--masks-as-given" in errors[0], errors
    assert not out.exists()

    given = check_data(data, masks_as_given=True)
    assert given.error is None and given.usable, given.text()
    assert "⚠ 4 of 4 masks look inverted" in given.text() and "used as given" in given.text()
    training_sets(data, *discover(data), masks_as_given=True)
    assert main([*TRAIN, "--data", str(data), "--out", str(out), "--masks-as-given"]) == 0, capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["masks_as_given"] is True  # kept for --resume
    assert (out / "checkpoints" / "last.safetensors").is_file()


@pytest.mark.skipif(not (DEV_SET / "masks").is_dir(), reason="the shared development set is not here")
def test_no_real_mask_looks_inverted_full_or_cropped_and_every_inverted_one_does():
    paths = sorted((DEV_SET / "masks").glob("*.png"))
    assert len(paths) >= 50
    for path in paths:
        mask = np.asarray(Image.open(path).convert("L")) > 127
        cropped = mask[_lung_box(mask.astype(np.uint8) * 255)]
        assert not looks_inverted(mask) and not looks_inverted(cropped), path.name
        assert looks_inverted(~mask) and looks_inverted(~cropped), path.name


def test_the_chain_and_continue_carry_masks_as_given_to_stage_2(tmp_path, cxr_dir):
    from napari_adaqat.train.chain import Chain
    from napari_adaqat.train.config import make_config

    data = _site(tmp_path, cxr_dir, invert=True)
    cfg = make_config("finetune", 1, {"data": str(data), "masks_as_given": True})
    chain = Chain.from_config(cfg, tmp_path / "run")
    assert "--masks-as-given" in chain.argv() and chain.stage2().masks_as_given
    stage1 = tmp_path / "s1"
    stage1.mkdir()
    (stage1 / "config.json").write_text(json.dumps(cfg.to_dict()))
    assert Chain(out=str(tmp_path / "run2"), from_run=str(stage1)).stage2().masks_as_given  # Continue from Stage 1


def test_the_train_docks_data_check_offers_masks_as_given(make_napari_viewer, qtbot, tmp_path, cxr_dir):
    pytest.importorskip("napari")
    from napari_adaqat.widgets.train import TrainWidget

    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-adaqat", "Train (AdaLoRA-QAT)")
    assert isinstance(widget, TrainWidget) and widget.masks_as_given.native.isHidden()
    cropped = _site(tmp_path / "c", cxr_dir, crop=True)
    widget.data.value = str(cropped)
    qtbot.waitUntil(lambda: not widget.checking and widget.data_report is not None, timeout=30_000)
    assert widget.data_report.usable and widget.masks_as_given.native.isHidden()
    inverted = _site(tmp_path / "i", cxr_dir, invert=True)
    widget.out.value = str(tmp_path / "run")
    widget.data.value = str(inverted)
    qtbot.waitUntil(lambda: not widget.checking and str(widget.data_report.folder) == str(inverted), timeout=30_000)
    assert not widget.data_report.usable and "--masks-as-given" in widget.data_check.value
    assert not widget.masks_as_given.native.isHidden() and "--masks-as-given" not in widget.command.value
    assert widget.start() is False and "look inverted" in widget.status.value
    widget.masks_as_given.value = True
    qtbot.waitUntil(lambda: not widget.checking and widget.data_report.usable, timeout=30_000)
    assert "used as given" in widget.data_check.value and "--masks-as-given" in widget.command.value
    assert widget.status.value == "The data check passes now: Start when ready."  # not the refusal any more
