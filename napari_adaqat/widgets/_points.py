"""The Segment dock's ``points`` layer: click prompts, positive (lung) or negative (not lung).

The label of each point is the boolean feature ``positive``; the face colour follows it.  A click adds a
positive point unless Ctrl (⌘ on a Mac) is held or the dock's "Negative [N]" toggle is on.  napari Points
data are (row, col) = (y, x); the engine takes (x, y) in image pixels: :func:`points_in_pixels` converts.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import pandas as pd

from napari_adaqat.widgets._layers import (PROMPT_LAYER, _placement, click_size, dock_write, make_room, plane_shape,
                                           usable)

if TYPE_CHECKING:
    import napari

POINTS = "points"
POSITIVE_COLOR, NEGATIVE_COLOR = "#39ff14", "#ff2d6f"  # lime (lung), pink-red (not lung)
NEGATIVE_MODIFIERS = ("Control", "Meta")  # Ctrl-click; on a Mac Qt reports ⌘ as Control
MIN_BOX_FRACTION, MIN_BOX_PX = 0.02, 8.0  # a box narrower than this (of the film's side; px) is a click, no drag


def _features(positive: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"positive": np.asarray(positive, dtype=bool)})


def ensure_points(viewer: "napari.viewer.Viewer", image: "napari.layers.Image") -> "napari.layers.Points":
    """The Points layer ``points`` over ``image`` (created if absent or of another dimensionality)."""
    if POINTS in viewer.layers and usable(viewer.layers[POINTS], "Points", image):
        return viewer.layers[POINTS]
    make_room(viewer, POINTS)  # a layer of the user's under this name is kept, renamed
    active = viewer.layers.selection.active
    size = click_size(plane_shape(image))
    layer = viewer.add_points(np.empty((0, image.ndim)), ndim=image.ndim, name=POINTS, size=size,
                              features=_features(np.empty(0, bool)), face_color="positive",
                              face_color_cycle={True: POSITIVE_COLOR, False: NEGATIVE_COLOR},
                              border_color="white", border_width=0.12, **_placement(image))
    layer.feature_defaults["positive"] = True
    layer.metadata[PROMPT_LAYER] = True
    if active is not None:
        viewer.layers.selection.active = active  # the boxes stay active until the user picks points
    return layer


def set_default_label(layer: "napari.layers.Points", positive: bool) -> None:
    """The label of the next point added (``layer.add`` or a click)."""
    if bool(layer.feature_defaults["positive"].iloc[0]) != positive:
        layer.feature_defaults["positive"] = positive


def watch_modifiers(layer: "napari.layers.Points", negative_on: Callable[[], bool]) -> None:
    """Before napari's add-mode click adds a point, set its label: negative when ``negative_on()`` (the
    dock's toggle) or Ctrl is held.  Runs first among the layer's mouse-drag callbacks."""
    def pick_label(_layer: Any, event: Any) -> None:
        if str(layer.mode) == "add":
            held = any(m in getattr(event, "modifiers", ()) for m in NEGATIVE_MODIFIERS)
            set_default_label(layer, not (negative_on() or held))

    pick_label.__name__ = "adaqat_pick_label"
    layer.mouse_drag_callbacks[:] = [cb for cb in layer.mouse_drag_callbacks
                                     if getattr(cb, "__name__", "") != pick_label.__name__]
    layer.mouse_drag_callbacks.insert(0, pick_label)


def positive_flags(layer: "napari.layers.Points") -> np.ndarray:
    """(N,) bool: which points are positive (a missing feature counts as positive)."""
    if "positive" not in layer.features:
        return np.ones(len(layer.data), dtype=bool)
    return np.asarray(layer.features["positive"], dtype=bool)


def _in_image_pixels(layer: Any, image: "napari.layers.Image", data: Optional[np.ndarray] = None) -> np.ndarray:
    """(N, D) the points of ``layer`` (or its coordinates ``data``) in ``image``'s data coordinates (D =
    ``image.ndim``; row, col last)."""
    data = np.asarray(layer.data if data is None else data, dtype=np.float64)
    world = np.array([layer.data_to_world(p) for p in data])
    nd = image.ndim
    if world.shape[1] < nd:
        world = np.concatenate([np.zeros((len(world), nd - world.shape[1])), world], axis=1)
    return np.array([image.world_to_data(w[-nd:]) for w in world])


def _on_plane(pix: np.ndarray, image: "napari.layers.Image") -> np.ndarray:
    """(N,) bool: which of the (N, D) data coordinates ``pix`` lie inside one plane of ``image``."""
    h, w = plane_shape(image)
    rows, cols = pix[:, -2], pix[:, -1]
    return (rows > -0.5) & (rows < h - 0.5) & (cols > -0.5) & (cols < w - 0.5)


def outside_image(layer: "napari.layers.Points", image: "napari.layers.Image") -> list[int]:
    """The indices of the points of ``layer`` that lie outside ``image`` (beside its rows and columns)."""
    if len(layer.data) == 0:
        return []
    return [int(i) for i in np.flatnonzero(~_on_plane(_in_image_pixels(layer, image), image))]


def points_in_pixels(layer: Optional["napari.layers.Points"], image: "napari.layers.Image",
                     plane: Optional[int]) -> tuple[np.ndarray, np.ndarray]:
    """The points on ``plane`` (all of them for a 2-D image) as (coords (N, 2) x, y in ``image`` pixels,
    labels (N,) int: 1 = lung, 0 = not lung), SAM's convention; points outside the image are dropped."""
    if layer is None or len(layer.data) == 0:
        return np.empty((0, 2)), np.empty(0, dtype=np.int64)
    pix = _in_image_pixels(layer, image)
    keep = _on_plane(pix, image)
    if image.ndim == 3 and plane is not None:
        keep &= np.round(pix[:, 0]).astype(int) == plane
    rows, cols = pix[:, -2], pix[:, -1]
    coords = np.stack([cols[keep], rows[keep]], axis=1)
    return coords, positive_flags(layer)[keep].astype(np.int64)


def box_problem(boxes: "napari.layers.Shapes", index: int, image: "napari.layers.Image") -> Optional[str]:
    """Why shape ``index`` of ``boxes`` cannot be a box around the lungs of ``image``: "outside" (beside the film),
    "small" (under :data:`MIN_BOX_FRACTION` of the film's side: a click without a drag), or None."""
    pix = _in_image_pixels(boxes, image, boxes.data[index])
    h, w = plane_shape(image)
    rows, cols = pix[:, -2], pix[:, -1]
    if rows.max() < 0 or cols.max() < 0 or rows.min() > h - 1 or cols.min() > w - 1:
        return "outside"
    least = max(MIN_BOX_PX, MIN_BOX_FRACTION * min(h, w))
    return "small" if np.ptp(rows) < least or np.ptp(cols) < least else None


def take_back_box(boxes: "napari.layers.Shapes", index: int, problem: str) -> str:
    """Remove shape ``index`` of ``boxes`` (a :func:`box_problem`); returns the status line that says why."""
    mode = boxes.mode
    with dock_write(boxes):
        boxes.selected_data = {index}
        boxes.remove_selected()
    if boxes.mode != mode:
        boxes.mode = mode
    if problem == "outside":
        return "That box is outside the image, so it was taken back: drag a rectangle on the film, around both lungs."
    return ("That was a click, not a box, so it was taken back (the mask is unchanged): drag a rectangle around both "
            "lungs (press, move, release), or click in 'points' [P] to correct the mask.")


def box_on_plane(boxes: "napari.layers.Shapes", image: "napari.layers.Image", plane: Optional[int],
                 prefer: Optional[int]) -> Optional[int]:
    """The shape of ``boxes`` that prompts a click on ``plane`` of ``image``: ``prefer`` when it lies there (or
    the image is 2-D), else the last shape on that plane, else None (a stack's box is no prompt on other planes)."""
    if image.ndim < 3 or plane is None:
        return prefer
    on = [i for i in range(len(boxes.data)) if _shape_plane(boxes, i, image) == plane]
    return prefer if prefer in on else (on[-1] if on else None)


def _shape_plane(boxes: "napari.layers.Shapes", index: int, image: "napari.layers.Image") -> int:
    return int(round(float(_in_image_pixels(boxes, image, boxes.data[index])[:, 0].mean())))


def off_plane(boxes: Any, points: Any, image: "napari.layers.Image",
              plane: Optional[int]) -> tuple[list[tuple[np.ndarray, str]], np.ndarray, np.ndarray]:
    """The prompts on the other planes of a stack, which a Reset of ``plane`` keeps (none for a 2-D image): the
    :func:`snapshot_boxes` of ``boxes`` and :func:`snapshot_points` of ``points`` not on ``plane``."""
    shapes, (data, positive) = snapshot_boxes(boxes), snapshot_points(points)
    if image.ndim < 3 or plane is None:
        return [], np.empty((0, image.ndim)), np.empty(0, dtype=bool)
    kept = [shape for i, shape in enumerate(shapes) if _shape_plane(boxes, i, image) != plane]
    keep = np.round(_in_image_pixels(points, image)[:, 0]).astype(int) != plane if len(data) else np.zeros(0, bool)
    return kept, data[keep], positive[keep]


def snapshot_points(layer: Optional["napari.layers.Points"]) -> tuple[np.ndarray, np.ndarray]:
    """Copies of (data (N, D), positive (N,) bool)."""
    if layer is None:
        return np.empty((0, 2)), np.empty(0, dtype=bool)
    return np.array(layer.data, copy=True), positive_flags(layer).copy()


def restore_points(layer: "napari.layers.Points", data: np.ndarray, positive: np.ndarray) -> None:
    """Write a :func:`snapshot_points` back (colours follow ``positive``)."""
    default = bool(layer.feature_defaults["positive"].iloc[0])
    data = np.asarray(data, dtype=np.float64).reshape(-1, layer.ndim) if len(data) else np.empty((0, layer.ndim))
    layer.selected_data = set()
    layer.data = data
    layer.features = _features(positive)
    layer.feature_defaults["positive"] = default
    layer.refresh_colors()


def snapshot_boxes(layer: Optional["napari.layers.Shapes"]) -> list[tuple[np.ndarray, str]]:
    """Copies of the shapes of the ``boxes`` layer: (vertices (V, D), shape type) each."""
    if layer is None:
        return []
    return [(np.array(s, copy=True), str(t)) for s, t in zip(layer.data, layer.shape_type)]


def restore_boxes(layer: "napari.layers.Shapes", shapes: list[tuple[np.ndarray, str]]) -> None:
    """Write a :func:`snapshot_boxes` back (the layer's mode and colours are kept), flagged as a dock's write
    (the Annotate dock does not segment again a box that Undo puts back)."""
    mode = layer.mode
    layer.selected_data = set()
    with dock_write(layer):
        if len(layer.data):
            layer.data = []
        if shapes:
            layer.add([s for s, _t in shapes], shape_type=[t for _s, t in shapes])
    if layer.mode != mode:
        layer.mode = mode
