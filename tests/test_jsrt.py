"""JSRT's films as the database ships them (headerless 2048² 12-bit big-endian ``.IMG``, inverted) with SCR's
lung masks (``masks/left lung/NAME.gif`` + ``masks/right lung/NAME.gif`` at 1024²): read, segmented and scored
as they unpack.  The films here are real radiographs of ``tests/data/cxr`` written in JSRT's layout."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_adaqat.cli import main
from napari_adaqat.data import discover, load_pair
from napari_adaqat.io import ImageReadError, is_image_file, read_image, read_mask
from napari_adaqat.io.images import sample_name
from napari_adaqat.metrics import dice
from napari_adaqat.train.prompts import lungs


def _film(cxr_dir: Path) -> Path:
    return sorted((cxr_dir / "images").glob("*.png"))[1]


def write_jsrt(film: Path, path: Path) -> np.ndarray:
    """``film`` at 2048² in JSRT's layout (12 bits, 0 = white, big-endian, no header); returns the film as shown
    (float, lungs dark) at 2048²."""
    shown = np.asarray(Image.open(film).convert("L").resize((2048, 2048), Image.BILINEAR), np.float32) / 255.0
    raw = np.round((1.0 - shown) * 4095).astype(">u2")  # the database stores the values inverted
    raw.tofile(path)
    return shown


def write_scr_masks(mask: Path, data: Path, name: str) -> np.ndarray:
    """SCR's layout: one GIF per lung at 1024², in ``masks/left lung/`` and ``masks/right lung/``."""
    ref = np.asarray(Image.open(mask).convert("L").resize((1024, 1024), Image.NEAREST)) > 127
    for folder, lung in zip(("right lung", "left lung"), sorted(lungs(ref), key=lambda m: np.argwhere(m)[:, 1].mean())):
        (data / "masks" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(lung.astype(np.uint8) * 255).convert("P").save(data / "masks" / folder / f"{name}.gif")
    return ref


def test_a_jsrt_film_reads_upright_with_the_lungs_dark_and_its_pixel_size(tmp_path, cxr_dir):
    path = tmp_path / "JPCLN001.IMG"
    shown = write_jsrt(_film(cxr_dir), path)
    assert is_image_file(path) and sample_name(path) == "JPCLN001"
    image = read_image(path)
    assert image.pixels.shape == (2048, 2048) and image.spacing == (0.175, 0.175)
    assert image.meta["format"] == "jsrt" and image.meta["inverted"]
    assert np.corrcoef(image.pixels.ravel(), shown.ravel())[0, 1] > 0.999  # as shown, not inverted


def test_a_file_of_jsrt_size_that_is_not_jsrt_is_refused_in_one_line(tmp_path):
    path = tmp_path / "JPCLN001.IMG"
    np.arange(2048 * 2048, dtype=">u2").tofile(path)  # values up to 65535: not 12 bits
    with pytest.raises(ImageReadError, match=r"JPCLN001\.IMG: not JSRT's \.IMG layout \(values up to 65535, above "
                                             r"12 bits' 4095\): convert it to a 16-bit PNG or TIFF"):
        read_image(path)
    path.write_bytes(b"\0" * 1000)  # another size named .img (an Analyze volume, a disk image): the general line
    assert not is_image_file(path)
    with pytest.raises(ImageReadError, match=r"unsupported image format '\.img': 1000 bytes, not JSRT's 8388608 "
                                             r"\(truncated, or not a JSRT film\); adaqat reads PNG, JPEG, BMP, TIFF, "
                                             r"DICOM and JSRT"):
        read_image(path)
    other = tmp_path / "JPCLN001.raw"  # JSRT's size under another name: told how it would be read
    np.zeros(2048 * 2048, ">u2").tofile(other)
    with pytest.raises(ImageReadError, match=r"its size fits JSRT's \.IMG layout .*: if it is a JSRT film, name it "
                                             r"JPCLN001\.IMG"):
        read_image(other)


def test_adaqat_segment_takes_a_jsrt_film(tmp_path, cxr_dir):
    film = _film(cxr_dir)
    path = tmp_path / "films" / "JPCLN001.IMG"
    path.parent.mkdir()
    write_jsrt(film, path)
    out = tmp_path / "out"
    assert main(["segment", str(path.parent), "--out", str(out), "--device", "cpu"]) == 0
    with (out / "results.csv").open() as fh:
        row = next(csv.DictReader(fh))
    assert row["status"] == "ok", row
    mask = read_mask(row["mask"])
    ref = np.asarray(Image.open(cxr_dir / "masks" / film.name).convert("L").resize((2048, 2048), Image.NEAREST)) > 127
    assert mask.shape == (2048, 2048) and dice(mask, ref) > 0.9


def test_jsrt_with_scr_masks_is_a_dataset_as_it_unpacks(tmp_path, cxr_dir, capsys):
    data = tmp_path / "JSRT"
    (data / "images").mkdir(parents=True)
    film = _film(cxr_dir)
    write_jsrt(film, data / "images" / "JPCLN001.IMG")
    ref = write_scr_masks(cxr_dir / "masks" / film.name, data, "JPCLN001")
    pairs, _ = discover(data)
    assert list(pairs) == ["JPCLN001"]
    image, mask = load_pair(pairs["JPCLN001"])
    assert image.shape == mask.shape == (1024, 1024) and dice(mask != 0, ref) == 1.0  # the film on the mask's grid
    out = tmp_path / "report"
    assert main(["evaluate", "--data", str(data), "--split", "all", "--out", str(out), "--device", "cpu"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 1 and summary["model"]["dice"]["median"] > 0.9
    assert "used on their masks' grid" in capsys.readouterr().err


def test_napari_opens_a_jsrt_film_at_its_pixel_size(tmp_path, cxr_dir):
    """Dropped on napari, a JSRT film opens through this plugin's reader (no other reader takes it), in mm."""
    from napari_adaqat._reader import get_dicom_reader

    path = tmp_path / "JPCLN001.IMG"
    write_jsrt(_film(cxr_dir), path)
    reader = get_dicom_reader(str(path))
    assert reader is not None
    [(pixels, kwargs, kind)] = reader(str(path))
    assert kind == "image" and pixels.shape == (2048, 2048) and kwargs["name"] == "JPCLN001"
    assert kwargs["scale"] == (0.175, 0.175) and kwargs["units"] == ("mm", "mm")
    assert get_dicom_reader(str(tmp_path / "missing.IMG")) is None


def test_files_that_are_almost_jsrt_films_are_told_what_they_are(tmp_path, cxr_dir, capsys):
    """A truncated download, a little-endian copy, an Analyze volume (.img beside its .hdr) and a JSRT film under
    another name: each gets the one line that says what to do."""
    cut = tmp_path / "JPCLN002.IMG"
    cut.write_bytes(b"\0" * (2048 * 2048 * 2 - 2))
    with pytest.raises(ImageReadError, match=r"JPCLN002\.IMG: .*8388606 bytes, not JSRT's 8388608 \(truncated"):
        read_image(cut)
    swapped = tmp_path / "JPCLN003.IMG"
    write_jsrt(_film(cxr_dir), swapped)
    np.fromfile(swapped, ">u2").astype("<u2").tofile(swapped)
    with pytest.raises(ImageReadError, match=r"little-endian"):
        read_image(swapped)
    analyze = tmp_path / "brain.img"
    write_jsrt(_film(cxr_dir), analyze)
    (tmp_path / "brain.hdr").write_bytes(b"\0" * 348)
    assert not is_image_file(analyze)
    with pytest.raises(ImageReadError, match=r"brain\.img: unsupported image format '\.img'.*an Analyze"):
        read_image(analyze)
    data = tmp_path / "data"  # JSRT's size under another name, in a dataset's images/ and in a folder to segment
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    write_jsrt(_film(cxr_dir), data / "images" / "JPCLN001.raw")
    from napari_adaqat.data import DataError

    with pytest.raises(DataError, match=r"JPCLN001\.raw: its size fits JSRT's \.IMG layout .*name it JPCLN001\.IMG"):
        discover(data)
    assert main(["segment", str(data / "images"), "--out", str(tmp_path / "out")]) == 2
    assert "(JPCLN001.raw and the like: its size fits JSRT's .IMG layout" in capsys.readouterr().err
