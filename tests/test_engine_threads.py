"""The docks share one engine: prompts from two threads at once give the masks that one thread gives
(without the engine's lock, one thread's set_image lands between the other's set_image and predict:
measured 38 of 80 prompts wrong)."""
from __future__ import annotations

import threading

import numpy as np

from napari_adaqat.inference.engine import Engine, ModelRef
from napari_adaqat.io import read_image


def test_two_threads_prompting_one_engine_get_their_own_masks(cxr_dir):
    images = [read_image(p).pixels for p in sorted((cxr_dir / "images").glob("*.png"))[:2]]
    engine, ref = Engine(), ModelRef()
    expected = [engine.predict(img, None, ref).mask for img in images]
    assert expected[0].shape != expected[1].shape or not np.array_equal(*expected)  # two different films
    engine = Engine()  # fresh caches: every thread's first prompt embeds while the other prompts
    wrong: list[str] = []

    def worker(i: int) -> None:
        for round_ in range(20):
            mask = engine.predict(images[i], None, ref).mask
            if mask.shape != expected[i].shape or not np.array_equal(mask, expected[i]):
                wrong.append(f"thread {i} round {round_}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, wrong
