"""The one check before a training run starts: ``run()``, ``adaqat train`` and the Train dock all call
:func:`preflight` (the chain adds :func:`~napari_adaqat.train.chain.chain_preflight` on top).

Torch-free, so the dock can check a :class:`TrainConfig` while the user types. Every refusal is one line.
"""
from __future__ import annotations

from pathlib import Path

from napari_adaqat.train.config import TrainConfig
from napari_adaqat.train.paths import chain_note, check_run_folder, run_paths
from napari_adaqat.util.text import did_you_mean

__all__ = ["BUNDLED", "preflight", "start_architecture", "start_checkpoint", "start_weights_problem"]

BUNDLED = "default"  # --checkpoint default: the bundled model's FP32 file, with its architecture


def start_checkpoint(checkpoint: str | None) -> Path | None:
    """The file a ``checkpoint`` option names (``"default"``: the bundled model's FP32 file), or None."""
    if not checkpoint:
        return None
    if str(checkpoint) == BUNDLED:
        from napari_adaqat.model.loading import DEFAULT_BASELINE  # the one place that knows the bundled files

        return DEFAULT_BASELINE
    return Path(checkpoint)


def start_architecture(checkpoint: str | None) -> str | None:
    """The architecture a model file (``.safetensors``; ``"default"``: the bundled one) brings with it (its spec's
    name, e.g. ``hybrid_tiny``: ``model_type`` then does not apply), or None (an official ``.pth``, none, unread)."""
    path = start_checkpoint(checkpoint)
    if path is None or path.suffix.lower() != ".safetensors" or not path.is_file():
        return None
    from napari_adaqat.model.formats.container import read_adaqat_metadata

    try:
        meta = read_adaqat_metadata(path) or {}
    except Exception:  # noqa: BLE001 - the run's own load names a bad file in one line
        return None
    spec = meta.get("spec") or (meta.get("model") or {}).get("spec") or {}  # (a model file's; a checkpoint's)
    name = spec.get("name") if isinstance(spec, dict) else None
    return name if isinstance(name, str) else None


def start_weights_problem(cfg: TrainConfig) -> str | None:
    """Why Stage 1 of ``cfg`` has no start weights (one line), or None."""
    if cfg.stage == 1 and cfg.checkpoint is None and cfg.mode != "full":
        return (f"--mode {cfg.mode} needs pretrained weights: pass --checkpoint default (the bundled model) "
                "or an official SAM .pth (e.g. sam_vit_b_01ec64.pth)")
    return None


def preflight(cfg: TrainConfig, resume: bool = False) -> None:
    """Refuse a run that cannot start, before anything is written.

    Raises ValueError (no data or run folder, no images/ in the data, a missing start checkpoint or
    Stage-1 run, no start weights for an adapter mode) or FileExistsError (``cfg.out`` already holds a
    run and ``resume`` is off), each with one line. Run-folder rules: :func:`check_run_folder`.
    """
    if not cfg.data:
        raise ValueError("Choose a data folder (--data DIR: DIR/images + DIR/masks, or DIR/train|val|test/…)")
    data = Path(cfg.data)
    if not data.is_dir():
        raise ValueError(f"{data}: data folder not found{did_you_mean(str(data))}")
    from napari_adaqat.data.layout import holds_dataset, missing_films_folder, split_folders

    if not (holds_dataset(data) or split_folders(data)):
        raise ValueError(missing_films_folder(data, empty="no images/ folder"))
    if not cfg.out:
        raise ValueError("Choose a run folder (--out RUN)")
    check_run_folder(cfg.out, cfg.data, resume=resume, from_run=cfg.from_run)
    if resume:
        return  # the run's own config and checkpoint are the start
    if cfg.stage == 2:
        if not cfg.from_run and not cfg.checkpoint:
            raise ValueError("Stage 2 needs --from RUN1 (a Stage-1 run folder) or --checkpoint FILE")
        if cfg.from_run and not run_paths(cfg.from_run)["best"].is_file():
            raise ValueError(f"{cfg.from_run} holds no Stage-1 model (checkpoints/best.safetensors)"
                             + chain_note(cfg.from_run))
    if not (cfg.stage == 2 and cfg.from_run):
        ckpt = start_checkpoint(cfg.checkpoint)
        if ckpt is not None and not ckpt.is_file():
            what = "the bundled model's FP32 file is missing; reinstall napari-adaqat" if cfg.checkpoint == BUNDLED \
                else "start checkpoint not found"
            raise ValueError(f"{ckpt}: {what}")
    problem = start_weights_problem(cfg)
    if problem:
        raise ValueError(problem)
