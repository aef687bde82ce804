"""`adaqat evaluate` on the shipped real radiographs: reports, strict JSON, failures, units."""
from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from skimage.io import imread

from napari_adaqat.cli import main
from napari_adaqat.report.evaluate import evaluate
from napari_adaqat.inference.predictor import BoxPredictor
from napari_adaqat.metrics import summarize
from napari_adaqat.model import loading
from test_dicom import make_dicom  # tests/ is on sys.path (pytest rootdir-less import)

needs_default = pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="bundled default model not installed")


def _strict_json(path: Path) -> dict:
    def refuse(token: str):
        raise AssertionError(f"{path.name} holds {token}: not strict JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


@needs_default
def test_evaluate_against_the_baseline_then_without(tmp_path, cxr_dir, capsys):
    report = tmp_path / "report"
    code = main(["evaluate", "--data", str(cxr_dir), "--split", "all", "--baseline", "default",
                 "--out", str(report), "--device", "cpu"])
    assert code == 0
    summary = _strict_json(report / "summary.json")
    assert summary["n"] == 4 and summary["units"] == "px" and not summary["skipped"]
    assert summary["model"]["dice"]["mean"] >= 0.85  # real lungs, never trained on
    assert abs(summary["model"]["dice"]["mean"] - summary["baseline"]["dice"]["mean"]) <= 0.005
    tests = _strict_json(report / "wilcoxon.json")
    assert tests["dice"]["n"] == 4 and 0.0 <= tests["dice"]["p_value"] <= 1.0
    rows = _rows(report / "per_image.csv")
    assert len(rows) == 4 and {r["units"] for r in rows} == {"px"}
    assert all(0.0 <= float(r["delta_ssim"]) + 1.0 <= 2.0 for r in rows)
    assert imread(report / "scores_boxplot.png").shape[0] > 100
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"]["dice"] == pytest.approx(summary["model"]["dice"]["mean"], abs=1e-4)
    assert printed["models"] == {"model": "bundled INT8 model", "baseline": "bundled FP32 baseline"}, printed["models"]

    # the same report folder without a baseline: the old comparison must not linger
    assert main(["evaluate", "--data", str(cxr_dir), "--split", "all", "--out", str(report), "--device", "cpu"]) == 0
    assert not (report / "wilcoxon.json").exists()
    assert "baseline" not in _strict_json(report / "summary.json")


class _FailsOn:
    """A predictor that raises for one image, as an out-of-memory error would."""

    def __init__(self, inner: BoxPredictor, bad_call: int) -> None:
        self.inner, self.bad_call, self.calls = inner, bad_call, 0

    def set_image(self, image: np.ndarray) -> None:
        self.calls += 1
        if self.calls == self.bad_call:
            raise RuntimeError("CUDA out of memory (simulated)")
        self.inner.set_image(image)

    def predict(self, box):
        return self.inner.predict(box)


def test_one_failing_image_is_skipped_and_empty_predictions_give_strict_json(tmp_path, cxr_dir, nano_pth):
    sam = loading.load_model(nano_pth, model_type="vit_nano")  # random weights: masks are often empty
    predictor = _FailsOn(BoxPredictor(sam, "cpu"), bad_call=2)
    summary = evaluate(cxr_dir, predictor, None, tmp_path / "report", split="all")
    assert summary["n"] == 3 and len(summary["skipped"]) == 1 and "out of memory" in summary["skipped"][0]
    assert len(_rows(tmp_path / "report" / "per_image.csv")) == 3
    not_scored = _rows(tmp_path / "report" / "skipped.csv")  # the film not scored, in a table beside the scores
    assert len(not_scored) == 1 and "out of memory" in not_scored[0]["reason"]
    assert Path(not_scored[0]["file"]).parent.name == "images" and Path(not_scored[0]["file"]).is_file()
    on_disk = _strict_json(tmp_path / "report" / "summary.json")
    hd = on_disk["model"]["hd95"]
    assert hd["n"] + hd["n_inf"] == 3  # an empty mask's HD95 is counted, not averaged as inf
    summary = evaluate(cxr_dir, BoxPredictor(sam, "cpu"), None, tmp_path / "report", split="all")
    assert summary["n"] == 4 and not (tmp_path / "report" / "skipped.csv").exists()  # (the earlier one removed)


def test_summarize_keeps_infinite_values_out_of_the_statistics():
    s = summarize([1.0, 3.0, math.inf, math.nan])
    assert s["n"] == 2 and s["n_inf"] == 1 and s["mean"] == 2.0 and s["max"] == 3.0


def test_mixed_mm_and_px_images_are_summarised_per_unit(tmp_path, cxr_dir, nano_pth):
    data = tmp_path / "data"
    shutil.copytree(cxr_dir, data, ignore=shutil.ignore_patterns("*.md", "*.csv"))
    first = sorted((data / "images").glob("*.png"))[0]
    gray = imread(first)
    pixels = (gray[..., 0] if gray.ndim == 3 else gray).astype(np.uint16) * 16  # 12-bit content
    make_dicom(data / "images" / f"{first.stem}.dcm", pixels, PixelSpacing=[0.5, 0.5])
    first.unlink()
    sam = loading.load_model(nano_pth, model_type="vit_nano")
    summary = evaluate(data, BoxPredictor(sam, "cpu"), None, tmp_path / "report", split="all")
    rows = _rows(tmp_path / "report" / "per_image.csv")
    assert sorted(r["units"] for r in rows) == ["mm", "px", "px", "px"]
    assert summary["units"].startswith("mixed")
    assert summary["model"]["hd95"]["n"] == 0  # no mean over mm and px together
    assert summary["model"]["nsd_mm"]["n"] + summary["model"]["nsd_px"]["n"] == 4
