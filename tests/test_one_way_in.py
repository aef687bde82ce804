"""One way in: the README's three lines, ``adaqat segment`` and the Segment dock give the same mask
for the same box, on every radiograph in tests/data/cxr (the bundled model, masks cleaned by all three)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

# imported at collection, before any viewer creates an OpenGL context (see widgets/_compat.py)
from napari_adaqat.widgets.segment import SegmentWidget  # noqa: E402
from napari_adaqat.cli import main  # noqa: E402
from napari_adaqat.data import mask_box  # noqa: E402
from napari_adaqat.io import read_image, read_mask  # noqa: E402
from napari_adaqat.metrics import dice  # noqa: E402

pytestmark = pytest.mark.gui


def test_readme_cli_and_dock_give_identical_masks(make_napari_viewer, qtbot, cxr_dir, tmp_path):
    images = sorted((cxr_dir / "images").glob("*.png"))
    assert len(images) >= 4
    boxes = {}
    for p in images:  # the true mask's box, 6 px wider on each side (inside the image)
        h, w = read_mask(cxr_dir / "masks" / p.name).shape
        box = mask_box(read_mask(cxr_dir / "masks" / p.name)) + np.array([-6.0, -6.0, 6.0, 6.0])
        boxes[p] = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1])

    # 1. the README's three lines
    from napari_adaqat import open_model
    model = open_model()
    readme = {p: model.segment(p, boxes[p]) for p in images}

    # 2. `adaqat segment` through its CLI main, with a --boxes CSV
    csv = tmp_path / "boxes.csv"
    csv.write_text("file,x0,y0,x1,y1\n" + "".join(f"{p.name},{','.join(f'{v:g}' for v in boxes[p])}\n"
                                                  for p in images))
    assert main(["segment", str(cxr_dir / "images"), "--out", str(tmp_path / "out"), "--boxes", str(csv)]) == 0
    cli = {p: read_mask(tmp_path / "out" / f"{p.stem}_mask.png") for p in images}

    # 3. the Segment dock in a real viewer: a rectangle added to `boxes`
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer, use_baseline=False)
    viewer.window.add_dock_widget(widget, name="Segment lungs (AdaLoRA-QAT)")
    dock = {}
    for p in images:
        layer = viewer.add_image(read_image(p).pixels, name=p.stem)
        widget.image.value = layer
        qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
        x0, y0, x1, y1 = boxes[p]
        viewer.layers["boxes"].add_rectangles(np.array([[y0, x0], [y1, x1]]))
        qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
        assert widget.last_error is None, widget.last_error
        np.testing.assert_array_equal(widget.last_result.box, boxes[p])
        dock[p] = widget.last_result.mask
        assert np.array_equal(viewer.layers["lung mask"].data.astype(bool), dock[p])

    for p in images:
        reference = read_mask(cxr_dir / "masks" / p.name)
        assert readme[p].shape == reference.shape and readme[p].dtype == bool
        assert np.array_equal(readme[p], cli[p]), p.name
        assert np.array_equal(readme[p], dock[p]), p.name
        assert dice(readme[p], reference) > 0.8, p.name  # a real lung mask, not three equal empty ones
    # cleaning is the same rule everywhere, and off when asked: the raw mask differs on some film
    raw = {p: model.segment(p, boxes[p], clean=False) for p in images}
    assert any(not np.array_equal(raw[p], readme[p]) for p in images)


def test_a_16_bit_film_gives_the_cli_mask_in_the_dock(make_napari_viewer, qtbot, cxr_dir, tmp_path):
    """A 16-bit film as napari's reader shows it (uint16 layer data) and as `adaqat segment` reads its file
    (a guard: the dock converts its layer as the reader does; the API array path did not, test_api_audit)."""
    import tifffile

    p = sorted((cxr_dir / "images").glob("*.png"))[1]
    pixels = (np.asarray(read_image(p).pixels, np.float64) * 40000 + 3000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "film16.tif", pixels)
    box = np.array([40.0, 30.0, 470.0, 480.0])
    (tmp_path / "boxes.csv").write_text("film16.tif," + ",".join(f"{v:g}" for v in box) + "\n")
    assert main(["segment", str(tmp_path / "film16.tif"), "--out", str(tmp_path / "out"),
                 "--boxes", str(tmp_path / "boxes.csv")]) == 0
    cli = read_mask(tmp_path / "out" / "film16_mask.png")

    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer, use_baseline=False)
    viewer.window.add_dock_widget(widget, name="Segment lungs (AdaLoRA-QAT)")
    widget.image.value = viewer.add_image(pixels, name="film16")
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    viewer.layers["boxes"].add_rectangles(np.array([[box[1], box[0]], [box[3], box[2]]]))
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    assert widget.last_error is None, widget.last_error
    assert cli.any() and np.array_equal(widget.last_result.mask, cli)


def test_a_nonsquare_dicom_gives_the_api_mask_in_the_dock(make_napari_viewer, qtbot, tmp_path):
    """A DICOM with 0.2 x 0.1 mm pixels, opened by napari through our reader (shown at its true shape, scale =
    its spacing): the dock makes its pixels square for the model as the API and `adaqat segment` do."""
    from napari_adaqat import open_model
    from test_nonsquare_pixels import _films  # tests/ is on sys.path (pytest rootdir-less import)

    _square, nonsquare, _film = _films(tmp_path)
    box = np.array([60.0, 40.0, 980.0, 480.0])
    api = open_model().segment(nonsquare, box)
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer, use_baseline=False)
    viewer.window.add_dock_widget(widget, name="Segment lungs (AdaLoRA-QAT)")
    [layer] = viewer.open(str(nonsquare), plugin="napari-adaqat")
    np.testing.assert_allclose(layer.scale, [0.2, 0.1])
    widget.image.value = layer
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    viewer.layers["boxes"].add_rectangles(np.array([[box[1], box[0]], [box[3], box[2]]]))  # (the film's placement)
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    assert widget.last_error is None, widget.last_error
    np.testing.assert_array_equal(widget.last_result.box, box)
    assert api.sum() > 50_000 and np.array_equal(widget.last_result.mask, api)
