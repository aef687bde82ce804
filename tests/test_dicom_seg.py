"""DICOM SEG out: ``adaqat segment --format dcm-seg`` and the napari writer, read back with highdicom;
``--frame`` for multi-frame files."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from skimage.io import imread

from napari_adaqat.cli import main
from napari_adaqat.io import read_mask
from napari_adaqat.io.dicom_seg import DicomSegError, write_dicom_seg
from napari_adaqat.model.loading import DEFAULT_MODEL
from test_dicom import make_dicom  # tests/ is on sys.path (pytest rootdir-less import)
from test_dicom_errors import multiframe

PLUGIN = "napari-adaqat"


def radiograph(cxr_dir: Path, index: int = 1) -> np.ndarray:
    """A real CC-BY chest radiograph, (512, 512) uint8."""
    return imread(sorted((cxr_dir / "images").glob("*.png"))[index])


def clinical_dicom(path: Path, pixels: np.ndarray, **attrs) -> Path:
    """``pixels`` as a DX image with the identifiers a PACS file carries."""
    return make_dicom(path, pixels, bits_stored=8 if pixels.dtype == np.uint8 else 16,
                      StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid(), PatientID="ADQ-0001",
                      PatientName="Test^Patient", StudyDate="20240102", AccessionNumber="A123",
                      PixelSpacing=[0.3, 0.3], **attrs)


def seg_pixels(seg_path: Path, source: Path, frame: int | None = None) -> np.ndarray:
    """The SEG's Lung segment over ``source`` (frame ``frame`` of a multi-frame one), as bool (H, W)."""
    seg = hd.seg.segread(seg_path)
    uid = pydicom.dcmread(source).SOPInstanceUID
    if frame is None:
        px = seg.get_pixels_by_source_instance([uid], segment_numbers=[1])
    else:
        px = seg.get_pixels_by_source_frame(uid, source_frame_numbers=[frame + 1], segment_numbers=[1])
    return px[0, :, :, 0] > 0


def _rows(out: Path) -> list[dict]:
    with (out / "results.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_cli_writes_a_seg_that_references_the_source(tmp_path, cxr_dir):
    scans = tmp_path / "scans"
    scans.mkdir()
    source = clinical_dicom(scans / "chest.dcm", radiograph(cxr_dir))
    (scans / "plain.png").write_bytes((sorted((cxr_dir / "images").glob("*.png"))[2]).read_bytes())
    assert main(["segment", str(scans), "--out", str(tmp_path / "seg"), "--format", "dcm-seg", "--device", "cpu"]) == 1
    assert main(["segment", str(source), "--out", str(tmp_path / "png"), "--device", "cpu"]) == 0
    rows = {Path(r["file"]).name: r for r in _rows(tmp_path / "seg")}
    assert list(_rows(tmp_path / "seg")[0])[:10] == ["file", "status", "error", "box", "area_px", "seconds", "mask",
                                                    "ssim_vs_baseline", "quality", "review"]
    assert rows["plain.png"]["status"] == "error"
    assert "a DICOM SEG needs a DICOM input" in rows["plain.png"]["error"]
    out = tmp_path / "seg" / "chest_seg.dcm"
    assert rows["chest.dcm"]["status"] == "ok" and Path(rows["chest.dcm"]["mask"]) == out

    mask = read_mask(tmp_path / "png" / "chest_mask.png")
    got = seg_pixels(out, source)
    np.testing.assert_array_equal(got, mask)
    assert got.sum() == int(rows["chest.dcm"]["area_px"]) > 1000

    seg, src = pydicom.dcmread(out), pydicom.dcmread(source)
    ref = seg.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == src.SeriesInstanceUID
    assert ref.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert seg.StudyInstanceUID == src.StudyInstanceUID and seg.PatientID == "ADQ-0001"
    assert str(seg.PatientName) == "Test^Patient" and seg.AccessionNumber == "A123"
    assert seg.SOPInstanceUID != src.SOPInstanceUID and seg.SeriesInstanceUID != src.SeriesInstanceUID
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    segment = seg.SegmentSequence[0]
    assert segment.SegmentLabel == "Lung" and segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "39607008"  # SCT Lung
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"  # SCT Anatomical Structure
    assert segment.AnatomicRegionSequence[0].CodingSchemeDesignator == "SCT"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "napari-adaqat" and algorithm.AlgorithmVersion
    assert hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest() in algorithm.AlgorithmParameters


def test_seg_is_refused_for_a_non_dicom_source(tmp_path, cxr_dir):
    png = sorted((cxr_dir / "images").glob("*.png"))[0]
    with pytest.raises(DicomSegError) as err:
        write_dicom_seg(tmp_path / "x.dcm", png, np.zeros((512, 426), bool))
    assert "\n" not in str(err.value) and "needs a DICOM source image" in str(err.value)
    assert not (tmp_path / "x.dcm").exists()


def test_frame_picks_the_frame_and_is_required(tmp_path, cxr_dir):
    first, second = radiograph(cxr_dir, 1), radiograph(cxr_dir, 2)
    scans = tmp_path / "scans"
    scans.mkdir()
    stack = multiframe(scans / "cine.dcm", np.stack([first, second]).astype(np.uint16) * 16,
                       StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid())
    single = clinical_dicom(scans / "second.dcm", second.astype(np.uint16) * 16)

    assert main(["segment", str(stack), "--out", str(tmp_path / "none"), "--device", "cpu"]) == 1
    [row] = _rows(tmp_path / "none")
    assert row["status"] == "error" and row["error"] == (
        f"{stack}: multi-frame DICOM with 2 frames; choose one with --frame N (0-based, 0 to 1)")

    assert main(["segment", str(stack), "--out", str(tmp_path / "f1"), "--frame", "1", "--device", "cpu"]) == 0
    assert main(["segment", str(single), "--out", str(tmp_path / "one"), "--device", "cpu"]) == 0
    assert main(["segment", str(stack), "--out", str(tmp_path / "f0"), "--frame", "0", "--device", "cpu"]) == 0
    frame1 = read_mask(tmp_path / "f1" / "cine_mask.png")
    np.testing.assert_array_equal(frame1, read_mask(tmp_path / "one" / "second_mask.png"))
    assert not np.array_equal(frame1, read_mask(tmp_path / "f0" / "cine_mask.png"))

    assert main(["segment", str(stack), "--out", str(tmp_path / "seg"), "--frame", "1", "--format", "dcm-seg",
                 "--device", "cpu"]) == 0
    np.testing.assert_array_equal(seg_pixels(tmp_path / "seg" / "cine_seg.dcm", stack, frame=1), frame1)


def test_results_record_the_frame_and_a_rerun_of_another_frame_says_so(tmp_path, cxr_dir, capsys):
    """results.csv names the frame a multi-frame film's mask is of; ``--frame 1`` into a folder that holds the
    film's frame-0 mask keeps that mask (a rerun adds what is missing) and says that it is of frame 0."""
    scans = tmp_path / "scans"
    scans.mkdir()
    stack = multiframe(scans / "cine.dcm", np.stack([radiograph(cxr_dir, 1), radiograph(cxr_dir, 2)]).astype(
        np.uint16) * 16, StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid())
    single = clinical_dicom(scans / "one.dcm", radiograph(cxr_dir, 3).astype(np.uint16) * 16)
    out = tmp_path / "masks"
    assert main(["segment", str(scans), "--out", str(out), "--frame", "0", "--device", "cpu"]) == 0
    frames = {Path(row["file"]).name: row["frame"] for row in _rows(out)}
    assert frames == {"cine.dcm": "0", "one.dcm": ""}
    before = (out / "cine_mask.png").read_bytes()
    capsys.readouterr()
    assert main(["segment", str(stack), str(single), "--out", str(out), "--frame", "1", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "1 multi-frame film(s) already have a mask of another frame" in err and "cine.dcm (frame 0)" in err
    assert "one.dcm" not in err.split("another frame")[1]  # a one-frame film's mask fits any --frame
    assert (out / "cine_mask.png").read_bytes() == before  # kept, not overwritten
    assert {Path(row["file"]).name: row["frame"] for row in _rows(out)}["cine.dcm"] == "0"


@pytest.mark.gui
def test_napari_labels_over_a_dicom_save_as_seg(make_napari_viewer, tmp_path, cxr_dir):
    pytest.importorskip("napari")
    source = clinical_dicom(tmp_path / "chest.dcm", radiograph(cxr_dir))
    viewer = make_napari_viewer()
    [image] = viewer.open(source, plugin=PLUGIN)
    assert image.metadata["source"] == str(source) and image.metadata["format"] == "dicom"
    mask = np.zeros(image.data.shape, np.uint8)
    mask[100:400, 60:240] = 1
    mask[100:400, 280:460] = 2  # any label is lung
    labels = viewer.add_labels(mask, name="lung mask", scale=image.scale)
    out = tmp_path / "saved_seg.dcm"
    written = labels.save(str(out), plugin=PLUGIN)
    assert [Path(p) for p in written] == [out]
    np.testing.assert_array_equal(seg_pixels(out, source), mask > 0)
    seg = pydicom.dcmread(out)
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == \
        pydicom.dcmread(source).SOPInstanceUID
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"  # drawn by hand: no model recorded


@pytest.mark.gui
def test_napari_seg_writer_refuses_labels_over_a_png(make_napari_viewer, tmp_path, cxr_dir):
    pytest.importorskip("napari")
    viewer = make_napari_viewer()
    png = sorted((cxr_dir / "images").glob("*.png"))[1]
    [image] = viewer.open(png)
    labels = viewer.add_labels(np.ones(image.data.shape[:2], np.uint8), name="lung mask")
    with pytest.raises(Exception) as err:
        labels.save(str(tmp_path / "x.dcm"), plugin=PLUGIN)
    text = str(err.value) + str(getattr(err.value, "__cause__", ""))
    assert "is not over a DICOM image opened with the napari-adaqat reader" in text
    assert not (tmp_path / "x.dcm").exists()


@pytest.mark.gui
def test_napari_reader_gives_a_stack_and_its_seg_references_the_frame(make_napari_viewer, tmp_path):
    pytest.importorskip("napari")
    frames = np.stack([np.tile(np.arange(40, dtype=np.uint16) * (i + 1) * 50, (30, 1)) for i in range(3)])
    source = multiframe(tmp_path / "cine.dcm", frames, StudyInstanceUID=generate_uid(),
                        SeriesInstanceUID=generate_uid(), PixelSpacing=[0.5, 0.5])
    viewer = make_napari_viewer()
    [image] = viewer.open(source, plugin=PLUGIN)
    assert image.data.shape == (3, 30, 40) and image.metadata["frames"] == 3
    np.testing.assert_allclose(image.scale, [1.0, 0.5, 0.5])
    mask = np.zeros(image.data.shape, np.uint8)
    mask[2, 5:20, 10:30] = 1
    labels = viewer.add_labels(mask, name="lung mask", scale=image.scale)
    out = tmp_path / "cine_seg.dcm"
    labels.save(str(out), plugin=PLUGIN)
    np.testing.assert_array_equal(seg_pixels(out, source, frame=2), mask[2] > 0)
