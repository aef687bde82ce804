"""Train a :class:`~napari_adaqat.model.vote_unet.VoteUNet`: the vote a model file may carry (issue 32), and the
plain U-Net reference that models are judged against (``benchmarks/unet_reference.py``).

No box: image in, lung mask out.  Trained from scratch on the data folder's ``train`` names (its
``split.json``, else the seeded split ``adaqat train`` makes), with the default model's input transform
(``prepare_image`` at :data:`~napari_adaqat.model.vote_unet.VOTE_SIZE` px), augmentation preset and loss
(BCE + soft Dice); the epoch with the best Dice on the ``val`` names is kept.  A stopped run continues from its
last finished epoch when started again with the same settings (``OUT/resume.safetensors``: weights, optimizer,
schedule; nothing pickled); a finished one is not redone; other settings over a run in OUT are refused.

    python -m napari_adaqat.train.vote_train DATA OUT --epochs 60 --width 8
then ``python -m napari_adaqat.model.formats.vote_file MODEL OUT/unet.safetensors VOTED`` puts it in a model file.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader

from napari_adaqat.data.check import training_sets
from napari_adaqat.data.dataset import DataError, discover, split_source
from napari_adaqat.model.formats.checkpoint import flatten_optimizer, optimizer_state, split_optimizer
from napari_adaqat.model.formats.container import read_adaqat_metadata, read_tensors, write_safetensors
from napari_adaqat.model.device import DEVICES, resolve_device
from napari_adaqat.model.vote_unet import VOTE_MEAN, VOTE_SIZE, VOTE_STD, VoteUNet
from napari_adaqat.train.dataset import LungDataset
from napari_adaqat.train.losses import batch_dice, segmentation_loss
from napari_adaqat.util.atomic import atomic_write
from napari_adaqat.util.errors import first_line

RESUME, RESULT, WEIGHTS = "resume.safetensors", "unet.json", "unet.safetensors"
HELP = """Train the small whole-film U-Net that a model file may carry as its vote (a second opinion on a box
alone; clicks always win).  It learns the data folder's train names (its split.json, else the split adaqat
train makes) and keeps the epoch with the best Dice on its val names; about 8.5 min on 2 CPU cores for the
defaults on 75 films.  Run again with the same arguments, a stopped run goes on where it stopped.

example:
  python -m napari_adaqat.train.vote_train my_films/ runs/vote
  python -m napari_adaqat.model.formats.vote_file my_model.safetensors runs/vote/unet.safetensors my_model_vote.safetensors
"""
SETTINGS = ("data", "epochs", "width", "steps_per_epoch", "batch_size", "seed", "lr", "augment_preset",
            "start")  # must match
# to continue a run (a setting a run did not record, as the U-Net reference's before 2026-12-06, passes)


def train_vote_unet(data: Path, out: Path, epochs: int = 60, width: int = 8, batch_size: int = 8,
                    lr: float = 1e-3, augment_preset: str = "clinic", seed: int = 0, *, init: dict | None = None,
                    init_name: str = "", split: dict | None = None, quiet: bool = False,
                    masks_as_given: bool = False, device: str = "cpu",
                    on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train on ``data``'s train names; write ``out/unet.safetensors`` (the best val epoch's weights) and
    ``out/unet.json`` (its val Dice, settings, time, parameters), which is also returned.

    A fine-tune of a vote (:mod:`napari_adaqat.train.vote_finetune`): ``init``, its weights (``init_name`` says
    whence), then the last epoch is kept (a fine-tune's few validation films pick no epoch); ``split``, the names
    of the run it goes with (else the folder's split.json or seeded split); ``quiet``: no data check, and the epoch
    lines on stderr (a chain's stdout ends with its summary); ``masks_as_given`` as in ``adaqat train``;
    ``device``: where it trains (a resolved name: cpu, cuda, mps); the files hold CPU tensors either way;
    ``on_epoch(record)`` after each epoch: epoch, epochs, loss, val_dice, best, eta_s (a chain's progress log)."""
    torch.manual_seed(seed)
    pairs, found = discover(data, seed)
    seeded = split is None and split_source(Path(data)) == "seeded"  # (its cut made again as adaqat train's is)
    sets, report = training_sets(data, pairs, split or found, masks_as_given, reseed=seed if seeded else None)
    if not quiet:
        print(f"data check of {data}\n{report.text()}", file=sys.stderr, flush=True)  # skipped and listed, as there
    common = dict(image_size=VOTE_SIZE, pixel_mean=VOTE_MEAN, pixel_std=VOTE_STD, seed=seed)
    train = LungDataset(sets["train"], train=True, augment=True, augment_preset=augment_preset, **common)
    val = LungDataset(sets["val"], train=False, **common)
    settings = {"data": str(Path(data).resolve()), "epochs": epochs, "width": width,
                "steps_per_epoch": math.ceil(len(train) / batch_size), "batch_size": batch_size, "seed": seed,
                "lr": lr, "augment_preset": augment_preset, **({"start": init_name} if init is not None else {})}
    out.mkdir(parents=True, exist_ok=True)
    if (out / RESULT).is_file():  # finished: not redone, if it is this run
        try:
            info = json.loads((out / RESULT).read_text())
        except ValueError as exc:
            raise ValueError(f"{out / RESULT}: not a finished run's record ({exc}); give another OUT folder") from None
        _check_same(out / RESULT, info, settings)
        print(f"{out}: this run is already finished (best val Dice {info.get('best_val_dice')}); nothing to do",
              file=sys.stderr)
        return info
    net = (VoteUNet(width) if init is None else VoteUNet.from_state(init)).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * settings["steps_per_epoch"],
                                                pct_start=0.05)
    best, first, start = _resume(out / RESUME, net, opt, sched, settings)
    for epoch in range(first, epochs):
        train.set_epoch(epoch)
        net.train()
        for batch in DataLoader(train, batch_size=batch_size, shuffle=True,
                                generator=torch.Generator().manual_seed(seed + epoch)):
            loss = segmentation_loss(net(batch["image"].to(device)), batch["mask"].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            scores = [batch_dice(net(b["image"].to(device)).cpu(), b["mask"], b["valid"])
                      for b in DataLoader(val, batch_size=8)]
        dice = float(torch.cat(scores).mean())
        if dice > best or init is not None:  # (a fine-tune keeps its last epoch)
            best = dice
            write_safetensors(out / WEIGHTS, _on_cpu(net.state_dict()), {"epoch": epoch + 1, "val_dice": dice})
        print(f"{'vote ' if quiet else ''}epoch {epoch + 1}/{epochs}: loss {loss.item():.4f} val Dice {dice:.4f} "
              f"best {best:.4f}", flush=True, file=sys.stderr if quiet else sys.stdout)
        _save_resume(out / RESUME, net, opt, sched, settings, epoch + 1, best, time.time() - start)
        if on_epoch is not None:
            per_epoch = (time.time() - start) / (epoch + 1)  # (a resumed run's time counts its earlier epochs)
            on_epoch({"epoch": epoch + 1, "epochs": epochs, "loss": round(loss.item(), 5), "val_dice": round(dice, 5),
                      "best": round(best, 5), "eta_s": round(per_epoch * (epochs - epoch - 1), 1)})
    info = {"best_val_dice": best, "kept": "last" if init is not None else "best", **settings,
            "train_seconds": round(time.time() - start, 1),
            "parameters": sum(p.numel() for p in net.parameters())}
    atomic_write(out / RESULT, lambda tmp: tmp.write_text(json.dumps(info, indent=1)))  # a kill leaves the old state
    (out / RESUME).unlink(missing_ok=True)
    return info


def _on_cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` as CPU tensors (a GPU run's files are the same as a CPU run's)."""
    return {k: v.detach().cpu() for k, v in tensors.items()}


def _check_same(path: Path, recorded: dict, settings: dict) -> None:
    """Refuse (ValueError, one line) a run in ``path`` made with other settings (a setting it did not record passes)."""
    other = [f"{k} {recorded[k]!r} (asked: {settings.get(k)!r})" for k in SETTINGS
             if k in recorded and recorded[k] != settings.get(k)]
    if other:
        raise ValueError(f"{path}: a run with other settings is here: {', '.join(other)}; give another OUT folder, "
                         f"or the same settings to continue it")


def _save_resume(path: Path, net: VoteUNet, opt: torch.optim.Optimizer, sched, settings: dict, done: int,
                 best: float, elapsed: float) -> None:
    """The state after ``done`` epochs: one atomic safetensors file (the optimizer flattened as checkpoints are)."""
    optim_tensors, groups = flatten_optimizer(opt)
    write_safetensors(path, _on_cpu({**net.state_dict(), **optim_tensors}),
                      {**settings, "epochs_done": done, "best": best, "elapsed": elapsed,
                       "optimizer_groups": groups, "schedule": sched.state_dict()})


def _resume(path: Path, net: VoteUNet, opt: torch.optim.Optimizer, sched, settings: dict) -> tuple[float, int, float]:
    """(best val Dice, first epoch to run, start time) of a stopped run at ``path``, its state loaded into ``net``,
    ``opt`` and ``sched``; a fresh start's when there is none."""
    meta = read_adaqat_metadata(path) if path.is_file() else None
    if not meta:
        return -1.0, 0, time.time()
    _check_same(path, meta, settings)
    weights, optim = split_optimizer(read_tensors(path))
    net.load_state_dict(weights)
    opt.load_state_dict(optimizer_state(optim, meta["optimizer_groups"]))
    sched.load_state_dict(meta["schedule"])
    print(f"resuming after epoch {meta['epochs_done']}/{settings['epochs']} (best val Dice {meta['best']:.4f})",
          flush=True)
    return meta["best"], meta["epochs_done"], time.time() - meta["elapsed"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_adaqat.train.vote_train", description=HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="a data folder (images/ + masks/, optionally split.json)")
    parser.add_argument("out", type=Path, help="folder for unet.safetensors and unet.json (a stopped run here goes on)")
    parser.add_argument("--epochs", type=int, default=60, help="passes over the train names (default 60)")
    parser.add_argument("--width", type=int, default=8, help="first level's channels (8: 8-16-32-64-128, the vote's)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where it trains (default auto: a CUDA GPU, then MPS, then the CPU)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or not 1 <= args.width <= 64:
        parser.error("--epochs must be at least 1 and --width 1 to 64")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"{args.out} is a file: OUT must be a folder (new, or holding a run of these settings)")
    try:
        info = train_vote_unet(args.data, args.out, args.epochs, width=args.width, device=resolve_device(args.device))
    except KeyboardInterrupt:
        print(f"{parser.prog}: stopped; run the same command again to go on after the last finished epoch",
              file=sys.stderr)
        return 130
    except (DataError, OSError, ValueError) as exc:  # ValueError: a damaged unet.json or resume file in OUT
        print(f"{parser.prog}: error: {first_line(exc)}", file=sys.stderr)
        return 2
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
