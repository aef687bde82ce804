"""segment_anything is imported without torchvision (napari_adaqat._sam_import): our preprocessing
equals stock's bit for bit, a whole box → mask run never imports torchvision (nor torch._dynamo),
and stock code that needs torchvision still gets the real functions."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from napari_adaqat.data.transforms import resize_for_model


@pytest.mark.parametrize("shape, size", [((512, 512), 256), ((300, 200), 1024), ((1000, 37), 256), ((511, 777), 512)])
def test_resize_equals_resize_longest_side(shape, size):
    from segment_anything.utils.transforms import ResizeLongestSide

    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    stock = torch.as_tensor(ResizeLongestSide(size).apply_image(image)).permute(2, 0, 1).float()
    assert torch.equal(resize_for_model(image, size), stock)


def test_box_to_mask_never_imports_torchvision():
    code = (
        "import sys, numpy as np\n"
        "from napari_adaqat import open_model\n"
        "image = (np.random.default_rng(0).random((300, 260)) * 255).astype(np.uint8)\n"
        "model = open_model(device='cpu')  # as the docks and the CLI open it\n"
        "mask = model.segment(image, [20, 20, 240, 280])\n"
        "assert mask.shape == (300, 260)\n"
        "assert 'torchvision' not in sys.modules and 'torch._dynamo' not in sys.modules, 'torchvision imported'\n"
        "from segment_anything.automatic_mask_generator import box_area\n"
        "import torch\n"
        "assert float(box_area(torch.tensor([[0.0, 0.0, 2.0, 3.0]]))[0]) == 6.0  # the real one, imported now\n"
        "assert 'torchvision' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_module_imports_the_shim_before_segment_anything():
    """Each of our modules that imports segment_anything at module level imports napari_adaqat._sam_import
    first (an import sorter could move it below; the '# isort: split' after it prevents that)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "napari_adaqat"
    checked = 0
    for path in root.rglob("*.py"):
        names = []
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
        sam = [i for i, name in enumerate(names) if name.split(".")[0] == "segment_anything"]
        if sam and path.name != "_sam_import.py":
            checked += 1
            assert "napari_adaqat._sam_import" in names[:sam[0]], path
    assert checked >= 14  # int8_runtime.py and model/modes.py no longer import segment_anything (issue 28)
