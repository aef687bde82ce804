"""The embedding cache of :class:`~napari_adaqat.inference.predictor.BoxPredictor`: an image's encoder features
and where the film lies in the model input, in memory (LRU) and optionally mirrored to a folder (safetensors)."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from napari_adaqat.util.atomic import atomic_write


@dataclass
class Embedding:
    """One image's encoder features (1, C, E, E), its (H, W), the (h, w) it takes in the model input and its
    pixel aspect."""

    features: torch.Tensor  # (1, C, E, E)
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    aspect: float = 1.0  # the film's pixel height over width (data/transforms.py, pixel_aspect)


class EmbeddingCache:
    """LRU cache of image embeddings in memory, optionally mirrored to a folder."""

    def __init__(self, max_items: int = 8, directory: str | Path | None = None) -> None:
        self.max_items = max_items
        self.directory = Path(directory) if directory else None
        self._items: OrderedDict[str, Embedding] = OrderedDict()

    def get(self, key: str) -> Embedding | None:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        if self.directory is not None:
            path = self.directory / f"{key}.safetensors"
            if path.is_file():
                data = load_file(path)
                sizes = data["sizes"].tolist()
                aspect = float(data["aspect"][0]) if "aspect" in data else 1.0
                item = Embedding(data["features"], (sizes[0], sizes[1]), (sizes[2], sizes[3]), aspect)
                self._store(key, item)
                return item
        return None

    def put(self, key: str, item: Embedding) -> None:
        self._store(key, item)
        if self.directory is not None:
            sizes = torch.tensor([*item.original_size, *item.input_size])
            tensors = {"features": item.features.contiguous().cpu(), "sizes": sizes}
            if item.aspect != 1.0:
                tensors["aspect"] = torch.tensor([item.aspect], dtype=torch.float64)
            atomic_write(self.directory / f"{key}.safetensors", lambda tmp: save_file(tensors, str(tmp)), fsync=False)

    def _store(self, key: str, item: Embedding) -> None:
        self._items[key] = item
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
