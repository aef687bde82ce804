"""The plain U-Net reference that the default model is judged against (issue 14).

A 5-level U-Net (widths 16-32-64-128-256, BatchNorm + ReLU; ~1.9 M parameters), no box prompt: image in, lung
mask out, trained from scratch on a cross-validation fold's ``train`` names with the default model's input
transform, augmentation and loss, keeping the epoch with the best Dice on the fold's ``val`` names.  It is the
network a model file may carry as its vote, trained by the same code
(:func:`napari_adaqat.train.vote_train.train_vote_unet`: a stopped run continues; a finished one is not redone).

    python benchmarks/unet_reference.py /work/cv/fold0 /work/cvruns/unet/fold0 --epochs 140
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from napari_adaqat.model.logit_grid import FRESH_MODEL_OFFSET
from napari_adaqat.model.vote_unet import VoteUNet, vote_logits
from napari_adaqat.train.vote_train import train_vote_unet

UNet = VoteUNet  # the same network a model file may carry as its vote


def train_fold(fold: Path, out: Path, epochs: int = 40, batch_size: int = 8, width: int = 16) -> dict:
    """Train on ``fold/split.json``'s train names; write ``out/unet.safetensors`` (best val epoch)."""
    return train_vote_unet(fold, out, epochs, width=width, batch_size=batch_size)


def load_unet(path: Path) -> UNet:
    return UNet.from_state(load_file(str(path)))


@torch.no_grad()
def predict_mask(net: UNet, image: np.ndarray, offset: float = FRESH_MODEL_OFFSET) -> np.ndarray:
    """(H, W[, 3]) image → (H, W) bool mask at the image's own size, the logits read where its training
    targets lie (LungDataset's grid, model/logit_grid.py; ``offset`` 0: as read before 2026-12-06, half a
    512-px pixel off)."""
    return vote_logits(net, image, offset=offset).numpy() > 0  # the product's reading (model/vote_unet.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fold", type=Path, help="a fold folder of benchmarks/cv_folds.py (or any dataset with split.json)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--width", type=int, default=16, help="first level's channels (16: 16-32-64-128-256)")
    args = parser.parse_args()
    try:
        print(json.dumps(train_fold(args.fold, args.out, args.epochs, width=args.width)))
    except ValueError as exc:  # other settings over a run in OUT, a damaged record: one line
        raise SystemExit(f"unet_reference.py: error: {exc}") from None


if __name__ == "__main__":
    main()
