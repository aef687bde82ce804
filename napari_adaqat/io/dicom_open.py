"""Open a DICOM file as a checked pydicom Dataset, with one specific one-line error per fault.

Files without the 128-byte preamble and 'DICM' marker are parsed too (implicit or explicit VR, either
byte order), but only kept when they hold an image (Rows, Columns, pixel data), so random files are
never taken for DICOM.  Faults told apart: not DICOM, truncated, corrupt, bad VR, no pixel data,
no transfer syntax, missing image attributes.
"""
from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

from .image_data import IMAGE_SIGNATURES, ImageReadError, NotAFilm, check_file, fail, other_kind, warn_read

DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom")
PIXEL_KEYWORDS: tuple[str, ...] = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
PIXEL_TAGS: tuple[int, ...] = (0x7FE00010, 0x7FE00008, 0x7FE00009)
UNDEFINED = 0xFFFFFFFF
AGAIN = "; copy or export it again"  # what to do with a file cut short or emptied on its way
# attributes the pixel decoders need: keyword -> (tag, required)
IMAGE_ATTRIBUTES: dict[str, tuple[str, bool]] = {
    "Rows": ("(0028,0010)", True),
    "Columns": ("(0028,0011)", True),
    "SamplesPerPixel": ("(0028,0002)", True),
    "BitsAllocated": ("(0028,0100)", True),
    "BitsStored": ("(0028,0101)", True),
    "PixelRepresentation": ("(0028,0103)", True),
    "NumberOfFrames": ("(0028,0008)", False),
    "PlanarConfiguration": ("(0028,0006)", False),
}
_MAX_LEADING_BYTES = 4  # stray bytes tolerated before a preamble-less data set (pydicom's no_meta.dcm has one)
_FIRST_GROUPS = (0x0002, 0x0008)  # a data set without preamble starts with its file meta or identifying group


def has_dicm_magic(path: str | os.PathLike) -> bool:
    """True if the file has the 'DICM' marker after the 128-byte preamble."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _valid_vrs() -> set[bytes]:
    from pydicom.valuerep import VR

    return {v.value.encode() for v in VR if len(v.value) == 2}


def _candidates(head: bytes) -> list[tuple[int, bool, bool]]:
    """``(offset, implicit VR, little endian)`` where ``head`` plausibly starts a data set."""
    vrs, found = _valid_vrs(), []
    for offset in range(min(_MAX_LEADING_BYTES, max(len(head) - 8, 0)) + 1):
        chunk = head[offset:offset + 8]
        if len(chunk) < 8:
            break
        group_le, group_be = struct.unpack("<H", chunk[:2])[0], struct.unpack(">H", chunk[:2])[0]
        if chunk[4:6] in vrs:
            if group_le in _FIRST_GROUPS:
                found.append((offset, False, True))
            elif group_be in _FIRST_GROUPS:
                found.append((offset, False, False))
        elif group_le == 0x0008 and struct.unpack("<I", chunk[4:8])[0] < 1 << 16:
            found.append((offset, True, True))
    return found


def _parse_at(path: Path, raw: bytes, offset: int, implicit: bool, little: bool):
    """Parse ``raw[offset:]`` as a data set without preamble; ``None`` when it does not parse.

    A file meta group (0002) there is read as file meta; without one the transfer syntax is left
    out and filled in later from how the data set parsed (:func:`_fix_transfer_syntax`).
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset

    fp = DicomBytesIO(raw[offset:])
    fp.is_little_endian, fp.is_implicit_VR = little, implicit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if struct.unpack("<H" if little else ">H", raw[offset:offset + 2])[0] == 0x0002:
                ds = pydicom.dcmread(fp, force=True)
                ds.filename = str(path)
                return ds
            dataset = read_dataset(fp, implicit, little)
    except Exception:  # not a data set in this encoding
        return None
    ds = FileDataset(str(path), dataset, preamble=None, file_meta=FileMetaDataset(),
                     is_implicit_VR=implicit, is_little_endian=little)
    ds.set_original_encoding(implicit, little)
    return ds


def _is_image(ds) -> bool:
    return ds is not None and "Rows" in ds and "Columns" in ds and any(k in ds for k in PIXEL_KEYWORDS)


def _headless(path: Path) -> tuple[object | None, bool]:
    """Best parse of a file without the DICM marker: ``(dataset or None, is an image)``."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None, False
    best = None
    for offset, implicit, little in _candidates(raw[:64]):
        ds = _parse_at(path, raw, offset, implicit, little)
        if _is_image(ds):
            return ds, True
        if ds is not None and (best is None or len(ds) > len(best)):
            best = ds
    return best, False


def is_dicom(path: str | os.PathLike) -> bool:
    """True for the 'DICM' marker, a .dcm/.dicom suffix (unless the file is a PNG, JPEG, TIFF or BMP), or a
    preamble-less file that holds an image."""
    p = Path(path)
    if not p.is_file():  # a folder, FIFO or device is never opened (opening a FIFO blocks)
        return False
    if has_dicm_magic(p):
        return True
    try:
        with open(p, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return p.suffix.lower() in DICOM_SUFFIXES
    if p.suffix.lower() in DICOM_SUFFIXES:  # unless it holds a PNG, JPEG, TIFF or BMP (an export named .dcm)
        return not any(head.startswith(magic) for magic, _ in IMAGE_SIGNATURES)
    return bool(_candidates(head)) and _headless(p)[1]


DICOMDIR_NAME = "DICOMDIR"  # PS3.10: the index file of a DICOM export (CD, USB stick) has this name
MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"  # its SOP class, Media Storage Directory Storage


def is_dicomdir_name(path: str | os.PathLike) -> bool:
    """True for a file named ``DICOMDIR`` (any case), the index of a DICOM export, never an image."""
    return Path(path).name.upper() == DICOMDIR_NAME


def _dicomdir_problem(ds) -> str:
    """What to say about a DICOMDIR: it is an index, and where the images it lists lie."""
    files = [r.ReferencedFileID for r in ds.get("DirectoryRecordSequence", []) if r.get("ReferencedFileID")]
    where = ""
    if files:
        parts = [files[0]] if isinstance(files[0], str) else list(files[0])  # CS, one value per path component
        where = f" ({len(files)} listed, e.g. in {'/'.join(parts[:-1]) or '.'}/)"
    return f"is a DICOMDIR, the index of a DICOM export, not an image: give the folders of the images it lists{where}"


def _sop_name(ds) -> str:
    """`` (SOP class: Basic Text SR Storage)`` when the file names its SOP class, else ``""``."""
    from pydicom.uid import UID

    meta = getattr(ds, "file_meta", None)
    uid = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
    return f" (SOP class: {UID(str(uid)).name})" if uid else ""


def _check_truncated(path: Path, ds, caught: list) -> None:
    """Raise if the file ends inside its file meta, an element or the encapsulated pixel data."""
    size = path.stat().st_size
    texts = " ".join(str(w.message) for w in caught)
    if "End of file reached" in texts:
        raise fail(path, "truncated DICOM file: it ends before the end of a sequence or of the compressed pixel data")
    group_length = getattr(ds, "file_meta", {}).get("FileMetaInformationGroupLength")
    if group_length is not None and has_dicm_magic(path) and 132 + 12 + int(group_length) > size:
        raise fail(path, "truncated DICOM file: it ends inside the file meta header")
    from pydicom.datadict import DicomDictionary
    from pydicom.dataelem import RawDataElement
    from pydicom.uid import DeflatedExplicitVRLittleEndian


    last_end = None
    for tag in ds.keys():
        raw = ds.get_item(tag)
        if not isinstance(raw, RawDataElement) or raw.length == UNDEFINED:
            last_end = None
            continue
        got = len(raw.value or b"")
        if got < raw.length:
            if not any(int(t) in DicomDictionary for t in ds.keys()):  # random bytes parsed as an element
                raise fail(path, "corrupt DICOM file: no valid data elements after the file meta header")
            what = "the pixel data" if int(tag) in PIXEL_TAGS else f"element {tag}"
            raise fail(path, f"truncated DICOM file: {what} ends after {got} of {raw.length} bytes")
        last_end = raw.value_tell + raw.length
    deflated = getattr(ds, "file_meta", {}).get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian
    if last_end is not None and not deflated and has_dicm_magic(path) and 0 < size - last_end < 8:
        raise fail(path, "truncated DICOM file: it ends inside a data element header")


def _convert_all(path: Path, ds) -> None:
    """Convert every top-level element now, so a bad VR is reported here with its tag."""
    for tag in list(ds.keys()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds[tag]
        except NotImplementedError as exc:  # pydicom: "Unknown Value Representation 'ZZ' in tag ..."
            words = str(exc).split("'")
            vr = words[1] if len(words) > 2 else "?"
            raise fail(path, f"bad DICOM VR: unknown value representation {vr!r} in element {tag}") from exc
        except Exception as exc:
            raise fail(path, f"corrupt DICOM file: element {tag} cannot be read") from exc


def _check_attributes(path: Path, ds) -> None:
    """Missing required image attributes, or values invalid for their VR (e.g. IS '1A')."""
    required = [k for k, (_, needed) in IMAGE_ATTRIBUTES.items() if needed]
    if "PixelData" not in ds:  # float pixel data has no Pixel Representation nor Bits Stored
        required.remove("PixelRepresentation")
        required.remove("BitsStored")
    missing = [k for k in required if ds.get(k) in (None, "")]
    missing_pi = ds.get("PhotometricInterpretation") in (None, "")
    names = [_label(k) for k in missing] + (["Photometric Interpretation"] if missing_pi else [])
    if names:
        raise fail(path, f"DICOM image attributes missing: {', '.join(names)}; the pixel data cannot be interpreted")
    for keyword, (tag, _) in IMAGE_ATTRIBUTES.items():
        value = ds.get(keyword)
        if value in (None, ""):
            continue
        try:
            number = int(value)
        except (TypeError, ValueError):
            vr = ds[keyword].VR
            problem = f"bad DICOM VR: {_label(keyword)} {tag} is {str(value)!r}, not a valid {vr} value"
            raise fail(path, problem) from None
        if number < (0 if keyword in ("PixelRepresentation", "PlanarConfiguration") else 1):
            raise fail(path, f"bad DICOM value: {_label(keyword)} {tag} is {number}")


# decimal numbers (DS) that some sites write with a decimal comma ("1,5"), which pydicom keeps as text
COMMA_NUMBERS = ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth", "PixelSpacing",
                 "ImagerPixelSpacing")
PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
OTHER_PHOTOMETRICS = ("YBR_PARTIAL_422", "YBR_PARTIAL_420", "XYB", "HSV", "ARGB", "CMYK")  # (left to the decoders)


def _fix_site_habits(path: Path, ds) -> None:
    """Read what some sites write against the standard as they mean it: a decimal comma in the numbers the film's
    reading needs (``COMMA_NUMBERS``: "1,5" is 1.5, "0,139\\0,139" is 0.139 mm), a Photometric Interpretation in
    lower case ("monochrome1"), ``MONOCHROME`` (read as MONOCHROME2, one warning line), an empty Rescale Slope or
    Intercept (an anonymiser's blank: 1 and 0, as when absent).  An unknown Photometric Interpretation or a Rescale
    Slope of 0 is refused in one line naming the tag; anything else stays as written."""
    for keyword in COMMA_NUMBERS:
        element = ds.get(keyword) if keyword in ds else None
        if element is None:
            continue
        value = ds[keyword].value
        values = list(value) if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and not isinstance(
            value, (str, bytes)) else [value]
        if not any(isinstance(v, str) and "," in v for v in values):
            continue
        try:
            fixed = [float(v.replace(",", ".")) if isinstance(v, str) else float(v) for v in values]
        except ValueError:
            continue
        ds[keyword].value = fixed if len(fixed) > 1 else fixed[0]
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric.upper() in PHOTOMETRICS and photometric != photometric.upper():
        ds.PhotometricInterpretation = photometric.upper()
    elif photometric.upper() == "MONOCHROME":
        warn_read(f"{path}: Photometric Interpretation (0028,0004) is {photometric!r}, not a DICOM value; read as "
                  "MONOCHROME2 (low values dark)", stacklevel=3)
        ds.PhotometricInterpretation = "MONOCHROME2"
    elif photometric and photometric.upper() not in PHOTOMETRICS + OTHER_PHOTOMETRICS:
        raise fail(path, f"unknown Photometric Interpretation {photometric!r} (0028,0004); the pixel data cannot be "
                         "interpreted")
    for keyword, absent in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        if keyword in ds and ds[keyword].value in (None, "", b""):
            ds[keyword].value = absent
    try:
        slope = float(ds.RescaleSlope) if "RescaleSlope" in ds and "ModalityLUTSequence" not in ds else None
    except (TypeError, ValueError):
        slope = None
    if slope == 0.0 and str(ds.PhotometricInterpretation).startswith("MONOCHROME"):
        raise fail(path, "Rescale Slope (0028,1053) is 0: every pixel would have the same value; the header is "
                         "broken (a slope of 1 is usual for radiographs)")


def _label(keyword: str) -> str:
    from pydicom.datadict import dictionary_description, tag_for_keyword

    return dictionary_description(tag_for_keyword(keyword))


def _fix_transfer_syntax(path: Path, ds) -> None:
    """Fill a missing Transfer Syntax UID from how the data set was parsed (native pixel data only)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if meta.get("TransferSyntaxUID"):
        return
    pixel_tag = next(t for t in PIXEL_TAGS if t in ds)
    raw = ds.get_item(pixel_tag)
    if getattr(raw, "is_undefined_length", False) or getattr(raw, "length", 0) == UNDEFINED:
        raise fail(path, "no Transfer Syntax UID (0002,0010) and the pixel data is compressed: its codec cannot be "
                         "told; add the transfer syntax to the file meta")
    implicit, little = ds.original_encoding
    implicit = True if implicit is None else implicit
    little = True if little is None else little
    meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                              ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    ds._adaqat_assumed_syntax = True  # how the data set parsed


def syntax_was_assumed(ds) -> bool:
    """True when :func:`open_dicom` filled in a missing Transfer Syntax UID."""
    return bool(getattr(ds, "_adaqat_assumed_syntax", False))


def open_dicom(path: str | os.PathLike):
    """Read and check a DICOM image file; return its pydicom ``FileDataset`` (pixels not decoded).

    Raises ImageReadError (one line) for: not DICOM, truncated, corrupt, bad VR, no pixel data,
    compressed pixel data without a transfer syntax, missing image attributes.
    """
    import pydicom

    p = check_file(path)
    if p.stat().st_size == 0:
        raise fail(p, f"empty file (0 bytes){AGAIN}")
    magic = has_dicm_magic(p)
    ds, caught = None, []
    if magic:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ds = pydicom.dcmread(p)
            except Exception as exc:
                raise fail(p, "corrupt DICOM file: its data elements cannot be parsed") from exc
    else:
        ds, image = _headless(p)
        if ds is None or (not image and "SOPClassUID" not in ds):
            with p.open("rb") as fh:
                kind = other_kind(fh.read(64))  # a .dcm.gz renamed, a ZIP of a study...: say what it is
            raise fail(p, f"not a DICOM file: {kind}" if kind else
                       "not a DICOM file (no DICM marker and no DICOM image elements)")
    try:
        _check_truncated(p, ds, caught)
        _convert_all(p, ds)
        if not any(k in ds for k in PIXEL_KEYWORDS):
            meta = getattr(ds, "file_meta", None)
            if meta is not None and meta.get("MediaStorageSOPClassUID") == MEDIA_DIRECTORY:
                raise fail(p, _dicomdir_problem(ds), NotAFilm)
            sop = _sop_name(ds)  # a study export's Presentation State, Key Object, Structured Report...: no film
            image_class = "Image Storage" in sop  # (a radiograph's header without its pixels: a failure)
            raise fail(p, f"DICOM file has no pixel data{sop}" + (": not an image" if sop and not image_class else
                       ": a header without its image; export the image again" if image_class else
                       ": a report or a document? export the image series of the film"),
                       NotAFilm if sop and not image_class else ImageReadError)
        _fix_transfer_syntax(p, ds)
        _check_attributes(p, ds)
        _fix_site_habits(p, ds)
    except ImageReadError:
        raise
    except NotImplementedError as exc:  # pydicom meets a VR it does not know while walking the elements
        raise fail(p, "bad DICOM VR: an element has an unknown value representation") from exc
    except Exception as exc:  # anything else pydicom raises on a damaged data set (found by fuzzing)
        raise fail(p, f"corrupt DICOM file: its data elements cannot be read ({type(exc).__name__})") from exc
    return ds


def frame_count(ds) -> int:
    """Number of frames (1 when Number of Frames is absent); call after :func:`open_dicom`."""
    return int(ds.get("NumberOfFrames") or 1)


# DICOM objects with pixel data that are no radiograph: a mask or a map over another image
NOT_FILMS: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.66.4": "a DICOM Segmentation (a mask, not a film)",
    "1.2.840.10008.5.1.4.1.1.30": "a Parametric Map, not a film",
    "1.2.840.10008.5.1.4.1.1.481.2": "an RT Dose grid, not a film",
}
NOT_FILM_MODALITIES: dict[str, str] = {"SEG": NOT_FILMS["1.2.840.10008.5.1.4.1.1.66.4"],
                                       "RTDOSE": NOT_FILMS["1.2.840.10008.5.1.4.1.1.481.2"]}


def check_film_object(path: Path, ds) -> None:
    """Raise :class:`NotAFilm` for a DICOM image object that is no film (a Segmentation beside the films of an
    export is read as a mask by ``read_mask``, never segmented as a radiograph)."""
    meta = getattr(ds, "file_meta", None)
    uid = str(ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else "") or "")
    what = NOT_FILMS.get(uid) or NOT_FILM_MODALITIES.get(str(ds.get("Modality", "")).strip().upper())
    if what:
        raise fail(path, f"is {what} (Modality {ds.get('Modality', '?')}): ignored", NotAFilm)
