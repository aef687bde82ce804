"""The Segment dock's quick path (Xvfb): a prompt whose recent costs are small runs at once on the GUI thread
(the embedding cached), one slow prompt does not change that, a rewritten model file goes to the worker again,
and a prompt neither rebuilds the model refs nor looks at the model file.  Tiny random ``vit_nano`` models."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

# imported at collection, before any viewer creates an OpenGL context (see widgets/_compat.py)
from napari_adaqat.widgets._shared import FILE_RECHECK_S, shared_engine  # noqa: E402
from napari_adaqat.widgets._prompt_jobs import INLINE_PROMPT_MS, _prompt_cost  # noqa: E402
from test_napari_segment import add_sample, dock, wait  # noqa: E402  (tests/ is on sys.path)

pytestmark = pytest.mark.gui


def test_a_prompt_is_judged_quick_by_its_cpu_time_on_a_cpu(nano_models):
    """A worker's wall time also counts its wait for the cores while napari paints; on a CPU the dock
    decides on the inline path by the prompt's own thread CPU time."""
    import dataclasses

    from napari_adaqat.inference.engine import Engine, ModelRef
    from napari_adaqat.widgets.segment import _prompt_cost

    engine, ref = Engine(), ModelRef(path=nano_models[0], model_type="vit_nano")
    image = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    embedded = engine.predict(image, np.array([4.0, 4.0, 60.0, 60.0]), ref)
    prompt = engine.predict(image, np.array([6.0, 6.0, 58.0, 58.0]), ref)  # the embedding is cached
    assert prompt.model_cpu_seconds is not None and 0 < prompt.model_cpu_seconds < embedded.model_cpu_seconds
    waited = dataclasses.replace(prompt, model_seconds=0.2, model_cpu_seconds=0.01)
    assert _prompt_cost(waited) == 0.01
    assert _prompt_cost(dataclasses.replace(waited, model_cpu_seconds=None)) == 0.2  # a GPU: wall time


def test_one_slow_prompt_does_not_send_the_next_ones_to_the_worker():
    """The inline rule reads the lower median of the recent prompts' costs on one image plane and model:
    the embedding's first prompt or one slow run (a busy machine) does not flip it, a slow model does."""
    from napari_adaqat.widgets._prompt_jobs import INLINE_PROMPT_MS, RECENT_PROMPTS, RecentCosts

    quick, slow = 0.6 * INLINE_PROMPT_MS / 1000, 2.5 * INLINE_PROMPT_MS / 1000
    costs, key = RecentCosts(), ("image", 0, None, "model", "cpu")
    assert not costs.quick(key)  # nothing known yet: the worker
    costs.add(key, slow)  # the first prompt paid for the embedding
    assert not costs.quick(key)
    costs.add(key, quick)
    assert costs.quick(key) and not costs.quick(("other image", 0, None, "model", "cpu"))
    costs.add(key, quick)
    costs.add(key, slow)  # one slow run among quick ones
    assert costs.quick(key)
    for _ in range(RECENT_PROMPTS):  # the model became slow (or the machine stays busy): the worker again
        costs.add(key, slow)
    assert not costs.quick(key)
    costs.add(("other image", 0, None, "model", "cpu"), quick)  # a new image plane starts a new record
    assert not costs.quick(key) and costs.quick(("other image", 0, None, "model", "cpu"))


def test_after_a_run_of_worker_prompts_one_runs_inline_again_and_decides():
    """A prompt costs a worker thread about twice its inline cost, so worker costs alone kept every later click in
    the worker after one slow run (clicks at 110-150 ms instead of 65-75 ms; benchmarks/dock_latency.py). After
    PROBE_EVERY worker prompts under PROBE_BELOW_MS, one runs inline, and its cost starts the inline record again."""
    from napari_adaqat.widgets._prompt_jobs import INLINE_PROMPT_MS, PROBE_BELOW_MS, PROBE_EVERY, RecentCosts

    inline, worker = 0.9 * INLINE_PROMPT_MS / 1000, 0.9 * PROBE_BELOW_MS / 1000
    costs, key = RecentCosts(), ("image", 0, None, "model", "cpu")
    for cost in (inline, 1.5 * INLINE_PROMPT_MS / 1000, 1.4 * INLINE_PROMPT_MS / 1000):  # a busy moment
        costs.add(key, cost, inline=True)
    assert not costs.quick(key)
    for _ in range(PROBE_EVERY - 1):
        costs.add(key, worker)
        assert not costs.quick(key)
    costs.add(key, worker)
    assert costs.quick(key)  # the probe
    costs.add(key, inline, inline=True)  # quick again: inline from now on, the busy moment forgotten
    assert costs.quick(key)
    costs.add(key, inline, inline=True)
    assert costs.quick(key)
    slow_probe = RecentCosts()
    for _ in range(PROBE_EVERY):
        slow_probe.add(key, worker)
    slow_probe.add(key, 2 * INLINE_PROMPT_MS / 1000, inline=True)  # the probe was slow: the worker again
    assert not slow_probe.quick(key)
    for _ in range(PROBE_EVERY):
        slow_probe.add(key, 1.1 * PROBE_BELOW_MS / 1000)  # truly slow prompts never probe
    assert not slow_probe.quick(key)


def test_a_quick_prompt_runs_at_once_unless_the_model_file_changed(make_napari_viewer, qtbot, nano_models, tmp_path):
    """After one box (worker), the next box's mask is there as soon as the rectangle is added (GUI thread,
    embedding cached); once the model file is rewritten, the prompt goes to the worker again."""
    live = tmp_path / "live.pth"
    shutil.copy(nano_models[0], live)
    viewer = make_napari_viewer()
    add_sample(viewer)
    widget = dock(viewer, qtbot, model_path=live, baseline_path=nano_models[1], model_type="vit_nano")
    boxes = viewer.layers["boxes"]
    boxes.add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    wait(qtbot, widget)
    first = widget.last_result
    assert first is not None and _prompt_cost(first) * 1000 < INLINE_PROMPT_MS  # a nano model: quick (CPU time)
    boxes.add_rectangles(np.array([[60.0, 50.0], [450.0, 460.0]]))  # no event processing in between
    second = widget.last_result
    assert second is not first and second.mask.sum() > 0  # shown inside add_rectangles: inline
    assert viewer.layers["lung mask"].data.astype(bool).sum() == second.mask.sum()
    wait(qtbot, widget)  # the maps follow in a worker
    time.sleep(0.01)
    shutil.copy(nano_models[1], live)  # the file changed: a new model must be loaded, not on the GUI thread
    assert widget.engine is shared_engine()  # one engine per viewer; prompts do not stat the model file:
    time.sleep(FILE_RECHECK_S)  # it is looked at again after FILE_RECHECK_S
    before = widget.last_result
    boxes.add_rectangles(np.array([[45.0, 35.0], [465.0, 475.0]]))
    assert widget.last_result is before and widget.busy  # queued for the worker
    wait(qtbot, widget)
    assert widget.last_result is not before


def test_a_prompt_neither_rebuilds_model_refs_nor_stats_the_model_file(make_napari_viewer, qtbot, nano_models,
                                                                       monkeypatch):
    """The model choice is turned into refs when it changes, and the file's identity is looked at on a timer
    (FILE_RECHECK_S), not at every box; the Segment dock prompts through the one shared engine."""
    viewer = make_napari_viewer()
    add_sample(viewer)
    widget = dock(viewer, qtbot, model_path=nano_models[0], use_baseline=False, model_type="vit_nano")
    assert widget.engine is shared_engine()
    boxes = viewer.layers["boxes"]
    boxes.add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    wait(qtbot, widget)
    first = widget.last_result
    monkeypatch.setattr(widget.engine, "recheck_seconds", 3600.0)  # the timer does not fire during this test
    looked_at, real_stat = [], Path.stat

    def counting_stat(self, *args, **kwargs):
        if self.name == nano_models[0].name:
            looked_at.append(self)
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", counting_stat)
    monkeypatch.setattr(widget.models, "model_ref", lambda: pytest.fail("model refs rebuilt for a prompt"))
    for box in ([[60.0, 50.0], [450.0, 460.0]], [[45.0, 35.0], [465.0, 475.0]]):
        boxes.add_rectangles(np.array(box))
        wait(qtbot, widget)
    assert widget.last_error is None and widget.last_result is not first
    assert looked_at == []


def test_switching_between_images_of_two_sizes_keeps_the_mask_and_map_layers(make_napari_viewer, qtbot, nano_models):
    """Choosing an image of another size reshapes 'lung mask', 'SSIM' and 'ΔSSIM' in place: removing and adding
    them again froze the GUI 1.3-1.5 s per switch (napari's gc.collect per removal and new visuals; QA find, also
    between two 512-px films of different heights).  Each image still shows its own mask and maps."""
    viewer = make_napari_viewer(show=True)
    rng = np.random.default_rng(3)
    tall = viewer.add_image(rng.random((96, 64)).astype(np.float32), name="tall")
    wide = viewer.add_image(rng.random((64, 112)).astype(np.float32), name="wide")
    widget = dock(viewer, qtbot, model_path=nano_models[0], baseline_path=nano_models[1], model_type="vit_nano")
    masks = {}
    for image, box in ((tall, [[8.0, 6.0], [88.0, 58.0]]), (wide, [[6.0, 8.0], [58.0, 104.0]])):
        widget.image.value = image
        wait(qtbot, widget)
        viewer.layers["boxes"].add_rectangles(np.array(box))
        wait(qtbot, widget)
        masks[image.name] = np.asarray(viewer.layers["lung mask"].data).copy()
    layers = {name: viewer.layers[name] for name in ("lung mask", "SSIM", "ΔSSIM")}
    for image in (tall, wide, tall):
        widget.image.value = image
        wait(qtbot, widget)
        assert all(viewer.layers[name] is layer for name, layer in layers.items())  # the same layers, reshaped
        shown = np.asarray(viewer.layers["lung mask"].data)
        np.testing.assert_array_equal(shown, masks[image.name])
        assert viewer.layers["SSIM"].data.shape == viewer.layers["ΔSSIM"].data.shape == image.data.shape
        for name in layers:  # each layer's provenance is the image shown (as a new layer's was), not the one before
            assert viewer.layers[name].metadata["source_layer_id"] == str(image.unique_id)
    viewer.layers.selection.active = viewer.layers["lung mask"]
    viewer.layers["lung mask"].undo()  # napari's own undo of 'lung mask' has no step of the other image's shape
    np.testing.assert_array_equal(np.asarray(viewer.layers["lung mask"].data), masks["tall"])
