"""`adaqat evaluate` on datasets as sites have them (a QA pass): films in mm and in px together, inverted masks,
split files naming films that are not there or that training saw, a rerun into an earlier report, two model files
of one name, a single film, GIF masks, files that no pair holds.  Tiny random ``vit_nano`` models: what is checked
is what the report says and counts, not mask quality."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_adaqat.cli import main
from napari_adaqat.data.dataset import DataError, Pair, discover, load_pair
from napari_adaqat.inference.predictor import BoxPredictor
from napari_adaqat.inference.segmenter import model_ref
from napari_adaqat.metrics import summarize
from napari_adaqat.model import loading
from napari_adaqat.report.document import _panel_picks
from napari_adaqat.report.evaluate import _labels, evaluate
from napari_adaqat.report.tables import table1
from test_dicom import make_dicom  # tests/ is on sys.path (pytest rootdir-less import)


@pytest.fixture(scope="module")
def nano(nano_models):
    """(model, baseline): two BoxPredictors of different random vit_nano weights."""
    return tuple(BoxPredictor(loading.load_model(p, model_type="vit_nano"), "cpu") for p in nano_models)


def _data(tmp_path: Path, cxr_dir: Path, n: int = 4) -> Path:
    data = tmp_path / "data"
    for kind in ("images", "masks"):
        (data / kind).mkdir(parents=True)
        for path in sorted((cxr_dir / kind).glob("*.png"))[:n]:
            shutil.copy(path, data / kind / path.name)
    return data


def _rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_films_in_mm_and_px_get_one_row_and_one_test_per_unit(tmp_path, cxr_dir, nano):
    data = _data(tmp_path, cxr_dir)
    for path in sorted((data / "images").glob("*.png"))[:2]:  # two DICOMs with a spacing, two PNGs in px
        make_dicom(path.with_suffix(".dcm"), np.asarray(Image.open(path).convert("L"), np.uint16) * 16,
                   PixelSpacing=[0.5, 0.5])
        path.unlink()
    summary = evaluate(data, nano[0], nano[1], tmp_path / "report", split="all")
    tests = summary["wilcoxon"]["model"]
    assert {"hd95_mm", "hd95_px", "nsd_mm", "nsd_px"} <= set(tests)
    assert tests["hd95"]["n"] == tests["nsd"]["n"] == 0  # the keys stay (readers of wilcoxon.json), with no test
    assert tests["hd95_mm"]["n"] <= 2 and tests["nsd_px"]["n"] <= 2  # each over its own films only
    metrics = [row["metric"] for row in table1(summary, ["model"]) if row["model"] == "model"]
    assert metrics[:2] == ["dice", "dice_256"] and "nsd_mm" in metrics and "hd95_px" in metrics
    assert "hd95" not in metrics and "nsd" not in metrics  # no row over mm and px together
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| nsd_mm | 2 of 4 |" in report and "NSD tolerance 2 mm on films with a pixel spacing, 2 px on the" in report


def test_an_inverted_mask_is_skipped_with_its_reason_unless_masks_as_given(tmp_path, cxr_dir, nano):
    data = _data(tmp_path, cxr_dir, n=3)
    inverted = sorted((data / "masks").glob("*.png"))[0]
    Image.fromarray(np.where(np.asarray(Image.open(inverted).convert("L")) > 0, 0, 255).astype(np.uint8)).save(inverted)
    summary = evaluate(data, nano[0], None, tmp_path / "report", split="all")
    assert summary["n"] == 2 and summary["n_total"] == 3
    [line] = summary["skipped"]
    assert f"its mask {inverted.name} looks inverted" in line and "--masks-as-given" in line
    given = evaluate(data, nano[0], None, tmp_path / "given", split="all", masks_as_given=True)
    assert given["n"] == 3 and not given["skipped"]


def test_split_file_names_not_in_the_folder_are_listed_and_seen_films_noted(tmp_path, cxr_dir, nano, capsys):
    data = _data(tmp_path, cxr_dir, n=3)
    names = sorted(p.stem for p in (data / "images").glob("*.png"))
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [names[0], names[1]], "val": [], "test": [names[0], "gone_1", "gone_2.png"]}))
    summary = evaluate(data, nano[0], None, tmp_path / "report", split="test", split_file=split)
    assert summary["n"] == 1 and summary["n_total"] == 3
    assert [line.split(":")[0] for line in summary["skipped"]] == ["gone_1", "gone_2.png"]
    assert all("named in the 'test' split file, but no image of" in line for line in summary["skipped"])
    note, implausible = summary["notes"]  # (a random tiny model: its Dice is said to be no lung model's)
    assert implausible.startswith("the median Dice is 0.") and "check that the reference masks are both lungs" in implausible
    assert note.startswith(f"1 image(s) of the 'test' split are also in its train list ({names[0]})")
    assert "Note: 1 image(s) of the 'test' split are also in its train list" in (
        tmp_path / "report" / "report.md").read_text()


def test_a_rerun_removes_the_earlier_report_before_scoring_and_says_so(tmp_path, cxr_dir, nano):
    data = _data(tmp_path, cxr_dir, n=2)
    out = tmp_path / "report"
    evaluate(data, nano[0], nano[1], out, split="all")
    figures = json.loads((out / "tables.json").read_text())["figures"]
    assert (out / figures["worst"]).is_file() and (out / "wilcoxon.json").is_file()
    said, scored = [], []

    def stop(done: int, total: int) -> None:  # a run stopped while scoring (Ctrl-C): what is left in the folder?
        scored.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate(data, nano[0], None, out, split="all", progress=stop, say=said.append)
    assert said == [f"replacing the earlier report in {out}"] and scored == [1]
    left = sorted(p.name for p in out.iterdir())
    assert left == ["per_image.csv"], left  # the new scores so far; no document of the earlier report
    evaluate(data, nano[0], None, out, split="all", say=said.append)  # a folder of ours, stopped: replaced again
    assert len(said) == 2 and (out / "index.html").is_file()


def test_two_model_files_of_one_name_are_told_apart():
    refs = [model_ref("runA/model.safetensors"), model_ref("runB/model.safetensors"), model_ref("default"),
            model_ref("x/a/m.safetensors"), model_ref("y/a/m.safetensors"), model_ref("default", baseline=True)]
    assert _labels(refs) == ["runA/model.safetensors", "runB/model.safetensors", "bundled INT8 model",
                             "x/a/m.safetensors", "y/a/m.safetensors", "bundled FP32 baseline"]


def test_one_film_has_no_spread_no_p_and_one_panel(tmp_path, cxr_dir, nano, capsys):
    s = summarize([0.97])
    assert np.isnan(s["std"]) and s["mean"] == 0.97
    data = _data(tmp_path, cxr_dir, n=1)
    summary = evaluate(data, nano[0], nano[1], tmp_path / "report", split="all")
    dice = next(row for row in table1(summary, ["model"]) if row["model"] == "model" and row["metric"] == "dice")
    assert dice["p_value"] is None and dice["effect_size"] is None and dice["verdict"] == "too few pairs to test"
    assert "± – |" in (tmp_path / "report" / "report.md").read_text()
    assert _panel_picks([{"name": "a", "model_dice": 0.9}], False, []) == [("a", "best")]  # not three times
    rows = [{"name": "a", "model_dice": 0.9}, {"name": "b", "model_dice": 0.8}]
    assert _panel_picks(rows, False, ["b", "c", "b"]) == [("a", "best"), ("b", "worst"), ("b", "asked for")]


def test_a_gif_mask_is_read(tmp_path, cxr_dir):
    """JSRT / SCR masks are GIFs (two palette colours): read as masks, never taken for films."""
    data = _data(tmp_path, cxr_dir, n=1)
    mask = next((data / "masks").glob("*.png"))
    expected = np.asarray(Image.open(mask)) > 0
    Image.open(mask).convert("L").convert("P").save(mask.with_name("JPCLN001.gif"))
    mask.unlink()
    image = next((data / "images").glob("*.png"))
    image.rename(image.with_name("JPCLN001.png"))
    pair = discover(data)[0]["JPCLN001"]
    assert pair.mask == data / "masks" / "JPCLN001.gif"
    np.testing.assert_array_equal(load_pair(pair)[1], expected)
    (data / "masks" / "JPCLN001.gif").write_bytes((data / "images" / "JPCLN001.png").read_bytes())  # a PNG so named
    with pytest.raises(DataError, match=r"JPCLN001.gif: not a GIF image \(it holds PNG data\)"):
        load_pair(pair)


def test_files_that_no_pair_holds_are_noted(tmp_path, cxr_dir, nano, nano_pth, capsys):
    data = _data(tmp_path, cxr_dir, n=3)
    films = sorted((data / "images").glob("*.png"))
    (data / "images" / "site2").mkdir()
    films[0].rename(data / "images" / "site2" / films[0].name)  # a site's films in a sub-folder
    shutil.copy(data / "masks" / films[1].name, data / "masks" / "orphan.png")  # a mask without a film
    Image.open(films[2]).convert("L").save(films[2].with_suffix(".jpg"))  # two films of one name
    summary = evaluate(data, nano[0], None, tmp_path / "report", split="all")
    notes = " | ".join(summary["notes"])
    # films[0]'s mask (its film moved into site2/) and orphan.png: masks without an image
    assert "2 mask(s) without an image are in no pair" in notes and "orphan.png" in notes
    assert "1 image(s) beside another of their name are in no pair" in notes
    assert "1 sub-folder(s) of images/ hold images that are not read" in notes and "site2" in notes
    assert summary["n"] == 2  # films[1], and one of films[2]'s two files
    assert main(["evaluate", "--data", str(data), "--split", "all", "--out", str(tmp_path / "cli"),
                 "--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu"]) == 0
    assert "adaqat evaluate: note: 1 sub-folder(s) of images/ hold images" in capsys.readouterr().err
