"""napari sample data: a real CC-BY chest radiograph with its expert lung mask."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_adaqat.io import read_image, read_mask

SAMPLE_DIR = Path(__file__).resolve().parent / "assets" / "sample"
IMAGE_NAME = "chest X-ray (CC BY 3.0)"
MASK_NAME = "true lung mask (CC BY 4.0)"
ATTRIBUTION = {
    "image": "Hannover Medical School, ml-workgroup covid-19-image-repository (5782ae15.jpg), CC BY 3.0; "
             "via J. P. Cohen et al., COVID-19 Image Data Collection, arXiv:2003.11597",
    "image_origin": "https://github.com/ml-workgroup/covid-19-image-repository",
    "mask": "V7 Labs, COVID-19 X-ray dataset lung polygons (v7labs/covid-19-xray-dataset), CC BY 4.0",
    "note": "resized to 512x512; see napari_adaqat/assets/sample/README.md and manifest.csv",
}


def chest_xray() -> list[tuple[Any, dict, str]]:
    """The sample radiograph (Image layer) and its true lung mask (Labels layer)."""
    image = read_image(SAMPLE_DIR / "chest_xray.png")
    mask = read_mask(SAMPLE_DIR / "chest_xray_mask.png").astype("uint8")
    meta = {"attribution": ATTRIBUTION, "source": image.source}
    return [
        (image.pixels, {"name": IMAGE_NAME, "colormap": "gray", "contrast_limits": (0.0, 1.0),
                        "metadata": meta}, "image"),
        (mask, {"name": MASK_NAME, "opacity": 0.35, "visible": False, "metadata": meta}, "labels"),
    ]
