"""``adaqat evaluate --clicks K`` (issue 32): the click rule on synthetic masks, NoC, and the columns,
summary and report table on two real films with the bundled model."""
from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from napari_adaqat.cli import main
from napari_adaqat.model import loading
from napari_adaqat.report.clicks import click_section, next_click, noc
from napari_adaqat.report.evaluate import evaluate


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_the_next_click_is_negative_deep_inside_the_largest_false_region():
    ref = np.zeros((120, 160), bool)
    ref[20:100, 10:70] = True
    false = _disc(ref.shape, 60, 120, 25)  # 1963 px predicted outside the lung
    pred = ref | false
    pred[30:40, 20:30] = False  # a 100 px missed hole: smaller
    x, y, label = next_click(pred, ref)
    assert label == 0 and false[int(y), int(x)]
    assert abs(x - 120) <= 1 and abs(y - 60) <= 1  # farthest from the region's boundary: its centre
    missed = ref & ~_disc(ref.shape, 60, 40, 20)  # now the largest error is a missed disc
    x, y, label = next_click(missed, ref)
    assert label == 1 and ref[int(y), int(x)] and not missed[int(y), int(x)]
    assert next_click(ref, ref) is None


def test_the_image_border_counts_as_a_boundary():
    ref = np.zeros((101, 200), bool)
    pred = np.zeros((101, 200), bool)
    pred[:, :101] = True  # a false square filling the left of the image: its deepest point is its centre
    x, y, label = next_click(pred, ref)
    assert label == 0 and abs(x - 50) <= 1 and abs(y - 50) <= 1


def test_the_click_equals_the_whole_film_rule_on_random_masks():
    """The distance transform runs on the error region's window (speed on native films): on random masks,
    some errors touching the image border, the click is the whole-film rule's, ties broken alike."""
    from scipy import ndimage

    def whole_film_rule(mask, reference):
        best = None
        for error, label in ((reference & ~mask, 1), (mask & ~reference, 0)):
            regions, n = ndimage.label(error)
            if n:
                sizes = np.bincount(regions.ravel())[1:]
                if best is None or sizes.max() > best[0]:
                    best = (sizes.max(), regions == np.argmax(sizes) + 1, label)
        if best is None:
            return None
        inside = ndimage.distance_transform_edt(np.pad(best[1], 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(inside)), inside.shape)
        return float(x), float(y), best[2]

    rng = np.random.default_rng(11)
    for trial in range(150):
        h, w = rng.integers(8, 90, 2)
        ref = ndimage.gaussian_filter(rng.random((h, w)), 2.5) > 0.5
        pred = ref ^ (ndimage.gaussian_filter(rng.random((h, w)), 2.0) > 0.56)
        if trial % 5 == 0:
            pred = np.ones((h, w), bool)  # a false region filling the film where the reference is empty
        assert next_click(pred, ref) == whole_film_rule(pred, ref), trial


def test_noc_is_capped_at_k():
    assert noc([0.80, 0.91, 0.96], 0.90) == 1 and noc([0.80, 0.91, 0.96], 0.95) == 2
    assert noc([0.97, 0.5, 0.5], 0.95) == 0 and noc([0.5, 0.6, 0.7], 0.95) == 2


def two_film_dataset(data, cxr_dir):
    """``data``/images and masks holding the first two real films of ``cxr_dir`` and their masks."""
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
        for path in sorted((cxr_dir / sub).glob("*.png"))[:2]:
            shutil.copy(path, data / sub / path.name)
    return data


@pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="bundled default model not installed")
def test_evaluate_clicks_columns_summary_and_table(tmp_path, cxr_dir, capsys):
    data = two_film_dataset(tmp_path / "data", cxr_dir)
    summary = evaluate(data, None, None, tmp_path / "report", split="all", document=False, clicks=2)
    with (tmp_path / "report" / "per_image.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    columns = ["model_dice_click0", "model_dice_click1", "model_dice_click2", "model_noc90", "model_noc95"]
    assert all(c in rows[0] for c in columns) and "model_dice_click3" not in rows[0]
    for row in rows:
        assert abs(float(row["model_dice_click0"]) - float(row["model_dice"])) < 1e-9  # click 0 = the box alone
        assert 0 <= int(row["model_noc95"]) <= 2 and int(row["model_noc90"]) <= int(row["model_noc95"])
    clicks = summary["clicks"]
    assert clicks["k"] == 2 and len(clicks["model"]["dice_by_click"]) == 3
    assert set(clicks["model"]["noc95"]) == {"mean", "median", "not_reached"}
    (title, _text, head, body, _images), = click_section(summary)
    assert head[1:4] == ["Dice 0 clicks", "Dice 1 click", "Dice 2 clicks"] and body[0][0] == "model"
    with pytest.raises(SystemExit):
        main(["evaluate", "--data", str(data), "--out", str(tmp_path / "r2"), "--clicks", "many"])
    assert "--clicks takes a whole number" in capsys.readouterr().err


@pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="bundled default model not installed")
def test_the_printed_summary_counts_the_films_that_never_reach_the_threshold(tmp_path, cxr_dir, capsys):
    import json

    data = two_film_dataset(tmp_path / "data", cxr_dir)
    assert main(["evaluate", "--data", str(data), "--split", "all", "--clicks", "1", "--out", str(tmp_path / "r"),
                 "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)["clicks"]["model"]
    with (tmp_path / "r" / "per_image.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    missed = [sum(max(float(r["model_dice_click0"]), float(r["model_dice_click1"])) < t for r in rows)
              for t in (0.90, 0.95)]  # never reached at any click (as NoC counts)
    assert printed["not_reached_90_95"] == missed
