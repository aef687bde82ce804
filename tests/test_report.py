"""`adaqat evaluate`'s report on real radiographs: its tables equal the raw numbers, its links resolve."""
from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from napari_adaqat.cli import main
from napari_adaqat.metrics import nsd, rank_biserial, wilcoxon_paired
from napari_adaqat.model import loading

pytestmark = pytest.mark.skipif(not (loading.DEFAULT_MODEL.is_file() and loading.DEFAULT_BASELINE.is_file()),
                                reason="bundled default model not installed")


@pytest.fixture(scope="module")
def report(tmp_path_factory, cxr_dir) -> Path:
    """INT8 default + a second model (the FP32 file) against the FP32 baseline, one pass."""
    out = tmp_path_factory.mktemp("report")
    second = str(loading.DEFAULT_BASELINE)
    assert main(["evaluate", "--data", str(cxr_dir), "--split", "all", "--model", "default", "--model", second,
                 "--baseline", "default", "--show", "covid19_v7__5782ae15", "--out", str(out), "--device", "cpu"]) == 0
    return out


def _rows(out: Path) -> list[dict]:
    with (out / "per_image.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_table1_equals_the_per_image_means_and_scipy_wilcoxon(report):
    rows, tables = _rows(report), json.loads((report / "tables.json").read_text())
    table1 = {(r["model"], r["metric"]): r for r in tables["table1"]}
    assert {m for m, _ in table1} == {"model", "model2", "baseline"}
    for (tag, metric), row in table1.items():
        values = np.array([float(r[f"{tag}_{metric}"]) for r in rows])
        assert row["n"] == len(rows) == 4
        assert row["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert row["median"] == pytest.approx(np.median(values), rel=1e-12)
        if tag == "baseline":
            assert row["p_value"] is None
            continue
        base = np.array([float(r[f"baseline_{metric}"]) for r in rows])
        if np.any(values != base):
            assert row["p_value"] == pytest.approx(stats.wilcoxon(values, base).pvalue, rel=1e-12)
        else:
            assert row["p_value"] == 1.0
        assert "significant" in row["verdict"]


def test_table1_equivalence_p_values_equal_scipy_ttests(report):
    """--baseline default: Table 1 states the TOST result on Dice; its p equals scipy's two one-sided t-tests."""
    rows, tables = _rows(report), json.loads((report / "tables.json").read_text())
    summary = json.loads((report / "summary.json").read_text())
    assert summary["equivalence_margin"] == 0.005
    for row in tables["table1"]:
        if row["model"] == "baseline" or not row["metric"].startswith("dice"):
            assert row["equivalence_p"] is None and row["equivalence"] == ""
            continue
        d = np.array([float(r[f"{row['model']}_{row['metric']}"]) - float(r[f"baseline_{row['metric']}"]) for r in rows])
        if d.std() == 0:
            expected = 0.0 if abs(d.mean()) < 0.005 else 1.0
        else:
            expected = max(stats.ttest_1samp(d, -0.005, alternative="greater").pvalue,
                           stats.ttest_1samp(d, 0.005, alternative="less").pvalue)
        assert row["equivalence_p"] == pytest.approx(expected, rel=1e-12, abs=1e-300)
        words = "equivalent within ±0.5 Dice points" if expected < 0.05 else "not shown equivalent"
        assert row["equivalence"].startswith(words) and f"p = {expected:.3g}" in row["equivalence"]
    text = (report / "report.md").read_text()
    assert "equivalence (TOST)" in text and "±0.005 Dice" in text and "4 of 4 images" in text


def test_table2_sizes_are_the_files_sizes_and_int8_layers_are_counted(report):
    table2 = {r["model"]: r for r in json.loads((report / "tables.json").read_text())["table2"]}
    assert table2["model"]["bytes"] == os.path.getsize(loading.DEFAULT_MODEL)
    assert table2["baseline"]["bytes"] == os.path.getsize(loading.DEFAULT_BASELINE)
    assert table2["model"]["int8_layers"] > 0 and table2["baseline"]["int8_layers"] == 0
    assert table2["model"]["ratio_vs_own_fp32"] > 2.5  # deploy profile: INT8 + FP16


def test_every_image_the_html_links_exists_and_the_sections_are_there(report):
    page = (report / "index.html").read_text()
    links = re.findall(r'<img [^>]*title="([^"]+)"', page)  # each figure's file, embedded in the page
    assert len(links) >= 8  # 3+1 Fig. 2 panels, Fig. 3 plots, distributions, 2 paired plots, worst cases
    assert all((report / link).is_file() for link in links), links
    assert all(not link.startswith("/") for link in links)  # relative: the folder opens from disk
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == len(links) and all(src.startswith("data:image/png;base64,") for src in sources)
    for title in ("Table 1", "Table 2", "Fig. 2", "Fig. 3", "Distributions", "Worst cases", "Provenance"):
        assert title in page
    assert any("asked_for" in link for link in links)  # --show
    assert any(link.startswith("fig3_model/") for link in links)
    assert (report / "report.md").read_text().count("![") == len(links)


def test_effect_size_matches_a_hand_computation():
    a = [0.90, 0.80, 0.70, 0.95, 0.60]
    b = [0.85, 0.82, 0.60, 0.95, 0.50]
    # differences 0.05, -0.02, 0.10, 0 (dropped), 0.10 -> |d| ranks 2, 1, 3.5, 3.5
    # W+ = 2 + 3.5 + 3.5 = 9, W- = 1  ->  r = (9 - 1) / 10
    assert rank_biserial(np.subtract(a, b)) == pytest.approx(0.8)
    assert wilcoxon_paired(a, b)["effect_size"] == pytest.approx(0.8)
    assert rank_biserial([-1.0, -2.0]) == -1.0 and rank_biserial([0.0, 0.0]) == 0.0


def test_nsd_tolerance_in_mm_scales_with_the_pixel_spacing():
    ref = np.zeros((64, 64), bool)
    ref[16:48, 16:48] = True
    pred = np.zeros_like(ref)
    pred[16:48, 19:51] = True  # shifted by 3 pixels
    # 3 px apart: at 1 mm/px a 2 mm tolerance misses the shifted sides, at 0.5 mm/px (1.5 mm) it covers them
    coarse, fine = nsd(pred, ref, 2.0, (1.0, 1.0)), nsd(pred, ref, 2.0, (0.5, 0.5))
    assert fine == pytest.approx(1.0)
    assert coarse < 1.0
    assert nsd(pred, ref, 4.0, (2.0, 2.0)) == pytest.approx(coarse)  # same tolerance in pixels: same NSD


def test_native_films_are_drawn_from_a_strided_view_at_most_1024_px():
    """The figures draw a 3000-4000 px film from every k-th pixel (a ~300 px panel): a view, not a copy, and a
    film already small is drawn as it is."""
    from napari_adaqat.report.figures import SHOWN_SIDE, for_display

    film = np.arange(3000 * 2800, dtype=np.float32).reshape(3000, 2800)
    shown = for_display(film)
    assert max(shown.shape) <= SHOWN_SIDE == 1024 and np.shares_memory(shown, film)
    assert shown.shape == (1000, 934) and shown[1, 1] == film[3, 3]
    small = np.zeros((512, 400), bool)
    assert for_display(small).shape == (512, 400)
    assert for_display(np.zeros((4096, 10, 3))).shape == (1024, 3, 3)
    grid = np.tile(np.array([0.0, 0.0, 1.0], np.float32), (3000, 1000))  # a 3-px anti-scatter grid, mean 1/3
    assert abs(float(for_display(grid).mean()) - 1 / 3) > 0.2  # every 3rd column: false stripes (flat 0 or 1)
    averaged = for_display(grid, average=True)
    assert averaged.shape == (1000, 1000) and np.allclose(averaged, 1 / 3)  # as the film looks from afar
    rgb = for_display(np.ones((3000, 3000, 3), np.uint8), average=True)
    assert rgb.shape == (1000, 1000, 3) and rgb.dtype == np.float32
