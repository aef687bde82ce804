"""The default box's margin has one home (util/defaults.py, torch-free): ``default_box`` uses it, and the help of
``adaqat segment`` / ``adaqat evaluate`` and the Batch dock's choice show it (before, each repeated 0.02 / 2%)."""
from __future__ import annotations

import inspect

from napari_adaqat.cli import build_parser
from napari_adaqat.data import boxes
from napari_adaqat.util import defaults


def test_the_default_box_margin_has_one_home_that_the_help_shows(monkeypatch):
    assert inspect.signature(boxes.default_box).parameters["margin"].default is defaults.DEFAULT_BOX_MARGIN_FRACTION
    assert list(boxes.default_box((100, 200))) == [4.0, 2.0, 195.0, 97.0]  # 2 % of each side
    commands = build_parser().commands
    text = {name: " ".join(commands[name].format_help().split()) for name in ("segment", "evaluate")}
    shown = f"{100 * defaults.DEFAULT_BOX_MARGIN_FRACTION:g}%"
    assert f"default box: the whole image minus a {shown} margin" in text["segment"]
    assert f"'default' = the whole image minus {shown}, as 'adaqat segment' without --boxes" in text["evaluate"]

    import importlib

    import napari_adaqat.cli.evaluate_cmd as evaluate_cmd
    import napari_adaqat.cli.segment_cmd as segment_cmd

    monkeypatch.setattr(defaults, "DEFAULT_BOX_MARGIN_FRACTION", 0.05)  # the help follows its one home
    try:
        for module in (segment_cmd, evaluate_cmd):
            importlib.reload(module)
        text = {name: " ".join(build_parser().commands[name].format_help().split()) for name in ("segment", "evaluate")}
        assert "minus a 5% margin" in text["segment"] and "minus 5%, as 'adaqat segment'" in text["evaluate"]
    finally:
        monkeypatch.undo()
        for module in (segment_cmd, evaluate_cmd):
            importlib.reload(module)
