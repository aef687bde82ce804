"""The safetensors container shared by both file kinds (model files and training checkpoints).

Reading never unpickles anything: the header is checked on its leading bytes first,
the ``"adaqat"`` JSON metadata is decoded with one-line :class:`ModelLoadError` messages,
and tensors are read with one-line errors.  Writing is atomic (:mod:`napari_adaqat.util.atomic`).
"""
from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import safetensors.torch  # called as ``safetensors.torch.<fn>``, so tests can patch it
from torch import Tensor

from napari_adaqat.model.build import ModelLoadError
from napari_adaqat.util.atomic import atomic_path
from napari_adaqat.util.errors import first_line

__all__ = ["META_KEY", "read_safetensors_header", "safetensors_metadata", "read_adaqat_metadata",
           "file_format", "read_tensors", "write_safetensors"]

META_KEY = "adaqat"
_MAX_HEADER = 100_000_000


def read_safetensors_header(path: str | Path) -> dict:
    """The JSON header of a safetensors file (tensor index + ``__metadata__``), nothing else read.

    A safetensors file starts with a little-endian u64 header length ``n`` followed by
    ``{``.  Only when that does not hold are the leading bytes classified: a zip archive
    (``torch.save``) or a pickle (protocol 2-5) is refused with "is a pickle/zip file";
    nothing is ever unpickled.  (A bare "first byte is 0x80" test is wrong: 0x80 is also
    the low byte of every header length = 128 mod 256.)
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found")
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(9)
        n = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else -1
        if not (2 <= n <= min(size - 8, _MAX_HEADER) and head[8:9] == b"{"):
            if head[:4] in (b"PK\x03\x04", b"PK\x05\x06") or (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"):
                raise ModelLoadError(f"{path}: is a pickle/zip file; only safetensors model files are accepted")
            if size < 9:
                raise ModelLoadError(f"{path}: truncated or empty file ({size} bytes)")
            fh.seek(0)
            if image := _image_kind(fh.read(132)):
                raise ModelLoadError(f"{path}: is a {image} image, not a model file; a model is a .safetensors file "
                                     "(or 'default', the bundled one), and a film is given as the input")
            raise ModelLoadError(f"{path}: not a safetensors file, or truncated (bad header length)")
        fh.seek(8)
        return _json_object(fh.read(n), f"{path}: not a safetensors file, or corrupt (unreadable header)",
                            f"{path}: not a safetensors file (header is not a JSON object)")


def _image_kind(head: bytes) -> str:
    """``"PNG"``, ``"DICOM"``... for the leading bytes of an image file (a film given where a model goes), else ""."""
    from napari_adaqat.io.image_data import IMAGE_SIGNATURES

    if head[128:132] == b"DICM":
        return "DICOM"
    return next((kind.upper() for magic, kind in IMAGE_SIGNATURES if head.startswith(magic)), "")


def _json_object(text: bytes | str, bad_json: str, not_object: str) -> dict:
    """``json.loads(text)`` that must give an object; else ModelLoadError ``bad_json`` / ``not_object``."""
    try:
        value = json.loads(text)
    except (TypeError, UnicodeDecodeError, json.JSONDecodeError):
        raise ModelLoadError(bad_json) from None
    if not isinstance(value, dict):
        raise ModelLoadError(not_object)
    return value


def safetensors_metadata(path: str | Path) -> dict:
    """The ``__metadata__`` of a safetensors file (string to string), without loading tensors."""
    meta = read_safetensors_header(path).get("__metadata__")
    return meta if isinstance(meta, dict) else {}


def read_adaqat_metadata(path: str | Path) -> dict | None:
    """The decoded ``"adaqat"`` JSON metadata of a file, or None when the file has none."""
    raw = safetensors_metadata(path)
    if META_KEY not in raw:
        return None
    return _json_object(raw[META_KEY], f"{path}: metadata is not valid JSON",
                        f"{path}: unknown model format (metadata is not a JSON object)")


def file_format(path: str | Path) -> str:
    """The ``format`` a safetensors file declares (``""`` when it declares none)."""
    meta = read_adaqat_metadata(path)
    if meta is None:
        return str(safetensors_metadata(path).get("format", ""))
    return str(meta.get("format", ""))


def read_tensors(path: str | Path) -> dict[str, Tensor]:
    """All tensors of a safetensors file on the CPU; a corrupt file gives a one-line error."""
    try:
        return safetensors.torch.load_file(str(path), device="cpu")
    except Exception as exc:  # SafetensorError and friends: corrupt or truncated data
        raise ModelLoadError(f"{path}: cannot read tensors (corrupt or truncated file): "
                             f"{first_line(exc, limit=160)}") from None


def write_safetensors(path: str | Path, tensors: dict[str, Tensor], meta: dict,
                      json_default: Callable[[object], object] | None = None) -> Path:
    """Write ``tensors`` with ``meta`` as the ``"adaqat"`` JSON metadata, atomically.

    The data goes to a temp file next to ``path`` (fsynced, mode 0o644) that replaces ``path`` only
    when complete (:func:`~napari_adaqat.util.atomic.atomic_path`): a failed write leaves nothing behind,
    and the temp file of a writer that was killed is removed by the next write of ``path``.
    """
    path = Path(path)
    text = json.dumps(meta, default=json_default)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(tensors, str(tmp), metadata={META_KEY: text})
    return path
