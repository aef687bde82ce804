"""The epochs of one training stage, both stages alike.

:func:`train_stage` assumes a checked run folder and a resolved config: call
:func:`napari_adaqat.train.run.run` (or ``train(...)``), which adds the run-folder checks,
the resume-config merge, SIGTERM handling and stale temp-file cleanup.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from napari_adaqat.data.check import training_sets
from napari_adaqat.data.dataset import DataError, discover, names_of_pairs, split_source
from napari_adaqat.data.split import SPLITS, load_split, save_split
from napari_adaqat.model.adalora import AdaLoRAConfig, adalora_modules, clamp_lambda_grads, orthogonal_regularizer
from napari_adaqat.model.build import load_state_strict
from napari_adaqat.model.formats.checkpoint import optimizer_state, read_checkpoint, save_checkpoint, split_optimizer
from napari_adaqat.model.device import resolve_device
from napari_adaqat.model.forward import grad_checkpoint_pays
from napari_adaqat.model.rank_allocator import RankAllocator
from napari_adaqat.model.spec import PRESETS as MODEL_PRESETS
from napari_adaqat.train import distributed as dd
from napari_adaqat.train.config import MIN_VAL_FOR_BEST, TrainConfig
from napari_adaqat.train.dataset import LungDataset
from napari_adaqat.train.ema import WeightEMA
from napari_adaqat.train.interactive import DEEPEST_CLICK_PROB, prompted_logits
from napari_adaqat.train.losses import batch_dice, segmentation_loss
from napari_adaqat.model.modes import param_groups, trainable_count
from napari_adaqat.train.progress import MemoryMeter, ProgressLog
from napari_adaqat.train.paths import run_paths
from napari_adaqat.train.start_model import as_started, build_stage1, build_stage2
from napari_adaqat.train.eta import TimeLeft

log = logging.getLogger("napari_adaqat.train")


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _stage1_split(cfg: TrainConfig, pairs: dict) -> dict | None:
    """Stage 2 ``--from`` a Stage-1 run on the same data folder: that run's split, so that its validation films stay
    films the model never trained on (the data folder may have gained films since, or its seeded cut may differ);
    films added since go to train.  None otherwise."""
    if cfg.stage != 2 or not cfg.from_run:
        return None
    run = run_paths(cfg.from_run)
    try:
        data = json.loads(run["config"].read_text()).get("data")
        split = names_of_pairs(load_split(run["split"]), pairs)
    except (OSError, ValueError):
        return None  # (no split or config kept: the data folder's own split, as before)
    if not data or Path(data).resolve() != Path(cfg.data).resolve():
        return None
    known = {name for part in SPLITS for name in split[part]}
    split["train"] = sorted(set(split["train"]) | (set(pairs) - known))
    return split


def _datasets(cfg: TrainConfig, spec, paths: dict, rank: int, resume: bool) -> tuple[LungDataset, LungDataset, list[str]]:
    pairs, split = discover(cfg.data, cfg.seed)  # deterministic: every rank computes the same split
    kept = resume and paths["split"].is_file()
    if kept:  # a resumed run keeps its own split
        split = json.loads(paths["split"].read_text())
    elif (stage1 := _stage1_split(cfg, pairs)) is not None:
        split = stage1
    # refuses an empty or overlapping validation set, and masks that all look inverted (unless masks_as_given);
    # the folder's own seeded cut is made again over its usable pairs where some are left out
    seeded = not kept and split_source(Path(cfg.data)) == "seeded" and _stage1_split(cfg, pairs) is None
    try:
        sets, report = training_sets(cfg.data, pairs, split, cfg.masks_as_given, reseed=cfg.seed if seeded else None)
    except DataError as exc:  # the data check, then the one line (what was skipped, and why)
        if rank == 0 and getattr(exc, "report", None) is not None:
            print(f"adaqat train: data check of {cfg.data}\n{exc.report.text()}", file=sys.stderr, flush=True)
        raise
    split = {**split, **report.cut} if report.cut is not None else split
    if rank == 0 and not kept:  # (a refused run leaves no split.json)
        save_split(split, paths["split"], cfg.seed)
    warnings = report.bad  # logged as "skipped: …" (the warnings are in the printed check)
    if rank == 0:  # the data check on the terminal before the first epoch (as the Train dock shows it)
        print(f"adaqat train: data check of {cfg.data}\n{report.text()}", file=sys.stderr, flush=True)
    common = dict(image_size=spec.image_size, pixel_mean=spec.pixel_mean, pixel_std=spec.pixel_std, seed=cfg.seed,
                  grid_offset=spec.logit_offset)  # targets where the model's cells lie (model/logit_grid.py)
    train = LungDataset(sets["train"], train=True, jitter_px=cfg.jitter_px, augment=cfg.augment,
                        augment_preset=cfg.augment_preset, jitter_in_px=cfg.jitter_in_px,
                        full_box_prob=cfg.full_box_prob, prompts=cfg.prompt_mix(),
                        convention_prob=cfg.convention_prob, **common)
    val = LungDataset(sets["val"], train=False, **common)
    return train, val, warnings


def _forward(sam, batch: dict, device: str, amp: bool, grad_ckpt: bool, keep_coarse: bool = False,
             rounds: int = 0, generator: torch.Generator | None = None, clip_to_box: bool = False,
             deterministic: bool = False, deepest_prob: float = DEEPEST_CLICK_PROB
             ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Logits (B, 1, S, S) at the input size after the first prompt and after each of ``rounds`` simulated
    corrective clicks (:func:`~napari_adaqat.train.interactive.prompted_logits`); with ``keep_coarse``, also
    the decoder's own logits of the first prompt before a mask refiner (B, 1, S, S) — None otherwise or for
    a model without one.  ``clip_to_box``: clipped as the inference clips (``train_clipped`` in config.py)."""
    images = batch["image"].to(device)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        outputs, coarse = prompted_logits(sam, images, batch, device, rounds, grad_ckpt, generator, clip_to_box,
                                          deterministic, deepest_prob)
    has_refiner = getattr(sam, "mask_refiner", None) is not None
    return outputs, coarse if keep_coarse and has_refiner else None


@torch.no_grad()
def evaluate_dice(sam, dataset: LungDataset, cfg: TrainConfig, device: str, amp: bool, rank: int, world: int) -> float:
    """Validation Dice of the box prompt; with ``click_rounds``, the mean over the box and each of that many
    corrective clicks by the evaluation's rule (what a user gets from a box and clicks picks the model)."""
    sam.eval()
    indices = list(range(rank, len(dataset), world))
    loader = DataLoader(Subset(dataset, indices), batch_size=max(1, cfg.batch_size), shuffle=False)
    scores = []
    for batch in loader:
        outputs, _ = _forward(sam, batch, device, amp, False, rounds=cfg.click_rounds, clip_to_box=cfg.train_clipped,
                              deterministic=True)
        target = batch["mask"].to(device)  # the box's Dice and, when training clicks, each click's: their mean
        scores.append(torch.stack([batch_dice(o, target, batch["valid"]) for o in outputs]).mean(0).cpu())
    local = torch.cat(scores).mean().item() if scores else 0.0
    return dd.all_mean(local, len(indices), world, device if device.startswith("cuda") else "cpu")


def train_stage(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train one stage into ``cfg.out``; returns a summary (best validation Dice, epochs, paths)."""
    device = dd.local_device(resolve_device(cfg.device))
    rank, world = dd.init_distributed(device)
    paths = run_paths(cfg.out)
    handler = None
    created = not paths["root"].exists()
    if rank == 0:
        paths["root"].mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(paths["log"], delay=True)  # (the file appears with its first line)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    try:
        return _train(cfg, resume, device, rank, world, paths)
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        if created and rank == 0 and paths["root"].is_dir() and not any(paths["root"].iterdir()):
            paths["root"].rmdir()  # a run refused before it wrote anything leaves no empty folder
        dd.shutdown(world)


def _as_trained(cfg: TrainConfig, sam: torch.nn.Module) -> TrainConfig:
    """``cfg`` with ``model_type`` the architecture that trains (a model file brings its own: the bundled one is
    ``hybrid_tiny`` whatever ``model_type`` said), as the run's ``config.json`` and checkpoints record it."""
    name = getattr(getattr(sam, "spec", None), "name", None)
    if isinstance(name, str) and name in MODEL_PRESETS and name != cfg.model_type:
        return dataclasses.replace(cfg, model_type=name)
    return cfg


def _train(cfg: TrainConfig, resume: bool, device: str, rank: int, world: int, paths: dict) -> dict:
    is_main = rank == 0
    _seed_all(cfg.seed)
    sam, description, provenance = (build_stage1 if cfg.stage == 1 else build_stage2)(cfg)
    cfg = _as_trained(cfg, sam)
    sam.to(device)
    if trainable_count(sam) == 0:
        choice = f"mode {cfg.mode!r}" if cfg.stage == 1 else f"trainable {cfg.qat.trainable!r}"
        raise ValueError(f"nothing to train: stage {cfg.stage} {choice} leaves no trainable parameters")
    train_set, val_set, warnings = _datasets(cfg, sam.spec, paths, rank, resume)
    for w in warnings:
        log.warning("skipped: %s", w)
    if is_main and provenance.get("vote_unet_left_out"):  # (after the data check: a refused run writes no log)
        log.warning("the start model's vote (a U-Net apart) is left out of this stage's model%s",
                    ": --stage all fine-tunes it on the same films as its last step (--vote-epochs)"
                    if cfg.vote_epochs else "")
    groups = param_groups(sam, cfg.lr_adapter, cfg.lr_decoder, cfg.lr_other, cfg.weight_decay)
    optimizer = torch.optim.AdamW(groups)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    adapters = bool(adalora_modules(sam))
    pruning = adapters and cfg.stage == 1 and cfg.mode == "adalora"
    adalora = AdaLoRAConfig.from_dict(description["adalora"]) if pruning else None  # the adapters' own config
    allocator = RankAllocator(sam, adalora) if pruning else None
    ortho_w = cfg.adalora.ortho_weight if pruning else 0.0
    amp = cfg.amp and device.startswith("cuda")
    start_epoch, best, bad_epochs = 1, -1.0, 0
    ema = WeightEMA(sam, cfg.ema_decay) if cfg.ema_decay else None
    if resume and paths["last"].is_file():
        tensors, meta = read_checkpoint(paths["last"])
        model_tensors, optim_tensors = split_optimizer(tensors)
        load_state_strict(sam, model_tensors, str(paths["last"]))  # one-line error naming the keys
        optimizer.load_state_dict(optimizer_state(optim_tensors, meta["optimizer_groups"]))
        start_epoch, best, bad_epochs = meta["epoch"] + 1, meta["best_dice"], meta["bad_epochs"]
        if allocator is not None:
            allocator.on_epoch_end(meta["epoch"])  # masks are restored; this only syncs its schedule
        if ema is not None and not ema.load(paths["ema"], meta["epoch"]):
            log.warning("%s: no weight average saved with epoch %d; the average restarts from the live weights",
                        paths["ema"], meta["epoch"])
            ema.reset()
    elif is_main and paths["progress"].is_file():
        paths["progress"].unlink()
    progress = ProgressLog(paths["progress"], enabled=is_main)
    checkpointing = cfg.grad_checkpoint if cfg.grad_checkpoint is not None else grad_checkpoint_pays(sam)
    if is_main:
        paths["config"].write_text(json.dumps(cfg.to_dict(), indent=1))
        progress.write("start", stage=cfg.stage, mode=cfg.mode, preset=cfg.preset, epochs=cfg.epochs,
                       resumed_from=start_epoch - 1 if resume else None, train=len(train_set), val=len(val_set),
                       trainable=trainable_count(sam), world_size=world, device=device, skipped=warnings,
                       grad_checkpoint=checkpointing)
    trainable = [p for p in sam.parameters() if p.requires_grad]
    # films per rank per epoch: all of them on one process; equal whole batches on each of several
    shard = len(train_set) if world == 1 else math.ceil(len(train_set) / (cfg.batch_size * world)) * cfg.batch_size
    batches = film_batches(shard, cfg.batch_size)[: cfg.max_steps_per_epoch or None]
    # With adapters, 'best' and early stopping only count once the rank budget is final (at the
    # allocator's last prune epoch), so Stage 2 never starts from a model above the target rank.
    final_prune = max([e for e in adalora.prune_epochs if e <= cfg.epochs], default=0) \
        if pruning and not adalora.fixed_rank else 0
    keep_last = kept_epoch(cfg, len(val_set)) == "last"
    if is_main and keep_last and cfg.keep == "auto":
        tqdm.write(f"{len(val_set)} validation film(s): the last epoch is kept as the model (with fewer than "
                   f"{MIN_VAL_FOR_BEST}, the best validation Dice would pick an epoch by chance; --keep best to override)")
    if start_epoch == 1 and cfg.stage == 1 and cfg.checkpoint:  # "epoch 0": the start model, to compare with
        with as_started(sam) as seen:  # (train/compare.py)
            start_dice = evaluate_dice(sam, val_set, cfg, device, amp, rank, world) if seen else None
        if is_main and start_dice is not None:
            progress.write("start_val", val_dice=round(start_dice, 5), val=len(val_set))
            tqdm.write(f"epoch 0 (the start model, before training): val Dice {start_dice:.4f}")
    t0, epochs_done = time.time(), 0
    kept = (meta["val_dice"] if keep_last else best) if resume and paths["last"].is_file() else None
    clock = TimeLeft()  # the ETA without the first epoch's start-up (train/eta.py)
    memory = MemoryMeter(device)
    for epoch in range(start_epoch, cfg.epochs + 1):
        sam.train()
        for group, base_lr in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base_lr * lr_factor(cfg, epoch)
        train_set.set_epoch(epoch)
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch)).tolist()
        if world > 1:  # equal shards (wrapping around), so every rank runs the same collectives
            need = shard * world
            order = (order * math.ceil(need / len(order)))[:need]
        mine = order[rank::world][:shard]
        loader = DataLoader(Subset(train_set, mine), batch_sampler=batches, num_workers=cfg.num_workers)
        bar = tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", disable=not is_main or None, leave=False)
        losses, epoch_peak = [], None
        clicks = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + epoch)  # the simulated clicks
        for step, batch in enumerate(bar, start=1):
            memory.reset()
            outputs, coarse = _forward(sam, batch, device, amp, checkpointing, keep_coarse=cfg.refiner_aux_loss > 0,
                                       rounds=cfg.click_rounds, generator=clicks, clip_to_box=cfg.train_clipped,
                                       deepest_prob=cfg.click_deepest_prob)
            target = batch["mask"].to(device)
            # a sample in another site's convention (convention_prob) scores its clicks only: its box alone
            # cannot know the convention, and must not be pulled from ours
            box_weight = batch["box_weight"].to(device)
            loss = sum(segmentation_loss(logits, target, box_weight if i == 0 else None)
                       for i, logits in enumerate(outputs)) / len(outputs)
            if coarse is not None:  # deep supervision of the decoder (refiner_aux_loss in config.py)
                loss = loss + cfg.refiner_aux_loss * segmentation_loss(coarse, target, box_weight)
            total = loss + ortho_w * orthogonal_regularizer(sam) if ortho_w else loss
            (total / cfg.accumulate).backward()
            if step % cfg.accumulate == 0 or step == len(loader):
                dd.average_gradients(trainable, world)
                if allocator is not None:
                    allocator.update_importance()
                if adapters and cfg.adalora.lambda_grad_clip:
                    clamp_lambda_grads(sam, cfg.adalora.lambda_grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.update()
            losses.append(loss.item())
            clock.take({"kind": "step", "time": time.time(), "step": step})
            peak = memory.peak_mb()  # this step's peak (forward, backward and optimizer)
            epoch_peak = peak if epoch_peak is None or (peak or 0) > epoch_peak else epoch_peak
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if is_main and step % cfg.log_every == 0:
                progress.write("step", epoch=epoch, step=step, steps=len(loader), loss=round(loss.item(), 5),
                               lr={g["name"]: g["lr"] for g in optimizer.param_groups},
                               peak_mem_mb=peak, mem_kind=memory.kind)
        pruned = allocator.on_epoch_end(epoch) if allocator is not None else False
        with ema.applied() if ema is not None else nullcontext():  # best.safetensors holds what is validated
            val_dice = evaluate_dice(sam, val_set, cfg, device, amp, rank, world)
            improved = val_dice > best and epoch >= final_prune  # (the best Dice and patience as ever ...)
            if improved or keep_last and epoch >= final_prune:  # (... the model kept: the last)
                kept = val_dice
            if is_main and (improved or keep_last and epoch >= final_prune):
                save_checkpoint(paths["best"], sam, description, _info(cfg, epoch, val_dice, val_dice, 0,
                                                                          provenance, allocator))
        epochs_done += 1
        if epoch >= final_prune:
            best, bad_epochs = (val_dice, 0) if improved else (best, bad_epochs + 1)
        elapsed = time.time() - t0
        eta = clock.take({"kind": "epoch", "time": time.time(), "epoch": epoch, "epochs": cfg.epochs,
                          "seconds": elapsed})["eta_s"]  # None: known after the next epoch (a one-step first one)
        budget = allocator.current_budget() if allocator is not None else None
        if is_main:
            if ema is not None:  # before last: a resume from last finds an average of the same epoch
                ema.save(paths["ema"], epoch)
            save_checkpoint(paths["last"], sam, description,
                            _info(cfg, epoch, best, val_dice, bad_epochs, provenance, allocator), optimizer)
            progress.write("epoch", epoch=epoch, epochs=cfg.epochs, loss=round(float(np.mean(losses)), 5),
                           val_dice=round(val_dice, 5), best_dice=round(best, 5), rank_budget=budget, pruned=pruned,
                           lr={g["name"]: g["lr"] for g in optimizer.param_groups},
                           seconds=round(elapsed, 2), eta_s=eta, peak_mem_mb=epoch_peak)
            tqdm.write(f"epoch {epoch}/{cfg.epochs}: loss {np.mean(losses):.4f}  val Dice {val_dice:.4f}"
                       + (f"  best {best:.4f}" if best >= 0 else "  best – (the ranks are not final yet)")
                       + (f"  rank budget {budget}" if budget is not None else "")
                       + ("" if epoch >= cfg.epochs else "  ETA after the next epoch" if eta is None
                          else f"  ETA {eta / 60:.1f} min" if eta >= 60 else f"  ETA {eta:.0f} s"))
        dd.barrier(world)
        if cfg.patience and bad_epochs >= cfg.patience:
            if is_main:
                progress.write("early_stop", epoch=epoch, best_dice=round(best, 5))
            break
    if is_main:
        progress.write("done", best_dice=round(best, 5), epochs_run=epochs_done,  # kept: the model's (compare.py)
                       kept_dice=None if kept is None else round(kept, 5))
    return {"best_dice": best, "kept_dice": kept, "epochs_run": epochs_done, "out": str(paths["root"])}


def film_batches(films: int, batch_size: int) -> list[list[int]]:
    """Positions ``0 … films-1`` in batches of at most ``batch_size``, in order; a last batch of one film takes one
    from the batch before it (9 films at batch 8: steps of 7 and 2, not 8 + 1: a one-film step is one film's noisy
    gradient at the full learning rate; never above ``batch_size``, which may be what fits the GPU's memory).
    At batch 2 an odd count keeps its one-film step."""
    batches = [list(range(i, min(i + batch_size, films))) for i in range(0, films, max(1, batch_size))]
    if batch_size > 2 and len(batches) > 1 and len(batches[-1]) == 1:
        batches[-1].insert(0, batches[-2].pop())
    return batches


def kept_epoch(cfg: TrainConfig, n_val: int) -> str:
    """Which epoch a run keeps as ``best.safetensors``: ``cfg.keep``, with ``auto`` the best validation Dice, or the
    last epoch when the validation set holds fewer than :data:`MIN_VAL_FOR_BEST` films (a QA find: on 1 film
    epoch 2 of 8 was kept, 0.923 on held-out films against the last epoch's 0.943)."""
    return cfg.keep if cfg.keep != "auto" else "last" if n_val < MIN_VAL_FOR_BEST else "best"


def _info(cfg: TrainConfig, epoch: int, best: float, val_dice: float, bad_epochs: int, provenance: dict,
          allocator: RankAllocator | None) -> dict:
    """A checkpoint's metadata after ``epoch``."""
    return {"epoch": epoch, "best_dice": best, "bad_epochs": bad_epochs, "val_dice": val_dice,
            "stage": cfg.stage, "config": cfg.to_dict(), "provenance": provenance,
            "rank_state": allocator.state() if allocator is not None else None,
            "metrics": {"val_dice": val_dice, "best_val_dice": best}}


def lr_factor(cfg: TrainConfig, epoch: int) -> float:
    """Multiplier of the base learning rates in ``epoch`` (1-based); a pure function of the
    epoch, so a resumed run continues the same schedule."""
    if cfg.warmup_epochs and epoch <= cfg.warmup_epochs:
        return epoch / (cfg.warmup_epochs + 1)
    if cfg.lr_schedule == "cosine":
        span = max(1, cfg.epochs - cfg.warmup_epochs)
        done = epoch - 1 - cfg.warmup_epochs
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * done / span))
    return 1.0
