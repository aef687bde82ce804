"""The frame header of a JPEG stream: which process wrote it and at what sample precision.

Hand-written because the libraries only read it as part of decoding (Pillow refuses 12-bit data, pydicom keeps
its parser private): a walk over the marker segments up to the first start-of-frame.
"""
from __future__ import annotations

LOSSLESS_SOF = (0xC3, 0xC7, 0xCB, 0xCF)  # JPEG lossless (Process 14), also hierarchical / arithmetic
SOF = (0xC0, 0xC1, 0xC2, 0xC5, 0xC6, 0xC9, 0xCA, 0xCD, 0xCE) + LOSSLESS_SOF
JPEG_LS_SOF = 0xF7


def frame_header(data: bytes) -> tuple[int, int] | None:
    """(start-of-frame marker, sample precision in bits) of the JPEG stream ``data`` (from its SOI on); None
    when no frame header is found in it."""
    at = 2
    while at + 9 < len(data) and data[at] == 0xFF:
        while at + 9 < len(data) and data[at + 1] == 0xFF:  # fill bytes before a marker (T.81 B.1.1.2)
            at += 1
        marker, length = data[at + 1], int.from_bytes(data[at + 2:at + 4], "big")
        if marker in SOF or marker == JPEG_LS_SOF:
            return marker, data[at + 4]
        at += 2 + length
    return None
