"""The gray plane (H, W) float32 in [0, 1] that the docks segment, from an Image layer (2-D, RGB(A) or a plane of a
3-D stack), converted once per layer's pixels (:func:`image_plane`)."""
from __future__ import annotations

import functools
import weakref
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from napari_adaqat.io import ImageData, to_gray01
from napari_adaqat.io.image_data import nonfinite_problem, pixel_aspect

if TYPE_CHECKING:
    import napari


def base_data(layer: Any) -> Any:
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


# the last plane converted per layer: (weak reference to the layer's data array, plane index, a sample of its
# pixels, plane); each click asks for the same plane again, and converting a 3000² film costs 40-60 ms of the
# GUI thread.  A new data array (``layer.data = …``, even the same one: napari's data event) converts again, so
# does ``layer.refresh()`` after an in-place edit (its set_data event), and so do pixels changed in place where
# the ~64k-pixel sample of an in-memory plane sees them (a script's edit without a refresh; an Embed [fresh])
_PLANES: "weakref.WeakKeyDictionary[Any, tuple[Any, Optional[int], bytes, np.ndarray]]" = weakref.WeakKeyDictionary()


def _sample(raw: Any) -> bytes:
    """~256 x 256 pixels of a plane, evenly strided (and its last row and column): its cheap fingerprint."""
    h, w = raw.shape[:2]
    rows, cols = max(1, h // 256), max(1, w // 256)
    return np.ascontiguousarray(raw[::rows, ::cols]).tobytes() + np.ascontiguousarray(raw[-1]).tobytes() \
        + np.ascontiguousarray(raw[:, -1]).tobytes()


def image_plane(layer: "napari.layers.Image", index: Optional[int], fresh: bool = False
                ) -> tuple[np.ndarray, Optional[int]]:
    """Gray float32 (H, W) in [0, 1] of a 2-D image, RGB(A) image, or plane ``index`` of a 3-D stack
    (read-only: the same array is handed out again while the layer's pixels stay; ``fresh``: converted anew).

    Returns ``(plane, plane_index)`` with ``plane_index`` None for 2-D images.
    """
    data = base_data(layer)
    ndim = layer.ndim  # spatial dims (RGB channel excluded)
    if ndim not in (2, 3):
        raise ValueError(f"layer {layer.name!r} has {ndim} dimensions; give a 2-D image or a 3-D stack")
    z = None if ndim == 2 else int(np.clip(0 if index is None else index, 0, data.shape[0] - 1))
    source = data if z is None else data[z]
    # (a lazy plane, dask or zarr, is not sampled: that would read all its chunks on every click)
    sample = _sample(source) if isinstance(source, np.ndarray) else b""
    memo = None if fresh else _PLANES.get(layer)
    if memo is not None and memo[0]() is data and memo[1] == z and memo[2] == sample:
        return memo[3], z
    pixels = np.asarray(source)
    problem = nonfinite_problem(pixels)  # (to_gray01 would fill them in)
    if problem:
        raise ValueError(f"layer {layer.name!r}: {problem} (as the API and 'adaqat segment' say of it)")
    plane = to_gray01(pixels)
    plane.flags.writeable = False
    try:
        _PLANES[layer] = (weakref.ref(data), z, sample, plane)
    except TypeError:  # data that cannot be weakly referenced: converted again next time
        return plane, z
    if layer not in _FORGETS:  # napari's data and set_data (refresh) events: converted again
        _FORGETS.add(layer)
        for event in (layer.events.data, getattr(layer.events, "set_data", None)):
            if event is not None:
                event.connect(functools.partial(_forget_plane, weakref.ref(layer)))
    return plane, z


def plane_film(layer: "napari.layers.Image", plane: np.ndarray) -> Any:
    """What the docks segment of ``plane`` (:func:`image_plane`): the plane itself, or, when the layer's pixels are
    not square (its scale: napari shows the film at its true shape; a layer at scale 1, as the Annotate dock shows
    its films, by its ``spacing_mm`` metadata, a DICOM's PixelSpacing), an :class:`~napari_adaqat.io.ImageData`
    with that spacing, which the engine makes square for the model as ``adaqat segment`` does (the mask comes back
    on the plane's pixels)."""
    spacing = tuple(abs(float(s)) for s in layer.scale[-2:])  # (a flip by a negative scale: the same pixels)
    meta = layer.metadata.get("spacing_mm") if isinstance(getattr(layer, "metadata", None), dict) else None
    if spacing == (1.0, 1.0) and meta is not None and np.size(meta) == 2:  # (a scaled layer: its scale says it)
        spacing = tuple(float(s) for s in np.ravel(meta))
    return plane if pixel_aspect(spacing) == 1.0 else ImageData(plane, spacing, str(layer.name))


_FORGETS: "weakref.WeakSet[Any]" = weakref.WeakSet()  # layers whose data event clears their memo


def _forget_plane(layer_ref: Any, _event: Any = None) -> None:
    layer = layer_ref()
    if layer is not None:
        _PLANES.pop(layer, None)
