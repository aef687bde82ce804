"""Chunked GPU prefetch, shared by ``adaqat segment`` (:mod:`.batch`) and ``adaqat evaluate``.

On a GPU (:func:`~napari_adaqat.inference.engine.batched`) the inputs go ``batch_size`` at a time: each
chunk is read ahead (:func:`read_ahead`) and embedded ``batch_size`` per encoder forward for every model
(:func:`embed_ahead`), so that the per-image prompts find their embeddings cached.  On the CPU the chunks
are single inputs and nothing is embedded ahead.
"""
from __future__ import annotations

import time
import warnings
from typing import Callable, Hashable, Iterator, Mapping, Optional, Sequence, TypeVar

import numpy as np

from napari_adaqat.inference.engine import Engine, ModelLike
from napari_adaqat.inference.predictor import FilmLike
from napari_adaqat.util.errors import first_line

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


def chunks(items: Sequence[T], size: int) -> Iterator[tuple[int, list[T]]]:
    """``(index of the first, chunk)`` of ``items``, ``size`` at a time."""
    for first in range(0, len(items), size):
        yield first, list(items[first:first + size])


def read_ahead(keys: Sequence[K], read: Callable[[K], T]) -> dict[K, tuple[T | Exception, float]]:
    """``read(key)`` now for each key: its result, or the exception it raised (kept for that input's
    own turn), and the seconds it took."""
    ahead: dict[K, tuple[T | Exception, float]] = {}
    for key in keys:
        start = time.perf_counter()
        try:
            value: T | Exception = read(key)
        except Exception as exc:  # reported when this input's turn comes
            value = exc
        ahead[key] = (value, time.perf_counter() - start)
    return ahead


def embed_ahead(engine: Engine, images: Sequence[FilmLike], models: Mapping[str, Optional[ModelLike]],
                device: str, batch_size: int) -> Optional[dict[str, float]]:
    """Embed ``images`` (each (H, W[, 3]), or an ImageData: pixels with their spacing) for every model, ``batch_size`` per encoder forward; return
    each model's seconds per image, or ``None`` when it failed (e.g. a batch out of GPU memory, with a
    warning): the images then embed one by one when prompted."""
    if not images:
        return {tag: 0.0 for tag, ref in models.items() if ref is not None}
    try:
        return {tag: engine.prefetch(images, ref, None, device, batch_size) / len(images)
                for tag, ref in models.items() if ref is not None}
    except Exception as exc:  # never fatal: each image embeds on its own when prompted
        warnings.warn(f"batched embedding failed ({first_line(exc)}); embedding the images one by one",
                      RuntimeWarning)
        return None
