"""The Annotate dock's three layers: the film (Image), ``lung mask`` (Labels) and ``boxes`` (Shapes)."""
from __future__ import annotations

import hashlib
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator, Optional

import numpy as np

from napari_adaqat.io.image_data import pixel_aspect
from napari_adaqat.widgets import _layers as L
from napari_adaqat.widgets._points import restore_boxes

FILM = "adaqat_annotate_film"  # in the film layer's metadata: a dock opened later shows its films there too
LEFT = "adaqat_annotate_left"  # in 'lung mask' metadata: the digest of the mask a closed dock left, its work kept
NAPARI_BRUSH = 10  # napari's brush (px of the film): right for a 512-px film, 2 screen px on a 3000-px one


def _digest(data: Any) -> str:
    return hashlib.blake2b(np.ascontiguousarray(data).tobytes(), digest_size=16).hexdigest()


def film_brush(shape: tuple[int, ...]) -> int:
    """The brush for a new ``lung mask`` on a film of ``shape`` (H, W): 1 % of its longer side, at least napari's."""
    return max(NAPARI_BRUSH, round(max(shape[-2:]) / 100))


def fit_to_film(labels: Any, boxes: Any, clicks: Any, before: Optional[tuple[int, ...]], shape: tuple[int, ...],
                adopted: bool) -> None:
    """Size the brush, the box outline and the clicks for a film of ``shape`` after one of ``before`` (None: no
    film before): the user's brush keeps its size relative to the film; a layer new to the dock with napari's
    brush gets :func:`film_brush`.  Outline and clicks as the Segment dock draws them (``ensure_boxes``,
    ``ensure_points``), so that a 512-px film after a 3000-px one (or the reverse) shows them too."""
    side = max(shape[-2:])
    if adopted and labels.brush_size == NAPARI_BRUSH:
        labels.brush_size = film_brush(shape)
    elif before is not None and max(before[-2:]) != side:
        labels.brush_size = max(1, round(labels.brush_size * side / max(before[-2:])))
    if before is not None and tuple(before[-2:]) != tuple(shape[-2:]):
        boxes.current_edge_width = L.box_edge_width(shape)
        if clicks is not None and not len(clicks.data):  # (the film before's clicks are cleared first)
            clicks.selected_data = set()  # (napari keeps a cleared point selected: its size would be set too)
            clicks.current_size = L.click_size(shape)


def film_scale(spacing: Optional[tuple[float, float]]) -> tuple[float, float]:
    """The (row, col) scale that shows a film at its true shape: (aspect, 1) for pixels ``spacing`` (row, col) mm
    that are not square (:func:`pixel_aspect`), else (1, 1).  A column is one world unit, so that the brush, the
    outlines and the clicks keep their sizes in pixels of the film's width."""
    return (pixel_aspect(spacing), 1.0)


def _under_its_layers(viewer: Any, image: Any) -> None:
    """Move the film layer ``image`` just under the lowest of the layers drawn over a film (its mask, boxes, clicks
    and maps), when those are already there; other images stay where they are."""
    names = [layer.name for layer in viewer.layers]
    over = [names.index(n) for n in (L.MASK, L.BOXES, L.POINTS, L.SSIM, L.DELTA) if n in names]
    if over and names.index(image.name) > min(over):
        viewer.layers.move(names.index(image.name), min(over))


def place_on_film(scale: tuple[float, float], *layers: Any) -> None:
    """Give each of ``layers`` (None: absent) the film's ``scale``, where it differs: a mask, box or click drawn
    over a stretched film lands on the film's own pixels."""
    for layer in layers:
        if layer is not None and layer.ndim == 2 and not np.allclose(layer.scale, scale):
            layer.scale = scale


class FilmLayers:
    """Shows one film with its mask and box; tells the dock about the user's brush strokes (``on_paint()``)
    and rectangles (``on_boxes(event)``), never about the dock's own writes."""

    def __init__(self, viewer: Any, on_paint: Callable[[], None], on_boxes: Callable[[Any], None]) -> None:
        self.viewer = viewer
        self.image: Any = None
        self.mask: Any = None
        self.boxes: Any = None
        self._on_paint, self._on_boxes = on_paint, on_boxes
        self._writing = False
        self._watched: Any = None  # the film layer whose scale and translate its mask, box and clicks follow
        self._users_window: Optional[tuple[float, float]] = None  # contrast limits the user set on a film
        self._own_window: Optional[tuple[float, float]] = None  # the film's own (napari's auto-contrast of it)

    @contextmanager
    def _quiet(self) -> Iterator[None]:
        self._writing = True
        try:
            yield
        finally:
            self._writing = False

    def _paint_event(self, _event: Any = None) -> None:
        if not self._writing:
            self._on_paint()

    def _boxes_event(self, event: Any) -> None:
        if not self._writing and not self.boxes.metadata.get(L.DOCK_WRITE):  # (the Segment dock's Undo)
            self._on_boxes(event)

    def _follow_film(self, _event: Any = None) -> None:
        """The film layer was moved, scaled or turned by hand (its layer controls, a script): its mask, box and
        clicks go with it, so that what is drawn lands on the film's pixels under it (a QA find: the mask showed at
        half size in a corner of a film scaled by 2, and brush corrections went to other pixels)."""
        image = self.image
        if not self.present(image) or image.ndim != 2:
            return
        clicks = self.viewer.layers[L.POINTS] if L.POINTS in self.viewer.layers else None
        for layer in (self.mask, self.boxes, clicks):
            if layer is not None and self.present(layer) and layer.ndim == 2:
                L.place_like(layer, image)

    @staticmethod
    def _placement_events(image: Any) -> list:
        return [getattr(image.events, key) for key in L.PLACEMENT if hasattr(image.events, key)]

    def _watch(self, image: Any) -> None:
        """Follow ``image``'s placement (:meth:`_follow_film`), once per film layer."""
        if image is not None and image is not self._watched:
            self._unwatch()
            for event in self._placement_events(image):
                event.connect(self._follow_film)
            self._watched = image

    def _unwatch(self) -> None:
        if self._watched is not None:
            for event in self._placement_events(self._watched):
                event.disconnect(self._follow_film)
            self._watched = None

    def detach(self) -> None:
        """Stop listening to the layers (a closed dock must not react to strokes and boxes)."""
        self._unwatch()
        if self.mask is not None:
            self.mask.events.paint.disconnect(self._paint_event)
        if self.boxes is not None:
            self.boxes.events.data.disconnect(self._boxes_event)
            self.boxes.metadata.pop(L.ANNOTATE_OWNER, None)  # the Segment dock prompts on its boxes again

    def mark_left(self) -> None:
        """The dock closes with its work on the film kept (draft, or nothing to keep): a dock opened later may show
        its next film in ``lung mask`` unless something is painted there meanwhile."""
        if self.present(self.mask):
            self.mask.metadata[LEFT] = _digest(self.mask.data)

    def present(self, layer: Any) -> bool:
        return layer is not None and layer in self.viewer.layers

    def film_name(self) -> Optional[str]:
        """The name of the film on screen (this dock's film layer, or that of a dock closed before), if any."""
        image = self.image if self.present(self.image) else next(
            (ly for ly in self.viewer.layers if ly.metadata.get(FILM) and type(ly).__name__ == "Image"), None)
        return None if image is None else image.name

    def _keep_aside(self, labels: Any, image: Any, mask: np.ndarray) -> str:
        """When ``lung mask`` holds a mask this dock did not just show (the Segment dock's, perhaps brush-edited, or
        strokes painted on the film of a dock closed before) that is not ``mask``, rename it so that the film's
        mask does not overwrite it; the line that says so, or "" (nothing to keep)."""
        if labels is None or labels is self.mask or type(labels).__name__ != "Labels":
            return ""
        data = np.asarray(labels.data)
        if not data.any() or (data.shape == mask.shape and np.array_equal(data > 0, mask)) \
                or labels.metadata.get(LEFT) == _digest(data):  # as a closed dock left it: its work is kept
            return ""
        source = labels.metadata.get("source_layer_id")
        owner = next((layer.name for layer in self.viewer.layers if str(layer.unique_id) == source), None)
        labels.name = f"{L.MASK} of {owner}" if owner else f"{L.MASK} (earlier)"
        labels.visible = False  # another image's mask: shown over this film it would look like a second outline
        return (f"'{L.MASK}' held {'the mask of ' + repr(owner) if owner else 'an earlier mask'}: "
                f"it is kept as the layer '{labels.name}' (hidden: its eye in the layer list shows it).")

    def show(self, name: str, pixels: np.ndarray, mask: np.ndarray, box: Optional[np.ndarray],
             spacing: Optional[tuple[float, float]] = None) -> str:
        """A new film: ``pixels`` (H, W) in [0, 1], ``mask`` bool (H, W) with a fresh undo history, and
        ``box`` (xyxy pixels, or None) as the one rectangle in ``boxes``; the view is reset for a new size.
        ``spacing`` (row, col) mm goes into the film layer's ``spacing_mm`` metadata, and pixels that are not
        square are shown at the film's true shape (:func:`film_scale`, on the film, its mask, box and clicks).
        Another image's mask in ``lung mask`` is kept as its own layer, a renamed mask of the film before is hidden;
        returns the lines that say so, or ""."""
        viewer, image = self.viewer, self.image
        renamed = ""
        if self.present(self.mask) and self.mask.name != L.MASK and self.mask.visible:  # the user renamed it (QA)
            self.mask.visible = False  # the film before's mask: over this film it would look like a second outline
            renamed = (f"'{self.mask.name}' holds the film before's mask (hidden now); this film's mask is in "
                       f"'{L.MASK}', which Accept saves.")
        labels = viewer.layers[L.MASK] if L.MASK in viewer.layers else None
        if not self.present(image):  # the film layer of a dock closed before, else a new one
            image = next((ly for ly in viewer.layers if ly.metadata.get(FILM) and type(ly).__name__ == "Image"
                          and ly.ndim == pixels.ndim), None)
            self.image = image
        kept = self._keep_aside(labels, image, mask)  # (before the film layer takes the new film's name)
        before = None if image is None else tuple(image.data.shape)
        if image is None:
            image = self.image = viewer.add_image(pixels, name=name, colormap="gray", metadata={FILM: True})
            reset, self._own_window = True, tuple(image.contrast_limits)
            _under_its_layers(viewer, image)  # (its layer deleted and the film opened again: napari adds on top)
        else:
            reset = image.data.shape != pixels.shape
            if self._own_window is not None:  # the film's window now: the user's, kept for the films after, unless
                limits = tuple(image.contrast_limits)  # it is the film's own (auto-contrast): each film's own again
                self._users_window = None if np.allclose(limits, self._own_window, atol=1e-3) else limits
            image.data, image.name = pixels, name
            image.reset_contrast_limits()
            self._own_window = tuple(image.contrast_limits)
            if self._users_window is not None:  # (as gamma is kept; the films are all in [0, 1]: one window fits)
                image.contrast_limits = self._users_window
        image.metadata["spacing_mm"] = spacing
        scale = film_scale(spacing)
        reset = reset or not np.allclose(image.scale[-2:], scale)
        place_on_film(scale, image)
        labels = None if kept else labels
        with self._quiet():
            if labels is None or type(labels).__name__ != "Labels":
                labels = viewer.add_labels(mask.astype(np.uint8), name=L.MASK, opacity=0.45)
            else:
                labels.data = mask.astype(np.uint8)
                labels._reset_history()  # Ctrl+Z must not bring back the previous film's mask
        labels.selected_label = 1
        adopted = labels is not self.mask
        # the film's mask, as the Segment dock tags its own: a click there takes this mask as its mask prompt
        labels.metadata = L.mask_meta(image)  # (a new film: no earlier mask's provenance)
        boxes = L.ensure_boxes(viewer, image)
        if labels is not self.mask or boxes is not self.boxes:
            self.detach()
            labels.events.paint.connect(self._paint_event)
            boxes.events.data.connect(self._boxes_event)
        self.mask, self.boxes = labels, boxes
        boxes.metadata[L.ANNOTATE_OWNER] = str(image.unique_id)  # its film: the Segment dock leaves its boxes
        maps = [name for name in (L.SSIM, L.DELTA) if name in viewer.layers]  # the Segment dock's, of the film before
        others = [name for name in maps if viewer.layers[name].metadata.get("source_layer_id") != str(image.unique_id)]
        if others:  # another image's maps (or the user's layers of those names): not over this film
            batch = getattr(viewer.layers, "batched_update", nullcontext)  # (older napari: none)
            with batch():  # (napari runs gc.collect per removal, else: 0.25 s each)
                for name in others:
                    viewer.layers.remove(name)
        if len(others) < len(maps):  # this film layer's maps (of the film before): cleared, at the new film's size,
            L.neutral_maps(viewer, image, None)  # not removed and added again by the next click (0.5-0.9 s of GUI)
        clicks = viewer.layers[L.POINTS] if L.POINTS in viewer.layers else None
        if clicks is not None and len(clicks.data):  # the Segment dock's clicks belonged to the film before
            with L.dock_write(clicks):
                clicks.data = np.empty((0, clicks.ndim))
        fit_to_film(labels, boxes, clicks, before, pixels.shape, adopted)
        place_on_film(scale, labels, boxes, clicks)
        with self._quiet():
            boxes.data = []
            if box is not None:  # the box that made the model's mask, as a rectangle (rows, cols)
                boxes.add_rectangles(np.array([[box[1], box[0]], [box[3], box[2]]]))
        self._watch(image)
        self._follow_film()
        if reset:
            viewer.reset_view()
        return "\n".join(line for line in (kept, renamed) if line)

    def screen_mask(self, shape: Optional[tuple[int, ...]]) -> Optional[np.ndarray]:
        """The mask on screen as bool (H, W), when ``lung mask`` is there with the film's ``shape`` and holds a mask
        of the film (never another image's: Accept and the draft save it as the film's)."""
        if shape is None or not self.present(self.mask) or self.image is None \
                or self.mask.metadata.get("source_layer_id") != str(self.image.unique_id):
            return None
        data = np.asarray(self.mask.data)
        return data != 0 if data.shape == shape else None

    def box(self, index: int) -> np.ndarray:
        """Rectangle ``index`` of ``boxes`` as xyxy pixels of the film."""
        return L.box_in_pixels(self.boxes, index, self.image)[0]

    def write_mask(self, mask: np.ndarray) -> None:
        """Change only the pixels that differ (one undo step: Ctrl+Z on 'lung mask' restores the old mask)."""
        layer = self.mask
        changed = np.nonzero((np.asarray(layer.data) != 0) != mask)
        if changed[0].size:
            with self._quiet():
                layer.data_setitem(changed, mask[changed].astype(layer.data.dtype))

    def put_boxes(self, shapes: list) -> None:
        """Write a ``snapshot_boxes`` of ``boxes`` back (the dock's write: nothing is segmented again)."""
        with self._quiet():
            restore_boxes(self.boxes, shapes)

    def keep_only_box(self, keep: int) -> None:
        """Leave only the rectangle that made the mask (the others would only confuse)."""
        boxes = self.boxes
        if len(boxes.data) > 1 and keep < len(boxes.data):
            with self._quiet():
                boxes.selected_data = set(range(len(boxes.data))) - {keep}
                boxes.remove_selected()
