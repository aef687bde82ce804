"""The Train dock's live plot: training loss per step and validation Dice per epoch, against epochs.

A matplotlib canvas (``backend_qtagg``: Qt 5 and Qt 6) fed with ``progress.jsonl`` records; a rerun
of an epoch (after Stop and Resume) replaces that epoch's points instead of doubling them. Stage 2
continues the Stage-1 curves to the right of a dashed line (its labels over the frame, off the curves); a
dotted line is the starting model's validation Dice before training (``start_val``).
"""
from __future__ import annotations

import math
import time
from typing import Any, Optional

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QSizePolicy

from napari_adaqat.widgets._train_process import format_duration

LOSS_COLOR, DICE_COLOR = "#f28e2b", "#4e9bd6"


def info_text(epoch: dict[str, Any], stage: Optional[int], running: bool) -> str:
    """The line over the plot: stage, epoch, validation Dice and the time left (the rank budget: :func:`info_tip`)."""
    eta = max(0.0, float(epoch.get("eta_s") or 0) - (time.time() - float(epoch.get("time") or time.time())))
    unknown = "eta_s" in epoch and epoch["eta_s"] is None  # (a one-step first epoch: see train/eta.py)
    return (f"Stage {stage or '?'} · epoch {epoch.get('epoch')}/{epoch.get('epochs')} · "
            f"val Dice {epoch.get('val_dice', 0):.3f}"
            f" · ETA {'–' if not running else 'after the next epoch' if unknown else format_duration(eta)}")


def info_tip(epoch: dict[str, Any]) -> str:
    """The tooltip of the line over the plot: the technical detail of the epoch (the adapters' rank budget)."""
    rank = epoch.get("rank_budget")
    return ("val Dice: the model's Dice on the validation films (films it never trains on) after this epoch. "
            + (f"Rank budget {rank}: the total rank the AdaLoRA adapters keep after pruning." if rank is not None
               else "Rank budget: – (no adapters train in this stage)."))


def _theme() -> tuple[str, str]:
    """(background, text) colours of napari's current theme."""
    try:
        from napari.settings import get_settings
        from napari.utils.theme import get_theme

        theme = get_theme(get_settings().appearance.theme)
        return str(theme.background.as_hex()), str(theme.text.as_hex())
    except Exception:  # noqa: BLE001 - any theme trouble: the dark defaults
        return "#23242b", "#f0f1f2"


class TrainPlot(FigureCanvasQTAgg):
    """Loss (left axis, per step) and validation Dice (right axis, per epoch); x = epochs."""

    def __init__(self, height_px: int = 230) -> None:
        bg, fg = _theme()
        self.figure = Figure(figsize=(4.2, height_px / 100), dpi=100, facecolor=bg, layout="constrained")
        super().__init__(self.figure)
        self.setMinimumHeight(height_px)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.loss_x: list[float] = []
        self.loss_y: list[float] = []
        self.dice_x: list[float] = []
        self.dice_y: list[float] = []
        self.stage: Optional[int] = None
        self.offset = 0.0  # epochs before this stage's epoch 1 (Stage 2 after Stage 1)
        self._fg = fg
        self._marks: list[Any] = []
        self.ax = self.figure.add_subplot(111)
        self.ax2 = self.ax.twinx()
        for ax in (self.ax, self.ax2):
            ax.set_facecolor(bg)
            ax.tick_params(colors=fg, labelsize=8)
            for spine in ax.spines.values():
                spine.set_color(fg)
        self.ax.set_xlabel("epoch", color=fg, fontsize=8)
        self.ax.set_ylabel("training loss", color=LOSS_COLOR, fontsize=8)
        self.ax2.set_ylabel("validation Dice", color=DICE_COLOR, fontsize=8)
        self.ax2.set_ylim(0.0, 1.0)
        (self._loss_line,) = self.ax.plot([], [], color=LOSS_COLOR, lw=1.0, alpha=0.85, label="loss (step)")
        (self._dice_line,) = self.ax2.plot([], [], color=DICE_COLOR, lw=1.6, marker="o", ms=3.5,
                                           label="val Dice (epoch)")
        self._start_line = self.ax2.axhline(0.0, color=DICE_COLOR, ls=":", lw=1.2, alpha=0.9, visible=False,
                                            label="starting model (before training)")
        self.start_dice: Optional[float] = None  # the start model's validation Dice (train/compare.py)
        self._legend: Any = None
        self._show_legend()

    def _show_legend(self) -> None:
        """The legend over the plot: the two curves, and the starting model's line once it is known."""
        if self._legend is not None:
            self._legend.remove()
        handles = [self._loss_line, self._dice_line] + ([self._start_line] if self.start_dice is not None else [])
        self._legend = self.figure.legend(handles=handles, loc="outside upper center", ncols=len(handles),
                                          fontsize=7, frameon=False, labelcolor=self._fg)

    def clear(self, stage: Optional[int] = None) -> None:
        """Forget every point (a new run of ``stage``)."""
        for points in (self.loss_x, self.loss_y, self.dice_x, self.dice_y):
            points.clear()
        for artist in self._marks:
            artist.remove()
        self._marks.clear()
        self.stage, self.offset = stage, 0.0
        if self.start_dice is not None:
            self.start_dice = None
            self._start_line.set_visible(False)
            self._show_legend()
        self.refresh()

    def continue_from(self, records: list[dict[str, Any]], stage: int) -> None:
        """Show a finished stage's ``records``, then go on with ``stage`` to the right of them."""
        self.clear(stage - 1)
        self.add(records)
        self.begin_stage(stage, max([r.get("epoch", 0) for r in records if r.get("kind") == "epoch"], default=0))

    def begin_stage(self, stage: int, offset: float) -> None:
        """Go on with ``stage`` after ``offset`` epochs: a dashed line there, later points shifted by it."""
        self._drop_from(self.loss_x, self.loss_y, offset + 1e-9)
        self._drop_from(self.dice_x, self.dice_y, offset + 1e-9)
        self.stage, self.offset = stage, float(offset)
        line = self.ax.axvline(offset, color=self._fg, ls="--", lw=0.8, alpha=0.6)
        self._marks.append(line)
        for words, side in ((f"← Stage {stage - 1} ", "right"), (f" Stage {stage} →", "left")):  # over the frame,
            self._marks.append(self.ax.text(offset, 1.01, words, transform=self.ax.get_xaxis_transform(),  # not
                                            va="bottom", ha=side, color=self._fg, fontsize=7, alpha=0.8))  # the data
        self.refresh()

    def add(self, records: list[dict[str, Any]]) -> bool:
        """Take progress records (others than step/epoch are ignored); True when a point changed."""
        changed = False
        for rec in records:
            kind = rec.get("kind")
            if kind == "step" and "loss" in rec and rec.get("steps"):
                x = self.offset + (int(rec["epoch"]) - 1) + int(rec["step"]) / int(rec["steps"])
                self._drop_from(self.loss_x, self.loss_y, x)
                self.loss_x.append(x)
                self.loss_y.append(float(rec["loss"]))
                changed = True
            elif kind == "start_val" and rec.get("val_dice") is not None:  # "epoch 0": the start model
                self.start_dice = float(rec["val_dice"])
                self._start_line.set_ydata([self.start_dice, self.start_dice])
                self._start_line.set_visible(True)
                self._show_legend()
                changed = True
            elif kind == "epoch" and rec.get("val_dice") is not None:
                epoch = self.offset + int(rec["epoch"])
                self._drop_from(self.dice_x, self.dice_y, epoch)
                self.dice_x.append(epoch)
                self.dice_y.append(float(rec["val_dice"]))
                changed = True
        return changed

    @staticmethod
    def _drop_from(xs: list, ys: list, x: float) -> None:
        """Remove points at or after ``x`` (an epoch run again after Resume)."""
        while xs and xs[-1] >= x:
            xs.pop()
            ys.pop()

    def refresh(self) -> None:
        """Redraw (cheap: only when idle)."""
        self._loss_line.set_data(self.loss_x, self.loss_y)
        self._dice_line.set_data(self.dice_x, self.dice_y)
        right = max([1.0, *self.loss_x, *self.dice_x])
        self.ax.set_xlim(0.0, right)
        if self.loss_y:
            lo, hi = min(self.loss_y), max(self.loss_y)
            pad = max(0.05 * (hi - lo), 1e-3)
            self.ax.set_ylim(lo - pad, hi + pad)
        if self.dice_y:  # from a little under the lowest Dice (and the start model's) in steps of 0.05: a fall of
            seen = self.dice_y + ([self.start_dice] if self.start_dice is not None else [])  # 0.02 shows
            self.ax2.set_ylim(max(0.0, math.floor((min(seen) - 0.02) * 20) / 20), max(1.0, max(seen)))
        self.draw_idle()
