"""pydicom's own DICOM test files: every image decodes, or is refused for a reason no reader can fix.

Runs benchmarks/dicom_corpus.py, which also writes the table to build/dicom_corpus.md.
"""
from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pydicom
import pytest

ROOT = Path(__file__).resolve().parents[1]
INTERNAL = ("plugins", "Traceback", "exceptions were raised", "Error:", "object has no attribute", "libjpeg error")
# files refused, and why: none of these can be fixed by a reader (see pydicom's test_files/README.txt)
REFUSED = {
    "JPEG2000-embedded-sequence-delimiter.dcm":
        "corrupt compressed pixel data (JPEG 2000 Image Compression (1.2.840.10008.1.2.4.91))",
    "MR_truncated.dcm": "truncated file",
    "rtplan_truncated.dcm": "truncated file",
    "badVR.dcm": "bad VR (value not valid for its VR)",
    "meta_missing_tsyntax.dcm": "image attributes missing (Rows, Columns, ...)",
    "nested_priv_SQ.dcm": "image attributes missing (Rows, Columns, ...)",
}
# 12-bit JPEG Extended (JPGExtended.dcm, and JPEG-lossy.dcm, NEMA's non-conformant original that the GPL
# decoder refuses) decodes with or without the dicom-gpl extra: python-gdcm (io/dicom_jpeg12.py)
NO_PIXELS = {"ExplVR_BigEndNoMeta.dcm", "ExplVR_LitEndNoMeta.dcm", "UN_sequence.dcm", "empty_charset_LEI.dcm",
             "no_meta_group_length.dcm", "priv_SQ.dcm", "reportsi.dcm", "reportsi_with_empty_number_tags.dcm",
             "rtplan.dcm", "rtstruct.dcm", "test-SR.dcm", "waveform_ecg.dcm"}


@pytest.fixture(scope="module")
def corpus():
    spec = importlib.util.spec_from_file_location("dicom_corpus", ROOT / "benchmarks" / "dicom_corpus.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["dicom_corpus"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    out = ROOT / "build" / "dicom_corpus.md"
    assert module.main(["--out", str(out)]) == 0
    return module, module.run(), out


def test_every_image_decodes_or_is_refused_for_a_reason(corpus):
    _, rows, _ = corpus
    by_name = {r.file: r for r in rows}
    refused = {r.file: r.reason for r in rows if r.outcome == "refused"}
    no_pixels = {f for f, reason in refused.items() if reason.startswith("no pixel data")}
    assert no_pixels == NO_PIXELS
    assert {f: reason for f, reason in refused.items() if f not in NO_PIXELS} == REFUSED
    for name in ("JPGExtended.dcm", "JPEG-lossy.dcm", "SC_rgb_jpeg_gdcm.dcm", "MR_small_jpeg_ls_lossless.dcm",
                 "JPEGLSNearLossless_16.dcm",
                 "JPEG2000.dcm", "GDCMJ2K_TextGBR.dcm", "MR_small_RLE.dcm", "image_dfl.dcm", "no_meta.dcm"):
        assert by_name[name].outcome == "decoded", by_name[name]
    compressed = [r for r in rows if any(k in r.syntax for k in ("JPEG", "RLE")) and r.file not in REFUSED]
    assert compressed and all(r.outcome.startswith(("decoded", "ignored, not a film (its pixels decode)"))
                              for r in compressed if r.file not in NO_PIXELS)  # (rtdose_rle: its pixels decode)


@pytest.mark.skipif(not pydicom.__version__.startswith("3.0."), reason="counts are those of pydicom 3.0's test files")
def test_exact_counts(corpus):
    _, rows, _ = corpus
    assert len(rows) == 78
    reasons = {
        "no pixel data (not an image: SR, RT plan, waveform, ...)": 12,
        "truncated file": 2,
        "image attributes missing (Rows, Columns, ...)": 2,
        "bad VR (value not valid for its VR)": 1,
        "corrupt compressed pixel data (JPEG 2000 Image Compression (1.2.840.10008.1.2.4.91))": 1,
        "not a film (a Segmentation, parametric map or RT dose: pixels over another image)": 8,
    }
    # README: 60 decode, with the dicom-gpl extra or without; 8 of them (2 SEG, 6 RT Dose) are no films to segment
    assert Counter(r.outcome for r in rows) == {"decoded": 48, "decoded (multi-frame)": 4, "refused": 18,
                                                "ignored, not a film (its pixels decode)": 8}
    assert Counter(r.reason for r in rows if r.reason) == reasons


def test_messages_are_one_specific_line(corpus):
    _, rows, _ = corpus
    for row in rows:
        if row.outcome == "refused":
            assert "\n" not in row.detail and not any(word in row.detail for word in INTERNAL), row
            assert not row.reason.startswith("other"), row


def test_table_is_written(corpus):
    _, rows, out = corpus
    text = out.read_text()
    assert "| JPGExtended.dcm | JPEG Extended (Process 2 and 4) (1.2.840.10008.1.2.4.51) | decoded |" in text
    assert text.count("\n| ") == len(rows) + 1  # header + one line per file
