"""How PACS/archive exports are really kept, run through ``adaqat segment``: each habit works or is one
clear line in results.csv, and the run goes on (QA of extension-less UID names, DICOMDIR, ZIP exports,
empty .dcm files and DICOM headers that under-state their pixel data)."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from napari_adaqat.cli import main
from napari_adaqat.data.dataset import find_mask
from napari_adaqat.io import ImageReadError, is_image_file, read_image
from test_dicom import make_dicom  # tests/ is on sys.path (pytest rootdir-less import)


def film(cxr_dir: Path, i: int = 0) -> np.ndarray:
    """A real radiograph, 12-bit, 128x128 (uint16)."""
    from PIL import Image

    path = sorted((cxr_dir / "images").glob("*.png"))[i]
    return np.asarray(Image.open(path).convert("L").resize((128, 128))).astype(np.uint16) * 16


def segment(*args: str | Path, nano_pth: Path) -> int:
    return main(["segment", *map(str, args), "--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu"])


def rows_of(out: Path) -> dict[str, dict]:
    with (out / "results.csv").open(newline="", encoding="utf-8") as fh:
        return {Path(r["file"]).name: r for r in csv.DictReader(fh)}


def test_uid_named_exports_get_masks_named_by_the_whole_uid_that_evaluate_pairs(tmp_path, cxr_dir, nano_pth):
    """``1.2.840.113619.2.55.3.1234`` has no extension: its mask must not be named after ``1.2.840.113619.2.55.3``
    (which hides the instance number, and which evaluate's pairing by the whole name never finds)."""
    scans = tmp_path / "export"
    scans.mkdir()
    names = ["1.2.840.113619.2.55.3.1234", "1.2.840.113619.2.55.3.1235"]
    for i, name in enumerate(names):
        make_dicom(scans / name, film(cxr_dir, i), bits_stored=12)
    out = tmp_path / "masks"
    assert segment(scans, "--out", out, nano_pth=nano_pth) == 0
    rows = rows_of(out)
    for name in names:
        assert rows[name]["status"] == "ok"
        assert Path(rows[name]["mask"]).name == f"{name}_mask.png"
        assert find_mask(scans / name, out) == out / f"{name}_mask.png"  # what evaluate / annotate pair by


def _understated(path: Path, pixels: np.ndarray, **header) -> Path:
    make_dicom(path, pixels, bits_stored=12)
    ds = pydicom.dcmread(path)
    for key, value in header.items():
        setattr(ds, key, value)
    ds.save_as(path)
    return path


@pytest.mark.parametrize("case, header, times", [
    ("frames_without_number_of_frames", {"Rows": 128}, 3),  # 3 frames stored, Number of Frames missing
    ("rows_halved", {"Rows": 192}, 2),  # Rows says half of what is stored
])
def test_pixel_data_holding_whole_frames_more_than_the_header_is_one_line(tmp_path, cxr_dir, case, header, times):
    """Before: 'unexpected DICOM pixel array shape (3, 128, 128)'; now the header's fault is named."""
    stored = np.concatenate([film(cxr_dir, i) for i in range(3)])  # (384, 128)
    path = _understated(tmp_path / f"{case}.dcm", stored, **header)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{path}: pixel data length mismatch: 98304 bytes stored, {times}x ")
    assert "Rows, Columns or Number of Frames (0028,0008) is wrong" in text


def test_a_little_padding_after_the_pixel_data_is_still_read(tmp_path, cxr_dir):
    path = make_dicom(tmp_path / "padded.dcm", film(cxr_dir), bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData + b"\x00\x00"  # exporters pad; under one frame more is not a header fault
    ds.save_as(path)
    assert read_image(path).pixels.shape == (128, 128)


def test_an_empty_dcm_file_is_called_empty(tmp_path):
    (tmp_path / "IM000002.dcm").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"IM000002\.dcm: empty file \(0 bytes\); copy or export it again$"):
        read_image(tmp_path / "IM000002.dcm")


def test_a_zip_export_given_as_input_says_to_unpack_it(tmp_path, cxr_dir, nano_pth, capsys):
    (tmp_path / "in").mkdir()
    archive = Path(shutil.make_archive(str(tmp_path / "in" / "study"), "zip", cxr_dir / "images"))
    out = tmp_path / "masks"
    assert segment(archive, "--out", out, nano_pth=nano_pth) == 1
    line = f"{archive}: unsupported image format '.zip': it is a ZIP archive; unpack it and give the folder of its films"
    assert rows_of(out)["study.zip"]["error"] == line
    assert f"adaqat segment: {line}\n" in capsys.readouterr().err


def _dicomdir_export(root: Path, pixels: np.ndarray) -> Path:
    """A CD-style export: ``root/DICOMDIR`` + ``root/PT000000/ST000000/SE000000/IM000000``."""
    ds = pydicom.dcmread(make_dicom(root.parent / "source.dcm", pixels, bits_stored=12))
    for key, value in {"PatientID": "P1", "PatientName": "DOE^JOHN", "StudyDate": "20260101", "StudyTime": "1200",
                       "StudyID": "1", "AccessionNumber": "A1", "StudyInstanceUID": generate_uid(),
                       "SeriesInstanceUID": generate_uid(), "SeriesNumber": 1, "InstanceNumber": 1}.items():
        setattr(ds, key, value)
    fileset = FileSet()
    fileset.add(ds)
    fileset.write(root)
    return root / "DICOMDIR"


def test_a_dicomdir_is_not_a_film_and_names_where_its_images_are(tmp_path, cxr_dir, nano_pth, capsys):
    dicomdir = _dicomdir_export(tmp_path / "cd", film(cxr_dir))
    assert not is_image_file(dicomdir)  # in a folder it is listed with the files that are not films
    with pytest.raises(ImageReadError) as err:  # given by name: one line saying where the images are
        read_image(dicomdir)
    assert str(err.value) == (f"{dicomdir}: is a DICOMDIR, the index of a DICOM export, not an image: give the "
                              "folders of the images it lists (1 listed, e.g. in PT000000/ST000000/SE000000/)")
    series = tmp_path / "cd" / "PT000000" / "ST000000" / "SE000000"
    shutil.copy(dicomdir, series / "DICOMDIR")  # an export flattened by hand: the index beside its films
    out = tmp_path / "masks"
    assert segment(series, "--out", out, nano_pth=nano_pth) == 0
    assert {name: row["status"] for name, row in rows_of(out).items()} == {"IM000000": "ok"}
    assert "(DICOMDIR, an export's index;" in capsys.readouterr().err  # named among the skipped files, as what it is


def test_a_path_too_long_for_the_file_system_is_one_row_and_the_run_goes_on(tmp_path, cxr_dir, nano_pth):
    """An input whose name is longer than the file system allows (a 300-character name from a PACS export
    script): its row says so; the other films are segmented."""
    long_name = tmp_path / ("x" * 300 + ".png")
    real = sorted((cxr_dir / "images").glob("*.png"))[0]
    assert segment(long_name, real, "--out", tmp_path / "masks", nano_pth=nano_pth) == 1
    rows = rows_of(tmp_path / "masks")
    assert rows[real.name]["status"] == "ok"
    assert rows[long_name.name]["status"] == "error" and "too long" in rows[long_name.name]["error"]


def test_a_films_mask_beside_it_is_not_segmented_as_a_film(tmp_path, cxr_dir, nano_pth, capsys):
    """A folder of films with their masks beside them (``a.png`` + ``a_mask.png``, as the bundled sample and many
    exports keep them): the masks are named among the skipped files, not segmented; a film whose name merely
    ends in _mask, with no film beside it, is still a film."""
    scans = tmp_path / "export"
    scans.mkdir()
    images = sorted((cxr_dir / "images").glob("*.png"))
    shutil.copy(images[0], scans / "a.png")
    shutil.copy(cxr_dir / "masks" / images[0].name, scans / "a_mask.png")
    shutil.copy(images[1], scans / "lonely_mask.png")
    assert segment(scans, "--out", tmp_path / "masks", nano_pth=nano_pth) == 0
    assert set(rows_of(tmp_path / "masks")) == {"a.png", "lonely_mask.png"}
    assert "1 mask beside its film (NAME_mask beside NAME), not segmented: a_mask.png" in capsys.readouterr().err


def test_a_large_export_of_films_with_their_masks_is_listed_in_linear_time(tmp_path):
    """10,000 files (5,000 films + their masks beside them): listing them is no quadratic pass (it ran on the
    Batch dock's GUI thread and took seconds per thousand films)."""
    import time

    from napari_adaqat.data import describe_skipped, scan_inputs

    export = tmp_path / "export"
    export.mkdir()
    for i in range(5000):
        (export / f"f{i:05d}.png").touch()
        (export / f"f{i:05d}_mask.png").touch()
    start = time.perf_counter()
    files, skipped = scan_inputs([export])
    line = describe_skipped(skipped)
    assert time.perf_counter() - start < 3.0  # quadratic: ~12 s
    assert len(files) == len(skipped) == 5000 and line.startswith("5000 masks beside their films")
