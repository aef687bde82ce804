"""Bad inputs in a real napari viewer (Xvfb): bad model files chosen in the Segment dock and corpus
images opened with napari's reader each end as one notification, and the viewer stays up: a good
image still segments afterwards."""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

import torch  # noqa: E402
from napari.utils.notifications import notification_manager  # noqa: E402

from bad_corpus import CASES  # noqa: E402
from napari_adaqat._sample import chest_xray  # noqa: E402  (before any viewer: see widgets/_compat.py)
from napari_adaqat.model.build import build_sam  # noqa: E402
from napari_adaqat.widgets.segment import SegmentWidget  # noqa: E402

pytestmark = pytest.mark.gui
WAIT_MS = 120_000


class TouchOnLoad:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.fixture()
def nano(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "nano.pth"
    torch.save(build_sam("vit_nano").state_dict(), path)
    return path


def errors_since(start: int) -> list[str]:
    return [str(n.message) for n in notification_manager.records[start:] if str(n.severity).lower().endswith("error")]


def wait(qtbot, widget: SegmentWidget) -> None:
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)


def segment_the_sample(viewer, qtbot, widget: SegmentWidget) -> None:
    image, _truth = [getattr(viewer, f"add_{kind}")(data, **kw) for data, kw, kind in chest_xray()]
    widget.image.value = image
    wait(qtbot, widget)
    viewer.layers["boxes"].add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    wait(qtbot, widget)
    assert "lung mask" in viewer.layers and "latency" in widget.status.value, widget.status.value


def test_bad_model_files_are_notifications(make_napari_viewer, qtbot, nano, tmp_path):
    marker = tmp_path / "MARKER"
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(nano.read_bytes()[:5000])
    evil = tmp_path / "evil.pth"
    torch.save({"image_encoder.pos_embed": TouchOnLoad(marker)}, evil)
    pickled = tmp_path / "evil.safetensors"
    pickled.write_bytes(pickle.dumps({"x": TouchOnLoad(marker)}, protocol=2))
    expected = {
        text: r"not a readable PyTorch checkpoint \(corrupt or truncated\)",
        truncated: r"not a readable PyTorch checkpoint \(corrupt or truncated\)",
        evil: r"refused: the checkpoint holds Python objects besides tensors \(Unsupported global: GLOBAL getattr\)",
        pickled: r"is a pickle/zip file; only safetensors model files are accepted",
    }
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.random.default_rng(0).random((64, 64)).astype(np.float32), name="noise")
    widget = SegmentWidget(viewer, model_path=nano, use_baseline=False, model_type="vit_nano")
    viewer.window.add_dock_widget(widget)
    wait(qtbot, widget)
    for path, message in expected.items():
        start = len(notification_manager.records)
        widget.model_file.value = path
        wait(qtbot, widget)
        [note] = errors_since(start) or [""]
        assert re.fullmatch(rf"AdaLoRA-QAT: {re.escape(str(path))}: {message}.*", note), note
        assert "\n" not in note and widget.status.value.startswith("Error: ")
    assert not marker.exists()
    widget.model_file.value = nano  # the viewer is still up: a good model and image segment
    wait(qtbot, widget)
    segment_the_sample(viewer, qtbot, widget)


def test_corpus_images_opened_by_napari_are_notifications(make_napari_viewer, qtbot, nano, tmp_path):
    """Files napari's own reader opens but that cannot be segmented: too small or blank."""
    cases = [c for c in CASES if c.name in ("three_px.png", "thin_strip.png", "all_black.png", "flat_16bit.tif")]
    viewer = make_napari_viewer(show=True)
    widget = SegmentWidget(viewer, model_path=nano, use_baseline=False, model_type="vit_nano")
    viewer.window.add_dock_widget(widget)
    for case in cases:
        case.make(tmp_path / case.name)
        start = len(notification_manager.records)
        [layer] = viewer.open(tmp_path / case.name)
        widget.image.value = layer
        wait(qtbot, widget)
        [note] = errors_since(start) or [""]
        assert re.fullmatch(rf"AdaLoRA-QAT: {case.message}", note), (case.name, note, widget.status.value)
    segment_the_sample(viewer, qtbot, widget)


def test_refused_pydicom_files_become_notifications_and_the_viewer_stays_up(make_napari_viewer, qtbot, nano):
    """Every pydicom test file that our reader refuses, opened with this plugin in a real viewer: the
    reader error reaches napari's notification manager (as File → Open does) with our one-line text."""
    import sys

    import pydicom

    from napari_adaqat.io import ImageReadError, read_image

    corpus = sorted((Path(pydicom.__file__).parent / "data" / "test_files").glob("*.dcm"))
    refused = {}
    for path in corpus:
        try:
            read_image(path)
        except ImageReadError as exc:
            if "choose a frame" not in str(exc) and "DICOM Segmentation" not in str(exc):  # open as a stack, labels
                refused[path] = str(exc)
    assert len(refused) >= 15
    viewer = make_napari_viewer(show=True)
    seg, = viewer.open(Path(pydicom.__file__).parent / "data" / "test_files" / "liver_1frame.dcm",
                       plugin="napari-adaqat")
    assert type(seg).__name__ == "Labels" and seg.name == "liver_1frame (SEG)" and seg.data.any()
    viewer.layers.remove(seg)
    widget = SegmentWidget(viewer, model_path=nano, use_baseline=False, model_type="vit_nano")
    viewer.window.add_dock_widget(widget)
    for path, message in refused.items():
        start = len(notification_manager.records)
        with pytest.raises(Exception) as err:
            viewer.open(path, plugin="napari-adaqat")
        chain, exc = [], err.value
        while exc is not None:
            chain.append(str(exc))
            exc = exc.__cause__ or exc.__context__
        assert any(message in text for text in chain), (path.name, chain)
        notification_manager.receive_error(type(err.value), err.value, err.value.__traceback__)
        notes = [str(n.message) for n in notification_manager.records[start:]]
        assert notes and message.split(": ", 1)[1] in notes[-1], (path.name, notes)
    assert sys.exc_info() == (None, None, None)
    segment_the_sample(viewer, qtbot, widget)
