"""Export a training run, a checkpoint or an official SAM ``.pth`` as one model file.

:func:`export_run` is what ``adaqat export`` does: pick the checkpoint of a run,
record provenance (command, git commit, training config, split), optionally apply
post-training quantization, and write the model file.
"""
from __future__ import annotations

import json
from pathlib import Path

import napari_adaqat._sam_import  # noqa: F401  segment_anything without torchvision (see there)
# isort: split
from segment_anything.modeling import Sam

from napari_adaqat.util.provenance import git_commit
from napari_adaqat.model.formats.checkpoint import load_checkpoint_model
from napari_adaqat.model.formats.model_file import export_model
from napari_adaqat.model.ptq import ptq_from_checkpoint, quantize_post_training
from napari_adaqat.train.paths import chain_note, run_paths

__all__ = ["export_run"]

_PTH = (".pth", ".pt")


def _from_checkpoint(source: Path, checkpoint: str, provenance: dict) -> Sam:
    """Load the checkpoint a run folder (or checkpoint file) names; adds its provenance."""
    ckpt = run_paths(source)[checkpoint] if source.is_dir() else source
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: checkpoint not found"
                                + (chain_note(source, "stage2") if source.is_dir() else ""))
    sam = load_checkpoint_model(ckpt)
    meta = sam.meta
    cfg = meta.get("config", {})
    provenance.update({"method": f"stage {meta.get('stage')} ({cfg.get('mode')}, preset {cfg.get('preset')})",
                       "data": cfg.get("data"), "epoch": meta.get("epoch"), "metrics": meta.get("metrics"),
                       "train_config": cfg, "start": meta.get("provenance")})
    inside_run = run_paths(ckpt.parent.parent)["last"].parent == ckpt.parent  # RUN/checkpoints/NAME
    run = source if source.is_dir() else ckpt.parent.parent if inside_run else None
    split_file = run_paths(run)["split"] if run is not None else None  # a loose checkpoint has no run
    if split_file is not None and split_file.is_file():
        provenance["split"] = json.loads(split_file.read_text())
    return sam


def export_run(source: str | Path, out: str | Path, *, profile: str = "paper", checkpoint: str = "best",
               model_type: str = "vit_b", image_size: int | None = None, qat_variant: str = "full",
               quantize_extra: bool = False, ptq: bool = False, force: bool = False,
               command: str | None = None, recipe: str | Path | None = None,
               scores: str | Path | None = None) -> dict:
    """Write the model file ``out`` from ``source`` and return :func:`export_model`'s summary.

    ``source`` is a run folder (its ``checkpoint``: ``"best"`` or ``"last"``), a training
    checkpoint, or an official SAM ``.pth`` of ``model_type`` (post-training quantization
    with ``qat_variant``/``quantize_extra``).  ``ptq=True`` quantizes an FP32 run the same
    way.  ``command`` is recorded in the provenance.  An existing ``out`` is only replaced
    with ``force=True`` (else :class:`FileExistsError`).  ``recipe`` (a YAML file) and
    ``scores`` (a JSON file, e.g. out-of-fold scores) are copied into the provenance.
    """
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', not {checkpoint!r}")
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to overwrite it")
    source = Path(source)
    provenance = {"command": command, "commit": git_commit(), "source": str(source)}
    if recipe is not None:
        provenance["recipe"] = {"file": Path(recipe).name, "text": Path(recipe).read_text()}
    if scores is not None:
        try:
            provenance["scores"] = json.loads(Path(scores).read_text())
        except ValueError as exc:
            raise ValueError(f"{scores}: not a JSON file of scores ({exc})") from None
    is_pth = source.suffix.lower() in _PTH
    if is_pth:
        sam = ptq_from_checkpoint(source, model_type, image_size, qat_variant, quantize_extra)
        provenance["method"] = "post-training quantization (no training)"
    else:
        sam = _from_checkpoint(source, checkpoint, provenance)
    if ptq and not is_pth:
        quantize_post_training(sam, qat_variant, quantize_extra, source)
        provenance["method"] += " + post-training quantization"
    return export_model(sam, out, profile=profile, spec=sam.spec, metadata={"provenance": provenance})
