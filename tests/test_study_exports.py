"""Files of real study exports that nobody here wrote (a QA pass's finds, fifth hospital-files pass):

- a DICOM Segmentation (our own ``--format dcm-seg`` output, or another tool's) among the films was segmented as
  if it were a radiograph; Presentation States and Key Objects failed the run (exit 1). They are now 'ignored',
  said in one line each, and the run succeeds; napari opens a SEG as a Labels layer;
- a Pixel Aspect Ratio (0028,0034) without a pixel spacing was ignored: Dice 0.654 against 0.962;
- a signed film with an undeclared border at -32768 was squashed into its top tenth: Dice 0.677;
- a lateral view came back 'ok', unflagged; a vendor's private transfer syntax read as "invalid";
- napari named two files ``1.2.840.113619.2.55.3`` and ``…55.4`` alike; the API took no path as bytes;
- ``--format dcm-seg`` ran the model before finding that no SEG could reference the film.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from napari_adaqat._reader import read_dicom_layers
from napari_adaqat.cli import main
from napari_adaqat.inference.segmenter import open_model
from napari_adaqat.io import ImageReadError, read_image, read_mask
from napari_adaqat.io.dicom_seg import write_dicom_seg
from napari_adaqat.io.image_data import NotAFilm
from napari_adaqat.metrics import dice
from napari_adaqat.model import loading
from test_dicom import make_dicom  # tests/ is on sys.path (pytest rootdir-less import)

ROOT = Path(__file__).resolve().parents[1]
FILM = ROOT / "tests/data/cxr/images/covid19_v7__5782ae15.png"
needs_default = pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="bundled default model not installed")


def _film() -> np.ndarray:
    return np.asarray(Image.open(FILM).convert("L"))


def _uids() -> dict:
    return {"StudyInstanceUID": generate_uid(), "SeriesInstanceUID": generate_uid(), "PatientID": "QA"}


def _pixel_less(path: Path, sop_class: str, modality: str) -> Path:
    """A DICOM object of a study export with no pixel data (a Presentation State, a Key Object Selection)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality = modality
    ds.save_as(path, enforce_file_format=True)
    return path


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        return {Path(row["file"]).name: row for row in csv.DictReader(fh)}


@needs_default
def test_a_study_export_s_other_objects_are_ignored_not_segmented(tmp_path, capsys):
    study = tmp_path / "study"
    study.mkdir()
    film = make_dicom(study / "IM0001", (_film().astype(np.uint16) * 16), bits_stored=12, **_uids())
    write_dicom_seg(study / "IM0002", film, read_mask(ROOT / "tests/data/cxr/masks/covid19_v7__5782ae15.png"))
    _pixel_less(study / "IM0003", "1.2.840.10008.5.1.4.1.1.11.1", "PR")
    _pixel_less(study / "IM0004", "1.2.840.10008.5.1.4.1.1.88.59", "KO")
    assert main(["segment", str(study), "--out", str(tmp_path / "out")]) == 0  # nothing failed
    rows = _rows(tmp_path / "out")
    assert {name: row["status"] for name, row in rows.items()} == {
        "IM0001": "ok", "IM0002": "ignored", "IM0003": "ignored", "IM0004": "ignored"}
    assert "is a DICOM Segmentation (a mask, not a film)" in rows["IM0002"]["error"]
    assert "Grayscale Softcopy Presentation State" in rows["IM0003"]["error"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*_mask.png")) == ["IM0001_mask.png"]
    captured = capsys.readouterr()
    assert "1 segmented, 0 already done, 0 failed, 3 ignored (not films)" in captured.out
    assert captured.err.count("adaqat segment: note: ") == 3

    # the API refuses it in one line; a SEG is still read as a mask; napari shows it as labels
    with pytest.raises(NotAFilm, match="IM0002: is a DICOM Segmentation"):
        read_image(study / "IM0002")
    assert read_mask(study / "IM0002").sum() > 0
    (data, kwargs, kind), = read_dicom_layers(str(study / "IM0002"))
    assert kind == "labels" and kwargs["name"] == "IM0002 (SEG)" and data.sum() == read_mask(study / "IM0002").sum()
    with pytest.raises(NotAFilm, match="Key Object Selection"):
        read_dicom_layers(str(study / "IM0004"))
    seg = pydicom.dcmread(study / "IM0002")  # a SEG of two frames: a stack of labels
    seg.NumberOfFrames, seg.PixelData = 2, seg.PixelData * 2
    seg.save_as(tmp_path / "two_frames.dcm")
    (stack, kwargs, kind), = read_dicom_layers(str(tmp_path / "two_frames.dcm"))
    assert kind == "labels" and stack.shape == (2, *data.shape) and (stack[1] == data).all()

    # a radiograph's header without its pixels (a header-only export) is a failure, not an object to ignore
    header_only = pydicom.dcmread(film)
    del header_only.PixelData
    header_only.save_as(tmp_path / "header_only.dcm")
    with pytest.raises(ImageReadError, match="no pixel data") as refused:
        read_image(tmp_path / "header_only.dcm")
    assert not isinstance(refused.value, NotAFilm)


@needs_default
def test_a_pixel_aspect_ratio_gives_the_film_its_shape(tmp_path):
    half = _film()[::2].astype(np.uint16) * 16  # pixels twice as tall as wide
    spacing = read_image(make_dicom(tmp_path / "spacing.dcm", half, bits_stored=12, PixelSpacing=[0.4, 0.2]))
    ratio = read_image(make_dicom(tmp_path / "ratio.dcm", half, bits_stored=12, PixelAspectRatio=[2, 1]))
    assert ratio.spacing is None and ratio.shape_spacing == (2.0, 1.0)  # a shape, no mm
    model = open_model("default", device="cpu")
    truth = read_mask(ROOT / "tests/data/cxr/masks/covid19_v7__5782ae15.png")[::2]
    by_spacing, by_ratio = model.segment(spacing), model.segment(ratio)
    np.testing.assert_array_equal(by_ratio, by_spacing)
    assert dice(by_ratio, truth) > 0.93 > dice(model.segment(ratio.pixels), truth)  # bare pixels: stretched
    (_, kwargs, _), = read_dicom_layers(str(tmp_path / "ratio.dcm"))
    assert kwargs["scale"] == (2.0, 1.0) and "units" not in kwargs  # shown at its shape, in no unit


def test_an_undeclared_border_at_the_minimum_keeps_the_film_s_contrast(tmp_path):
    signed = (_film().astype(np.int16) * 16 - 2048).astype(np.int16)
    signed[:, :40] = signed[:, -40:] = -32768
    declared = read_image(make_dicom(tmp_path / "pad.dcm", signed, bits_stored=16, PixelPaddingValue=-32768))
    undeclared = read_image(make_dicom(tmp_path / "nopad.dcm", signed, bits_stored=16))
    inside = undeclared.pixels[:, 40:-40]
    assert inside.min() == 0.0 and inside.max() == 1.0  # was 0.90..1.00
    np.testing.assert_allclose(undeclared.pixels, declared.pixels, atol=1e-6)
    assert (undeclared.pixels[:, :40] == 0).all()  # the border black
    two_levels = np.zeros((64, 64), np.uint16)
    two_levels[:, 32:] = 1000  # a mask or test pattern: no border to find (was read all black)
    np.testing.assert_array_equal(read_image(make_dicom(tmp_path / "two.dcm", two_levels)).pixels, two_levels / 1000)
    ordinary = _film().astype(np.uint16) * 16
    ordinary[:, :40] = 0  # a black border just below the film's own range is the film's: unchanged
    np.testing.assert_allclose(read_image(make_dicom(tmp_path / "zero.dcm", ordinary, bits_stored=16)).pixels,
                               ordinary / ordinary.max(), atol=1e-6)


@needs_default
def test_a_lateral_view_is_flagged_and_dcm_seg_refusals_come_before_the_model(tmp_path, capsys, monkeypatch):
    films = tmp_path / "films"
    films.mkdir()
    make_dicom(films / "lat.dcm", _film().astype(np.uint16) * 16, bits_stored=12, ViewPosition="LL", **_uids())
    make_dicom(films / "pa.dcm", _film().astype(np.uint16) * 16, bits_stored=12, ViewPosition="PA", **_uids())
    assert main(["segment", str(films), "--out", str(tmp_path / "out")]) == 0
    rows = _rows(tmp_path / "out")
    assert rows["lat.dcm"]["review"] == "1" and rows["lat.dcm"]["note"].startswith("lateral view (ViewPosition LL)")
    assert rows["pa.dcm"]["note"] == ""
    assert "lat.dcm: lateral view (ViewPosition LL)" in capsys.readouterr().err

    nouid = tmp_path / "nouid"
    nouid.mkdir()
    make_dicom(nouid / "a.dcm", _film().astype(np.uint16) * 16, bits_stored=12)  # no Study / Series UID

    def no_model(*_args, **_kwargs):
        raise AssertionError("the model ran on a film no SEG can reference")

    monkeypatch.setattr("napari_adaqat.inference.engine.Engine.segment", no_model)
    assert main(["segment", str(nouid), "--out", str(tmp_path / "seg"), "--format", "dcm-seg"]) == 1
    assert "lacks StudyInstanceUID, SeriesInstanceUID; use --format png or tif" in _rows(tmp_path / "seg")["a.dcm"]["error"]


def test_private_syntax_reader_names_and_bytes_paths(tmp_path):
    path = make_dicom(tmp_path / "ge.dcm", _film().astype(np.uint16) * 16, bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.113619.5.2"  # GE's own
    pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=True, enforce_file_format=True)
    with pytest.raises(ImageReadError, match=r"private transfer syntax 1\.2\.840\.113619\.5\.2: .*export the film "
                                             r"uncompressed \(Explicit VR Little Endian\)"):
        read_image(path)
    # a standard UID this pydicom does not know (as JPEG XL, 1.2.840.10008.1.2.4.110-112, in pydicom 3.0; pydicom
    # writes no such file, so the UID is patched in, of the same length)
    path.write_bytes(path.read_bytes().replace(b"1.2.840.113619.5.2", b"1.2.840.10008.1.29"))
    with pytest.raises(ImageReadError, match=r"a DICOM transfer syntax newer than this pydicom 1\.2\.840\.10008"):
        read_image(path)

    names = []
    for uid in ("1.2.840.113619.2.55.3", "1.2.840.113619.2.55.4"):
        make_dicom(tmp_path / uid, _film()[:64, :64], bits_stored=8)
        names += [kwargs["name"] for _, kwargs, _ in read_dicom_layers(str(tmp_path / uid))]
    assert names == ["1.2.840.113619.2.55.3", "1.2.840.113619.2.55.4"]  # a UID's last part is no suffix


@needs_default
def test_a_path_given_as_bytes_is_read(tmp_path):
    model = open_model("default", device="cpu")
    np.testing.assert_array_equal(model.segment(os.fsencode(FILM)), model.segment(FILM))


def test_a_lateral_view_coded_only_in_view_code_sequence_gets_its_note(tmp_path):
    """A QA find: a lateral film whose view is coded only in View Code Sequence (ViewPosition empty) got no note."""
    from pydicom.dataset import Dataset

    from napari_adaqat.inference.inputs import view_note

    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "R-10236", "SRT", "left lateral"
    path = make_dicom(tmp_path / "lat.dcm", _film().astype(np.uint16) * 16, bits_stored=12, ViewCodeSequence=[code])
    assert view_note(read_image(path)).startswith("lateral view (View Code Sequence: left lateral): the model was")
    for frontal in ("postero-anterior", "left lateral decubitus"):  # (a decubitus film is frontal)
        code.CodeMeaning = frontal
        again = make_dicom(tmp_path / "f.dcm", _film().astype(np.uint16) * 16, bits_stored=12, ViewCodeSequence=[code])
        assert view_note(read_image(again)) == "", frontal


def test_a_screen_capture_is_noted_as_no_film(tmp_path):
    """A QA find: an RGB secondary capture of a workstation's screen (Modality OT, ConversionType WSD) got no note."""
    from napari_adaqat.inference.inputs import view_note

    path = make_dicom(tmp_path / "sc.dcm", _film().astype(np.uint16) * 16, bits_stored=12, Modality="OT",
                      ConversionType="WSD")
    assert view_note(read_image(path)).startswith("secondary capture, a workstation's screen capture (ConversionType "
                                                  "WSD), not a film")
    digitised = make_dicom(tmp_path / "df.dcm", _film().astype(np.uint16) * 16, bits_stored=12, ConversionType="DF")
    assert view_note(read_image(digitised)) == ""
