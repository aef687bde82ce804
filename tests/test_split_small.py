"""The seeded split of a few annotated films keeps no test film: each one trains or validates (a helper's walk
of Annotate → Train found 1 of 6 films held out as a test film that never trained)."""
from __future__ import annotations

from napari_adaqat.data.split import SMALL_DATASET, make_split


def sizes(n: int) -> dict[str, int]:
    return {part: len(names) for part, names in make_split([f"film{i:03d}" for i in range(n)]).items()}


def test_a_few_films_train_or_validate_and_none_is_held_out_for_test():
    assert sizes(6) == {"train": 5, "val": 1, "test": 0}
    assert sizes(3) == {"train": 2, "val": 1, "test": 0}
    assert sizes(SMALL_DATASET - 1)["test"] == 0


def test_larger_folders_keep_the_80_10_10_cut():
    assert sizes(SMALL_DATASET) == {"train": 16, "val": 2, "test": 2}
    assert sizes(93) == {"train": 75, "val": 9, "test": 9}
