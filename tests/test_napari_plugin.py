"""The napari plugin: manifest discovery, dock widget, DICOM reader, mask writer, sample data.

Real napari viewers under Xvfb (pytest-xvfb or ``xvfb-run``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

from npe2 import PluginManager  # noqa: E402

from napari_adaqat._reader import get_dicom_reader  # noqa: E402
from napari_adaqat.io import read_mask  # noqa: E402
from test_dicom import make_dicom  # noqa: E402  (tests/ is on sys.path: pytest rootdir-less import)

pytestmark = pytest.mark.gui
PLUGIN = "napari-adaqat"
WIDGET = "Segment lungs (AdaLoRA-QAT)"


def radiograph_monochrome1() -> np.ndarray:
    """Stored values of a MONOCHROME1 'radiograph': the lung field (top-left block) stores HIGH
    values (displayed dark), the body stores low values (displayed bright); one pixel over the window."""
    arr = np.full((40, 60), 1200, np.uint16)  # body
    arr[5:20, 5:25] = 2800  # lung field, top-left only: detects flips
    arr[35, 55] = 4000  # above the window: clipped
    return arr


def test_manifest_is_discovered_with_all_contributions(make_napari_viewer):
    make_napari_viewer()
    pm = PluginManager.instance()
    manifest = pm.get_manifest(PLUGIN)
    contrib = manifest.contributions
    assert [w.display_name for w in contrib.widgets] == [WIDGET, "Train (AdaLoRA-QAT)", "Batch segment (AdaLoRA-QAT)",
                                                        "Annotate folder (AdaLoRA-QAT)"]
    assert contrib.readers and "*.dcm" in contrib.readers[0].filename_patterns
    assert "*" not in contrib.readers[0].filename_patterns  # a bare '*' makes napari ask for every PNG
    assert contrib.writers and contrib.writers[0].layer_types == ["labels"]
    assert {".png", ".tif"} <= set(contrib.writers[0].filename_extensions)
    assert [s.display_name for s in contrib.sample_data] == ["Chest X-ray (CC BY)"]
    # every command resolves to an importable callable
    from npe2.manifest.utils import import_python_name

    for cmd in contrib.commands:
        assert callable(import_python_name(cmd.python_name)), cmd.python_name


def test_plugin_dock_widget_opens_in_a_real_viewer(make_napari_viewer):
    from napari_adaqat.widgets.segment import SegmentWidget

    viewer = make_napari_viewer(show=True)
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert isinstance(widget, SegmentWidget)
    assert getattr(widget.viewer, "__wrapped__", widget.viewer) is viewer  # napari passes a PublicOnlyProxy
    assert widget.image.value is None and "Choose an image" in widget.status.value


def test_sample_data_gives_image_and_true_mask(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample(PLUGIN, "chest_xray")
    kinds = sorted(type(ly).__name__ for ly in layers)
    assert kinds == ["Image", "Labels"]
    image = next(ly for ly in layers if type(ly).__name__ == "Image")
    mask = next(ly for ly in layers if type(ly).__name__ == "Labels")
    assert image.data.shape == mask.data.shape == (512, 512)
    assert image.data.dtype == np.float32 and 0.0 <= image.data.min() and image.data.max() <= 1.0
    assert set(np.unique(mask.data)) == {0, 1}
    assert "CC BY" in image.name and "CC BY 3.0" in image.metadata["attribution"]["image"]
    assert "V7 Labs" in mask.metadata["attribution"]["mask"]


def test_reader_opens_monochrome1_dicom_upright_windowed_and_scaled(make_napari_viewer, tmp_path):
    path = make_dicom(tmp_path / "IM0001", radiograph_monochrome1(), bits_stored=12,
                      PhotometricInterpretation="MONOCHROME1",
                      WindowCenter=2000, WindowWidth=1600, PixelSpacing=[0.2, 0.15])
    assert get_dicom_reader(str(path)) is not None
    viewer = make_napari_viewer()
    from napari.plugins import _npe2

    assert PLUGIN in _npe2.get_readers(str(path))  # extension-less, numbered name: offered to us
    [layer] = viewer.open(path, plugin=None)  # napari picks the reader: no "which reader?" question
    img = layer.data
    assert img.shape == (40, 60) and img.dtype == np.float32
    np.testing.assert_allclose(layer.scale, [0.2, 0.15])
    # window [1200, 2800] → [0, 1], then MONOCHROME1 inversion: lung dark, body bright
    assert img[10, 10] < 0.05, "bright-stored lung field must display dark"
    assert img[30, 40] > 0.95, "body must display bright"
    assert img[35, 55] == 0.0  # clipped above the window, then inverted
    # upright and not mirrored: the dark block is top-left
    assert img[:20, :30].mean() < img[20:, :].mean() and img[5:20, 5:25].mean() < img[5:20, 35:55].mean()


def test_png_and_tiff_are_not_claimed_so_napari_never_asks_which_reader(make_napari_viewer, tmp_path):
    from napari.plugins import _npe2
    from skimage.io import imsave

    viewer = make_napari_viewer()  # discovers the installed plugins
    png = tmp_path / "chest.png"
    imsave(png, np.full((16, 16), 128, np.uint8), check_contrast=False)
    for name in ("chest.png", "chest.tif", "chest.jpg", "data.h5"):
        assert PLUGIN not in _npe2.get_readers(str(tmp_path / name)), name
    for name in ("scan.dcm", "SCAN.DCM", "IM-0001-0001", "1.2.840.10008.1"):
        assert PLUGIN in _npe2.get_readers(str(tmp_path / name)), name
    [layer] = viewer.open(png, plugin=None)  # would raise MultipleReaderError if we claimed *.png
    assert layer.data.shape == (16, 16)


def test_reader_declines_non_dicom_files(tmp_path):
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    plain = tmp_path / "notes"
    plain.write_text("not an image")
    assert get_dicom_reader(str(png)) is None
    assert get_dicom_reader(str(plain)) is None
    assert get_dicom_reader(str(tmp_path)) is None


def test_dicom_with_extension_opens_through_napari(make_napari_viewer, tmp_path):
    arr = np.tile(np.arange(0, 3200, 100, dtype=np.uint16), (24, 1))
    path = make_dicom(tmp_path / "ramp.dcm", arr, bits_stored=12, PhotometricInterpretation="MONOCHROME2")
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin=PLUGIN)
    assert layer.data.shape == (24, 32)
    assert np.all(np.diff(layer.data[0]) >= 0) and layer.data[0, 0] == 0.0 and layer.data[0, -1] == 1.0
    np.testing.assert_allclose(layer.scale, [1.0, 1.0])  # no PixelSpacing → pixels


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_writer_round_trips_a_labels_layer(make_napari_viewer, tmp_path, suffix):
    viewer = make_napari_viewer()
    mask = np.zeros((30, 40), np.uint8)
    mask[5:20, 8:30] = 1
    mask[22:25, 2:6] = 3  # any label counts as lung
    layer = viewer.add_labels(mask, name="lung mask")
    out = tmp_path / f"saved{suffix}"
    written = layer.save(str(out), plugin=PLUGIN)
    assert [Path(p) for p in written] == [out]
    np.testing.assert_array_equal(read_mask(out), mask > 0)


def test_npe2_validate_passes():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "npe2", "validate", PLUGIN], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout
