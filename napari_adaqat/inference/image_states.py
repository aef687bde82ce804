"""What :class:`~napari_adaqat.inference.predictor.BoxPredictor` computes per image besides the encoder features
(the features on the device, the decoder's image context, the mask refiner's detail features, a film's vote),
kept for the last few images so that going back to one (the Segment dock's A → B → A) computes none of them:
with the bundled model on a 2-core CPU they cost 60 ms (512-px film) to 140 ms (2500 px) per model on top of the
cached features (``set_image`` back: 1-30 ms).  In the dock the switch is mostly other work (0.62 → 0.55 s at
512 px; benchmarks/image_switch_back.py, BENCHMARKS.md).

A state is valid only while the embedding cache still holds the very embedding it was made from: a fresh cache
(``adaqat bench``), other pixels (another key) or another model (another predictor) compute it anew.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any, Optional

import torch

from napari_adaqat.inference.embedding_cache import Embedding

MAX_IMAGES = 3  # the image shown and the two before it
MAX_BYTES = 384 << 20  # per predictor (a ViT-B at 1024 px with a mask refiner: ~170 MB an image); the newest stays


@dataclass
class ImageState:
    """One image's prompt-ready parts, as :meth:`BoxPredictor.set_image` sets them."""

    embedding: Embedding  # the cache's entry these parts were made from
    features: torch.Tensor  # (1, C, E, E) on the predictor's device
    context: Any = None  # ImageContext of the lean decoder, or None
    detail: Optional[torch.Tensor] = None  # the mask refiner's image features
    detail_term: Optional[torch.Tensor] = None
    vote: Any = None  # FilmVote, or None

    def nbytes(self) -> int:
        """Bytes of its tensors (each storage once; the cached CPU features are the cache's, not counted)."""
        seen: dict[int, int] = {}

        def add(value: Any) -> None:
            if isinstance(value, torch.Tensor):
                seen[value.untyped_storage().data_ptr()] = value.untyped_storage().nbytes()
            elif value is not None and hasattr(value, "__dict__"):
                for item in vars(value).values():
                    add(item)

        for f in fields(self):
            if f.name != "embedding":
                add(getattr(self, f.name))
        cpu = self.embedding.features.untyped_storage().data_ptr()
        return sum(n for ptr, n in seen.items() if ptr != cpu)


class ImageStates:
    """The :class:`ImageState` of the last ``max_items`` images (least recently used first out), within
    ``max_bytes`` (the newest is always kept)."""

    def __init__(self, max_items: int = MAX_IMAGES, max_bytes: int = MAX_BYTES) -> None:
        self.max_items = max(1, int(max_items))
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, tuple[ImageState, int]] = OrderedDict()

    def get(self, key: str, embedding: Optional[Embedding]) -> Optional[ImageState]:
        """The state of ``key`` when it was made from ``embedding`` (the cache's entry now), else None."""
        entry = self._items.get(key)
        if entry is None or embedding is None or entry[0].embedding is not embedding:
            return None
        self._items.move_to_end(key)
        return entry[0]

    def put(self, key: str, state: ImageState) -> None:
        self._items[key] = (state, state.nbytes())
        self._items.move_to_end(key)
        while len(self._items) > 1 and (len(self._items) > self.max_items
                                        or sum(n for _s, n in self._items.values()) > self.max_bytes):
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
