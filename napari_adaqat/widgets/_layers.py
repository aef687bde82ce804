"""napari layer helpers for the Segment dock: image planes, box coordinates, output layers."""
from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Optional

import numpy as np

from napari_adaqat.widgets._planes import base_data

if TYPE_CHECKING:
    import napari

BOXES = "boxes"
POINTS = "points"
MASK = "lung mask"
SSIM = "SSIM"
DELTA = "ΔSSIM"
OUTPUT_NAMES = (MASK, SSIM, DELTA)
# ``boxes`` metadata: the Annotate dock owns this layer's rectangles (it re-segments on them, keeping brush
# edits); the Segment dock then does not prompt on their events, and uses the last one as its clicks' box
ANNOTATE_OWNER = "adaqat_annotate_boxes"
ANNOTATE_BASE = "adaqat_annotate_base"  # in 'lung mask' metadata: the Annotate dock's mask before brush edits
DOCK_WRITE = "adaqat_dock_write"  # set in a layer's metadata while another dock clears it: not a user's edit


@contextmanager
def dock_write(layer: Any) -> Iterator[None]:
    """While a dock (not the user) changes ``layer``: :data:`DOCK_WRITE` in its metadata, so that the other
    dock's event handlers let the change pass."""
    layer.metadata[DOCK_WRITE] = True
    try:
        yield
    finally:
        layer.metadata.pop(DOCK_WRITE, None)


# Map colours: agreement is transparent, so the film stays readable where nothing is wrong.
SSIM_OPACITY, DELTA_OPACITY = 0.55, 0.85
_SSIM_COLORS = [[0.0, 0.95, 1.0, 1.0], [0.15, 0.6, 1.0, 0.4], [0.3, 0.3, 1.0, 0.0]]  # cyan → blue → clear
_DELTA_COLORS = [[0.90, 0.10, 0.60, 1.0], [1.0, 1.0, 1.0, 0.0], [0.35, 0.80, 0.15, 1.0]]  # magenta, clear, green


def ssim_colormap():
    """SSIM 0 (disagree: opaque cyan) → 1 (agree: transparent)."""
    from napari.utils.colormaps import Colormap

    return Colormap(colors=_SSIM_COLORS, controls=[0.0, 0.5, 1.0], name="adaqat SSIM (cyan-clear)")


def delta_colormap():
    """Diverging, centred at 0: magenta (−1, baseline better) → transparent (0) → green (+1, model better)."""
    from napari.utils.colormaps import Colormap

    return Colormap(colors=_DELTA_COLORS, controls=[0.0, 0.5, 1.0], name="adaqat ΔSSIM (magenta-clear-green)")


def plane_count(layer: "napari.layers.Image") -> Optional[int]:
    """Number of planes of a 3-D stack (None for 2-D images)."""
    return int(base_data(layer).shape[0]) if layer.ndim == 3 else None


def plane_shape(layer: "napari.layers.Image") -> tuple[int, int]:
    """(H, W) of one plane of ``layer``."""
    shape = base_data(layer).shape
    return tuple(shape[-3:-1]) if layer.rgb else tuple(shape[-2:])  # type: ignore[return-value]


def current_plane(viewer: "napari.viewer.Viewer", layer: "napari.layers.Image") -> Optional[int]:
    """The stack plane the viewer shows now (None for 2-D images)."""
    if layer.ndim < 3:
        return None
    world = np.asarray(viewer.dims.point)[-layer.ndim:]
    return int(round(float(layer.world_to_data(world)[0])))


def box_in_pixels(boxes: "napari.layers.Shapes", index: int,
                  image: "napari.layers.Image") -> tuple[np.ndarray, Optional[int]]:
    """Bounding box of shape ``index`` as xyxy pixels of ``image``, and its plane for stacks."""
    verts = np.asarray(boxes.data[index], dtype=np.float64)
    world = np.array([boxes.data_to_world(v) for v in verts])
    nd = image.ndim
    if world.shape[1] < nd:
        world = np.concatenate([np.zeros((len(world), nd - world.shape[1])), world], axis=1)
    pix = np.array([image.world_to_data(w[-nd:]) for w in world])
    h, w = plane_shape(image)
    rows, cols = np.clip(pix[:, -2], 0, h - 1), np.clip(pix[:, -1], 0, w - 1)
    box = np.array([cols.min(), rows.min(), cols.max(), rows.max()])
    plane = int(round(float(pix[:, 0].mean()))) if nd == 3 else None
    return box, plane


def annotate_film(viewer: "napari.viewer.Viewer") -> Any:
    """The image layer the Annotate dock shows (it owns ``boxes`` and ``lung mask`` then), or None."""
    owner = viewer.layers[BOXES].metadata.get(ANNOTATE_OWNER) if BOXES in viewer.layers else None
    return next((layer for layer in viewer.layers if owner is not None and str(layer.unique_id) == owner), None)


PLACEMENT = ("scale", "translate", "rotate", "shear", "affine")  # a layer's data → world transform


def _placement(image: "napari.layers.Image") -> dict:
    """``image``'s data → world transform, whole (a flip or turn by ``rotate``/``affine`` included): a mask with
    only its scale and translate would lie beside a turned film."""
    return {"scale": tuple(image.scale), "translate": tuple(image.translate), "rotate": np.array(image.rotate),
            "shear": np.array(image.shear), "affine": np.array(image.affine.affine_matrix),
            "units": tuple(str(u) for u in image.units)}  # (a DICOM's mm: the mask's too)


def place_like(layer: Any, image: "napari.layers.Image") -> None:
    """Give ``layer`` the whole data → world transform of ``image`` (:func:`_placement`), where it differs."""
    _place(layer, _placement(image))


def _placed_as(layer: Any, key: str) -> np.ndarray:
    value = getattr(layer, key)
    return np.asarray(value.affine_matrix if key == "affine" else value, dtype=np.float64)


def _made_anew(viewer: "napari.viewer.Viewer", name: str) -> bool:
    """Whether :func:`_upsert` will add layer ``name`` (none yet, or the user's, which it keeps aside)."""
    return name not in viewer.layers or "source_layer_id" not in viewer.layers[name].metadata


def _keep_users_layer(viewer: "napari.viewer.Viewer", layer: Any) -> None:
    """Rename a layer the user made under one of the dock's names (no dock provenance) instead of removing it."""
    from napari.utils.notifications import show_info

    old = layer.name
    layer.name = f"{old} (yours)"  # napari makes the name unique
    show_info(f"Your layer '{old}' was kept as '{layer.name}': the dock writes its own '{old}' layer.")


PROMPT_LAYER = "adaqat_prompt_layer"  # in the metadata of the ``boxes`` / ``points`` layers a dock made
NO_3D_DRAWING = ("napari draws no boxes in its 3D view (shapes are not editable there): press the 2D/3D button "
                 "(bottom left, Ctrl+Y) to go back to 2D, then draw the box around both lungs.")
_display_watched: "weakref.WeakSet" = weakref.WeakSet()


def usable(layer: Any, kind: str, image: "napari.layers.Image") -> bool:
    """Whether ``layer`` (named as a prompt layer) is a ``kind`` layer of ``image``'s dimensionality."""
    return type(layer).__name__ == kind and layer.ndim == image.ndim


def make_room(viewer: "napari.viewer.Viewer", name: str) -> None:
    """Clear the name ``name`` for a new prompt layer: a dock's own old one is removed, the user's renamed."""
    if name in viewer.layers:
        if viewer.layers[name].metadata.get(PROMPT_LAYER):
            viewer.layers.remove(name)
        else:
            _keep_users_layer(viewer, viewer.layers[name])


def watch_display(viewer: "napari.viewer.Viewer") -> None:
    """Say in one line, on entering napari's 3D view (where a mouse drag draws no box), how to draw again."""
    if viewer in _display_watched:
        return
    _display_watched.add(viewer)

    def check(_event: Any = None) -> None:
        if viewer.dims.ndisplay == 3:
            from napari.utils.notifications import show_info

            show_info(NO_3D_DRAWING)

    viewer.dims.events.ndisplay.connect(check)
    check()


def box_edge_width(shape: tuple[int, ...]) -> float:
    """The ``boxes`` outline for a film (plane) of ``shape`` (H, W): 0.5 % of its width, at least 2 px."""
    return max(2.0, shape[-1] / 200)


def click_size(shape: tuple[int, ...]) -> float:
    """The ``points`` marker for a film (plane) of ``shape`` (H, W): 2.5 % of its width, at least 6 px."""
    return max(6.0, shape[-1] / 40)


def ensure_boxes(viewer: "napari.viewer.Viewer", image: "napari.layers.Image") -> "napari.layers.Shapes":
    """The Shapes layer ``boxes`` (created over ``image`` if absent), active, in rectangle mode."""
    if BOXES in viewer.layers and usable(viewer.layers[BOXES], "Shapes", image):
        layer = viewer.layers[BOXES]
    else:
        make_room(viewer, BOXES)
        layer = viewer.add_shapes(ndim=image.ndim, name=BOXES, edge_color="yellow", face_color="transparent",
                                  edge_width=box_edge_width(plane_shape(image)), **_placement(image))
        layer.metadata[PROMPT_LAYER] = True
    watch_display(viewer)
    layer.current_edge_color = "yellow"
    layer.current_face_color = "transparent"
    viewer.layers.selection.active = layer
    layer.mode = "add_rectangle"
    return layer


def _same_buffer_kind(current: Any, data: np.ndarray) -> bool:
    return isinstance(current, np.ndarray) and current is not data and current.dtype == data.dtype \
        and current.flags.writeable


def _reshaped_in_place(layer: Any, data: np.ndarray, kwargs: dict) -> bool:
    """Give ``layer`` (of the kind wanted) ``data`` of another shape by setting its data, as napari allows for
    the same number of dimensions: removing and adding it again cost 0.4 s of the GUI thread per layer (napari runs
    ``gc.collect`` on each removal and builds a new visual), 1.3 s per image switch with a mask and two maps.
    False (nothing done) where the dimensions differ, for an RGB layer, or for the Annotate dock's mask."""
    if np.ndim(layer.data) != data.ndim or getattr(layer, "rgb", False) or ANNOTATE_BASE in layer.metadata:
        return False  # (the Annotate dock's mask: removed, so that its dock keeps the strokes on it as a draft)
    layer.data = data
    if hasattr(layer, "_reset_history"):  # (a Labels layer: its undo steps are of the other shape's pixels)
        layer._reset_history()
    _place(layer, {key: value for key, value in kwargs.items() if key != "metadata"})
    layer.metadata = dict(kwargs.get("metadata", {}))  # as a new layer: no provenance of the image before
    return True


def _place(layer: Any, kwargs: dict) -> None:
    """Set the :data:`PLACEMENT`, units and metadata of ``kwargs`` on ``layer``, each only where it changes (each
    set redraws the layer)."""
    for key in PLACEMENT:
        if key in kwargs and not np.allclose(_placed_as(layer, key), kwargs[key]):
            setattr(layer, key, kwargs[key])
    if "units" in kwargs and tuple(str(u) for u in layer.units) != tuple(kwargs["units"]):
        layer.units = kwargs["units"]
    layer.metadata.update(kwargs.get("metadata", {}))


def _upsert(viewer: "napari.viewer.Viewer", name: str, kind: str, data: np.ndarray, **kwargs: Any):
    """Show ``data`` in layer ``name``: a layer of the same kind, shape and dtype keeps its buffer (no new
    array, no extent or dims recomputation): a Labels layer gets only its changed pixels written
    (``data_setitem``: a partial texture update, one undo step), an Image layer the new values and a
    refresh.  The :data:`PLACEMENT` is only set where it changes (each set redraws the layer).  A layer of the
    user's under ``name`` (no dock provenance) is renamed, never removed."""
    if name in viewer.layers and "source_layer_id" not in viewer.layers[name].metadata:
        _keep_users_layer(viewer, viewer.layers[name])  # the user's own (hand-drawn, opened): never written over
    if name in viewer.layers:
        layer = viewer.layers[name]
        from napari.layers import Labels

        if isinstance(layer, Labels) == (kind == "labels") and layer.data.shape != data.shape \
                and _reshaped_in_place(layer, data, kwargs):
            return layer
        if isinstance(layer, Labels) == (kind == "labels") and layer.data.shape == data.shape:
            _place(layer, {key: value for key, value in kwargs.items() if key != "metadata"})
            current = layer.data
            if isinstance(layer, Labels) and _same_buffer_kind(current, data):
                changed = np.nonzero(current != data)  # only these pixels are written and re-uploaded
                if changed[0].size:
                    layer.data_setitem(changed, data[changed])
            elif _same_buffer_kind(current, data):
                np.copyto(current, data)
                layer.refresh()
            else:
                layer.data = data
            layer.metadata.update(kwargs.get("metadata", {}))
            return layer
        viewer.layers.remove(name)  # the dock's own layer, of another shape or kind: replaced
    add = viewer.add_labels if kind == "labels" else viewer.add_image
    return add(data, name=name, **kwargs)


def maps_wanted(viewer: "napari.viewer.Viewer") -> bool:
    """False when the ``SSIM`` and ``ΔSSIM`` layers both exist and are hidden: nobody looks at the
    maps, so the dock does not compute them (showing a layer again computes them for the next box)."""
    present = [viewer.layers[name] for name in (SSIM, DELTA) if name in viewer.layers]
    return len(present) < 2 or any(layer.visible for layer in present)


def _into_stack(viewer, name: str, image, plane: np.ndarray, index: Optional[int], dtype) -> np.ndarray:
    """For stacks, the full-stack array with ``plane`` written at ``index`` (others kept)."""
    if index is None:  # a copy: a layer may adopt it as its buffer, and results are kept for Undo
        return np.array(plane, dtype=dtype, copy=True)
    shape = (base_data(image).shape[0], *plane.shape)
    layer = viewer.layers[name] if name in viewer.layers else None
    same_source = layer is not None and layer.metadata.get("source_layer_id") == str(image.unique_id)
    keep = same_source and layer.data.shape == shape  # planes of another stack are never mixed in
    stack = np.array(layer.data, dtype=dtype) if keep else np.zeros(shape, dtype)
    stack[index] = plane
    return stack


PROVENANCE = ("box_xyxy", "summary", "model_path")  # what a model's mask records (the DICOM SEG writer reads it)


def mask_meta(image: "napari.layers.Image", result: Any = None, plane: Optional[int] = None) -> dict:
    """The ``lung mask`` layer's metadata for a mask of ``image`` (with a SegmentResult: its provenance)."""
    meta = {"slice": plane, "source_layer_id": str(image.unique_id)}
    if result is not None:  # the box, summary and model file: the DICOM SEG writer records them
        box = None if result.box is None else np.asarray(result.box).tolist()
        meta.update(box_xyxy=box, slice=result.slice_index, summary=result.summary(), model_path=result.model_file)
    return meta


def holds_another_film(viewer: "napari.viewer.Viewer", image: "napari.layers.Image") -> bool:
    """True when ``lung mask`` holds the Annotate dock's film and ``image`` is another image: a mask of
    ``image`` written there would be saved (draft, Accept) as the film's."""
    film = annotate_film(viewer)
    return (film is not None and film is not image and MASK in viewer.layers
            and viewer.layers[MASK].metadata.get("source_layer_id") == str(film.unique_id))


def show_mask(viewer: "napari.viewer.Viewer", image: "napari.layers.Image", mask: np.ndarray,
              plane: Optional[int], meta: Optional[dict] = None) -> Any:
    """Write ``mask`` (H, W) bool to plane ``plane`` of the ``lung mask`` layer (only changed pixels).  ``meta``:
    :func:`mask_meta` of the model result it comes from; without one, a 2-D mask (a reset, the start) keeps no
    earlier model's provenance (a DICOM SEG of it is then MANUAL).  Nothing is written (None) while the layer
    holds the Annotate dock's film and ``image`` is another (:func:`holds_another_film`)."""
    if holds_another_film(viewer, image):  # (the docks say why at their entry points; this is the last guard)
        return None
    stale = PROVENANCE if meta is None and plane is None else ()
    meta = meta or mask_meta(image, None, plane)
    data = _into_stack(viewer, MASK, image, np.asarray(mask).astype(np.uint8), plane, np.uint8)
    new = _made_anew(viewer, MASK)
    layer = _upsert(viewer, MASK, "labels", data, metadata=meta, **_placement(image))
    if new:
        layer.opacity = 0.45
    layer.metadata.update(meta)
    for key in stale:
        layer.metadata.pop(key, None)
    stack_over(viewer, image)
    return layer


def stack_over(viewer: "napari.viewer.Viewer", image: "napari.layers.Image") -> None:
    """Put the dock's layers (mask, maps, boxes, points, in that order) on top when one of them lies under
    ``image``: a film opened after them would hide its own mask and the box being drawn."""
    if not any(layer is image for layer in viewer.layers):
        return
    index = viewer.layers.index(image)
    ours = [viewer.layers[name] for name in (*OUTPUT_NAMES, BOXES, POINTS) if name in viewer.layers]
    if any(viewer.layers.index(layer) < index for layer in ours):
        for layer in ours:
            viewer.layers.move(viewer.layers.index(layer), len(viewer.layers))


def neutral_maps(viewer: "napari.viewer.Viewer", image: "napari.layers.Image", plane: Optional[int]) -> None:
    """Clear plane ``plane`` of the ``SSIM`` (1: agreement, transparent) and ``ΔSSIM`` (0) layers, if shown."""
    shape = plane_shape(image)
    for name, value in ((SSIM, 1.0), (DELTA, 0.0)):
        layer = viewer.layers[name] if name in viewer.layers else None
        if layer is not None and layer.metadata.get("source_layer_id") == str(image.unique_id):
            _upsert(viewer, name, "image", _into_stack(viewer, name, image, np.full(shape, value, np.float32),
                                                       plane, np.float32), **_placement(image))


def drop_maps(viewer: "napari.viewer.Viewer", image: "napari.layers.Image") -> None:
    """Remove the ``SSIM`` and ``ΔSSIM`` layers when they hold another image's maps (not ``image``'s)."""
    for name in (SSIM, DELTA):
        if name in viewer.layers and viewer.layers[name].metadata.get("source_layer_id") != str(image.unique_id):
            viewer.layers.remove(name)


def show_result(viewer: "napari.viewer.Viewer", image: "napari.layers.Image", result: Any,
                mask: Optional[np.ndarray] = None) -> None:
    """Write a SegmentResult to the ``lung mask`` (``mask`` instead of its own, e.g. when an undo puts
    back an exact earlier mask), ``SSIM`` and ``ΔSSIM`` layers.  The prompt layers (``boxes``, ``points``)
    stay on top, and the one in use stays selected (``boxes`` otherwise)."""
    place = _placement(image)
    z = result.slice_index
    prompt_layers = [viewer.layers[name] for name in (BOXES, POINTS) if name in viewer.layers]
    active = viewer.layers.selection.active
    meta = mask_meta(image, result, z)
    if show_mask(viewer, image, result.mask if mask is None else mask, z, meta) is None:
        return  # the Annotate dock's film is in 'lung mask': neither mask nor maps of another image
    if result.ssim is not None:
        ssim = _into_stack(viewer, SSIM, image, result.ssim, z, np.float32)
        new = _made_anew(viewer, SSIM)
        layer = _upsert(viewer, SSIM, "image", ssim, colormap=ssim_colormap(), contrast_limits=(0.0, 1.0),
                        blending="translucent", metadata=meta, **place)
        layer.contrast_limits = (0.0, 1.0)
        if new:
            layer.opacity = SSIM_OPACITY
    if result.delta is not None:
        delta = _into_stack(viewer, DELTA, image, result.delta, z, np.float32)
        new = _made_anew(viewer, DELTA)
        layer = _upsert(viewer, DELTA, "image", delta, colormap=delta_colormap(), contrast_limits=(-1.0, 1.0),
                        blending="translucent", metadata=meta, **place)
        layer.contrast_limits = (-1.0, 1.0)
        if new:
            layer.opacity = DELTA_OPACITY
    if prompt_layers and list(viewer.layers)[-len(prompt_layers):] != prompt_layers:
        for layer in prompt_layers:  # in order: boxes, then points on top
            viewer.layers.move(viewer.layers.index(layer), len(viewer.layers))
    if prompt_layers:
        target = active if any(active is layer for layer in prompt_layers) else prompt_layers[0]
        if viewer.layers.selection.active is not target:
            viewer.layers.selection.active = target


def annotate_base(viewer: "napari.viewer.Viewer", shape: tuple[int, int]) -> Optional[np.ndarray]:
    """The Annotate dock's mask (H, W) bool before the user's brush edits, None when 'lung mask' holds none."""
    layer = viewer.layers[MASK] if MASK in viewer.layers else None
    base = None if layer is None else layer.metadata.get(ANNOTATE_BASE)
    return base if isinstance(base, np.ndarray) and base.shape == tuple(shape) else None
