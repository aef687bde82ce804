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


def add_vote(model: str | Path, unet: str | Path, out: str | Path, note: dict | None = None) -> Path:
    """Write ``out``: the model file ``model`` with the U-Net ``unet`` (a :class:`VoteUNet` state, e.g.
    ``benchmarks/unet_reference.py``'s ``unet.safetensors``) as its vote; ``note`` goes into ``meta["vote"]``.
    ``out`` may not be ``model`` (nothing is overwritten in place)."""
    model, out = Path(model), Path(out)
    if out.resolve() == model.resolve():
        raise ValueError(f"{out}: write the model with its vote to a new file, not over {model.name}")
    meta = read_model_metadata(model)
    if meta["spec"].get("vote_unet"):
        raise ModelLoadError(f"{model}: already carries a vote")
    try:
        net = VoteUNet.from_state(load_file(str(unet)))
    except Exception as exc:  # a file of another network: its keys or shapes differ
        raise ModelLoadError(f"{unet}: not a vote U-Net's weights ({str(exc).splitlines()[0][:160]})") from None
    tensors = read_tensors(model)
    dtype = getattr(torch, str(meta.get("float_dtype", "float32")))
    buffers = {name for name, _ in net.named_buffers()}
    for name, value in net.state_dict().items():
        tensors[PREFIX + name] = value.to(torch.float32 if name in buffers else dtype)
    meta["spec"] = {**meta["spec"], "vote_unet": net.width}
    meta["vote"] = {"source": unet.name if isinstance(unet, Path) else Path(unet).name,
                    "parameters": sum(p.numel() for p in net.parameters()), **(note or {})}
    return write_safetensors(out, tensors, meta)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a model file (INT8 or FP32)")
    parser.add_argument("unet", type=Path, help="the vote U-Net's weights (safetensors)")
    parser.add_argument("out", type=Path, help="the new model file")
    parser.add_argument("--note", default="{}", help="JSON object recorded in the file's 'vote' metadata")
    args = parser.parse_args(argv)
    path = add_vote(args.model, args.unet, args.out, json.loads(args.note))
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, with the vote of {args.unet.name}")


if __name__ == "__main__":
    main()
