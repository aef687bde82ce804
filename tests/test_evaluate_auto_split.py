"""``adaqat evaluate`` without ``--split`` scores the films the models never trained on (report/auto_split.py): a
QA find scored 2 of another site's 20 films (the 80:10:10 cut of a folder without a split) and called it complete."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from napari_adaqat.cli import main
from napari_adaqat.model import loading
from napari_adaqat.report import auto_split as A


def _site(tmp_path: Path, cxr_dir: Path) -> Path:
    """Another site's folder: images/ and masks/, no split.json."""
    data = tmp_path / "site"
    shutil.copytree(cxr_dir / "images", data / "images")
    shutil.copytree(cxr_dir / "masks", data / "masks")
    return data


def test_another_sites_folder_is_scored_whole_by_the_bundled_model(tmp_path, cxr_dir):
    """The bundled model records its split (films of a folder named permissive_512): none of these is its."""
    data = _site(tmp_path, cxr_dir)
    bundled = [loading.DEFAULT_MODEL, loading.DEFAULT_MODEL.with_name("default_fp32.safetensors")]
    assert A.auto_split(data, None, bundled, seed=0) == (
        "all", None, f"no model trained on the films of {data}: scoring all 4 of them")


def test_a_model_that_records_no_split_keeps_the_seeded_cut(tmp_path, cxr_dir, nano_pth, capsys):
    """An official SAM file or a training checkpoint says nothing of its training films: the cut adaqat train makes."""
    data = _site(tmp_path, cxr_dir)
    for extra in range(16):  # 20 films: the 80:10:10 cut has test films
        for part in ("images", "masks"):
            shutil.copy(next((data / part).glob("*.png")), data / part / f"copy{extra:02d}.png")
    split, split_file, why = A.auto_split(data, None, [nano_pth], seed=0)
    assert (split, split_file) == ("test", None) and why.startswith("no split file; using the 80:10:10 cut with seed 0")


def test_a_small_folder_and_a_model_that_records_no_split_say_what_to_score_first(tmp_path, cxr_dir, nano_pth,
                                                                                   capsys):
    """A QA find: 4 films said "using the 80:10:10 cut", then "the 'test' split is empty" (under 20 the cut keeps
    no test films)."""
    data = _site(tmp_path, cxr_dir)
    note = "the seeded cut of 4 films (under 20: 90:10, no test films, seed 0): --split all scores them all"
    with pytest.raises(ValueError, match=re.escape(note)):
        A.auto_split(data, None, [nano_pth], seed=0)
    assert main(["evaluate", "--data", str(data), "--out", str(tmp_path / "r"), "--model", str(nano_pth),
                 "--model-type", "vit_nano", "--device", "cpu", "--split", "auto"]) == 2
    err = capsys.readouterr().err
    assert err.count(note) == 1 and "80:10:10 cut" not in err and "'test' split is empty" not in err


def _recorded(monkeypatch, folder: str, split: dict) -> None:
    monkeypatch.setattr(A, "_provenance", lambda path: (folder, split) if path.name == "trained.safetensors"
                        else ("elsewhere/other", {"train": [], "val": [], "test": []}))


def test_the_films_a_model_trained_on_are_left_out(tmp_path, cxr_dir, monkeypatch):
    data = _site(tmp_path, cxr_dir)
    names = sorted(p.stem for p in (data / "images").glob("*.png"))
    _recorded(monkeypatch, "../datasets/site", {"train": names[:1] + ["x", "y"], "val": [f"{names[1]}.png"],
                                                "test": ["z"]})
    split, made, why = A.auto_split(data, None, [Path("base.safetensors"), Path("trained.safetensors")], seed=0)
    assert split == "test" and made["test"] == names[2:]  # the 2 it never saw
    assert why.startswith(f"2 of the 4 films of {data} trained or validated the model(s)") and "other 2" in why
    # the same names in a folder of another name (a copy of the training films, an Annotate dataset of them) are
    # left out too, and the note says it went by their names (QA9: a copy was scored whole as "never trained on")
    _recorded(monkeypatch, "C:\\data\\other_site\\", {"train": names[:3], "val": [], "test": []})
    split, made, why = A.auto_split(data, None, [Path("trained.safetensors")], seed=0)
    assert made["test"] == names[3:] and why.startswith(f"3 of the 4 films of {data} have the names of films that "
                                                         "trained or validated the model(s) (the split recorded")
    assert "left out as possible copies, scoring the other 1; if only their names coincide, --split all" in why
    # every name coincides in another folder: another site's 1.png … or a copy; names cannot tell, so all are scored
    _recorded(monkeypatch, "C:\\data\\other_site\\", {"train": names, "val": [], "test": []})
    split, made, why = A.auto_split(data, None, [Path("trained.safetensors")], seed=0)
    assert (split, made) == ("all", None) and why.endswith("in another folder: scoring all of them; if they are "
                                                           "copies of those films, the scores flatter the model")
    assert A.auto_split(data, tmp_path / "s.json", [Path("trained.safetensors")], seed=0)[:2] == \
        ("test", tmp_path / "s.json")
    (data / "split.json").write_text(json.dumps({"train": names[:2], "val": names[2:3], "test": names[3:]}))
    assert A.auto_split(data, None, [Path("trained.safetensors")], seed=0) == ("test", None, "")


def test_a_folder_the_model_trained_on_whole_is_refused_in_one_line(tmp_path, cxr_dir, monkeypatch):
    data = _site(tmp_path, cxr_dir)
    names = sorted(p.stem for p in (data / "images").glob("*.png"))
    _recorded(monkeypatch, "/home/me/SITE", {"train": names[:3], "val": names[3:], "test": ["elsewhere"]})
    with pytest.raises(ValueError, match=r"all 4 of its films trained or validated the model\(s\) \(the split "
                                         r"recorded in the model file\), so none is left to score fairly; --split all"):
        A.auto_split(data, None, [Path("trained.safetensors")], seed=0)


def test_the_report_says_which_films_auto_chose(tmp_path, cxr_dir, nano_pth, monkeypatch, capsys):
    data = _site(tmp_path, cxr_dir)
    names = sorted(p.stem for p in (data / "images").glob("*.png"))
    monkeypatch.setattr(A, "_provenance", lambda path: ("site", {"train": names[:3], "val": [], "test": []}))
    out = tmp_path / "report"
    assert main(["evaluate", "--data", str(data), "--out", str(out), "--model", str(nano_pth),
                 "--model-type", "vit_nano", "--device", "cpu"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 1 and summary["split_file"].startswith("3 of the 4 films of")
    assert summary["notes"][0] == summary["split_file"] and summary["split_file"] in (out / "report.md").read_text()
    assert capsys.readouterr().err.count("3 of the 4 films of") == 1


def test_the_python_evaluate_scores_what_the_command_scores_without_a_split(tmp_path, cxr_dir):
    """QA9: evaluate("DATA", …) defaulted to the seeded 'test' cut (empty on 4 films) and refused split='auto'."""
    from napari_adaqat import evaluate

    data = _site(tmp_path, cxr_dir)
    summary = evaluate(data, None, None, tmp_path / "report", document=False)
    assert summary["split"] == "all" and summary["n"] == 4
    assert summary["notes"][0] == f"no model trained on the films of {data}: scoring all 4 of them"
    with pytest.raises(ValueError, match=r"split must be auto, train, val, test or all, not 'tset'"):
        evaluate(data, None, None, tmp_path / "report2", split="tset")


def test_a_model_in_memory_records_no_split_so_the_seeded_cut_is_used(tmp_path, cxr_dir):
    """Review: evaluate(split="auto") with a Segmenter of no file took the films as unseen by the other models only."""
    from napari_adaqat.inference.predictor import BoxPredictor
    from napari_adaqat.model.build import build_sam

    data = _site(tmp_path, cxr_dir)
    in_memory = BoxPredictor(build_sam("vit_nano"), "cpu")
    assert A.model_files([in_memory, None]) == [None]
    with pytest.raises(ValueError, match=r"the seeded cut of 4 films \(under 20: 90:10, no test films"):
        A.auto_split(data, None, A.model_files([in_memory]), seed=0)


def test_ctrl_c_says_how_far_it_got_and_what_is_left(tmp_path, cxr_dir, monkeypatch, capsys):
    """A QA find: Ctrl-C said only "adaqat: interrupted", the earlier report already replaced by a partial one."""
    from napari_adaqat.report import evaluate as E

    def stopped(*args, **kwargs):
        progress = args[6]
        progress(1, 4)
        progress(2, 4)
        raise KeyboardInterrupt

    monkeypatch.setattr(E, "evaluate", stopped)
    out = tmp_path / "r"
    assert main(["evaluate", "--data", str(cxr_dir), "--out", str(out), "--split", "all"]) == 130
    err = capsys.readouterr().err
    assert f"adaqat evaluate: stopped after 2 of 4 films; {out} holds their per_image.csv only (no summary or " \
           "report): the same command scores them all again" in err.splitlines()
