"""Datasets of radiographs with lung masks, in either folder layout of DESIGN.md.

``DIR/images/<name>.<ext>`` + ``DIR/masks/<name>.png`` (optional ``DIR/split.json``),
or the authors' ``DIR/{train,val,test}/{images,masks}``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from napari_adaqat.inference.transforms import mask_box, resize_for_model, to_uint8_rgb
from napari_adaqat.io import ImageReadError, is_image_file, read_image, read_mask
from napari_adaqat.train.augment import augment_pair
from napari_adaqat.train.split import SPLITS, load_split, make_split

log = logging.getLogger("napari_adaqat.train")


class DataError(ValueError):
    """A dataset problem; the message is one line and names the file."""


@dataclass
class Pair:
    name: str
    image: Path
    mask: Path | None


def _pairs_in(folder: Path) -> dict[str, Pair]:
    images = folder / "images"
    masks = folder / "masks"
    if not images.is_dir():
        return {}
    pairs = {}
    for path in sorted(images.iterdir()):
        if path.is_file() and is_image_file(path):
            mask = masks / f"{path.stem}.png"
            pairs[path.stem] = Pair(path.stem, path, mask if mask.is_file() else None)
    return pairs


def split_source(root: Path) -> str:
    """Where :func:`discover` takes the split from: ``"layout"`` (DIR/train|val|test),
    ``"split.json"`` (DIR/split.json) or ``"seeded"`` (an 80:10:10 cut of the names)."""
    if all((root / s / "images").is_dir() for s in SPLITS):
        return "layout"
    return "split.json" if (root / "split.json").is_file() else "seeded"


def discover(data_dir: str | Path, seed: int = 0) -> tuple[dict[str, Pair], dict[str, list[str]]]:
    """Find all pairs and the split (from the layout, ``split.json``, or a seeded 80:10:10 cut)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    source = split_source(root)
    if source == "layout":
        pairs, split = {}, {}
        for s in SPLITS:
            found = _pairs_in(root / s)
            pairs.update(found)
            split[s] = sorted(found)
    else:
        pairs = _pairs_in(root)
        split = load_split(root / "split.json") if source == "split.json" else make_split(list(pairs), seed)
    if not pairs:
        raise DataError(f"{root}: empty dataset: no images found (expected {root}/images and {root}/masks)")
    return pairs, split


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """Read and check one pair → (image float32 (H, W) in [0,1], mask bool (H, W))."""
    if pair.mask is None:
        raise DataError(f"{pair.image}: missing mask (expected masks/{pair.name}.png)")
    try:
        image = read_image(pair.image).pixels
        mask = read_mask(pair.mask)
    except ImageReadError as exc:
        raise DataError(str(exc)) from None
    if image.shape != mask.shape:
        raise DataError(f"{pair.mask}: mask size {mask.shape} differs from image size {image.shape}")
    if not mask.any():
        raise DataError(f"{pair.mask}: mask is empty")
    return image, mask


def check_pairs(pairs: list[Pair]) -> tuple[list[Pair], list[str]]:
    """Validate pairs; return the good ones and one warning line per bad one."""
    good, warnings = [], []
    for pair in pairs:
        try:
            load_pair(pair)
            good.append(pair)
        except DataError as exc:
            warnings.append(str(exc))
    return good, warnings


class LungDataset(Dataset):
    """Samples at the model's input size.

    Each item: ``image`` (3, S, S) normalised and padded exactly as ``Sam.preprocess``;
    ``mask`` (1, S, S) float; ``box`` (4,) xyxy in input coordinates; ``valid`` (2,) = (h, w).
    Training boxes are pushed outward per side by U(0, jitter_px) original pixels.
    """

    def __init__(self, pairs: list[Pair], image_size: int, pixel_mean, pixel_std, *, train: bool,
                 jitter_px: int = 20, augment: bool = False, full_box_prob: float = 0.0, seed: int = 0) -> None:
        self.pairs = pairs
        self.size = image_size
        self.mean = torch.tensor(pixel_mean).view(3, 1, 1)
        self.std = torch.tensor(pixel_std).view(3, 1, 1)
        self.train = train
        self.jitter_px = jitter_px
        self.augment = augment
        self.full_box_prob = full_box_prob
        self.seed = seed
        self.epoch = 0
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Random draws depend only on (seed, epoch, index): resuming reproduces them."""
        self.epoch = epoch

    def _raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index not in self._cache:
            self._cache[index] = load_pair(self.pairs[index])
        return self._cache[index]

    def __getitem__(self, index: int) -> dict:
        image, mask = self._raw(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.train and self.augment:
            image, mask = augment_pair(image, mask, rng)
        h0, w0 = image.shape
        box = mask_box(mask)
        if box is None:  # augmentation pushed the lungs out of view
            box = np.array([0, 0, w0 - 1, h0 - 1], dtype=np.float64)
        if self.train:
            if rng.random() < self.full_box_prob:
                m = rng.uniform(0.0, 0.05)
                box = np.array([m * w0, m * h0, (1 - m) * w0 - 1, (1 - m) * h0 - 1])
            else:
                push = rng.uniform(0, self.jitter_px, size=4)
                box = box + np.array([-push[0], -push[1], push[2], push[3]])
            box = np.clip(box, 0, [w0 - 1, h0 - 1, w0 - 1, h0 - 1])
        rgb = resize_for_model(to_uint8_rgb(image), self.size)
        h, w = rgb.shape[-2:]
        scale = self.size / max(h0, w0)
        x = (rgb - self.mean) / self.std
        x = torch.nn.functional.pad(x, (0, self.size - w, 0, self.size - h))
        m = torch.nn.functional.interpolate(torch.as_tensor(mask, dtype=torch.float32)[None, None], size=(h, w), mode="nearest")[0]
        m = torch.nn.functional.pad(m, (0, self.size - w, 0, self.size - h))
        return {"image": x, "mask": m, "box": torch.as_tensor(box * scale, dtype=torch.float32),
                "valid": torch.tensor([h, w]), "index": index}
