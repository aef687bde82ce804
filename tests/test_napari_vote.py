"""A model file with a vote in the Segment dock (real napari viewer, Xvfb): the box mask is the API's (the vote
counts), a click re-segments, and no state of the undo history keeps the vote's model-own logits (a full-film
tensor the dock never reads)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from napari_adaqat import open_model  # noqa: E402
from napari_adaqat.model.build import build_sam  # noqa: E402
from napari_adaqat.model.formats.model_file import export_model  # noqa: E402
from napari_adaqat.model.formats.vote_file import add_vote  # noqa: E402
from napari_adaqat.model.vote_unet import VoteUNet  # noqa: E402
from napari_adaqat.widgets.segment import SegmentWidget  # noqa: E402

BOX_RC = np.array([[20.0, 15.0], [120.0, 165.0]])  # rows, columns (napari); xyxy (15, 20, 165, 120)


@pytest.mark.gui
def test_a_voted_model_in_the_segment_dock(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    import napari_adaqat.widgets.segment as segment_dock

    # as when a maps job is dropped for a newer prompt: nothing frees the result's arrays afterwards
    monkeypatch.setattr(segment_dock, "drop_probabilities", lambda result: None)
    torch.manual_seed(0)
    sam = build_sam("hybrid_nano_refine")
    export_model(sam, tmp_path / "model.safetensors", profile="fp32")
    net = VoteUNet(2)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "unet.safetensors"))
    voted = add_vote(tmp_path / "model.safetensors", tmp_path / "unet.safetensors", tmp_path / "voted.safetensors")
    film = (np.random.default_rng(0).random((140, 180)) * 255).astype(np.uint8)

    viewer = make_napari_viewer()
    viewer.add_image(film, name="film")
    widget = SegmentWidget(viewer, model_path=voted, use_baseline=False, device="cpu")
    viewer.window.add_dock_widget(widget)
    qtbot.waitUntil(lambda: not widget.busy, timeout=60000)
    viewer.layers["boxes"].add_rectangles(BOX_RC)
    qtbot.waitUntil(lambda: widget.last_result is not None and not widget.busy, timeout=60000)
    assert widget.last_error is None, widget.last_error
    seg = open_model(voted, device="cpu")
    seg.set_image(film)
    api_mask, api_pred = seg.predict(np.array([15.0, 20.0, 165.0, 120.0]))
    assert api_pred.own_logits is not None  # the vote counted in the API ...
    np.testing.assert_array_equal(viewer.layers["lung mask"].data > 0, api_mask)  # ... and in the dock alike
    before = widget.last_result
    widget.points_mode()
    points = viewer.layers["points"]
    points.feature_defaults["positive"] = False
    points.add(np.array([[70.0, 90.0]]))
    qtbot.waitUntil(lambda: widget.last_result is not before and not widget.busy, timeout=60000)
    assert widget.last_error is None, widget.last_error
    states = widget.history._states  # every state the undo history holds
    assert all(s.result is None or s.result.own_logits is None for s in states)
    assert widget.last_result.own_logits is None and before.own_logits is None
