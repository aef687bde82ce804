"""QA as a newcomer and as a hospital site: the README's API refuses what the CLI refuses and reads float
arrays as files are read; CSVs that are missing or name a folder (their paths and Excel's UTF-16:
test_csv_paths_qa.py); a Mac's ``._`` files; a film named twice; DICOM windows of width 0; JPEG masks,
empty splits, foreign split files and ``--show`` names; reruns that say what they keep; reports that
leave no earlier figure behind and never replace a user's files; ``--help`` texts with examples."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_adaqat.cli import build_parser, main
from napari_adaqat.data.transforms import to_uint8_rgb
from napari_adaqat.io import ImageReadError
from napari_adaqat.model import loading

needs_default = pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="bundled default model not installed")


def films(cxr_dir: Path, n: int = 1) -> list[Path]:
    return sorted((cxr_dir / "images").glob("*.png"))[:n]


def small_dataset(tmp_path: Path, cxr_dir: Path, n: int) -> Path:
    """DATA/images + DATA/masks with the first ``n`` test films and their masks."""
    data = tmp_path / "data"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
    for film in films(cxr_dir, n):
        (data / "images" / film.name).write_bytes(film.read_bytes())
        (data / "masks" / film.name).write_bytes((cxr_dir / "masks" / film.name).read_bytes())
    return data


# ---- the README's three lines refuse what `adaqat segment` refuses -------------------------------------

@pytest.fixture(scope="module")
def nano_model(nano_pth):
    from napari_adaqat import open_model

    return open_model(nano_pth, device="cpu", model_type="vit_nano")


@pytest.mark.parametrize("pixels, reason", [
    (np.tile(np.arange(8, dtype=np.uint8), (8, 1)), "image is 8x8 px; segmentation needs at least 16x16 px"),
    (np.zeros((64, 64), np.uint8), "image is blank (all pixels have the same value); nothing to segment"),
])
def test_api_refuses_images_the_cli_refuses(tmp_path, nano_model, pixels, reason):
    path = tmp_path / "film.png"
    Image.fromarray(pixels).save(path)
    with pytest.raises(ImageReadError, match=f"^{re.escape(f'{path}: {reason}')}$"):
        nano_model.segment(path)
    with pytest.raises(ImageReadError, match=f"^{re.escape(reason)}$"):
        nano_model.segment(pixels)


@pytest.mark.parametrize("box, reason", [
    ([470, 480, 40, 30], "invalid box 470,480,40,30: needs finite numbers with x1 > x0 and y1 > y0"),
    ([np.nan, 0, 10, 10], "invalid box nan,0,10,10: needs finite numbers with x1 > x0 and y1 > y0"),
    ([0, 0, 9000, 9000], "box 0,0,9000,9000 reaches outside the 426x512 image"),
])
def test_api_refuses_boxes_the_cli_refuses(cxr_dir, nano_model, box, reason):
    with pytest.raises(ValueError, match="^" + re.escape(reason)):
        nano_model.segment(films(cxr_dir)[0], box)


def test_api_reads_a_float_array_outside_0_1_as_a_float_tiff_is_read(tmp_path, cxr_dir, nano_model):
    """np.asarray(img, float) gives 0..255, a DICOM in Hounsfield-like units -1000..3000: neither may be
    clipped to [0, 1] (an almost white image and a meaningless mask)."""
    film = np.asarray(Image.open(films(cxr_dir)[0]).convert("L")).copy()
    film[0, 0], film[0, 1] = 0, 255  # min-max scaling of 0..255 is then exactly /255
    expected = nano_model.segment(film)
    assert np.array_equal(nano_model.segment(film.astype(np.float32)), expected)
    assert np.array_equal(nano_model.segment(film.astype(np.float64) * 16 - 1024), expected)
    # the docks' path (engine -> predictor) converts with the same to_uint8_rgb: a float napari layer agrees
    rgb = to_uint8_rgb(film)
    assert np.array_equal(to_uint8_rgb(film.astype(np.float64) * 16 - 1024), rgb)
    assert np.array_equal(to_uint8_rgb(film / 255.0), rgb)  # floats already in [0, 1] are taken as they are
    holes = film.astype(np.float64) * 16 - 1024
    holes[1, :3] = np.nan, np.inf, -np.inf  # NaN is 0, inf the ends; the range is the finite values'
    expected = rgb.copy()
    expected[1, :3] = [[0] * 3, [255] * 3, [0] * 3]
    assert np.array_equal(to_uint8_rgb(holes), expected)



def test_a_film_with_a_transparent_surround_is_read_as_napari_shows_it(tmp_path, cxr_dir, nano_model):
    """A PNG whose surround is transparent over white pixels (an export with its collimator area cut out):
    read as napari draws it, over black, by the file reader, the API and the docks' converter alike; a
    uniform alpha (opaque, or 0 everywhere as some exporters write it) changes nothing."""
    from napari_adaqat.io import read_image

    film = np.asarray(Image.open(films(cxr_dir)[0]).convert("L")).copy()
    rgba = np.dstack([film] * 3 + [np.full(film.shape, 255, np.uint8)])
    rgba[:, :64, :3], rgba[:, :64, 3] = 255, 0  # white pixels, fully transparent
    rgba[:, 64:96, 3] = 128  # a half-transparent feathered edge
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
    seen = np.asarray(Image.open(tmp_path / "cut.png").convert("RGBA"), dtype=np.float64)
    drawn = seen[..., :3].mean(2) * seen[..., 3] / 255  # what napari shows on its black canvas
    pixels = read_image(tmp_path / "cut.png").pixels
    assert pixels[:, :64].max() == 0.0 and np.abs(pixels * 255 - drawn).max() <= 0.6
    assert np.array_equal(to_uint8_rgb(rgba), to_uint8_rgb(np.round(drawn).astype(np.uint8)))
    assert np.array_equal(nano_model.segment(tmp_path / "cut.png"), nano_model.segment(rgba))
    for alpha in (255, 0, 128):  # the same everywhere: ignored
        rgba[..., :3], rgba[..., 3] = film[..., None], alpha
        assert np.array_equal(to_uint8_rgb(rgba), to_uint8_rgb(film))
    from napari_adaqat.io import to_gray01

    signed = np.stack([np.array([[-100, -50], [0, 100]], np.int16), np.array([[32767, 32767], [0, 32767]], np.int16)], -1)
    assert to_gray01(signed)[1, 0] == 0.0  # a transparent pixel of a signed range is its black, not mid-grey

def test_api_refuses_points_outside_the_image(cxr_dir, nano_model):
    with pytest.raises(ValueError, match="^point 9000,300 lies outside the 426x512 image"):
        nano_model.segment(films(cxr_dir)[0], point_coords=[[9000, 300]], point_labels=[1])
    with pytest.raises(ValueError, match="^point -50,300 lies outside the 426x512 image"):  # as a points CSV
        nano_model.segment(films(cxr_dir)[0], point_coords=[[-50, 300]], point_labels=[1])
    with pytest.raises(ValueError, match="^point nan,300 lies outside"):
        nano_model.segment(films(cxr_dir)[0], point_coords=[[np.nan, 300]], point_labels=[1])
    mask = nano_model.segment(films(cxr_dir)[0], [40, 30, 400, 480], point_coords=[[250, 300]], point_labels=[1])
    assert mask.shape == (512, 426) and mask.dtype == bool  # a good prompt still works


def test_segment_uses_the_points_of_a_row_with_the_full_path(tmp_path, cxr_dir, nano_pth, monkeypatch, capsys):
    film = films(cxr_dir)[0]
    monkeypatch.chdir(tmp_path)
    Path("films").mkdir()
    Image.open(film).save(Path("films") / film.name)
    Path("points.csv").write_text(f"{tmp_path / 'films' / film.name},9000,260,1\n")  # outside: an error row
    assert main(["segment", "films", "--out", "masks", "--points", "points.csv", "--model", str(nano_pth),
                 "--model-type", "vit_nano", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "match no input" not in err
    assert "point 9000,260 lies outside the 426x512 image" in err


@pytest.mark.parametrize("option", ["--boxes", "--points"])
def test_a_missing_or_folder_csv_is_one_line_before_any_work(tmp_path, cxr_dir, option, capsys):
    args = ["segment", str(films(cxr_dir)[0]), "--out", str(tmp_path / "masks"), option]
    assert main(args + [str(tmp_path / "typo.csv")]) == 2
    assert main(args + [str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"adaqat segment: error: {tmp_path / 'typo.csv'}: CSV file not found",
        f"adaqat segment: error: {tmp_path}: is a folder, not a CSV file"]
    assert not (tmp_path / "masks").exists()


# ---- a folder copied by a Mac: its ._NAME AppleDouble files are not films ------------------------------

def test_apple_double_files_are_not_inputs_nor_dataset_images(tmp_path, cxr_dir, nano_pth, capsys):
    from napari_adaqat.data.check import check_data

    data = small_dataset(tmp_path, cxr_dir, 3)
    for sub in ("images", "masks"):
        for film in films(cxr_dir, 3):
            (data / sub / f"._{film.name}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X" + bytes(4000))
    report = check_data(data)
    assert (report.n_images, report.n_masks, report.orphans, report.bad) == (3, 3, 0, [])
    assert main(["segment", str(data / "images"), "--out", str(tmp_path / "masks"), "--model", str(nano_pth),
                 "--model-type", "vit_nano", "--device", "cpu"]) == 0
    assert "3 segmented, 0 already done, 0 failed" in capsys.readouterr().out


def test_a_hidden_film_in_a_folder_is_named_not_segmented(tmp_path, cxr_dir, nano_pth, capsys):
    """A QA find: ``.copy.png`` (a sync tool's copy) was segmented into a hidden ``.copy_mask.png``.  Now it is
    said and skipped; .DS_Store stays unsaid; a hidden film given by name is segmented as asked."""
    import shutil

    scans = tmp_path / "scans"
    scans.mkdir()
    film = films(cxr_dir, 1)[0]
    shutil.copy(film, scans / "chest.png")
    shutil.copy(film, scans / ".copy.png")
    (scans / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + bytes(100))
    args = ["--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu"]
    assert main(["segment", str(scans), "--out", str(tmp_path / "out"), *args]) == 0
    captured = capsys.readouterr()
    assert "1 segmented, 0 already done, 0 failed" in captured.out
    line = next(x for x in captured.err.splitlines() if "hidden" in x)
    assert line.endswith("1 hidden film (a name starting with a dot), not segmented; rename it to segment it: .copy.png"
                         f" (all 1 will be listed in {tmp_path / 'out' / 'skipped.csv'})")
    assert "DS_Store" not in captured.err and not list((tmp_path / "out").glob(".*mask*"))
    assert main(["segment", str(scans / ".copy.png"), "--out", str(tmp_path / "one"), *args]) == 0
    assert "1 segmented" in capsys.readouterr().out


# ---- a DICOM whose exporter wrote an unusable window ---------------------------------------------------

@pytest.mark.parametrize("center, width", [(1000, 0), ("", ""), (1000, -5)])
def test_a_dicom_with_an_invalid_window_is_read_full_range(tmp_path, center, width):
    from napari_adaqat.io import read_image
    from tests.test_dicom import make_dicom

    arr = np.array([[0, 100, 200]], np.uint16)
    image = read_image(make_dicom(tmp_path / "w.dcm", arr, WindowCenter=center, WindowWidth=width))
    np.testing.assert_allclose(image.pixels[0], [0.0, 0.5, 1.0], atol=1e-6)
    assert image.meta["voi"] == "full_range"


# ---- masks saved as JPEG: the reason reaches the user --------------------------------------------------

def test_evaluate_with_only_jpeg_masks_says_why_nothing_was_scored(tmp_path, cxr_dir, nano_pth, capsys):
    data = small_dataset(tmp_path, cxr_dir, 2)
    for film in films(cxr_dir, 2):
        mask = data / "masks" / film.name
        Image.open(mask).convert("L").save(mask.with_suffix(".jpg"), quality=75)
        mask.unlink()
    assert main(["evaluate", "--data", str(data), "--split", "all", "--out", str(tmp_path / "report"),
                 "--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    first = data / "masks" / f"{films(cxr_dir)[0].stem}.jpg"
    assert re.fullmatch(rf"adaqat evaluate: error: {re.escape(str(data))}: no image/mask pairs in the 'all' split: "
                        rf"all 2 skipped; first: {re.escape(str(first))}: mask is not binary \(found \d+ distinct "
                        r"values\); JPEG compression blurs a mask's edges: save masks as PNG", err), err



def test_evaluate_split_file_naming_films_with_their_extension(tmp_path, cxr_dir, nano_pth):
    """A split.json written by hand or another tool lists file names ("a.png"), not bare names: they are the
    films, as for training (not "none of the images is in the data folder")."""
    data = small_dataset(tmp_path, cxr_dir, 3)
    names = [f.name for f in films(cxr_dir, 3)]
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": names[:1], "val": names[1:2], "test": names[2:]}))
    assert main(["evaluate", "--data", str(data), "--split", "test", "--split-file", str(split), "--out",
                 str(tmp_path / "report"), "--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu"]) == 0
    scored = (tmp_path / "report" / "per_image.csv").read_text().splitlines()[1:]
    assert [line.split(",")[0] for line in scored] == [Path(names[2]).stem]

# ---- a rerun says what it keeps ------------------------------------------------------------------------

def test_a_rerun_with_other_prompts_says_the_done_files_are_kept(tmp_path, cxr_dir, nano_pth, capsys):
    film = films(cxr_dir)[0]
    args = ["segment", str(film), "--out", str(tmp_path / "masks"), "--model", str(nano_pth),
            "--model-type", "vit_nano", "--device", "cpu"]
    assert main(args) == 0
    mask = (tmp_path / "masks" / f"{film.stem}_mask.png").read_bytes()
    (tmp_path / "boxes.csv").write_text(f"file,x0,y0,x1,y1\n{film.name},100,100,300,300\n")
    capsys.readouterr()
    assert main(args + ["--boxes", str(tmp_path / "boxes.csv")]) == 0
    out = capsys.readouterr().out
    assert "0 segmented, 1 already done" in out
    assert "1 file(s) done by an earlier run were kept as they are" in out and "another --out folder" in out
    assert (tmp_path / "masks" / f"{film.stem}_mask.png").read_bytes() == mask  # nothing overwritten



def test_results_csv_names_that_a_spreadsheet_would_run_are_shown_not_run(tmp_path, cxr_dir, nano_pth, capsys,
                                                                          monkeypatch):
    """Films named '=HYPERLINK(…)' or '@SUM(…)', given by their names from their folder: results.csv, opened in
    Excel at a hospital, must not run a name as a formula (each such cell starts with '); a rerun still finds
    those files done, under their own names."""
    import csv
    import shutil

    names = ["=HYPERLINK(1).png", "@SUM(1).png", "-2+3.png", "'quoted.png"]
    (tmp_path / "films").mkdir()
    for name, film in zip(names, films(cxr_dir, 4)):
        shutil.copy(film, tmp_path / "films" / name)
    monkeypatch.chdir(tmp_path / "films")
    args = ["segment", "--out", str(tmp_path / "masks"), "--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu",
            "--", *names]
    assert main(args) == 0
    with (tmp_path / "masks" / "results.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    cells = [v for row in rows for v in row.values() if v]
    assert not [v for v in cells if v.startswith(("=", "@", "+")) or (v.startswith("-") and not v[1:2].isdigit())]
    assert sorted(row["file"] for row in rows) == sorted("'" + n for n in names)
    assert all((tmp_path / "masks" / f"{Path(n).stem}_mask.png").is_file() for n in names)
    capsys.readouterr()
    assert main(args) == 0
    assert "0 segmented, 4 already done" in capsys.readouterr().out

# ---- a report rewritten in the same folder keeps no figure of the earlier one --------------------------

@needs_default
def test_a_second_report_in_the_same_folder_leaves_no_earlier_figure(tmp_path, cxr_dir):
    from napari_adaqat import evaluate

    data = small_dataset(tmp_path, cxr_dir, 3)
    report = tmp_path / "report"
    evaluate(data, None, None, report, split="all", show=[films(cxr_dir)[0].stem])
    first = {p.name for p in report.glob("fig2_*.png")}
    (data / "images" / films(cxr_dir)[0].name).unlink()  # the film shown first is gone
    evaluate(data, None, None, report, split="all")
    second = {p.name for p in report.glob("fig2_*.png")}
    assert first - second, "the first report's extra panel should have been removed"
    listed = set(json.loads((report / "tables.json").read_text())["figures"]["fig2"])
    assert second == listed
    (report / "notes.png").write_bytes(b"mine")  # a file the report never wrote stays
    evaluate(data, None, None, report, split="all")
    assert (report / "notes.png").read_bytes() == b"mine"


# ---- --help teaches ------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["segment", "info", "train", "evaluate", "export", "bench"])
def test_every_help_has_examples_and_no_empty_defaults(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = capsys.readouterr().out
    assert f"  adaqat {command} " in text  # at least one example line
    assert "(default: None)" not in text and "(default: True)" not in text and "(default: False)" not in text


def test_segment_help_examples_keep_their_lines(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["segment", "--help"])
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("  adaqat segment ") and "--points" in line for line in lines)
    assert any("(default: png)" in line for line in lines)  # real defaults are still shown


def test_info_with_a_mistyped_preset_lists_the_presets(capsys):
    assert main(["info", "vit_q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("adaqat info: error: vit_q: no such file or run folder, and not a preset (vit_b, vit_l")


def test_a_film_named_twice_is_segmented_once(tmp_path, cxr_dir, nano_pth, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("films").mkdir()
    for film in films(cxr_dir, 2):
        Image.open(film).save(Path("films") / film.name)
    first = films(cxr_dir)[0].name
    assert main(["segment", "films", f"films/{first}", f"./films/{first}", str(tmp_path / "films" / first),
                 "--out", "masks", "--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu"]) == 0
    assert "2 segmented, 0 already done, 0 failed" in capsys.readouterr().out
    assert sorted(p.name for p in Path("masks").iterdir()) == sorted(
        [f"{Path(f.name).stem}_mask.png" for f in films(cxr_dir, 2)] + ["results.csv"])


def test_evaluate_never_replaces_a_users_own_report_files(tmp_path, cxr_dir, nano_pth, capsys):
    out = tmp_path / "Documents"
    out.mkdir()
    (out / "index.html").write_text("<html>my own page</html>")
    (out / "per_image.csv").write_text("")  # left empty by a run stopped before its first row: harmless
    args = ["evaluate", "--data", str(cxr_dir), "--split", "all", "--out", str(out), "--model", str(nano_pth),
            "--model-type", "vit_nano", "--device", "cpu"]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        f"adaqat evaluate: error: --out {out} holds index.html, not written by adaqat evaluate, which a report would "
        "replace; choose another --out folder")
    assert (out / "index.html").read_text() == "<html>my own page</html>"
    (out / "index.html").unlink()
    assert main(args) == 0  # then a report, and a second one over it, as before
    assert main(args) == 0


def test_evaluate_says_an_empty_split_or_an_unknown_show_name_before_scoring(tmp_path, cxr_dir, nano_pth, capsys):
    data = small_dataset(tmp_path, cxr_dir, 2)
    args = ["evaluate", "--data", str(data), "--out", str(tmp_path / "report"), "--model", str(nano_pth),
            "--model-type", "vit_nano", "--device", "cpu"]
    assert main(args + ["--split", "test"]) == 2  # the 80:10:10 cut of 2 films has no test film
    assert capsys.readouterr().err.strip().endswith(
        f"error: {data}: the 'test' split is empty (2 images: 2 train, 0 val, 0 test); --split all scores every "
        "image (if the model never saw them)")
    assert main(args + ["--split", "all", "--show", "nosuch"]) == 2
    stem = films(cxr_dir)[0].stem
    assert capsys.readouterr().err.strip() == (
        f"adaqat evaluate: error: --show nosuch: no such image among the 2 to score in the 'all' split (e.g. {stem})")
    assert not (tmp_path / "report").exists()
    assert main(args + ["--split", "all", "--show", f"{stem}.png"]) == 0  # a file name is taken by its stem
    assert (tmp_path / "report" / f"fig2_asked_for_{stem}.png").is_file()


def test_api_set_image_refuses_as_segment_does(tmp_path, nano_model):
    """The README's second form: set_image, then predict."""
    with pytest.raises(ImageReadError, match="^image is blank"):
        nano_model.set_image(np.full((64, 64), 0.5, np.float32))
    with pytest.raises(ValueError, match=re.escape("expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape (3, 64, 64)")):
        nano_model.set_image(np.random.default_rng(0).random((3, 64, 64)))


@pytest.mark.parametrize("content, reason", [
    (None, "split file not found"),
    ("not json", "not a split file (JSON with train, val and test name lists): Expecting value"),
    ("[1, 2]", "not a split file (JSON with train, val and test name lists)"),
])
def test_a_bad_split_file_is_named(tmp_path, content, reason):
    from napari_adaqat.data import load_split

    path = tmp_path / "split.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=f"^{re.escape(f'{path}: {reason}')}"):
        load_split(path)


def test_evaluate_with_a_split_file_of_another_dataset_says_so(tmp_path, cxr_dir, nano_pth, capsys):
    (tmp_path / "split.json").write_text('{"train": ["a"], "val": ["b"], "test": ["c", "d", "e"]}')
    assert main(["evaluate", "--data", str(cxr_dir), "--split-file", str(tmp_path / "split.json"), "--out",
                 str(tmp_path / "report"), "--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"adaqat evaluate: error: {cxr_dir}: none of the 3 images of the 'test' split (c, d, ...) is in the data "
        "folder; is the split file from another dataset?")


# ---- a refused training run leaves nothing behind ------------------------------------------------------

@needs_default
@pytest.mark.parametrize("stage", ["1", "all"])
def test_a_refused_training_run_leaves_no_folder_nor_files(tmp_path, cxr_dir, stage, capsys):
    """Two films are too few for a validation set: the run is refused in one line and its --out holds nothing
    (no split.json, train.log or chain.json that would make the next run say 'already holds a run')."""
    data = small_dataset(tmp_path, cxr_dir, 2)
    for out, existed in ((tmp_path / "new_run", False), (tmp_path / "empty_run", True)):
        if existed:
            out.mkdir()
        args = ["train", "--stage", stage, "--data", str(data), "--out", str(out), "--device", "cpu", "--checkpoint",
                "default", "--epochs", "1"]
        assert main(args + (["--preset", "finetune"] if stage == "all" else [])) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert "the validation set is empty" in err[-1]
        assert out.is_dir() == existed and (not existed or not any(out.iterdir())), sorted(out.rglob("*"))
