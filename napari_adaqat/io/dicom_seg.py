"""Write a lung mask as a DICOM Segmentation (SEG) object that references its source radiograph.

One binary segment "Lung" (SCT 91723000 Anatomical Structure / SCT 39607008 Lung, region SCT 816094009
Thorax), algorithm "napari-adaqat" with the package version and the model file's SHA-256 in the
algorithm parameters, new Series/SOP Instance UIDs, patient and study attributes copied from the
source (highdicom does the encoding).
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from .dicom_open import PIXEL_KEYWORDS, frame_count, is_dicom, open_dicom
from ..util.atomic import atomic_write

ALGORITHM_NAME = "napari-adaqat"
SEG_SERIES_NUMBER = 900
# Type 2 attributes highdicom copies from the source: present, possibly empty
_TYPE2 = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
          "StudyDate", "StudyTime", "ReferringPhysicianName")
_REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


class DicomSegError(Exception):
    """A DICOM SEG cannot be written; the message is one line.  Not a ValueError: napari's writer
    lookup swallows those, and the user must see why nothing was saved."""


def package_version() -> str:
    """This package's installed version ("unknown" when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("napari-adaqat")
    except PackageNotFoundError:
        return "unknown"


@lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file (cached by path, size and modification time)."""
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


CLI_HINT = "; use --format png or tif for it"  # (the docks, which have no --format, leave it out)


def check_seg_source(path: str | os.PathLike, ds=None) -> None:
    """Raise :class:`DicomSegError` when no SEG can reference DICOM ``path`` (its UIDs missing), before a model runs
    on it; ``ds``: its data set, when read already."""
    ds = open_dicom(Path(path)) if ds is None else ds
    missing = [k for k in _REQUIRED_UIDS if not ds.get(k)]
    if missing:
        raise DicomSegError(f"{path}: cannot write a DICOM SEG: the source image lacks {', '.join(missing)}"
                            + CLI_HINT)


def _source_for_seg(path: Path, ds):
    """A pixel-less copy of the source with empty Type 2 patient/study attributes where absent."""
    check_seg_source(path, ds)
    from pydicom.dataset import Dataset

    src = Dataset()
    for elem in ds:
        if elem.keyword not in PIXEL_KEYWORDS:
            src.add(elem)
    src.file_meta = ds.file_meta
    for keyword in _TYPE2:
        if keyword not in src:
            setattr(src, keyword, "")
    if frame_count(ds) > 1:
        del src.NumberOfFrames  # one frame is referenced: see _reference_frame
    if "SliceThickness" not in src and "PixelSpacing" in src:
        # a projection radiograph: a Pixel Measures item without slice thickness is not readable
        # by highdicom; the SEG's geometry is its source image's
        del src.PixelSpacing
    return src


def _description(algorithm_type: str, model_file: str | os.PathLike | None):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    identification = None
    if algorithm_type != "MANUAL":
        params = ({"model_file": Path(model_file).name, "model_sha256": file_sha256(model_file)}
                  if model_file is not None else {"model_file": "not recorded"})
        identification = hd.AlgorithmIdentificationSequence(
            name=ALGORITHM_NAME, family=codes.DCM.ArtificialIntelligence, version=package_version(),
            source="AdaLoRA-QAT SAM, box prompt", parameters=params)
    return hd.seg.SegmentDescription(
        segment_number=1, segment_label="Lung", segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=codes.SCT.Lung, algorithm_type=algorithm_type,
        algorithm_identification=identification, anatomic_regions=[codes.SCT.Thorax])


def _reference_frame(seg, frame: int) -> None:
    """Point every source reference at frame ``frame`` (0-based) of the multi-frame source."""
    for item in seg.PerFrameFunctionalGroupsSequence:
        for derivation in item.get("DerivationImageSequence", []):
            for source in derivation.get("SourceImageSequence", []):
                source.ReferencedFrameNumber = frame + 1


def write_dicom_seg(path: str | os.PathLike, source: str | os.PathLike, mask: np.ndarray, *,
                    frame: int | None = None, model_file: str | os.PathLike | None = None,
                    algorithm_type: str = "AUTOMATIC", overwrite: bool = False) -> Path:
    """Write ``mask > 0`` (H, W) over DICOM ``source`` as a binary SEG at ``path``; return the path.

    ``frame`` (0-based) is the segmented frame of a multi-frame source.  ``algorithm_type``:
    AUTOMATIC, SEMIAUTOMATIC or MANUAL (no algorithm identification).  A non-DICOM source raises
    :class:`DicomSegError`; an existing ``path`` raises FileExistsError unless ``overwrite``.
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    p, src_path = Path(path), Path(source)
    if not is_dicom(src_path):
        raise DicomSegError(f"{src_path}: a DICOM SEG needs a DICOM source image; write a .png or .tif mask instead")
    ds = open_dicom(src_path)
    frames = frame_count(ds)
    if frames > 1 and (frame is None or not 0 <= frame < frames):
        raise DicomSegError(f"{src_path}: multi-frame source ({frames} frames): name the segmented frame "
                            f"(0 to {frames - 1})")
    data = np.asarray(mask)
    if data.shape != (int(ds.Rows), int(ds.Columns)):
        raise DicomSegError(f"{p}: mask shape {data.shape} does not match the source image ({ds.Rows}, {ds.Columns})")
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p}: already exists (pass overwrite=True to replace it)")
    version = package_version()
    seg = hd.seg.Segmentation(
        source_images=[_source_for_seg(src_path, ds)], pixel_array=(data > 0).astype(np.uint8)[None],
        segmentation_type="BINARY", segment_descriptions=[_description(algorithm_type, model_file)],
        series_instance_uid=generate_uid(), series_number=SEG_SERIES_NUMBER, sop_instance_uid=generate_uid(),
        instance_number=1, manufacturer=ALGORITHM_NAME, manufacturer_model_name="AdaLoRA-QAT lung segmentation",
        software_versions=version, device_serial_number="none", content_label="LUNG",
        content_description="Lung mask by napari-adaqat")
    if frames > 1:
        _reference_frame(seg, frame)
    atomic_write(p, lambda tmp: seg.save_as(tmp, enforce_file_format=True), fsync=False)
    return p
