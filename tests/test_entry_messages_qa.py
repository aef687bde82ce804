"""QA pass 2 on what each entry (``adaqat segment``, the API, the Batch and Annotate docks) says of odd inputs: a FIFO
in a folder is listed as skipped (never opened), a folder named like a film is named, a multi-frame DICOM's hint fits
the entry, every error row names its file, and each one-line error says what to do."""
from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from napari_adaqat.cli import main
from napari_adaqat.data.annotation import AnnotationFolder
from napari_adaqat.data.folders import describe_skipped, entry_kind, scan_inputs, SPECIAL
from napari_adaqat.inference.batch import _row_error, segment_files
from napari_adaqat.inference.inputs import read_input
from napari_adaqat.inference.skipped_list import write_skipped_csv
from napari_adaqat.io import ImageReadError, read_image
from napari_adaqat.io.dicom import IN_NAPARI, MultiFrameError, read_dicom
from napari_adaqat.io.image_data import check_image_size
from test_dicom import make_dicom, ramp  # tests/ is on sys.path
from test_dicom_errors import multiframe

fifos = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")


def nano(nano_pth: Path) -> list[str]:
    return ["--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu"]


def rows_of(out: Path) -> dict[str, dict]:
    with (out / "results.csv").open(newline="", encoding="utf-8") as fh:
        return {row["file"]: row for row in csv.DictReader(fh)}


def skipped_rows(out: Path) -> list[list[str]]:
    with (out / "skipped.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))[1:]


def film_and_fifo(tmp_path: Path, cxr_dir: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(sorted((cxr_dir / "images").glob("*.png"))[0], folder / "a.png")
    os.mkfifo(folder / "b.png")  # named like a film; opening it for reading would block
    return folder


def stack(path: Path) -> Path:
    return multiframe(path, np.stack([ramp(0, 1000 * (i + 1), shape=(64, 64)) for i in range(2)]),
                      StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid())


# --- 1. a FIFO in a folder --------------------------------------------------------------------------

@fifos
def test_a_fifo_in_a_folder_is_a_skipped_entry_with_its_kind(tmp_path, cxr_dir):
    folder = film_and_fifo(tmp_path, cxr_dir)
    files, skipped = scan_inputs([folder])
    assert files == [folder / "a.png"] and list(skipped) == [folder / "b.png"]
    assert skipped.kinds[folder / "b.png"] == SPECIAL and entry_kind(folder / "b.png") == SPECIAL
    line = "1 entry that is not a regular file (a FIFO), not read: b.png"
    assert describe_skipped(skipped) == line and describe_skipped(list(skipped)) == line  # (a plain list: looked at)
    out = tmp_path / "out"
    out.mkdir()
    write_skipped_csv(out, skipped)
    assert skipped_rows(out) == [[str(folder / "b.png"), "not a regular file (a FIFO): not read"]]
    assert "not a regular file (a FIFO), not read: b.png" in AnnotationFolder(folder, tmp_path / "ds").skipped_note


@fifos
def test_segment_a_folder_with_a_fifo_names_it_and_lists_it_in_skipped_csv(tmp_path, cxr_dir, nano_pth, capsys):
    folder = film_and_fifo(tmp_path, cxr_dir)
    out = tmp_path / "out"
    assert main(["segment", str(folder), "--out", str(out), *nano(nano_pth)]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 entry that is not a regular file (a FIFO), not read: b.png" in err
    assert list(rows_of(out)) == [str(folder / "a.png")]
    assert skipped_rows(out) == [[str(folder / "b.png"), "not a regular file (a FIFO): not read"]]


# --- 2. a folder named like a film --------------------------------------------------------------------

def test_a_folder_without_films_is_named_in_the_error(tmp_path, nano_pth, capsys):
    odd = tmp_path / "odd"
    (odd / "film.png").mkdir(parents=True)
    assert main(["segment", str(odd / "film.png"), "--out", str(tmp_path / "d"), *nano(nano_pth)]) == 2
    assert capsys.readouterr().err.strip() == (f"adaqat segment: error: no image files found in {odd / 'film.png'} "
                                               "(a folder)")
    (odd / "other").mkdir()
    assert main(["segment", str(odd / "film.png"), str(odd / "other"), "--out", str(tmp_path / "d"),
                 *nano(nano_pth)]) == 2
    assert f"no image files found in {odd / 'film.png'}, {odd / 'other'} (folders)" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


# --- 3. a multi-frame DICOM's hint fits the entry ---------------------------------------------------------

def test_a_multi_frame_dicoms_hint_fits_each_entry(tmp_path, nano_pth):
    path = stack(tmp_path / "cine.dcm")
    with pytest.raises(MultiFrameError, match=r"read_dicom\(path, frame=N\)"):  # the API
        read_dicom(path)
    with pytest.raises(MultiFrameError, match=r"choose one with --frame N"):  # adaqat segment
        read_input(path)
    rows = list(segment_files([path], nano_pth, tmp_path / "dock", frame_hint=IN_NAPARI))  # the Batch dock
    assert rows[0].error == f"{path}: multi-frame DICOM with 2 frames; {IN_NAPARI}"
    assert "--frame" not in rows[0].error and "frame=N" not in rows[0].error
    rows = list(segment_files([path], nano_pth, tmp_path / "cli"))  # (adaqat segment: as before)
    assert "choose one with --frame N (0-based, 0 to 1)" in rows[0].error
    with pytest.raises(MultiFrameError) as err:  # what the docks' own reads get (the API's line)
        read_image(path)
    assert str(err.value.hinted(path)) == f"{path}: multi-frame DICOM with 2 frames; {IN_NAPARI}"


# --- 4. every error row names its file -------------------------------------------------------------------------

def test_a_strip_error_row_names_its_file_as_the_others_do(tmp_path, nano_pth):
    strip = tmp_path / "in" / "strip.png"
    strip.parent.mkdir()
    Image.fromarray(np.tile(np.arange(1000, dtype=np.uint8)[None, :] % 251, (40, 1))).save(strip)  # 1000 x 40 px
    out = tmp_path / "out"
    assert main(["segment", str(strip), "--out", str(out), *nano(nano_pth)]) == 1
    error = rows_of(out)[str(strip)]["error"]
    assert error.startswith(f"{strip}: image is a 1000x40 px strip: ")
    with pytest.raises(ImageReadError) as err:
        check_image_size((40, 1000))
    assert _row_error(strip, str(strip), err.value) == f"{strip}: {err.value}"
    named = ImageReadError(f"{strip}: empty file")
    assert _row_error(strip, str(strip), named) == str(named)  # (named once)


# --- 5. each one-line error says what to do ------------------------------------------------------------------------

def _read_error(path: Path) -> str:
    with pytest.raises(ImageReadError) as err:
        read_input(path)
    return str(err.value)


def test_one_line_errors_say_what_to_do(tmp_path, cxr_dir):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert _read_error(empty) == f"{empty}: empty file (0 bytes); copy or export it again"
    empty_dcm = tmp_path / "empty.dcm"
    empty_dcm.write_bytes(b"")
    assert _read_error(empty_dcm) == f"{empty_dcm}: empty file (0 bytes); copy or export it again"
    loop = tmp_path / "loop.png"
    os.symlink(loop.name, loop)
    assert _read_error(loop) == f"{loop}: symbolic link loop: the link leads back to itself; give the film's own path"
    film = sorted((cxr_dir / "images").glob("*.png"))[0].read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(film[: len(film) // 2])
    assert _read_error(cut).startswith(f"{cut}: truncated or corrupt PNG data (")
    assert _read_error(cut).endswith("); copy or export it again")
    header = make_dicom(tmp_path / "header.dcm", ramp(0, 100))
    import pydicom

    ds = pydicom.dcmread(header)
    del ds.PixelData
    ds.save_as(header)
    assert _read_error(header).endswith(": a header without its image; export the image again")
    assert "DICOM file has no pixel data (SOP class: " in _read_error(header)


@fifos
def test_a_fifo_given_alone_says_what_to_do(tmp_path):
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    assert _read_error(fifo) == (f"{fifo}: not a regular file (a FIFO, socket or device, not a film): give the film's "
                                 "own file")
