"""Put a trained :class:`~napari_adaqat.model.vote_unet.VoteUNet` into a model file (issue 32).

The model's own tensors are copied as stored (INT8 stays INT8, bit for bit); the vote's weights are added under
``vote_unet.`` in the file's float dtype (its BatchNorm statistics in FP32, as every buffer), the spec records
``vote_unet``: its width and the metadata's ``vote`` section says what was added.

    python -m napari_adaqat.model.formats.vote_file MODEL UNET OUT [--note '{"epochs": 60}']
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from napari_adaqat.model.build import ModelLoadError
from napari_adaqat.model.formats.container import read_tensors, write_safetensors
from napari_adaqat.model.formats.model_file import read_model_metadata
from napari_adaqat.model.vote_unet import VoteUNet

PREFIX = "vote_unet."
FLOAT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
HELP = """Write a copy of a model file that carries a trained vote U-Net (a second opinion on a box alone; clicks
always win).  MODEL is not changed and OUT must not exist.  Train the vote first:

  python -m napari_adaqat.train.vote_train my_films/ runs/vote --epochs 60 --width 8
  python -m napari_adaqat.model.formats.vote_file my_model.safetensors runs/vote/unet.safetensors my_model_vote.safetensors
  adaqat segment film.png --model my_model_vote.safetensors --out masks/
"""


def add_vote(model: str | Path, unet: str | Path, out: str | Path, note: dict | None = None) -> Path:
    """Write ``out``: the model file ``model`` with the U-Net ``unet`` (a :class:`VoteUNet` state, e.g.
    ``benchmarks/unet_reference.py``'s ``unet.safetensors``) as its vote; ``note`` goes into ``meta["vote"]``.
    ``out`` must not exist yet (nothing is overwritten)."""
    model, unet, out = Path(model), Path(unet), Path(out)
    if unet.is_dir() and (unet / "unet.safetensors").is_file():  # vote_train's OUT folder: its weights
        unet = unet / "unet.safetensors"
    if out.exists():
        raise ValueError(f"{out} exists; name a new file for the model with its vote (nothing is overwritten)")
    if not unet.is_file():
        raise ValueError(f"{unet}: no such file")
    if (unet.parent / "resume.safetensors").is_file() and not (unet.parent / "unet.json").is_file():
        raise ValueError(f"{unet}: its training run in {unet.parent} is not finished; run vote_train on it again")
    meta = read_model_metadata(model)
    if meta["spec"].get("vote_unet"):
        raise ModelLoadError(f"{model}: already carries a vote")
    try:
        net = VoteUNet.from_state(load_file(str(unet)))
    except Exception as exc:  # a file of another network: its keys or shapes differ
        raise ModelLoadError(f"{unet}: not a vote U-Net's weights ({str(exc).splitlines()[0][:160]})") from None
    tensors = read_tensors(model)
    dtype = FLOAT_DTYPES.get(str(meta.get("float_dtype", "float32")))
    if dtype is None:
        raise ModelLoadError(f"{model}: unknown float_dtype {meta.get('float_dtype')!r} in its metadata")
    buffers = {name for name, _ in net.named_buffers()}
    for name, value in net.state_dict().items():
        tensors[PREFIX + name] = value.to(torch.float32 if name in buffers else dtype)
    meta["spec"] = {**meta["spec"], "vote_unet": net.width}
    meta["vote"] = {**(note or {}), "source": unet.name, "width": net.width,
                    "parameters": sum(p.numel() for p in net.parameters())}
    return write_safetensors(out, tensors, meta)


def remove_vote(model: str | Path, out: str | Path, spec_drop: tuple[str, ...] = ()) -> Path:
    """Write ``out``: the model file ``model`` without its vote (its own tensors as stored; the spec's ``vote_unet``,
    the fields ``spec_drop`` and the ``vote`` section taken out): what the model alone answers."""
    meta = read_model_metadata(model)
    meta["spec"] = {k: v for k, v in meta["spec"].items() if k not in ("vote_unet", *spec_drop)}
    meta.pop("vote", None)
    tensors = {k: v for k, v in read_tensors(model).items() if not k.startswith(PREFIX)}
    return write_safetensors(out, tensors, meta)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m napari_adaqat.model.formats.vote_file", description=HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a model file (INT8 or FP32)")
    parser.add_argument("unet", type=Path, help="the vote U-Net's weights: vote_train's OUT/unet.safetensors (or OUT)")
    parser.add_argument("out", type=Path, help="the new model file")
    parser.add_argument("--note", default="{}", help="JSON object recorded in the file's 'vote' metadata")
    args = parser.parse_args(argv)
    try:
        try:
            note = json.loads(args.note)
        except ValueError as exc:
            raise ValueError(f"--note is not JSON ({exc}); e.g. --note '{{\"epochs\": 60}}'") from None
        if not isinstance(note, dict):
            raise ValueError("--note must be a JSON object")
        path = add_vote(args.model, args.unet, args.out, note)
    except ValueError as exc:  # ModelLoadError and json's errors are ValueErrors: one line each
        parser.exit(2, f"{parser.prog}: error: {str(exc).splitlines()[0]}\n")
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, with the vote of {args.unet}")


if __name__ == "__main__":
    main()
