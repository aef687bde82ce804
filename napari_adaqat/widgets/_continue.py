"""Qt-free helpers of the Train dock around the core chain (:mod:`napari_adaqat.train.chain`).

* :func:`opening_setup`: what the dock opens on: the ``finetune`` preset on the bundled model when there
  is no GPU and no official SAM checkpoint at hand (with the one-line reason), else ViT-B / ``paper``.
* :func:`continue_chain`: the Continue button, Stage 2 + both exports from a finished Stage-1 run, as a
  :class:`Chain` with ``from_run`` into ``<run>_model`` (resumed when an earlier attempt was stopped).
* :func:`eta_seconds`: the chain's expected wall time on a CPU, from the measured cost of an image-epoch.
* :func:`open_dock_widget`: another open dock of this plugin (Segment, Annotate), or None.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from napari_adaqat.train.chain import Chain, chain_paths
from napari_adaqat.train.paths import run_paths
from napari_adaqat.train.preflight import BUNDLED
from napari_adaqat.widgets._loading_dock import dock_content
from napari_adaqat.widgets._shared import BATCH_DOCK, show_dock

SAM_FILES = ("sam_vit_b_01ec64.pth", "sam_vit_l_0b3195.pth", "sam_vit_h_4b8939.pth")
# CPU seconds per training image and epoch of the bundled model on 2 idle cores, Stage 1 and Stage 2 (their
# validation included), and the rest of a chain once: Python and torch starting, the data check, the model
# loaded, the first epoch's start-up (decoding the films, warming the kernels), Stage 2's start, both exports.
# Before, 0.8 / 0.6 s came from a first epoch (its start-up spread over every epoch) and 40 s of overhead counted
# the start-ups again: 78 s said for a 5-film fine-tune that took 34.5 s.  Now from real chains' parts
# (a 7-film --preset finetune, 1 thread: start 12 s, first-epoch start-up 3 s, Stage 2 start + exports 1.5 s;
# later epochs 0.92 / 0.79 s per film on 1 busy thread) scaled to 16 films in 99-103 s on 2 cores (finetune.yaml).
# Other architectures get no estimate before their first epoch.
CPU_S_PER_IMAGE_EPOCH = {1: 0.6, 2: 0.5}
CPU_OVERHEAD_S = 15.0
VOTE_S_PER_IMAGE_EPOCH = 0.1  # the chain's last step, the bundled model's vote fine-tuned (train/vote_finetune.py)


@dataclass
class Setup:
    """The dock's opening choice: preset, start checkpoint ('' = none), model type and why (one line)."""

    preset: str
    checkpoint: str
    model_type: str
    why: str


def gpu_at_hand() -> bool:
    """True when torch sees a CUDA or MPS device."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(torch.cuda.is_available() or (mps is not None and mps.is_available()))


def sam_checkpoint_at_hand(folders: Optional[list[Path]] = None) -> Optional[Path]:
    """An official SAM checkpoint in the usual places (working folder, home, Downloads, torch hub), or None."""
    home = Path.home()
    folders = folders if folders is not None else [Path.cwd(), home, home / "Downloads",
                                                   home / ".cache" / "torch" / "hub" / "checkpoints"]
    return next((f / n for f in folders for n in SAM_FILES if (f / n).is_file()), None)


def opening_setup(gpu: Optional[bool] = None, sam: Optional[Path] = None, look: bool = True) -> Setup:
    """The finetune preset on the bundled model without a GPU and a SAM checkpoint, else ViT-B / paper."""
    gpu = gpu_at_hand() if gpu is None else gpu
    sam = sam if sam is not None or not look else sam_checkpoint_at_hand()
    if sam is not None:
        return Setup("paper", str(sam), "vit_b", f"Found {sam.name}: the paper's recipe on ViT-B.")
    if gpu:
        return Setup("paper", "", "vit_b", "GPU found: the paper's recipe on ViT-B (choose its SAM checkpoint).")
    return Setup("finetune", BUNDLED, "vit_b", "No GPU and no SAM checkpoint here: fine-tuning the bundled model "
                                              "on the CPU (preset finetune).")


# the core's refusals name command-line options; the dock names its own fields
DOCK_WORDS = (("pass --resume to continue it", "tick Resume to continue it"), ("run without --resume", "untick Resume"),
              ("another --out", "another run folder"), (" (--out RUN)", ""), ("--out", "the run folder"),
              ("--from", "'from run'"))


def dock_words(line: str) -> str:
    """``line`` (a core refusal) with the dock's field names for the command-line options it names."""
    for flag, field in DOCK_WORDS:
        line = line.replace(flag, field)
    return line


def paper_setup() -> Setup:
    """The one-click alternative: ViT-B with the paper's recipe (a SAM checkpoint to choose)."""
    return Setup("paper", "", "vit_b", "ViT-B with the paper's recipe: choose sam_vit_b_01ec64.pth (a GPU helps).")


def eta_seconds(chain: Chain, n_train: int) -> Optional[float]:
    """Expected wall time of ``chain`` on ``n_train`` training images on a 2-core CPU, for a chain that starts
    from the bundled model (None otherwise: the first epoch tells)."""
    stage1 = chain.stage1()
    if stage1 is None or stage1.checkpoint != BUNDLED or n_train <= 0:
        return None
    stage2 = chain.stage2()
    epochs = {1: stage1.epochs, 2: stage2.epochs}
    steps = {s: min(n_train, (cfg.max_steps_per_epoch or n_train) * cfg.batch_size)
             for s, cfg in ((1, stage1), (2, stage2))}
    vote = VOTE_S_PER_IMAGE_EPOCH * stage1.vote_epochs * n_train  # (the bundled model carries a vote)
    return CPU_OVERHEAD_S + sum(CPU_S_PER_IMAGE_EPOCH[s] * epochs[s] * steps[s] for s in (1, 2)) + vote


def busy_cpu_note() -> str:
    """" · this CPU is busy now (…): longer" when the 1-minute load is above 3/4 of the cores (other work shares
    them: two trainings on 2 cores took 5x the idle time in a QA walk), else ""."""
    try:
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
    except (AttributeError, OSError):  # (Windows: no load average)
        return ""
    return f" · this CPU is busy now (load {load:.1f} on {cores} cores): it will take longer" if load > 0.75 * cores else ""


def continue_problem(run: str | Path) -> Optional[str]:
    """Why Stage 2 cannot start from ``run`` (one line), or None."""
    if not str(run or "").strip():
        return "Choose the Stage-1 run folder."
    if not run_paths(run)["best"].is_file():
        return f"{run} holds no Stage-1 model yet (checkpoints/best.safetensors)."
    config = run_paths(run)["config"]
    if config.is_file() and '"stage": 2' in config.read_text():
        return f"{run} is a Stage-2 run; continue from its Stage-1 run."
    return None


def continue_chain(stage1: str | Path, options: dict, *, profile: str = "deploy") -> tuple[Chain, bool]:
    """(the chain from Stage-1 run ``stage1`` into ``<stage1>_model``, resume?) with ``options`` (data, device,
    batch size, step cap, ``stage2.epochs``; the run's own data and preset otherwise)."""
    stage1 = Path(stage1)
    out = stage1.with_name(f"{stage1.name}_model")
    resume = chain_paths(out)["config"].is_file()
    return Chain(out=str(out), options=options, profile=profile, from_run=str(stage1)), resume


def size_text(path: Path, start: Optional[Path] = None) -> str:
    """``path (4.7 MB)``, the path relative to ``start`` when given."""
    name = path.relative_to(start) if start is not None else path
    return f"{name} ({path.stat().st_size / 1e6:.1f} MB)" if path.is_file() else f"{name} (missing)"


def files_text(chain: Chain) -> str:
    """The chain's two model files with their sizes, one a line."""
    paths, root = chain.paths, chain.paths["root"].parent
    return f"INT8: {size_text(paths['int8'], root)}\nFP32 baseline: {size_text(paths['fp32'], root)}"


def hand_to_segment(viewer: Any, exported: Optional[tuple[Path, Path]], plugin: str, title: str) -> tuple[Any, str]:
    """Open (or raise) the Segment dock and give it the (INT8, FP32) pair: (its widget or None, status line)."""
    if exported is None or viewer is None:
        return None, "No exported model yet (Start the chain, or Continue), or no viewer."
    segment = show_dock(viewer, plugin, title)
    segment.use_models(*exported)
    return segment, f"The Segment dock now uses {exported[0].name} (baseline {exported[1].name})."


def hand_to_batch(viewer: Any, exported: Optional[tuple[Path, Path]], plugin: str) -> tuple[Any, str]:
    """Open (or raise) the Batch dock and give it the (INT8, FP32) pair: (its widget or None, status line)."""
    if exported is None or viewer is None:
        return None, "No exported model yet (Start the chain, or Continue), or no viewer."
    batch = show_dock(viewer, plugin, BATCH_DOCK)
    batch.use_models(*exported)
    return batch, f"The Batch dock now segments folders with {exported[0].name}: choose a folder there, then Run."


def hand_to_annotate(viewer: Any, exported: Optional[tuple[Path, Path]], title: str) -> tuple[Any, str]:
    """Give the open Annotate dock the (INT8, FP32) pair: (its widget or None, status line)."""
    if exported is None:
        return None, "No exported model yet (Start the chain, or Continue)."
    annotate = open_dock_widget(viewer, title)
    if annotate is None:
        return None, ("The Annotate dock is not open: open it (Plugins → AdaLoRA-QAT lung segmentation → Annotate "
                      "folder), then click again.")
    annotate.use_model(*exported)
    return annotate, f"The Annotate dock now pre-segments with {exported[0].name}."


def annotate_dataset(viewer: Any, title: str) -> str:
    """The dataset folder of ``viewer``'s open Annotate dock (the folder it opened, else the one typed there),
    '' when none: what the Train dock's 'data folder' starts from."""
    annotate = open_dock_widget(viewer, title) if viewer is not None else None
    folder = getattr(annotate, "folder", None)
    if folder is not None:
        return str(folder.dataset)
    edit = getattr(annotate, "dataset", None)
    return str(getattr(getattr(edit, "line_edit", None), "value", "") or "").strip()


def open_dock_widget(viewer: Any, title: str) -> Any:
    """The widget of ``viewer``'s open dock whose name contains ``title`` (None when none is open)."""
    docks = getattr(getattr(viewer, "window", None), "dock_widgets", None) or {}  # name → inner widget
    found = next((widget for name, widget in docks.items() if title in name), None)
    return None if found is None else dock_content(found)
