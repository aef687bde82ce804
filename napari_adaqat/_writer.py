"""napari writer contributions: a Labels layer saved as a binary 0/255 PNG or TIFF mask, or as a
DICOM SEG (``.dcm``) over the DICOM image it was drawn on."""
from __future__ import annotations

from typing import Any

import numpy as np

from napari_adaqat.io import write_mask
from napari_adaqat.io.dicom_seg import DicomSegError


def write_labels(path: str, data: Any, attributes: dict) -> list[str]:
    """Write a 2-D labels layer (any non-zero label = lung) to ``path``; return the written path.

    napari's save dialog already asks before replacing a file, so an existing file is overwritten.
    """
    mask = np.asarray(data)
    if mask.ndim != 2:
        name = attributes.get("name", "labels")
        raise ValueError(f"{name!r} has shape {mask.shape}; only 2-D masks can be saved as PNG/TIFF")
    return [str(write_mask(path, mask, overwrite=True))]


def _dicom_image_layers(shape: tuple[int, ...]) -> list[Any]:
    """DICOM Image layers (opened by our reader) of the current viewer whose data has ``shape``."""
    import napari

    viewer = napari.current_viewer()
    if viewer is None:
        return []
    return [ly for ly in viewer.layers if ly.__class__.__name__ == "Image" and ly.metadata.get("format") == "dicom"
            and tuple(np.shape(ly.data)) == shape]


def _source_layer_meta(meta: dict, shape: tuple[int, ...], name: str) -> dict:
    """The metadata of the DICOM image under the labels: the layer named by ``source_layer_id``
    (set by the Segment dock), else the one DICOM image of the same shape in the viewer."""
    if meta.get("format") == "dicom" and meta.get("source"):
        return meta
    candidates = _dicom_image_layers(shape)
    wanted = meta.get("source_layer_id")
    chosen = [ly for ly in candidates if str(ly.unique_id) == wanted] if wanted else []
    sources = {ly.metadata.get("source") for ly in (chosen or candidates)}
    if len(sources) == 1:
        return (chosen or candidates)[0].metadata
    if not sources:
        raise DicomSegError(f"{name!r} is not over a DICOM image opened with the napari-adaqat reader (a JSRT film "
                         "is no DICOM); a DICOM SEG needs its source DICOM (save as .png or .tif instead)")
    raise DicomSegError(f"{name!r} matches {len(sources)} DICOM images of shape {shape}; "
                        "close the others and save again")


def write_dicom_seg(path: str, data: Any, attributes: dict) -> list[str]:
    """Write a labels layer over a DICOM image as a DICOM SEG; return the written path.

    A (frames, H, W) labels layer over a multi-frame image is saved for the one frame that holds labels.
    """
    from napari_adaqat.io.dicom_seg import write_dicom_seg as write_seg

    # napari treats a ValueError from a writer as "not a valid writer" and hides it: refusals are DicomSegError
    mask = np.asarray(data)
    meta = attributes.get("metadata") or {}
    name = attributes.get("name", "labels")
    source = _source_layer_meta(meta, mask.shape, name)
    frame = None
    if mask.ndim == 3:
        planes = [i for i in range(mask.shape[0]) if mask[i].any()]
        if len(planes) > 1:
            raise DicomSegError(f"{name!r} has labels on {len(planes)} frames; a DICOM SEG here holds one frame: "
                             "keep the labels of one frame")
        frame = planes[0] if planes else 0
        mask = mask[frame]
    model_file = meta.get("model_path")
    kind = "SEMIAUTOMATIC" if model_file or "box_xyxy" in meta else "MANUAL"  # dock masks carry their box
    try:
        return [str(write_seg(path, source["source"], mask, frame=frame, model_file=model_file,
                              algorithm_type=kind, overwrite=True))]
    except ValueError as exc:  # e.g. the source file changed or went away since it was opened
        raise DicomSegError(str(exc)) from None
