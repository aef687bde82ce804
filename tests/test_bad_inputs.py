"""Bad inputs, each with its own one-line message, through the real entry points.

Images (:mod:`bad_corpus`) go through ``read_image`` and ``adaqat segment`` (``results.csv``);
masks through ``load_pair`` and ``adaqat evaluate``; box CSVs through ``read_boxes_csv`` and
``adaqat segment --boxes``.  File names, symbolic links and output folders: ``test_bad_paths.py``.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from bad_corpus import CASES, Case, radiograph
from napari_adaqat.cli import main
from napari_adaqat.data import DataError, Pair, describe_unmatched, discover, load_pair, read_boxes_csv
from napari_adaqat.io import ImageReadError, read_image, read_mask

IDS = [c.name for c in CASES]


def one_line(text: str) -> str:
    assert text and "\n" not in text and "\r" not in text, repr(text)
    return text


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for case in CASES:
        case.make(folder / case.name)
    return folder


@pytest.fixture(scope="module")
def segmented(corpus, tmp_path_factory, nano_pth) -> tuple[int, dict[str, dict], Path]:
    """``adaqat segment`` over the whole corpus folder: (exit code, rows by file name, output folder)."""
    out = tmp_path_factory.mktemp("corpus_out") / "masks"
    code = main(["segment", str(corpus), "--out", str(out), "--model", str(nano_pth), "--model-type", "vit_nano",
                 "--device", "cpu"])
    with (out / "results.csv").open(newline="", encoding="utf-8") as fh:
        rows = {Path(r["file"]).name: r for r in csv.DictReader(fh)}
    return code, rows, out


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 40 and len(set(IDS)) == len(IDS)
    assert {c.stage for c in CASES} == {"read", "segment", "blank", "ok"}


# ---- images: read_image ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_read_image(corpus, case: Case):
    path = corpus / case.name
    if case.stage != "read":
        image = read_image(path)
        if case.check:
            case.check(image)
        return
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    message = one_line(str(err.value))
    assert message.startswith(f"{path}: ")
    assert re.search(case.message, message), message


def test_a_huge_image_is_refused_from_its_header_with_little_memory(corpus):
    import tracemalloc

    for name in ("huge_20000.png", "huge_20000.tif", "forged_60000.jpg", "forged_bytes.tif"):
        tracemalloc.start()
        try:
            with pytest.raises(ImageReadError, match="image is too large"):
                read_image(corpus / name)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 * 2**20, f"{name}: {peak / 2**20:.0f} MiB"  # the decoded image would be 381 M pixels


def test_masks_of_the_corpus_get_the_same_messages(corpus):
    for case in CASES:
        if case.stage == "read" and case.category != "layout":
            with pytest.raises(ImageReadError) as err:
                read_mask(corpus / case.name)
            assert re.search(case.message, one_line(str(err.value))), case.name


# ---- images: adaqat segment ---------------------------------------------------------------------


@pytest.mark.parametrize("case", [c for c in CASES if c.stage != "blank"], ids=[c.name for c in CASES if c.stage != "blank"])
def test_segment_row(segmented, case: Case):
    code, rows, _out = segmented
    assert code == 1  # some files failed
    row = rows[case.name]
    if case.stage == "ok":
        assert row["status"] == "ok" and row["error"] == "", row
        assert read_mask(row["mask"]).shape == read_image(row["file"]).shape
    else:
        assert row["status"] == "error" and row["mask"] == "", row
        assert re.search(case.message, one_line(row["error"])), row["error"]


def test_segment_results_are_valid_and_complete(segmented):
    _code, rows, out = segmented
    assert set(rows) == {c.name for c in CASES}
    with (out / "results.csv").open(newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert len({len(r) for r in table}) == 1 and len(table) == len(CASES) + 1
    masks = sorted(p.name for p in out.iterdir() if p.name != "results.csv")
    assert masks == sorted(Path(r["mask"]).name for r in rows.values() if r["status"] == "ok")  # no temp files


@pytest.mark.parametrize("case", [c for c in CASES if c.stage == "blank"], ids=[c.name for c in CASES if c.stage == "blank"])
def test_segment_refuses_blank_images(segmented, case: Case):
    row = segmented[1][case.name]
    assert row["status"] == "error" and re.search(case.message, one_line(row["error"])), row


# ---- masks: load_pair and adaqat evaluate ------------------------------------------------------------

GOOD = radiograph((64, 64))
LUNGS = np.zeros((64, 64), np.uint8)
LUNGS[10:50, 8:28] = LUNGS[10:50, 36:56] = 255

MASK_CASES = {  # name: (image, mask or None, message regex)
    "mask_empty": (GOOD, np.zeros((64, 64), np.uint8), r"masks/mask_empty\.png: mask is empty \(no lung pixels\)"),
    "mask_full": (GOOD, np.full((64, 64), 255, np.uint8),
                  r"masks/mask_full\.png: mask covers the whole image \(every pixel is lung\)"),
    "mask_size": (GOOD, LUNGS[:48], r"masks/mask_size\.png: mask size \(48, 64\) differs from image size \(64, 64\) "
                  r"\(and is not the film's shape scaled: a crop, a pad, or another film's mask\?\)$"),
    "mask_labels": (GOOD, (LUNGS // 255) * np.arange(64, dtype=np.uint8)[None, :] % 3,
                    r"masks/mask_labels\.png: mask is not binary \(found 3 distinct values\)"),
    "mask_truncated": (GOOD, "truncated", r"masks/mask_truncated\.png: truncated or corrupt PNG data"),
    "mask_text": (GOOD, "text", r"masks/mask_text\.png: not a PNG image: it holds text"),
    "mask_missing": (GOOD, None, r"images/mask_missing\.png: missing mask \(expected masks/mask_missing\.png\)"),
    "image_blank": (np.zeros((64, 64), np.uint8), LUNGS, r"images/image_blank\.png: image is blank"),
    "image_tiny": (radiograph((8, 8)), np.pad(np.full((4, 4), 255, np.uint8), 2),
                   r"images/image_tiny\.png: image is 8x8 px; segmentation needs at least 16x16 px"),
    "image_broken": (b"\x89PNG\r\n\x1a\n broken", LUNGS, r"images/image_broken\.png: truncated or corrupt PNG data"),
}


def write_pair(root: Path, name: str, image, mask) -> Pair:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    image_path, mask_path = root / "images" / f"{name}.png", root / "masks" / f"{name}.png"
    if isinstance(image, bytes):
        image_path.write_bytes(image)
    else:
        Image.fromarray(image).save(image_path)
    if isinstance(mask, np.ndarray):
        Image.fromarray(mask).save(mask_path)
    elif mask == "truncated":
        Image.fromarray(LUNGS).save(mask_path)
        mask_path.write_bytes(mask_path.read_bytes()[:60])
    elif mask == "text":
        mask_path.write_text("lungs go here\n")
    return Pair(name, image_path, mask_path if mask is not None else None)


@pytest.mark.parametrize("name", list(MASK_CASES))
def test_load_pair_names_the_problem(tmp_path, name):
    image, mask, message = MASK_CASES[name]
    pair = write_pair(tmp_path, name, image, mask)
    with pytest.raises(DataError) as err:
        load_pair(pair)
    assert re.search(message, one_line(str(err.value))), str(err.value)


def test_masks_saved_at_another_size_of_the_film_put_the_film_on_their_grid(tmp_path):
    """The COVID-19 Radiography Database ships 299² films with 256² masks, SCR 1024² masks of 2048² films: the film
    is resampled onto the mask's grid (the mask is never resized), its spacing scaled, and the pair says so."""
    from napari_adaqat.data.check import reading_notes
    from napari_adaqat.data.dataset import load_film_pair

    pair = write_pair(tmp_path, "half", GOOD, LUNGS[::2, ::2])
    film, mask = load_film_pair(pair)
    assert film.shape == mask.shape == (32, 32) and pair.film_shape == (64, 64)
    assert film.meta["resampled_from"] == (64, 64) and 0.0 <= film.pixels.min() <= film.pixels.max() <= 1.0
    np.testing.assert_array_equal(mask, LUNGS[::2, ::2] > 0)
    assert reading_notes(tmp_path, [pair]) == ["1 film(s) are used on their masks' grid: the masks are the films' shape at "
                                      "another size (e.g. half: 64×64 px, resampled to its mask's size)"]


def test_evaluate_skips_bad_pairs_with_their_messages(tmp_path, cxr_dir, nano_pth):
    data = tmp_path / "data"
    for name, (image, mask, _) in MASK_CASES.items():
        write_pair(data, name, image, mask)
    for image in sorted((cxr_dir / "images").glob("*.png"))[:2]:
        shutil.copy(image, data / "images" / image.name)
        shutil.copy(cxr_dir / "masks" / image.name, data / "masks" / image.name)
    out = tmp_path / "report"
    code = main(["evaluate", "--data", str(data), "--out", str(out), "--split", "all", "--model", str(nano_pth),
                 "--model-type", "vit_nano", "--device", "cpu"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 2 and len(summary["skipped"]) == len(MASK_CASES)
    for name, (_, _, message) in MASK_CASES.items():
        [line] = [s for s in summary["skipped"] if f"/{name}.png" in s]
        assert re.search(message, one_line(line)), line


# ---- box CSVs ---------------------------------------------------------------------------------------

HEADER = "file,x0,y0,x1,y1\n"
CSV_CASES = {  # name: (content, message regex or None when it reads fine)
    "missing_column": ("file,x0,y0,x1\na.png,1,2,3\n", r"boxes\.csv:1: missing column\(s\) y1; expected file,x0,y0,x1,y1"),
    "no_file_column": ("name,x0,y0,x1,y1\na.png,1,2,3,4\n", r"boxes\.csv:1: missing column\(s\) file"),
    "nan": (HEADER + "a.png,10,10,nan,300\n", r"boxes\.csv:2: invalid box 10,10,nan,300: needs finite numbers"),
    "inf": (HEADER + "a.png,10,10,inf,300\n", r"boxes\.csv:2: invalid box 10,10,inf,300: needs finite numbers"),
    "negative": (HEADER + "a.png,-40,10,200,300\n", r"boxes\.csv:2: invalid box -40,10,200,300: coordinates are "
                 r"pixels from the top-left corner and cannot be negative"),
    "inverted": (HEADER + "a.png,200,10,100,300\n", r"boxes\.csv:2: invalid box 200,10,100,300: needs finite numbers "
                 r"with x1 > x0 and y1 > y0"),
    "zero_height": (HEADER + "a.png,10,50,100,50\n", r"boxes\.csv:2: invalid box 10,50,100,50"),
    "not_a_number": (HEADER + "a.png,ten,10,100,300\n", r"boxes\.csv:2: x0,y0,x1,y1 must be numbers; x0 is 'ten'$"),
    "short_row": (HEADER + "a.png,10,10\n", r"boxes\.csv:2: 3 fields where the header has 5 \(comma-separated\)$"),
    "empty_name": (HEADER + ",10,10,100,300\n", r"boxes\.csv:2: empty file name"),
    "empty_file": ("", r"boxes\.csv: empty file; expected a header line file,x0,y0,x1,y1"),
    "header_only": (HEADER, r"boxes\.csv: no boxes \(only a header line\)"),
    "conflicting_duplicate": (HEADER + "a.png,1,2,30,40\nb.png,1,2,3,4\na.png,5,6,70,80\n",
                              r"boxes\.csv:4: a second, different box for 'a.png' \(first on line 2\)"),
    # neither UTF-8 nor Windows-1252 (0x81 and 0x8d are no character there): refused; Windows-1252 itself is read
    "not_utf8": (b"file,x0,y0,x1,y1\n\x81\x8d.png,1,2,3,4\n", r"boxes\.csv: not a UTF-8 text file \(byte 0x81 at offset 17\)"),
    "huge_field": (HEADER + "a.png," + "9" * 200_000 + ",1,2,3\n", r"boxes\.csv: not a valid CSV file \(field larger than "
                   r"field limit"),
    "same_duplicate": (HEADER + "a.png,1,2,30,40\na.png,1,2,30,40\n", None),
    "bom_spaces_extra": ("\ufeff file , x0,y0 ,x1,y1,note\n a.png ,1, 2,30,40 ,left lung only\n", None),
    # ---- the Excel family (issue 30): a decimal comma must never give a silently wrong box
    "decimal_commas": (HEADER + "a.png,1,5,2,0,30,5,40,5\n", r"boxes\.csv:2: 9 fields where the header has 5 "
                       r"\(comma-separated\); a decimal comma \(40,5\) splits a number in two: write 40\.5$"),
    "quoted_decimal_comma": (HEADER + 'a.png,"1,5",2,30,40\n', r"boxes\.csv:2: x0 is '1,5': a decimal comma is read "
                             r"only in a ;-separated file; write 1\.5$"),
    # Excel where the comma is the decimal mark (de-DE, fr-FR, ...) writes ;-separated, numbers unquoted
    "unquoted_decimal_comma_semicolon": ("file;x0;y0;x1;y1\na.png;1,0;2;30,00;40\n", None),
    "extra_field": (HEADER + "a.png,1,2,30,40,\n", r"boxes\.csv:2: 6 fields where the header has 5"),
    "trailing_empty_rows": (HEADER + "a.png,1,2,30,40\n,,,,\n,,,,\r\n\n", None),
    "semicolons_title_case": ("File;X0;Y0;X1;Y1\r\na.png;1;2;30;40\r\n;;;;\r\n", None),
    "spaced_title_case_header": ("File, X0, Y0, X1, Y1\na.png, 1, 2, 30, 40\n", None),
    "tabs": ("FILE\tx0\ty0\tx1\ty1\na.png\t1\t2\t30\t40\n", None),
    "quoted_decimal_commas_semicolon": ('file;x0;y0;x1;y1\na.png;"1,0";"2,0";30;"40,0"\n', None),
}


@pytest.mark.parametrize("name", list(CSV_CASES))
def test_read_boxes_csv(tmp_path, name):
    content, message = CSV_CASES[name]
    path = tmp_path / "boxes.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    if message is None:
        assert {k: v.tolist() for k, v in read_boxes_csv(path).items()} == {"a.png": [1.0, 2.0, 30.0, 40.0]}
        return
    with pytest.raises(ValueError) as err:
        read_boxes_csv(path)
    assert re.search(message, one_line(str(err.value))), str(err.value)


def test_segment_refuses_a_bad_csv_before_any_work(tmp_path, cxr_dir, nano_pth, capsys):
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(HEADER + "x.png,-5,-5,100,100\n")
    out = tmp_path / "out"
    code = main(["segment", str(cxr_dir / "images"), "--out", str(out), "--boxes", str(boxes), "--model",
                 str(nano_pth), "--model-type", "vit_nano"])
    assert code == 2 and not (out / "results.csv").exists()
    err = one_line(capsys.readouterr().err.strip())
    assert re.fullmatch(r"adaqat segment: error: .*boxes\.csv:2: invalid box -5,-5,100,100: coordinates are pixels "
                        r"from the top-left corner and cannot be negative", err), err


def test_boxes_outside_the_image_are_error_rows(tmp_path, cxr_dir, nano_pth):
    images = sorted((cxr_dir / "images").glob("*.png"))[:3]
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(HEADER + f"{images[0].name},10,20,200,300\n{images[1].name},600,600,700,700\n"
                     f"{images[2].name},100,100,900,400\n")
    out = tmp_path / "out"
    code = main(["segment", *map(str, images), "--out", str(out), "--boxes", str(boxes), "--model", str(nano_pth),
                 "--model-type", "vit_nano"])
    assert code == 1
    with (out / "results.csv").open() as fh:
        rows = {Path(r["file"]).name: r for r in csv.DictReader(fh)}
    assert rows[images[0].name]["status"] == "ok"
    assert rows[images[1].name]["error"] == f"{images[1]}: box 600,600,700,700 lies outside the 512x512 image"
    assert rows[images[2].name]["error"] == (f"{images[2]}: box 100,100,900,400 reaches outside the 512x512 image "
                                             "(x1 <= 512, y1 <= 512); was it drawn on a resized copy?")  # (named)


def test_csv_rows_naming_no_input_are_a_warning(tmp_path):
    files = [Path("scans/a.png"), Path("scans/b.png"), Path("scans/c.dcm")]
    boxes = {"a.png": np.ones(4), "scans/b.png": np.ones(4), "zz_typo.png": np.ones(4), "old.png": np.ones(4)}
    lines = describe_unmatched("boxes.csv", boxes, files)
    assert lines == ["boxes.csv: 2 row(s) name no input file and are ignored: old.png, zz_typo.png",
                     "boxes.csv: 1 input(s) have no box and get the default box: c.dcm"]
    assert describe_unmatched("boxes.csv", {"a": np.ones(4)}, [Path("a.png")]) == []


def test_segment_warns_about_csv_rows_naming_no_input(tmp_path, cxr_dir, nano_pth, capsys):
    image = sorted((cxr_dir / "images").glob("*.png"))[0]
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(HEADER + f"{image.name},10,20,200,300\nnot_an_input.png,1,2,3,4\n")
    code = main(["segment", str(image), "--out", str(tmp_path / "out"), "--boxes", str(boxes), "--model",
                 str(nano_pth), "--model-type", "vit_nano"])
    assert code == 0
    assert "1 row(s) name no input file and are ignored: not_an_input.png" in capsys.readouterr().err


def test_tiff_stack_mask_and_float_tiff_mask(tmp_path):
    tifffile.imwrite(tmp_path / "m.tif", np.stack([LUNGS] * 4), photometric="minisblack")
    with pytest.raises(ImageReadError, match=r"m\.tif: is a 3-D stack \(4 planes\); give a single 2-D image"):
        read_mask(tmp_path / "m.tif")
    nan_mask = (LUNGS / 255.0).astype(np.float32)
    nan_mask[0, 0] = np.nan
    tifffile.imwrite(tmp_path / "n.tif", nan_mask)
    with pytest.raises(ImageReadError, match=r"n\.tif: 1 of 4096 pixel values are NaN or infinite"):
        read_mask(tmp_path / "n.tif")


def test_prompts_given_as_fractions_of_the_image_are_refused_in_one_line():
    """A box or clicks in 0–1 coordinates (a QA find: box 0.06,0.06,0.94,0.74 segmented nothing, reported "ok");
    whole-number pixels near the corner stay pixels."""
    from napari_adaqat.data.boxes import check_box
    from napari_adaqat.data.points import check_points

    with pytest.raises(ValueError, match=r"^box 0.06,0.06,0.94,0.74: fractions of the image\? give pixels from the "
                                         r"top-left corner \(this image is 512x400\)$"):
        check_box(np.array([0.06, 0.06, 0.94, 0.74]), (400, 512))
    with pytest.raises(ValueError, match=r"^point 0.5,0.4: fractions of the image\? give pixels"):
        check_points(np.array([[0.5, 0.4], [0.2, 0.9]]), (400, 512))
    check_box(np.array([0, 0, 1, 1]), (400, 512))  # (a 1-px box in pixels: not fractions)
    check_points(np.array([[0.0, 1.0], [1.0, 0.0]]), (400, 512))
    check_points(np.array([[0.5, 0.4], [200.0, 100.0]]), (400, 512))  # one click in pixels: all are pixels


def test_a_gif_mask_with_a_suffix_pairs_a_webp_and_a_smoothed_mask_say_what_to_do(tmp_path):
    """JSRT/SCR ship GIF masks, often as NAME_mask.gif: read; a WebP mask is named as a format that is not read; a
    mask resized with smoothing has many grey values (QA finds: 'missing mask' with no hint, and 'not binary (found
    20 distinct values)' with none)."""
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    Image.fromarray(GOOD).save(tmp_path / "images" / "a.png")
    Image.fromarray(LUNGS).save(tmp_path / "masks" / "a_mask.gif")
    pair = discover(tmp_path)[0]["a"]
    assert pair.mask == tmp_path / "masks" / "a_mask.gif"
    np.testing.assert_array_equal(load_pair(pair)[1], LUNGS > 0)
    (tmp_path / "masks" / "a_mask.gif").unlink()
    Image.fromarray(LUNGS).save(tmp_path / "masks" / "a_mask.webp", lossless=True)
    with pytest.raises(DataError, match=r"missing mask \(expected masks/a\.png; masks/a_mask\.webp is a WEBP, which "
                                        r"is not read: save it as masks/a_mask\.png\)"):
        load_pair(Pair("a", tmp_path / "images" / "a.png", None))
    big = np.kron(LUNGS, np.ones((8, 8), np.uint8))  # a 512-px mask, halved, then enlarged with smoothing
    smooth = np.array(Image.fromarray(big[::2, ::2]).resize((512, 512), Image.BILINEAR))
    Image.fromarray(smooth).save(tmp_path / "smooth.png")
    with pytest.raises(ImageReadError, match=r"not binary \(found \d+ distinct values\); resized with smoothing\? "
                                             r"threshold it at half its maximum"):
        read_mask(tmp_path / "smooth.png")
    from scipy.ndimage import gaussian_filter

    drawn = np.clip(gaussian_filter(big.astype(float), 3.0), 0, 255).astype(np.uint8)  # anti-aliased, 256 greys
    Image.fromarray(drawn).save(tmp_path / "drawn.png")  # (a QA find: no hint, over 5 % of it off 0 and 255)
    with pytest.raises(ImageReadError, match=r"resized with smoothing\? threshold it at half its maximum"):
        read_mask(tmp_path / "drawn.png")
    Image.fromarray(GOOD).save(tmp_path / "film.png")  # a film in masks/: no such advice
    with pytest.raises(ImageReadError, match=r"not binary \(found \d+ distinct values\)$"):
        read_mask(tmp_path / "film.png")


def test_png_jpeg_and_tiff_films_are_read_under_any_name_as_dicom_is(tmp_path, cxr_dir, capsys):
    """A QA find: a PNG saved without an extension (a PACS export's ``IM0001``) was refused with "convert it to PNG",
    and passed over in a folder, while a DICOM under any name is read. The content decides; a GIF stays refused."""
    film = np.asarray(Image.open(sorted((cxr_dir / "images").glob("*.png"))[0]).convert("L"))
    folder = tmp_path / "export"
    folder.mkdir()
    Image.fromarray(film).save(folder / "IM0001", format="PNG")
    Image.fromarray(film).save(folder / "IM0002.1", format="JPEG", quality=95)
    tifffile.imwrite(folder / "IM0003.bak", film)
    Image.fromarray(film).save(folder / "IM0004", format="GIF")
    for name in ("IM0001", "IM0002.1", "IM0003.bak"):
        assert read_image(folder / name).pixels.shape == film.shape
    with pytest.raises(ImageReadError, match="unsupported image format"):
        read_image(folder / "IM0004")
    assert main(["segment", str(folder), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert "3 segmented" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").glob("*_mask.png")) == [
        "IM0001_mask.png", "IM0002.1_mask.png", "IM0003.bak_mask.png"]  # (an unknown suffix is part of the name)
