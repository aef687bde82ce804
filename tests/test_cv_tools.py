"""The cross-validation tools of issue 14 (benchmarks/): folds, the shift suite and the U-Net reference."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from cv_folds import make_folds, write_fold_folders  # noqa: E402
from model_speed import main as model_speed  # noqa: E402
from shift_suite import SHIFTS, apply_shift  # noqa: E402
from unet_reference import UNet, predict_mask  # noqa: E402

from napari_adaqat.data.dataset import discover, load_pair  # noqa: E402


def test_folds_partition_the_names_and_fold_folders_train_without_their_test_images(cxr_dir, tmp_path):
    names = [f"img{i:02d}" for i in range(93)]
    folds = make_folds(names, 3)
    assert sorted(sum(folds, [])) == names and [len(f) for f in folds] == [31, 31, 31]
    assert make_folds(names, 3) == folds  # seeded
    folders = write_fold_folders(cxr_dir, tmp_path, k=2, n_val=1)
    tests = []
    for folder in folders:
        split = json.loads((folder / "split.json").read_text())
        assert not set(split["test"]) & set(split["train"] + split["val"])
        tests += split["test"]
        pairs, used = discover(folder)  # adaqat train reads the fold's own split
        assert used == {k: split[k] for k in ("train", "val", "test")} and len(pairs) == 4
    assert sorted(tests) == sorted(discover(cxr_dir)[0])


@pytest.mark.parametrize("shift", list(SHIFTS))
def test_every_shift_gives_a_valid_pair(cxr_dir, shift):
    pairs, _ = discover(cxr_dir)
    image, mask = load_pair(next(iter(pairs.values())))
    f, m = apply_shift(shift, image, mask, "name")
    assert f.dtype == np.float32 and f.ndim == 2 and f.shape == m.shape and 0 <= f.min() and f.max() <= 1
    assert m.sum() > 0.5 * mask.sum()
    if shift == "none":
        assert np.array_equal(f, image)
    elif f.shape == image.shape:
        r = np.corrcoef(f.ravel(), image.ravel())[0, 1]
        # the DICOM path (MONOCHROME1, 12 bits) gives the film back; inversion flips it
        assert (r < -0.99) if shift == "inverted polarity" else (r > 0.99 if "DICOM" in shift else r > 0.5)
        assert shift == "16-bit DICOM (MONOCHROME1)" or not np.array_equal(f, image)


def test_unet_reference_shapes(cxr_dir):
    net = UNet().eval()
    assert 1.8e6 < sum(p.numel() for p in net.parameters()) < 2.1e6
    pairs, _ = discover(cxr_dir)
    image, _ = load_pair(next(iter(pairs.values())))
    assert predict_mask(net, image).shape == image.shape


def test_model_speed_times_the_bundled_model(tmp_path):
    out = tmp_path / "speed.json"
    assert model_speed(["default", "--threads", "1", "--repeats", "1", "--prompt-repeats", "3", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["image_shape"] == [512, 512] and report["input_size"] == 256
    assert 0 < report["embed_s_median"] < 30 and 0 < report["prompt_ms_median"] <= report["prompt_ms_p90"]


def test_cv_summary_pairs_models_per_shift_and_skips_a_clean_only_reference():
    from cv_score import summarize

    rows = []
    for i in range(6):
        for shift in ("none", "gamma 2.0"):
            rows.append({"fold": 0, "name": f"img{i}", "shift": shift, "model": "v3e INT8", "dice": 0.95 + i / 1000, "nsd2": 0.5})
            rows.append({"fold": 0, "name": f"img{i}", "shift": shift, "model": "v2", "dice": 0.92 + i / 1000, "nsd2": 0.3})
        rows.append({"fold": 0, "name": f"img{i}", "shift": "none", "model": "U-Net 140 ep (no box)", "dice": 0.96, "nsd2": 0.5})
    summary, table = summarize(rows, "v3e INT8")
    assert summary["none"]["v3e INT8 - v2"]["dice_diff"] == pytest.approx(0.03)
    assert summary["none"]["v3e INT8 - U-Net 140 ep (no box)"]["dice_diff"] == pytest.approx(-0.0075)
    assert "U-Net 140 ep (no box)" not in summary["gamma 2.0"]  # scored clean only: no row, no pairing
    assert summary["gamma 2.0"]["v3e INT8 - v2"]["wilcoxon_p"] < 0.05
    assert "— | —" in table.splitlines()[-1]


def test_cv_summary_of_a_judged_model_scored_on_clean_films_only():
    from cv_score import summarize

    rows = [{"fold": 0, "name": f"img{i}", "shift": shift, "model": "v2", "dice": 0.92 + i / 1000, "nsd2": 0.3}
            for i in range(6) for shift in ("none", "gamma 2.0")]
    rows += [{"fold": 0, "name": f"img{i}", "shift": "none", "model": "v3f INT8", "dice": 0.95, "nsd2": 0.5}
             for i in range(6)]
    summary, table = summarize(rows, "v3f INT8")
    assert summary["none"]["v3f INT8 - v2"]["dice_diff"] == pytest.approx(0.0275)
    assert set(summary["gamma 2.0"]) == {"v2"}  # v2 alone under the shift: shown, not paired
    assert table.splitlines()[-1].endswith("| — |")
