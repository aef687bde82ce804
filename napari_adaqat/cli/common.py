"""Options and helpers shared by several sub-commands."""
from __future__ import annotations

import argparse

import torch


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="where to run; auto picks cuda, then mps, then cpu")


def add_model_arguments(parser: argparse.ArgumentParser, baseline: bool = True) -> None:
    parser.add_argument("--model", default=None, metavar="FILE",
                        help="model file (.safetensors from 'adaqat export', or an official SAM .pth); "
                             "default: the bundled demo model")
    if baseline:
        parser.add_argument("--baseline", default=None, metavar="FILE",
                            help="second model to compare with (SSIM agreement); 'default' = the bundled FP32 baseline")
    parser.add_argument("--model-type", default="vit_b",
                        help="architecture of a .pth checkpoint: vit_b, vit_l, vit_h, vit_tiny, vit_nano")


def resolve_device(name: str = "auto") -> str:
    """'auto' → cuda, mps or cpu, whichever is available; an unavailable choice is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA GPU is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("--device mps asked for, but MPS is not available")
    return name
