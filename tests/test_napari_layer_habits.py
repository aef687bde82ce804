"""Films as napari users really have them (scaled DICOM, napari's own readers, flipped, pyramids, a
'lung mask' of their own): the dock's mask lands on the film pixel for pixel, as the public API's does
for the same pixels, pixel spacing (the layer's scale: non-square pixels are made square for the model) and box
(Xvfb, tiny random ``vit_nano`` model)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

from PIL import Image as PILImage  # noqa: E402

from napari_adaqat import open_model  # noqa: E402
from napari_adaqat.widgets import _points as P  # noqa: E402
from napari_adaqat.widgets.segment import SegmentWidget  # noqa: E402

pytestmark = pytest.mark.gui
WAIT_MS = 120_000
FILM = Path(__file__).parent / "data" / "cxr" / "images" / "covid19_v7__41182_2020_203_Fig4_HTML.png"
BOX = np.array([40.0, 60.0, 190.0, 230.0])  # x0, y0, x1, y1 pixels of the (256, 213) film: not square
SHOTS = Path("/tmp/qa")


def film_u8() -> np.ndarray:
    """A real radiograph, (256, 213) uint8 (rows ≠ columns, so a swapped axis shows)."""
    return np.asarray(PILImage.open(FILM).convert("L").resize((213, 256)))


def dock(viewer, qtbot, model) -> SegmentWidget:
    widget = SegmentWidget(viewer, model_path=model, use_baseline=False, model_type="vit_nano", device="cpu")
    viewer.window.add_dock_widget(widget, name="Segment")
    wait(qtbot, widget)
    return widget


def wait(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)


def draw_box(viewer, image, box=BOX) -> None:
    """Add ``box`` (xyxy pixels of ``image``) to 'boxes' as a user draws it: corners in world coordinates."""
    boxes = viewer.layers["boxes"]
    x0, y0, x1, y1 = box
    corners = [[y0, x0], [y0, x1], [y1, x1], [y1, x0]]
    world = [image.data_to_world(c) for c in corners]
    boxes.add_rectangles(np.array([boxes.world_to_data(w) for w in world]))


def api_mask(model, pixels, box=BOX, spacing=None) -> np.ndarray:
    return open_model(model, device="cpu", model_type="vit_nano").segment(pixels, box, spacing=spacing)


def mask_on_film(viewer, image) -> np.ndarray:
    """The 'lung mask' sampled at the film's pixel centres through both layers' world transforms."""
    mask = viewer.layers["lung mask"]
    shape = (image.data[0] if image.multiscale else image.data).shape[:2]
    pix = np.stack([g.ravel() for g in np.mgrid[0:shape[0], 0:shape[1]]], 1).astype(float)
    back = np.array([mask.world_to_data(image.data_to_world(p)) for p in pix])
    rr, cc = np.round(back[:, -2]).astype(int), np.round(back[:, -1]).astype(int)
    inside = (rr >= 0) & (rr < mask.data.shape[-2]) & (cc >= 0) & (cc < mask.data.shape[-1])
    out = np.zeros(len(pix), bool)
    out[inside] = mask.data[rr[inside], cc[inside]] != 0
    return out.reshape(shape)


def check_aligned(viewer, image, widget, model, pixels, box=BOX) -> None:
    assert widget.last_error is None, widget.last_error
    np.testing.assert_allclose(widget.last_result.box, box, atol=0.51)
    spacing = tuple(abs(float(s)) for s in image.scale[-2:])  # the film's pixel spacing, as napari shows it
    expected = api_mask(model, pixels, box, spacing)
    assert expected.any()
    if spacing[0] != spacing[1]:  # the spacing counts: the same pixels as bare pixels give another mask
        assert (api_mask(model, pixels, box) != expected).any()
    got = mask_on_film(viewer, image)
    assert (got != expected).sum() == 0, f"{(got != expected).sum()} pixels differ"


@pytest.mark.parametrize("scale, translate", [((0.139, 0.139), (0.0, 0.0)), ((0.2, 0.1), (0.0, 0.0)),
                                              ((0.2, 0.1), (12.5, -7.0))])
def test_scaled_translated_film(make_napari_viewer, qtbot, nano_models, scale, translate):
    model, _ = nano_models
    viewer = make_napari_viewer(show=True)
    pixels = film_u8()
    image = viewer.add_image(pixels, name="film", scale=scale, translate=translate, colormap="gray")
    widget = dock(viewer, qtbot, model)
    draw_box(viewer, image)
    wait(qtbot, widget)
    check_aligned(viewer, image, widget, model, pixels)
    SHOTS.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(SHOTS / f"layers_scaled_{scale[0]}_{scale[1]}_{translate[0]}.png"), canvas_only=True)


def test_boxes_made_by_the_user_before_a_scaled_film(make_napari_viewer, qtbot, nano_models):
    """A 'boxes' layer the user made first (scale 1) is kept and its world-coordinate box still fits the film."""
    model, _ = nano_models
    viewer = make_napari_viewer()
    mine = viewer.add_shapes(name="boxes", ndim=2)
    pixels = film_u8()
    image = viewer.add_image(pixels, name="film", scale=(0.139, 0.139), translate=(3.0, 4.0))
    widget = dock(viewer, qtbot, model)
    assert viewer.layers["boxes"] is mine
    draw_box(viewer, image)
    wait(qtbot, widget)
    check_aligned(viewer, image, widget, model, pixels)


def write_films(folder: Path) -> dict:
    """The film as a 16-bit PNG, an RGB PNG, an RGBA PNG and a TIFF, as other software writes them."""
    u8 = film_u8()
    u16 = (u8.astype(np.uint16) * 200 + 1000)
    paths = {"png16": folder / "film16.png", "rgb": folder / "rgb.png", "rgba": folder / "rgba.png",
             "tiff": folder / "film.tif"}
    PILImage.fromarray(u16).save(paths["png16"])
    PILImage.fromarray(np.stack([u8] * 3, -1)).save(paths["rgb"])
    alpha = np.full_like(u8, 255)
    alpha[:20] = 128  # a half-transparent strip on top
    PILImage.fromarray(np.stack([u8, u8, u8, alpha], -1)).save(paths["rgba"])
    import tifffile

    tifffile.imwrite(paths["tiff"], u16)
    return paths


@pytest.mark.parametrize("kind", ["png16", "rgb", "rgba", "tiff"])
def test_films_opened_by_napari_readers(make_napari_viewer, qtbot, nano_models, tmp_path, kind):
    model, _ = nano_models
    path = write_films(tmp_path)[kind]
    viewer = make_napari_viewer()
    image = viewer.open(str(path), plugin="napari")[0]
    widget = dock(viewer, qtbot, model)
    assert widget.image.value is image
    draw_box(viewer, image)
    wait(qtbot, widget)
    if kind == "png16":
        assert image.data.dtype == np.uint16
    check_aligned(viewer, image, widget, model, np.asarray(image.data))


@pytest.mark.parametrize("placement", [{"rotate": 90}, {"affine": np.diag([-1.0, 1.0, 1.0])},
                                       {"scale": (0.2, 0.1), "rotate": 180}, {"scale": (-0.139, 0.139)}])
def test_flipped_or_rotated_film(make_napari_viewer, qtbot, nano_models, placement):
    model, _ = nano_models
    viewer = make_napari_viewer(show=True)
    pixels = film_u8()
    image = viewer.add_image(pixels, name="film", **placement)
    widget = dock(viewer, qtbot, model)
    draw_box(viewer, image)
    wait(qtbot, widget)
    check_aligned(viewer, image, widget, model, pixels)
    points = viewer.layers["points"]  # a click at film pixel (row 150, col 100), in world coordinates
    points.add(points.world_to_data(image.data_to_world([150.0, 100.0])))
    wait(qtbot, widget)
    coords, labels = P.points_in_pixels(points, image, None)
    np.testing.assert_allclose(coords, [[100.0, 150.0]], atol=1e-6)
    assert widget.last_error is None and labels.tolist() == [1]
    viewer.reset_view()
    SHOTS.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(SHOTS / f"layers_turned_{'_'.join(placement)}.png"), canvas_only=True)


def test_box_drawn_in_3d_display(make_napari_viewer, qtbot, nano_models):
    model, _ = nano_models
    viewer = make_napari_viewer()
    pixels = film_u8()
    image = viewer.add_image(pixels, name="film", scale=(0.139, 0.139))
    widget = dock(viewer, qtbot, model)
    viewer.dims.ndisplay = 3
    draw_box(viewer, image)
    wait(qtbot, widget)
    check_aligned(viewer, image, widget, model, pixels)


def test_pyramid_film(make_napari_viewer, qtbot, nano_models):
    model, _ = nano_models
    viewer = make_napari_viewer()
    pixels = film_u8()
    image = viewer.add_image([pixels, pixels[::2, ::2].copy()], name="film", multiscale=True, scale=(0.2, 0.1))
    widget = dock(viewer, qtbot, model)
    draw_box(viewer, image)
    wait(qtbot, widget)
    check_aligned(viewer, image, widget, model, pixels)
    assert viewer.layers["lung mask"].data.shape == pixels.shape


def test_float_film_with_user_contrast(make_napari_viewer, qtbot, nano_models):
    model, _ = nano_models
    viewer = make_napari_viewer()
    pixels = film_u8().astype(np.float32) * 16.0 - 500.0  # Hounsfield-like floats
    image = viewer.add_image(pixels, name="film", contrast_limits=(0.0, 2000.0))
    widget = dock(viewer, qtbot, model)
    draw_box(viewer, image)
    wait(qtbot, widget)
    check_aligned(viewer, image, widget, model, pixels)
    assert tuple(image.contrast_limits) == (0.0, 2000.0)  # the user's window stays


def test_users_own_lung_mask_of_another_shape_is_kept(make_napari_viewer, qtbot, nano_models):
    model, _ = nano_models
    viewer = make_napari_viewer()
    theirs = np.zeros((50, 60), np.uint8)
    theirs[10:20, 10:30] = 3
    viewer.add_labels(theirs, name="lung mask")
    pixels = film_u8()
    image = viewer.add_image(pixels, name="film", scale=(0.139, 0.139))
    widget = dock(viewer, qtbot, model)
    draw_box(viewer, image)
    wait(qtbot, widget)
    check_aligned(viewer, image, widget, model, pixels)
    kept = [ly for ly in viewer.layers if ly.name != "lung mask" and ly.data is not None
            and getattr(ly.data, "shape", None) == (50, 60)]
    assert kept and np.array_equal(kept[0].data, theirs), [ly.name for ly in viewer.layers]


def test_users_layers_named_boxes_and_points_are_kept(make_napari_viewer, qtbot, nano_models):
    """A Points layer 'boxes' and a 3-D Shapes layer 'points' of the user's: renamed, not removed, no traceback."""
    model, _ = nano_models
    viewer = make_napari_viewer()
    viewer.add_points(np.array([[1.0, 2.0]]), name="boxes")
    viewer.add_shapes(np.array([[[0, 1.0, 2.0], [0, 5.0, 5.0]]]), shape_type="line", name="points", ndim=3)
    pixels = film_u8()
    image = viewer.add_image(pixels, name="film", scale=(0.139, 0.139))
    widget = dock(viewer, qtbot, model)
    kinds = {ly.name: type(ly).__name__ for ly in viewer.layers}
    assert kinds["boxes"] == "Shapes" and kinds["points"] == "Points", kinds
    assert kinds["boxes (yours)"] == "Points" and kinds["points (yours)"] == "Shapes", kinds
    assert len(viewer.layers["points (yours)"].data) == 1 and len(viewer.layers["boxes (yours)"].data) == 1
    draw_box(viewer, image)
    wait(qtbot, widget)
    check_aligned(viewer, image, widget, model, pixels)


def test_3d_view_says_how_to_draw(make_napari_viewer, qtbot, nano_models, monkeypatch):
    """napari's 3D view draws no box on a drag: the user is told, in one line, how to go back to 2D."""
    import napari.utils.notifications as notifications

    from napari_adaqat.widgets._layers import NO_3D_DRAWING

    said = []
    monkeypatch.setattr(notifications, "show_info", said.append)
    model, _ = nano_models
    viewer = make_napari_viewer()
    viewer.add_image(film_u8(), name="film", scale=(0.139, 0.139))
    dock(viewer, qtbot, model)
    assert not said
    viewer.dims.ndisplay = 3
    assert said == [NO_3D_DRAWING]


def test_dicom_with_pixel_spacing_through_our_reader(make_napari_viewer, qtbot, nano_models, tmp_path):
    """A DX file with anisotropic PixelSpacing opens scaled in mm; the mask lands on it and keeps its placement."""
    from test_dicom import make_dicom

    model, _ = nano_models
    raw = film_u8().astype(np.uint16) * 16
    path = make_dicom(tmp_path / "film.dcm", raw, bits_stored=12, PixelSpacing=[0.2, 0.1])
    viewer = make_napari_viewer(show=True)
    [image] = viewer.open(str(path), plugin="napari-adaqat")
    np.testing.assert_allclose(image.scale, (0.2, 0.1))
    widget = dock(viewer, qtbot, model)
    draw_box(viewer, image)
    wait(qtbot, widget)
    check_aligned(viewer, image, widget, model, np.asarray(image.data))
    mask = viewer.layers["lung mask"]
    np.testing.assert_allclose(mask.scale, image.scale)
    assert tuple(str(u) for u in mask.units) == tuple(str(u) for u in image.units), (mask.units, image.units)


def test_users_own_lung_mask_of_the_films_shape_is_kept(make_napari_viewer, qtbot, nano_models):
    """A hand-drawn 'lung mask' of the film's very shape (no dock provenance) is not painted over."""
    model, _ = nano_models
    viewer = make_napari_viewer()
    pixels = film_u8()
    theirs = np.zeros(pixels.shape, np.uint8)
    theirs[100:150, 20:60] = 2
    viewer.add_labels(theirs.copy(), name="lung mask")
    image = viewer.add_image(pixels, name="film")
    widget = dock(viewer, qtbot, model)
    draw_box(viewer, image)
    wait(qtbot, widget)
    check_aligned(viewer, image, widget, model, pixels)
    assert np.array_equal(viewer.layers["lung mask (yours)"].data, theirs), [ly.name for ly in viewer.layers]
    assert viewer.layers["lung mask"].opacity == pytest.approx(0.45)  # the dock's own mask, as it makes it


def test_sideways_film_opened_with_a_pixel_spacing(make_napari_viewer, qtbot, nano_models, tmp_path):
    """A film stored sideways (EXIF 6) opened with viewer.open(..., scale=(row, col) spacing as stored): turned
    upright, its spacings turn with it (else the lungs are stretched), and the mask lands on it."""
    from napari_adaqat.io.orientation import stored

    model, _ = nano_models
    upright_pixels = film_u8()
    exif = PILImage.Exif()
    exif[0x0112] = 6
    path = tmp_path / "side.png"
    PILImage.fromarray(stored(upright_pixels, 6)).save(path, exif=exif.tobytes())
    viewer = make_napari_viewer()
    [image] = viewer.open(str(path), plugin="napari", scale=(0.2, 0.1))  # stored rows 0.2 mm, columns 0.1 mm
    widget = dock(viewer, qtbot, model)
    np.testing.assert_array_equal(image.data, upright_pixels)
    np.testing.assert_allclose(image.scale, (0.1, 0.2))
    draw_box(viewer, image)
    wait(qtbot, widget)
    check_aligned(viewer, image, widget, model, upright_pixels)


def test_film_replaced_in_its_layer_is_segmented_anew(make_napari_viewer, qtbot, nano_models):
    """The dock converts a film's plane once for all its prompts (a 3000² film costs 40-60 ms a click), and
    again when the layer gets other pixels (``layer.data = …``, as a script or a reader does): the next box
    segments the new film, pixel for pixel as the API does."""
    from napari_adaqat.widgets import _planes as L

    model, _ = nano_models
    viewer = make_napari_viewer(show=True)
    pixels = film_u8()
    image = viewer.add_image(pixels, name="film", colormap="gray")
    widget = dock(viewer, qtbot, model)
    draw_box(viewer, image)
    wait(qtbot, widget)
    check_aligned(viewer, image, widget, model, pixels)
    plane, _z = L.image_plane(image, None)
    assert L.image_plane(image, None)[0] is plane and not plane.flags.writeable  # converted once, never written
    flipped = np.ascontiguousarray(pixels[:, ::-1])
    image.data = flipped
    other, _z = L.image_plane(image, None)
    assert other is not plane and np.allclose(other, flipped / 255.0)
    draw_box(viewer, image)
    wait(qtbot, widget)
    check_aligned(viewer, image, widget, model, flipped)

    # pixels changed in place (a script, the console) and the same array set again: converted again too
    inverted, flipped = 255 - flipped, flipped.copy()  # (the layer may hold 'flipped' itself)
    image.data[:] = inverted
    image.refresh()
    assert np.allclose(L.image_plane(image, None)[0], inverted / 255.0)
    image.data[:] = flipped
    image.data = image.data  # napari's data event
    assert np.allclose(L.image_plane(image, None)[0], flipped / 255.0)
    image.data[:] = inverted
    image.refresh()
    draw_box(viewer, image)
    wait(qtbot, widget)
    check_aligned(viewer, image, widget, model, inverted)
    big = viewer.add_image(np.full((1024, 1024), 200, np.uint8), name="big")  # sampled every 4th pixel
    assert (L.image_plane(big, None)[0] == np.float32(200 / 255)).all()
    big.data[101:104, 101:104] = 7  # a small edit between the sample's pixels, then napari's refresh
    big.refresh()
    assert (L.image_plane(big, None)[0][101:104, 101:104] == np.float32(7 / 255)).all()
