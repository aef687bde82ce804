"""The torch Dataset of training and validation samples at the model's input size."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from napari_adaqat.data.dataset import Pair, load_film_pair
from napari_adaqat.data.transforms import pixel_aspect, prepare_image, transform_boxes, transform_coords
from napari_adaqat.data.boxes import clip_margin
from napari_adaqat.data.conventions import random_convention
from napari_adaqat.model.logit_grid import FRESH_MODEL_OFFSET, grid_target
from napari_adaqat.train.augment import augment_pair
from napari_adaqat.train.prompts import START_POINTS, PromptMix, both_lungs_box, draw_prompt


class LungDataset(Dataset):
    """Samples at the model's input size.

    Each item: ``image`` (3, S, S) from :func:`~napari_adaqat.data.transforms.prepare_image`;
    ``mask`` (1, S, S) float; ``box`` (4,) xyxy in input coordinates; ``valid`` (2,) = (h, w).
    Training boxes move per side by U(-jitter_in_px, jitter_px) original pixels (positive: outward).
    ``points`` (START_POINTS, 2) x, y in input coordinates and ``point_labels`` (START_POINTS,) (1 = lung,
    -1 = padding): the start points of a sample drawn without a box (its ``box`` is then NaN).
    ``mask`` is read at the points the model's logit cells describe (``grid_offset``, input pixels:
    :func:`~napari_adaqat.model.logit_grid.grid_target`; -0.25, the default, is the grid of every recipe).
    ``clip_margin`` (): the inference's box-clipping margin in input pixels.  ``box_weight`` (): 0 for a sample
    drawn in another site's convention (``convention_prob``; only its clicks are scored), else 1.  With a
    ``prompts`` mix (:class:`~napari_adaqat.train.prompts.PromptMix`), training samples are drawn with
    one-lung, partial, empty boxes or points alone, and ``mask`` is what that prompt asks for.
    """

    def __init__(self, pairs: list[Pair], image_size: int, pixel_mean, pixel_std, *, train: bool,
                 jitter_px: int = 20, augment: bool = False, full_box_prob: float = 0.0, seed: int = 0,
                 augment_preset: str = "basic", jitter_in_px: int = 0, prompts: PromptMix | None = None,
                 convention_prob: float = 0.0, grid_offset: float = FRESH_MODEL_OFFSET) -> None:
        self.pairs = pairs
        self.size = image_size
        self.mean = tuple(pixel_mean)
        self.std = tuple(pixel_std)
        self.train = train
        self.jitter_px = jitter_px
        self.augment = augment
        self.augment_preset = augment_preset
        self.jitter_in_px = jitter_in_px
        self.full_box_prob = full_box_prob
        self.prompts = prompts or PromptMix()
        self.convention_prob = convention_prob
        self.grid_offset = grid_offset
        self.seed = seed
        self.epoch = 0
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}  # (film, mask, pixel aspect)

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Random draws depend only on (seed, epoch, index): resuming reproduces them."""
        self.epoch = epoch

    def _raw(self, index: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(film (H, W) in [0, 1], mask (H, W) bool, its pixels' height over width: non-square pixels are made
        square for the model, as at inference)."""
        if index not in self._cache:
            film, mask = load_film_pair(self.pairs[index])
            self._cache[index] = (film.pixels, mask, pixel_aspect(film.shape_spacing))
        return self._cache[index]

    def __getitem__(self, index: int) -> dict:
        image, mask, aspect = self._raw(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.train and self.augment:
            image, mask = augment_pair(image, mask, rng, self.augment_preset)
        h0, w0 = image.shape
        points, labels = np.zeros((START_POINTS, 2)), -np.ones(START_POINTS)
        box_weight = 1.0
        if self.train and self.convention_prob and rng.random() < self.convention_prob:
            mask, box_weight = random_convention(mask.astype(bool), rng), 0.0  # the clicks must teach it
        if self.train and self.prompts.active:
            drawn = draw_prompt(mask, rng, self.prompts, jitter_px=self.jitter_px, jitter_in_px=self.jitter_in_px,
                                full_box_prob=self.full_box_prob)
            box, points, labels, mask = drawn.box, drawn.points, drawn.labels, drawn.target
        else:
            box = both_lungs_box(mask, rng if self.train else None, self.jitter_px, self.jitter_in_px,
                                 self.full_box_prob)
        prepared = prepare_image(image, self.size, self.mean, self.std, aspect)
        h, w = prepared.input_size
        box_in = transform_boxes(box[None], (h0, w0), self.size, aspect)[0]
        m = grid_target(mask, (h, w), self.grid_offset)
        m = torch.nn.functional.pad(m, (0, self.size - w, 0, self.size - h))
        points_in = transform_coords(points, (h0, w0), self.size, aspect)
        return {"image": prepared.tensor, "mask": m, "box": torch.as_tensor(box_in, dtype=torch.float32),
                "points": torch.as_tensor(points_in, dtype=torch.float32),
                "point_labels": torch.as_tensor(labels, dtype=torch.float32),
                "valid": torch.tensor([h, w]), "index": index, "box_weight": torch.tensor(box_weight),
                "clip_margin": torch.tensor(clip_margin((h0, w0)) * self.size / max(h0 * aspect, w0),  # (input px)
                                            dtype=torch.float32)}
