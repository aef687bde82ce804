"""The plain U-Net reference that the default model is judged against (issue 14).

A 4-level U-Net (widths 16-32-64-128, bottleneck 256, BatchNorm + ReLU; ~1.9 M parameters),
no box prompt: image in, lung mask out.  It is trained from scratch on a cross-validation
fold's ``train`` names, with the same input transform (``prepare_image``, 256 px), the same
augmentation preset and the same loss (BCE + soft Dice) as the default model, and keeps the
epoch with the best Dice on the fold's ``val`` names.  A small module of our own, so that
MONAI is not needed.  The network is :class:`napari_adaqat.model.vote_unet.VoteUNet`, the vote a model file
may carry.

    python benchmarks/unet_reference.py /work/cv/fold0 /work/cvruns/unet/fold0 --epochs 40

A run that was stopped continues from its last finished epoch when run again with the same arguments
(``out/resume.safetensors``: weights, optimizer, schedule; nothing pickled); a finished run is not redone.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from napari_adaqat.model.formats.checkpoint import OPTIM_PREFIX, optimizer_state, split_optimizer
from napari_adaqat.model.formats.container import read_adaqat_metadata, read_tensors, write_safetensors

from napari_adaqat.data.dataset import discover
from napari_adaqat.model.logit_grid import FRESH_MODEL_OFFSET
from napari_adaqat.model.vote_unet import VOTE_MEAN, VOTE_SIZE, VOTE_STD, VoteUNet, vote_logits
from napari_adaqat.train.dataset import LungDataset
from napari_adaqat.train.losses import batch_dice, segmentation_loss

SIZE, MEAN, STD = VOTE_SIZE, VOTE_MEAN, VOTE_STD
UNet = VoteUNet  # the same network a model file may carry as its vote


def train_fold(fold: Path, out: Path, epochs: int = 40, batch_size: int = 8, lr: float = 1e-3,
               augment_preset: str = "clinic", seed: int = 0, width: int = 16) -> dict:
    """Train on ``fold/split.json``'s train names; write ``out/unet.safetensors`` (best val epoch)."""
    torch.manual_seed(seed)
    pairs, split = discover(fold, seed)
    common = dict(image_size=SIZE, pixel_mean=MEAN, pixel_std=STD, seed=seed)
    train = LungDataset([pairs[n] for n in split["train"]], train=True, augment=True,
                        augment_preset=augment_preset, **common)
    val = LungDataset([pairs[n] for n in split["val"]], train=False, **common)
    net = UNet(width)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(train) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "unet.json").is_file():  # finished: not redone
        return json.loads((out / "unet.json").read_text())
    best, first, start = _resume(out / "resume.safetensors", net, opt, sched, epochs)
    for epoch in range(first, epochs):
        train.set_epoch(epoch)
        net.train()
        for batch in DataLoader(train, batch_size=batch_size, shuffle=True,
                                generator=torch.Generator().manual_seed(seed + epoch)):
            loss = segmentation_loss(net(batch["image"]), batch["mask"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            scores = [batch_dice(net(b["image"]), b["mask"], b["valid"]) for b in DataLoader(val, batch_size=8)]
        dice = float(torch.cat(scores).mean())
        if dice > best:
            best = dice
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "unet.safetensors"))
        print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.4f} val Dice {dice:.4f} best {best:.4f}", flush=True)
        _save_resume(out / "resume.safetensors", net, opt, sched, epoch + 1, epochs, best, time.time() - start)
    info = {"best_val_dice": best, "epochs": epochs, "width": width, "train_seconds": round(time.time() - start, 1),
            "parameters": sum(p.numel() for p in net.parameters())}
    (out / "unet.json").write_text(json.dumps(info, indent=1))
    (out / "resume.safetensors").unlink(missing_ok=True)
    return info


def _save_resume(path: Path, net: UNet, opt: torch.optim.Optimizer, sched, done: int, epochs: int, best: float,
                 elapsed: float) -> None:
    """The state after ``done`` epochs, one atomic safetensors file (the optimizer flattened as checkpoints are)."""
    state = opt.state_dict()
    tensors = dict(net.state_dict())
    tensors.update({f"{OPTIM_PREFIX}{i}.{k}": torch.as_tensor(v) for i, e in state["state"].items() for k, v in e.items()})
    write_safetensors(path, tensors, {"epochs_done": done, "epochs": epochs, "best": best, "elapsed": elapsed,
                                      "optimizer_groups": state["param_groups"], "schedule": sched.state_dict()})


def _resume(path: Path, net: UNet, opt: torch.optim.Optimizer, sched, epochs: int) -> tuple[float, int, float]:
    """(best val Dice, first epoch to run, start time) of a stopped run at ``path``, its state loaded; else a fresh start."""
    meta = read_adaqat_metadata(path) if path.is_file() else None
    if not meta:
        return -1.0, 0, time.time()
    if meta["epochs"] != epochs:
        raise SystemExit(f"{path}: a run of {meta['epochs']} epochs was stopped here; rerun with --epochs "
                         f"{meta['epochs']}, or delete that file to start anew")
    weights, optim = split_optimizer(read_tensors(path))
    net.load_state_dict(weights)
    opt.load_state_dict(optimizer_state(optim, meta["optimizer_groups"]))
    sched.load_state_dict(meta["schedule"])
    print(f"resuming after epoch {meta['epochs_done']}/{epochs} (best val Dice {meta['best']:.4f})", flush=True)
    return meta["best"], meta["epochs_done"], time.time() - meta["elapsed"]


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
    print(json.dumps(train_fold(args.fold, args.out, args.epochs, width=args.width)))


if __name__ == "__main__":
    main()
