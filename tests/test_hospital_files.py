"""Files and habits as hospitals have them (issue 30): films stored sideways (EXIF orientation), Excel box
lists, strips, training and evaluation that say what they skipped, folder-as-model, option-like inputs,
and the equivalence test (the license-clean install: test_install_licenses.py)."""
from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from napari_adaqat.cli import main
from napari_adaqat.data.check import check_data, looks_inverted, training_sets
from napari_adaqat.data.dataset import DataError, discover
from napari_adaqat.io import ImageReadError, check_image_size, read_image, read_mask
from napari_adaqat.io.orientation import describe, stored, upright
from napari_adaqat.metrics import dice, tost_paired
from napari_adaqat.model import loading

ROOT = Path(__file__).resolve().parents[1]
needs_default = pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="bundled default model not installed")


def one_line(text: str) -> str:
    return " ".join(text.split())


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _save_sideways(upright_pixels: np.ndarray, path: Path, orientation: int, **kwargs) -> None:
    """Store ``upright_pixels`` as a viewer that honours the tag would need them for ``orientation``."""
    Image.fromarray(stored(upright_pixels, orientation)).save(path, exif=_exif(orientation), **kwargs)


# ---- EXIF orientation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_and_round_trips(orientation):
    a = np.arange(12 * 7 * 3, dtype=np.uint8).reshape(12, 7, 3)
    im = Image.fromarray(a)
    buf = io.BytesIO()
    im.save(buf, "PNG", exif=_exif(orientation))
    buf.seek(0)
    np.testing.assert_array_equal(upright(a, orientation), np.asarray(ImageOps.exif_transpose(Image.open(buf))))
    np.testing.assert_array_equal(upright(stored(a, orientation), orientation), a)


def test_tiff_orientation_tag_is_applied(tmp_path):
    film = np.asarray(Image.open(sorted((ROOT / "tests/data/cxr/images").glob("*.png"))[0]).convert("L"))[:, :400]
    tifffile.imwrite(tmp_path / "side.tif", stored(film, 8), extratags=[(274, "H", 1, 8, True)])
    image = read_image(tmp_path / "side.tif")
    np.testing.assert_array_equal(image.pixels, film / np.float32(255.0))
    assert image.meta["orientation"] == 8 and image.meta["orientation_applied"] == describe(8, "TIFF")
    mask = (film > 128).astype(np.uint8) * 255
    tifffile.imwrite(tmp_path / "mask.tif", stored(mask, 8), extratags=[(274, "H", 1, 8, True)])
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.tif"), mask > 0)  # masks are turned the same way


@needs_default
def test_a_radiograph_stored_sideways_is_segmented_upright_for_all_8_orientations(tmp_path, cxr_dir):
    """One real film stored with each orientation value (PNG: the pixels read back exactly; JPEG with
    Orientation = 6 as a phone would store it): every mask equals the upright film's (Dice >= 0.99)."""
    film = np.asarray(Image.open(cxr_dir / "images" / "covid19_v7__5782ae15.png").convert("L"))
    films = tmp_path / "films"
    films.mkdir()
    Image.fromarray(film).save(films / "upright.png")
    Image.fromarray(film).save(films / "upright_jpeg.jpg", quality=95)
    for o in range(1, 9):
        _save_sideways(film, films / f"o{o}.png", o)
        np.testing.assert_array_equal(read_image(films / f"o{o}.png").pixels, film / np.float32(255.0))
    _save_sideways(film, films / "phone.jpg", 6, quality=95)
    out = tmp_path / "out"
    assert main(["segment", str(films), "--out", str(out), "--device", "cpu"]) == 0
    with (out / "results.csv").open() as fh:
        rows = {Path(r["file"]).stem: r for r in csv.DictReader(fh)}
    reference = read_mask(out / "upright_mask.png")
    assert 0.2 < reference.mean() < 0.5  # lungs, not an empty or full mask
    for stem, o in [*((f"o{o}", o) for o in range(1, 9)), ("phone", 6)]:
        mask = read_mask(out / f"{stem}_mask.png")
        assert mask.shape == film.shape, stem
        against = reference if stem != "phone" else read_mask(out / "upright_jpeg_mask.png")
        assert dice(mask, against) >= 0.99, (stem, dice(mask, against))
        assert rows[stem]["orientation"] == describe(o) == ("" if o == 1 else f"EXIF orientation {o}: "
                                                                               f"{describe(o).split(': ')[1]}")
    assert rows["phone"]["orientation"] == "EXIF orientation 6: rotated 90° clockwise"
    sideways = read_image(films / "phone.jpg")  # without the tag the model would see the chest on its side
    assert sideways.shape == film.shape and sideways.meta["orientation"] == 6


# ---- strips --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(16, 3000), (3000, 16), (40, 1000)])
def test_strips_are_refused_with_the_limit(shape):
    h, w = shape
    short = min(h, w) * 256 / max(h, w)
    with pytest.raises(ImageReadError) as err:
        check_image_size(shape, "strip.png")
    assert str(err.value) == (f"strip.png: image is a {w}x{h} px strip: its short side would be {short:.1f} px at "
                              "the model's 256-px input, under the 16-px minimum (one encoder patch); crop or pad it "
                              "to a side ratio of at most 16:1")
    check_image_size((100, 2000), "ok.png", input_size=1024)  # 51 px at a 1024-px model's input: accepted
    check_image_size((64, 1024))  # exactly 16:1 at the bundled model's 256 px: accepted


def test_segment_gives_strips_an_error_row(tmp_path, nano_pth):
    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in {"wide.png": (16, 3000), "tall.png": (3000, 16)}.items():
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(images / name)
    out = tmp_path / "out"
    assert main(["segment", str(images), "--out", str(out), "--model", str(nano_pth), "--model-type", "vit_nano",
                 "--device", "cpu"]) == 1
    with (out / "results.csv").open() as fh:
        rows = {Path(r["file"]).name: r for r in csv.DictReader(fh)}
    assert rows["wide.png"]["status"] == rows["tall.png"]["status"] == "error"
    assert rows["wide.png"]["error"] == (f"{images / 'wide.png'}: image is a 3000x16 px strip: its short side would "
                                         "be 1.4 px at the model's 256-px input, under the 16-px minimum (one encoder "
                                         "patch); crop or pad it to a side ratio of at most 16:1")  # (named, as others)
    assert "image is a 16x3000 px strip" in rows["tall.png"]["error"]
    assert not list(out.glob("*mask*"))  # no meaningless mask


# ---- box CSVs as Excel writes them (the unit cases are CSV_CASES in test_bad_inputs.py) ----------------

def test_segment_refuses_decimal_commas_before_any_work(tmp_path, cxr_dir, nano_pth, capsys):
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("file,x0,y0,x1,y1\nchest.png,40,5,470,9,480,5,490,5\n")
    out = tmp_path / "out"
    code = main(["segment", str(cxr_dir / "images"), "--out", str(out), "--boxes", str(boxes), "--model",
                 str(nano_pth), "--model-type", "vit_nano"])
    assert code == 2 and not out.exists()
    assert one_line(capsys.readouterr().err) == (f"adaqat segment: error: {boxes}:2: 9 fields where the header has 5 "
                                                 "(comma-separated); a decimal comma (40,5) splits a number in two: "
                                                 "write 40.5")


def test_excel_semicolon_file_with_quoted_decimal_commas_and_trailing_rows_is_read(tmp_path):
    from napari_adaqat.data.boxes import read_boxes_csv

    path = tmp_path / "boxes.csv"
    path.write_bytes('\ufeffFile; X0; Y0; X1; Y1\r\nchest.png;"40,5";5;"470,9";480\r\n;;;;\r\n;;;;\r\n'.encode())
    assert read_boxes_csv(path)["chest.png"].tolist() == [40.5, 5.0, 470.9, 480.0]


# ---- training: the data check, refusals, warnings -------------------------------------------------------

def _folder(tmp_path: Path, cxr_dir: Path, names: list[str] | None = None) -> Path:
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for image in sorted((cxr_dir / "images").glob("*.png")):
        if names is None or image.stem in names:
            shutil.copy(image, root / "images" / image.name)
            shutil.copy(cxr_dir / "masks" / image.name, root / "masks" / image.name)
    return root


def test_one_image_folder_is_refused_with_how_many_are_needed(tmp_path, cxr_dir, capsys):
    data = _folder(tmp_path, cxr_dir, ["covid19_v7__5782ae15"])
    out = tmp_path / "run"
    code = main(["train", "--mode", "full", "--model-type", "vit_nano", "--data", str(data), "--out", str(out),
                 "--epochs", "1", "--device", "cpu"])
    assert code == 2
    err = one_line(capsys.readouterr().err)
    assert err.endswith(f"adaqat train: error: {data}: the validation set is empty (1 usable training image(s)); a run "
                        "needs at least 3 usable images for the seeded 80:10:10 cut (or a split.json with a 'val' "
                        "list), "
                        "so that validation uses images the model does not train on"), err
    assert not (out / "checkpoints").exists()


def test_overlapping_split_is_refused_unless_asked_for(tmp_path, cxr_dir):
    data = _folder(tmp_path, cxr_dir)
    names = sorted(p.stem for p in (data / "images").glob("*.png"))
    (data / "split.json").write_text(json.dumps({"train": names, "val": names[:1], "test": []}))
    pairs, split = discover(data)
    with pytest.raises(DataError) as err:
        training_sets(data, pairs, split)
    assert str(err.value) == (f"{data}: 1 of 1 validation images are also training images ({names[0]}); validation "
                              "must use other images: fix split.json (or set \"val_overlaps_train\": true in it to do "
                              "this on purpose)")
    (data / "split.json").write_text(json.dumps({"train": names, "val": names[:1], "test": [],
                                                 "val_overlaps_train": True}))
    sets, report = training_sets(data, *discover(data))
    assert (len(sets["train"]), len(sets["val"])) == (4, 1) and report.used == {"train": 4, "val": 1}


def test_training_prints_the_data_check_before_the_first_epoch(tmp_path, cxr_dir, capsys):
    """Skipped pairs grouped by reason, the split, what is used, and the one-source warning; on the terminal."""
    data = _folder(tmp_path, cxr_dir)
    names = sorted(p.stem for p in (data / "images").glob("*.png"))
    blank = np.zeros((64, 64), np.uint8)
    for extra in ("empty_a", "empty_b"):
        film = np.full((64, 64), 120, np.uint8) + np.eye(64, dtype=np.uint8)
        Image.fromarray(film).save(data / "images" / f"{extra}.png")
        Image.fromarray(blank).save(data / "masks" / f"{extra}.png")
    (data / "split.json").write_text(json.dumps({"train": names[:3] + ["empty_a", "empty_b"], "val": names[3:],
                                                 "test": []}))
    out = tmp_path / "run"
    assert main(["train", "--mode", "full", "--model-type", "vit_nano", "--data", str(data), "--out", str(out),
                 "--epochs", "1", "--batch-size", "2", "--device", "cpu", "--max-steps-per-epoch", "1"]) == 0
    err = capsys.readouterr().err
    check = err[err.index("adaqat train: data check"):].splitlines()
    assert check[1:6] == [
        "6 images · 6 masks · 2 bad pairs",
        "split (from split.json): 5 train / 1 val / 0 test",
        "used: 3 train / 1 val",
        "✗ skipped 2 × mask is empty (no lung pixels): empty_a.png, empty_b.png",
        "⚠ every skipped pair (2) fails for the same reason (mask is empty (no lung pixels)): the way these files "
        "were exported is likely at fault; fix it and check again",
    ]
    assert (out / "checkpoints" / "last.safetensors").is_file()


def test_inverted_masks_are_warned_about(tmp_path, cxr_dir):
    data = _folder(tmp_path, cxr_dir)
    mask_path = sorted((data / "masks").glob("*.png"))[0]
    inverted = 255 - np.asarray(Image.open(mask_path).convert("L"))
    Image.fromarray(inverted).save(mask_path)
    assert looks_inverted(inverted > 127) and not looks_inverted(read_mask(cxr_dir / "masks" / mask_path.name))
    Image.fromarray(inverted).save(data / "masks" / "stray.png")  # a mask without an image
    report = check_data(data)
    assert report.error is None and report.usable and report.n_good == 4
    assert "✗ skipped 1 × mask without an image (expected images/<name>.png or another image format): stray.png" \
        in report.text().splitlines()
    assert f"⚠ 1 of 4 masks look inverted (white along most of the image's edge, or around black lung-sized holes: " \
           f"{mask_path.stem}); left out: masks need lung = 255 (white) on background = 0 (black); if they are " \
           "right as they are, train with --masks-as-given" in report.text()
    assert report.used == {"train": 2, "val": 1}  # (a QA find: it was trained on, as its validation film)
    assert check_data(data, masks_as_given=True).used == {"train": 3, "val": 1}


# ---- evaluation: skips printed and listed, n of N -------------------------------------------------------

def test_evaluate_prints_and_lists_its_skips(tmp_path, cxr_dir, nano_pth, capsys):
    data = _folder(tmp_path, cxr_dir)
    empty = sorted((data / "masks").glob("*.png"))[0]
    Image.fromarray(np.zeros_like(np.asarray(Image.open(empty)))).save(empty)
    report = tmp_path / "report"
    assert main(["evaluate", "--data", str(data), "--split", "all", "--model", str(nano_pth), "--baseline",
                 str(nano_pth), "--model-type", "vit_nano", "--out", str(report), "--device", "cpu",
                 "--equivalence-margin", "0.01"]) == 0
    captured = capsys.readouterr()
    line = f"{empty}: mask is empty (no lung pixels)"
    assert f"adaqat evaluate: skipped {line}" in captured.err.splitlines()
    printed = json.loads(captured.out)
    assert printed["n"] == "3 of 4" and printed["equivalence"]["model"].startswith("equivalent within ±1 Dice points")
    md_text, html_text = (report / "report.md").read_text(), (report / "index.html").read_text()
    assert "## Skipped pairs" in md_text and f"| {empty} | mask is empty (no lung pixels) |" in md_text
    assert "3 of 4 images" in md_text and "| 3 of 4 |" in md_text
    assert f"<td>{empty}</td><td>mask is empty (no lung pixels)</td>" in html_text
    summary = json.loads((report / "summary.json").read_text())
    assert (summary["n"], summary["n_total"], summary["skipped"]) == (3, 4, [line])


def test_tost_matches_a_hand_computation():
    """d = (0.001, -0.002, 0.002, -0.001): mean 0, s = sqrt(10/3)·1e-3, t = 0.005 / (s/2) = sqrt(30) on 3 df.
    The t(3) CDF is 1/2 + (u/(1+u²) + atan(u))/π with u = t/sqrt(3) = sqrt(10): p = 1 - F."""
    a = [0.900, 0.910, 0.920, 0.930]
    b = [0.899, 0.912, 0.918, 0.931]
    u = np.sqrt(10.0)
    p = 1.0 - (0.5 + (u / (1 + u * u) + np.arctan(u)) / np.pi)
    result = tost_paired(a, b, margin=0.005)
    assert result["p_lower"] == pytest.approx(p, rel=1e-9) and result["p_upper"] == pytest.approx(p, rel=1e-9)
    assert result["p_value"] == pytest.approx(0.005984, abs=1e-6) and result["equivalent"]
    assert not tost_paired(a, b, margin=0.001)["equivalent"]  # the 90 % interval ±0.00215 exceeds ±0.001
    assert tost_paired([1, 1], [1, 1])["p_value"] == 0.0 and tost_paired([1], [0.9])["p_value"] == 1.0


# ---- model paths and arguments --------------------------------------------------------------------------

def test_a_folder_given_as_model_is_named_a_folder(tmp_path, cxr_dir, capsys):
    folder = tmp_path / "model.safetensors"
    folder.mkdir()
    image = sorted((cxr_dir / "images").glob("*.png"))[0]
    assert main(["segment", str(image), "--out", str(tmp_path / "out"), "--model", str(folder)]) == 2
    assert main(["info", str(folder)]) == 2
    err = capsys.readouterr().err.splitlines()
    message = (f"{folder}: is a folder, not a model file; give the .safetensors or .pth file in it (a training "
               "run's: RUN/model_int8.safetensors)")
    assert err[-2:] == [f"adaqat segment: error: {message}", f"adaqat info: error: {message}"]
    (folder / "model_int8.safetensors").write_bytes(b"")  # a run's folder given (a QA find): its file is named
    assert main(["segment", str(image), "--out", str(tmp_path / "out"), "--model", str(folder)]) == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"in it: {folder / 'model_int8.safetensors'}")


def test_an_input_that_looks_like_an_option_gets_a_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("-a.png").write_bytes(b"")
    with pytest.raises(SystemExit):
        main(["segment", "-a.png", "--out", "out"])
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == ("adaqat: hint: '-a.png' starts with '-', so it was read as an option; write ./-a.png (or put -- "
                       "before the file names) to give it as a file")


# ---- napari (last: a viewer's OpenGL context must come after torch has imported Triton) ----------------

@pytest.mark.gui
def test_napari_shows_a_sideways_film_upright(make_napari_viewer, tmp_path, cxr_dir, monkeypatch):
    """napari's own reader ignores the tag; with the Segment dock open the layer is turned upright (once),
    with a notice, so the dock's mask lies on the film as every other viewer shows it."""
    import napari.utils.notifications

    from napari_adaqat.widgets._orientation import watch_orientation
    from napari_adaqat.widgets.segment import SegmentWidget

    film = np.asarray(Image.open(sorted((cxr_dir / "images").glob("*.png"))[0]).convert("L"))[:, :300]
    _save_sideways(film, tmp_path / "before.png", 6)
    _save_sideways(film, tmp_path / "after.jpg", 8, quality=98)
    viewer = make_napari_viewer()
    [before] = viewer.open(tmp_path / "before.png", plugin="napari")
    assert before.data.shape == (300, 512)  # stored sideways
    notices: list[str] = []
    monkeypatch.setattr(napari.utils.notifications, "show_info", notices.append)
    SegmentWidget(viewer)
    watch_orientation(viewer)  # a second dock does not turn anything twice
    np.testing.assert_array_equal(before.data, film)
    [after] = viewer.open(tmp_path / "after.jpg", plugin="napari")
    assert after.data.shape == film.shape and np.abs(after.data.astype(int) - film).mean() < 3
    assert notices == ["before.png is stored sideways (EXIF orientation 6: rotated 90° clockwise); shown upright, "
                       "as other viewers and 'adaqat segment' show it",
                       "after.jpg is stored sideways (EXIF orientation 8: rotated 90° counter-clockwise); shown "
                       "upright, as other viewers and 'adaqat segment' show it"]
    assert before.metadata["orientation_applied"] == describe(6)
    tifffile.imwrite(tmp_path / "side.tif", stored(film, 8), extratags=[(274, "H", 1, 8, True)])
    [side] = viewer.open(tmp_path / "side.tif", plugin="napari")  # a TIFF's own tag is named as such
    np.testing.assert_array_equal(side.data, film)
    assert notices[-1].startswith("side.tif is stored sideways (TIFF Orientation tag 8: rotated 90° counter-")
