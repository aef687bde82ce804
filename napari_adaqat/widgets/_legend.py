"""Legends for the SSIM and ΔSSIM layers: a colour bar (drawn over a film-grey checkerboard, so that
transparency shows) with what its low, middle and high values mean."""
from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QFrame, QGridLayout, QLabel, QScrollArea, QVBoxLayout, QWidget

from napari_adaqat.widgets import _layers as L

BAR_W, BAR_H = 256, 14

# (title, tick values, meaning) with and without a reference mask
TEXT = {
    (L.SSIM, True): ("SSIM: model vs reference", ("0", "", "1"),
                     "cyan = the model's map departs from the reference; clear = agrees (SSIM 1)"),
    (L.SSIM, False): ("SSIM: model vs baseline", ("0", "", "1"),
                      "cyan = the INT8 model departs from its FP32 baseline; clear = agrees (SSIM 1)"),
    (L.DELTA, True): ("ΔSSIM = SSIM(model) − SSIM(baseline), both vs reference", ("−1", "0", "+1"),
                      "green = model closer to the reference, magenta = baseline closer, clear = same"),
    (L.DELTA, False): ("ΔSSIM: model mask − baseline mask", ("−1", "0", "+1"),
                       "green = only the model marks lung, magenta = only the baseline, clear = both agree"),
}


def gradient_rgba(colormap: Any, width: int = BAR_W, height: int = BAR_H) -> np.ndarray:
    """(height, width, 4) uint8: ``colormap`` from its low to its high end, composited over a grey
    checkerboard (the transparent parts show the checkerboard, as the film shows through)."""
    rgba = np.asarray(colormap.map(np.linspace(0.0, 1.0, width)), dtype=np.float64)  # (W, 4)
    yy, xx = np.mgrid[0:height, 0:width]
    checker = np.where(((yy // 4) + (xx // 4)) % 2 == 0, 0.55, 0.35)[..., None]  # (H, W, 1) film-like greys
    alpha = rgba[None, :, 3:4]
    rgb = alpha * rgba[None, :, :3] + (1.0 - alpha) * checker
    out = np.concatenate([rgb, np.ones((height, width, 1))], axis=2)
    return np.ascontiguousarray(np.round(out * 255).astype(np.uint8))


def _pixmap(rgba: np.ndarray) -> QPixmap:
    h, w = rgba.shape[:2]
    image = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888)
    return QPixmap.fromImage(image.copy())  # copy: the QImage must not outlive the numpy buffer


class MapLegend(QWidget):
    """The legend of one map layer (``L.SSIM`` or ``L.DELTA``): title, colour bar, ticks, meaning."""

    def __init__(self, layer_name: str, colormap: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.layer_name = layer_name
        self.title = QLabel()
        self.bar = QLabel()
        self.bar.setPixmap(_pixmap(gradient_rgba(colormap)))
        self.bar.setFixedSize(BAR_W, BAR_H)
        self.ticks = [QLabel(), QLabel(), QLabel()]
        grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        aligns = (Qt.AlignmentFlag.AlignLeft, Qt.AlignmentFlag.AlignHCenter, Qt.AlignmentFlag.AlignRight)
        for col, (label, align) in enumerate(zip(self.ticks, aligns)):
            label.setAlignment(align)
            grid.addWidget(label, 0, col)
        ticks = QWidget()
        ticks.setLayout(grid)
        ticks.setFixedWidth(BAR_W)
        self.meaning = QLabel()
        self.range = QLabel()
        for label in (self.meaning, self.range):
            label.setWordWrap(True)
            label.setStyleSheet("font-size: 11px")
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 2, 0, 4)
        box.setSpacing(1)
        for w in (self.title, self.bar, ticks, self.meaning, self.range):
            box.addWidget(w)
        self.set_reference(False)

    def set_reference(self, has_reference: bool) -> None:
        """Word the legend for maps made against a reference mask (or against the baseline)."""
        title, ticks, meaning = TEXT[(self.layer_name, has_reference)]
        self.title.setText(title)
        for label, text in zip(self.ticks, ticks):
            label.setText(text)
        self.meaning.setText(meaning)

    def set_values(self, data: np.ndarray) -> None:
        """Say what this map holds: its range and mean (a plane of a stack: that plane)."""
        lo, hi, mean = float(np.min(data)), float(np.max(data)), float(np.mean(data))
        sign = "+" if self.layer_name == L.DELTA else ""
        self.range.setText(f"this image: {lo:{sign}.3f} … {hi:{sign}.3f}, mean {mean:{sign}.3f}")

    def text(self) -> str:
        """Everything the legend says, in one line (for tests)."""
        ticks = " ".join(t.text() for t in self.ticks if t.text())
        return " | ".join([self.title.text(), ticks, self.meaning.text(), self.range.text()])


class MapLegends(QWidget):
    """Both legends, one under the other; each shows only while its layer holds a map."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ssim = MapLegend(L.SSIM, L.ssim_colormap())
        self.delta = MapLegend(L.DELTA, L.delta_colormap())
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 4, 0, 0)
        for legend in (self.ssim, self.delta):
            box.addWidget(legend)
            legend.setVisible(False)

    def follow_layers(self, names: Any) -> None:
        """Hide the legend of a map whose layer is not among ``names`` (removed by the user, or by the Annotate
        dock opening a film)."""
        for legend, name in ((self.ssim, L.SSIM), (self.delta, L.DELTA)):
            if name not in names:
                legend.setVisible(False)

    def show_for(self, result: Any) -> None:
        """Show the legends of the maps ``result`` (a SegmentResult) carries; None: no maps, no legends."""
        if result is None:
            for legend in (self.ssim, self.delta):
                legend.setVisible(False)
            return
        for legend, data in ((self.ssim, result.ssim), (self.delta, result.delta)):
            legend.set_reference(bool(result.has_reference))
            legend.setVisible(data is not None)
            if data is not None:
                legend.set_values(data)


def scrolling(legends: MapLegends) -> QScrollArea:
    """``legends`` in a frameless scroll area: shown whole where the dock has room, scrolled where it has not, so
    that the legends that come with the first maps (about 200 px) do not push the window past a 1080-px screen
    (a QA find: the window's minimum height went from 1010 to 1212 px on the first click)."""
    area = QScrollArea()
    area.setWidget(legends)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setMinimumHeight(1)  # (0 would leave the scroll area's own minimum, about 70 px)
    return area
