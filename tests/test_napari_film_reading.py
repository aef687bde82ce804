"""TIFF and JPEG films that napari's own reader shows otherwise than they are (white-is-zero, palette, CMYK, YCbCr):
with the Segment dock open the layer gets our reading (once, with a notice and a status line), so the dock
segments the film 'adaqat segment' and the API segment; other films and the user's layers are left as they
are, at no cost per click (Xvfb, tiny random ``vit_nano`` model)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

pytest.importorskip("napari")

from PIL import Image as PILImage  # noqa: E402

from napari_adaqat import open_model  # noqa: E402
from napari_adaqat.io import read_image  # noqa: E402
from napari_adaqat.io.orientation import stored  # noqa: E402
from test_napari_layer_habits import BOX, dock, draw_box, film_u8, mask_on_film, wait  # noqa: E402

pytestmark = pytest.mark.gui
SHOTS = Path("/tmp/qa")
INVERTED = "a white-is-zero TIFF, inverted; re-read as a radiograph"


def write_film(path: Path, kind: str, film: np.ndarray) -> Path:
    """``film`` (uint8 (H, W)) saved as a TIFF of ``kind`` that napari's reader shows otherwise."""
    if kind == "miniswhite":
        tifffile.imwrite(path, 255 - film, photometric="miniswhite")
    elif kind == "miniswhite16":
        tifffile.imwrite(path, (4095 - film.astype(np.uint16) * 16), photometric="miniswhite")
    elif kind == "palette":
        order = np.random.default_rng(0).permutation(256)  # index i shows gray order[i]
        tifffile.imwrite(path, np.argsort(order)[film].astype(np.uint8), photometric="palette",
                         colormap=np.tile((order * 257).astype(np.uint16), (3, 1)))
    elif kind == "CMYK-JPEG":  # (a QA find: napari's reader gives its ink, K taken for alpha; the dock said "blank")
        PILImage.fromarray(film).convert("RGB").convert("CMYK").save(path, quality=95)
    else:  # "CMYK", "YCbCr": Pillow writes them (tifffile hands back their stored values)
        PILImage.fromarray(film).convert("RGB").convert(kind).save(path)
    return path


def api_mask(model, path: Path) -> np.ndarray:
    return open_model(model, device="cpu", model_type="vit_nano").segment(path, BOX)


def check_as_the_api(viewer, image, widget, model, path: Path) -> None:
    assert widget.last_error is None, widget.last_error
    expected = api_mask(model, path)
    assert expected.any()
    got = mask_on_film(viewer, image)
    assert (got != expected).sum() == 0, f"{(got != expected).sum()} pixels differ"


@pytest.mark.parametrize("kind", ["miniswhite", "miniswhite16", "palette", "CMYK", "YCbCr", "CMYK-JPEG"])
def test_a_tiff_napari_shows_otherwise_is_segmented_as_the_api_segments_it(make_napari_viewer, qtbot, nano_models,
                                                                         tmp_path, kind, monkeypatch):
    import napari.utils.notifications

    notices: list[str] = []
    monkeypatch.setattr(napari.utils.notifications, "show_info", notices.append)
    model, _ = nano_models
    film = film_u8()
    path = write_film(tmp_path / (f"{kind}.jpg" if kind.endswith("JPEG") else f"{kind}.tif"), kind, film)
    viewer = make_napari_viewer(show=True)
    [image] = viewer.open(str(path))  # napari's reader, as a file dragged in
    assert image.source.reader_plugin == "napari"
    napari_shows = np.asarray(image.data).copy()
    assert not np.array_equal(napari_shows, read_image(path).pixels)
    widget = dock(viewer, qtbot, model)
    assert widget.image.value is image
    ours = read_image(path).pixels
    assert image.data.shape[:2] == film.shape and np.corrcoef(
        np.ravel(widget_plane(image)), ours.ravel())[0, 1] > 0.9999
    assert len(notices) == 1 and notices[0].startswith(f"napari's reader showed {path.name}, ")
    assert notices[0] in widget.status.value and "\n" not in notices[0]
    if kind == "miniswhite":
        SHOTS.mkdir(exist_ok=True)
        viewer.screenshot(str(SHOTS / "film_reading_opened.png"), canvas_only=False)
    draw_box(viewer, image)
    wait(qtbot, widget)
    check_as_the_api(viewer, image, widget, model, path)
    if kind in ("miniswhite", "palette"):
        shot = SHOTS / f"film_reading_{kind}.png"
        SHOTS.mkdir(exist_ok=True)
        viewer.screenshot(str(shot), canvas_only=False)
        lo, hi = image.contrast_limits
        shown = np.clip((np.asarray(image.data, float) - lo) / (hi - lo), 0, 1)
        shown = shown.mean(-1) if shown.ndim == 3 else shown
        assert np.corrcoef(shown.ravel(), film.ravel())[0, 1] > 0.999  # as the film, not its negative


def widget_plane(image) -> np.ndarray:
    from napari_adaqat.widgets import _planes as L

    return L.image_plane(image, None)[0]


def test_a_film_dropped_in_after_the_dock_opened_and_the_users_drawing_kept(make_napari_viewer, qtbot, nano_models,
                                                                           tmp_path):
    """Dock first, film second (re-read as it is added); a Labels layer the user painted on it is untouched."""
    model, _ = nano_models
    path = write_film(tmp_path / "wiz.tif", "miniswhite", film_u8())
    viewer = make_napari_viewer()
    widget = dock(viewer, qtbot, model)
    [image] = viewer.open(str(path))
    wait(qtbot, widget)
    assert INVERTED in image.metadata["film_reading"] and INVERTED in widget.status.value
    painted = np.zeros(image.data.shape, np.uint8)
    painted[50:90, 40:120] = 1
    mine = viewer.add_labels(painted.copy(), name="my outline")
    draw_box(viewer, image)
    wait(qtbot, widget)
    check_as_the_api(viewer, image, widget, model, path)
    np.testing.assert_array_equal(mine.data, painted)
    data = image.data
    widget.close()
    dock(viewer, qtbot, model)  # a second dock: the layer is not re-read (nor inverted back)
    assert image.data is data and np.corrcoef(np.ravel(data), film_u8().ravel())[0, 1] > 0.999


def test_a_sideways_white_is_zero_tiff_is_turned_once_and_read_once(make_napari_viewer, qtbot, nano_models, tmp_path):
    model, _ = nano_models
    film = film_u8()
    path = tmp_path / "side.tif"
    tifffile.imwrite(path, stored(255 - film, 6), photometric="miniswhite", extratags=[(274, "H", 1, 6, True)])
    viewer = make_napari_viewer()
    [image] = viewer.open(str(path))
    widget = dock(viewer, qtbot, model)
    np.testing.assert_array_equal(image.data, film)
    draw_box(viewer, image)
    wait(qtbot, widget)
    check_as_the_api(viewer, image, widget, model, path)


def test_other_films_are_left_alone_and_cost_nothing_per_click(make_napari_viewer, qtbot, nano_models, tmp_path,
                                                               monkeypatch):
    """A black-is-zero TIFF keeps its data array; a white-is-zero one whose pixels a script set is not
    re-read (not the file's stored values); no TIFF header is read again for a box."""
    from napari_adaqat.widgets import _film_reading

    model, _ = nano_models
    film = film_u8()
    tifffile.imwrite(tmp_path / "plain.tif", film)
    viewer = make_napari_viewer()
    [plain] = viewer.open(str(tmp_path / "plain.tif"))
    data = plain.data
    [scripted] = viewer.open(str(write_film(tmp_path / "wiz.tif", "miniswhite", film)))
    scripted.data = np.ascontiguousarray(255 - np.asarray(scripted.data)[:, ::-1])  # the user's own pixels
    mine = scripted.data
    widget = dock(viewer, qtbot, model)
    assert scripted.data is mine and "film_reading" not in scripted.metadata
    widget.image.value = plain
    wait(qtbot, widget)
    assert plain.data is data and "film_reading" not in plain.metadata

    def no_read(*_a, **_k):
        raise AssertionError("a TIFF was read again for a box")

    monkeypatch.setattr(_film_reading, "_photometric", no_read)
    monkeypatch.setattr(_film_reading, "read_raw", no_read)
    draw_box(viewer, plain)
    wait(qtbot, widget)
    monkeypatch.undo()
    check_as_the_api(viewer, plain, widget, model, tmp_path / "plain.tif")


def test_a_multipage_tiff_and_a_nan_layer_are_said_as_the_api_says_them(make_napari_viewer, qtbot, nano_models,
                                                                        tmp_path):
    """QA finds: napari's reader shows a 3-page TIFF's first page, which the dock segmented without a word (the API
    and the CLI refuse the file); a float layer with NaN was segmented (its NaN filled in), where the API, the CLI
    and the other docks refuse it as corrupt."""
    model, _ = nano_models
    film = film_u8()
    path = tmp_path / "three_pages.tif"
    for page in range(3):
        tifffile.imwrite(path, np.roll(film, 5 * page, axis=0), append=page > 0)
    viewer = make_napari_viewer(show=True)
    [image] = viewer.open(str(path))
    assert image.ndim == 2  # (napari's reader shows the first page)
    widget = dock(viewer, qtbot, model)
    assert "three_pages.tif holds 3 pages; napari's reader shows the first, which is what is segmented" in \
        widget.status.value, widget.status.value  # (and napari's notice)
    draw_box(viewer, image)
    wait(qtbot, widget)
    assert widget.last_error is None and viewer.layers["lung mask"].data.any()

    pixels = film.astype(np.float32)
    pixels[:10, :10] = np.nan
    corrupt = viewer.add_image(pixels, name="nan film")
    widget.image.value = corrupt
    wait(qtbot, widget)
    draw_box(viewer, corrupt)
    wait(qtbot, widget)
    assert "layer 'nan film': 100 of 54528 pixel values are NaN or infinite; the image data is corrupt" in \
        widget.status.value, widget.status.value
