"""``adaqat evaluate`` without ``--split`` scores the films the models never trained on (report/auto_split.py): a
QA find scored 2 of another site's 20 films (the 80:10:10 cut of a folder without a split) and called it complete."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from napari_adaqat.cli import main
from napari_adaqat.report import auto_split as A


def _site(tmp_path: Path, cxr_dir: Path) -> Path:
    """Another site's folder: images/ and masks/, no split.json."""
    data = tmp_path / "site"
    shutil.copytree(cxr_dir / "images", data / "images")
    shutil.copytree(cxr_dir / "masks", data / "masks")
    return data


def test_another_sites_folder_is_scored_whole(tmp_path, cxr_dir, nano_pth, capsys):
    data = _site(tmp_path, cxr_dir)
    out = tmp_path / "report"
    assert main(["evaluate", "--data", str(data), "--out", str(out), "--model", str(nano_pth),
                 "--model-type", "vit_nano", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "no model trained on its films: scoring all 4 films" in err and "80:10:10" not in err
    with open(out / "per_image.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 4
    assert json.loads((out / "summary.json").read_text())["split"] == "all"


def _model_split(monkeypatch, split: dict) -> None:
    monkeypatch.setattr(A, "_provenance_split", lambda path: split if path.name == "trained.safetensors" else None)


def test_the_films_a_model_trained_on_are_left_out(tmp_path, cxr_dir, monkeypatch):
    data = _site(tmp_path, cxr_dir)
    names = sorted(p.stem for p in (data / "images").glob("*.png"))
    _model_split(monkeypatch, {"train": names[:2], "val": [f"{names[2]}.png"], "test": names[3:] + ["elsewhere"]})
    out = tmp_path / "report"
    split, split_file, why = A.auto_split(data, None, [Path("base.pth"), Path("trained.safetensors")], out, seed=0)
    assert (split, split_file) == ("test", out / A.MODEL_SPLIT_FILE)
    assert json.loads(split_file.read_text())["test"] == names[3:] + ["elsewhere"]
    assert why.startswith("3 of the 4 films trained trained.safetensors: scoring the test part of its split (1 films")
    # a split of its own, or one given, is the dataset's: as before
    assert A.auto_split(data, tmp_path / "s.json", [Path("trained.safetensors")], out, seed=0)[:2] == \
        ("test", tmp_path / "s.json")
    (data / "split.json").write_text(json.dumps({"train": names[:2], "val": names[2:3], "test": names[3:]}))
    assert A.auto_split(data, None, [Path("trained.safetensors")], out, seed=0) == ("test", None, "")


def test_a_folder_the_model_trained_on_whole_is_refused_in_one_line(tmp_path, cxr_dir, monkeypatch):
    data = _site(tmp_path, cxr_dir)
    names = sorted(p.stem for p in (data / "images").glob("*.png"))
    _model_split(monkeypatch, {"train": names[:3], "val": names[3:], "test": ["elsewhere"]})
    with pytest.raises(ValueError, match=r"all 4 of its films are in the train or val list of trained.safetensors's "
                                         r"split, so none is left to score it fairly; --split all scores them anyway"):
        A.auto_split(data, None, [Path("trained.safetensors")], tmp_path / "report", seed=0)
    assert not (tmp_path / "report").exists()
