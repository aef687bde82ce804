"""Building SAM networks from presets, and checkpoint loading.

A :class:`SamSpec` fully describes a SAM-architecture network (image encoder ViT,
prompt encoder, mask decoder).  ``vit_b``/``vit_l``/``vit_h`` carry the official
shapes; ``vit_tiny`` is the CPU-sized preset of the earlier default model v2 and
``vit_nano`` is the smallest preset, for tests.  The specs and :data:`PRESETS` live in
:mod:`napari_adaqat.model.spec` (torch-free) and are re-exported here.
"""
from __future__ import annotations

import dataclasses
import re
import warnings
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from napari_adaqat.model.hybrid_encoder import EMBED_STRIDE, HybridImageEncoder
from napari_adaqat.model.mask_refiner import MaskRefiner, size_multiple
from napari_adaqat.model.vote_unet import VoteUNet, attach_vote_unet
from napari_adaqat.model.spec import (  # noqa: F401  (re-exported: the torch-free home of the presets)
    PRESETS, REFINER_LEVELS, ModelLoadError, SamSpec, preset_names,
)
from napari_adaqat.util.errors import first_line
import napari_adaqat._sam_import  # noqa: F401  segment_anything without torchvision (see there)
# isort: split
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

# Official checkpoint sizes in bytes, used for the measured compression ratio.
OFFICIAL_CHECKPOINT_BYTES = {"vit_b": 375_042_383, "vit_l": 1_249_524_607, "vit_h": 2_564_550_879}


def get_spec(model_type: str | SamSpec, image_size: int | None = None) -> SamSpec:
    """Look up a preset by name, optionally at another input ``image_size``."""
    if isinstance(model_type, SamSpec):
        spec = model_type
    else:
        if model_type not in PRESETS:
            raise ModelLoadError(f"unknown model type {model_type!r}; choose one of {sorted(PRESETS)}")
        spec = PRESETS[model_type]
    if image_size is not None and image_size != spec.image_size:
        if image_size % spec.patch_size:
            raise ModelLoadError(f"image size {image_size} is not a multiple of the patch size {spec.patch_size}")
        spec = dataclasses.replace(spec, image_size=image_size)
    return spec


def build_image_encoder(spec: SamSpec) -> torch.nn.Module:
    """The spec's image encoder: SAM's ViT or the hybrid conv/attention encoder."""
    if spec.encoder == "hybrid":
        return HybridImageEncoder(spec.image_size, tuple(spec.conv_widths), spec.embed_dim, spec.depth,
                                  spec.num_heads, spec.prompt_dim, spec.fine_fusion)
    return ImageEncoderViT(
        depth=spec.depth, embed_dim=spec.embed_dim, img_size=spec.image_size, mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=spec.num_heads,
        patch_size=spec.patch_size, qkv_bias=True, use_rel_pos=True,
        global_attn_indexes=spec.global_attn_indexes, window_size=spec.window_size,
        out_chans=spec.prompt_dim,
    )


def build_sam(spec: SamSpec | str, image_size: int | None = None,
              image_encoder: torch.nn.Module | None = None) -> Sam:
    """Build a SAM network with random weights (in eval mode); ``image_encoder``: one already built
    for this spec (e.g. on the ``meta`` device) instead of a new one."""
    spec = get_spec(spec, image_size)
    emb = spec.embedding_size
    sam = Sam(
        image_encoder=build_image_encoder(spec) if image_encoder is None else image_encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=spec.prompt_dim, image_embedding_size=(emb, emb),
            input_image_size=(spec.image_size, spec.image_size), mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=spec.prompt_dim, mlp_dim=spec.decoder_mlp_dim,
                num_heads=spec.decoder_heads,
            ),
            transformer_dim=spec.prompt_dim, iou_head_depth=3, iou_head_hidden_dim=spec.iou_hidden_dim,
        ),
        pixel_mean=list(spec.pixel_mean), pixel_std=list(spec.pixel_std),
    )
    sam.spec = spec  # type: ignore[attr-defined]  # carried for export and the predictor
    if spec.mask_refiner:
        attach_mask_refiner(sam, spec.mask_refiner, spec.refiner_clicks, spec.refiner_levels)
    if spec.vote_unet:
        attach_vote_unet(sam, VoteUNet(spec.vote_unet))
    return sam.eval()


def attach_mask_refiner(sam: Sam, width: int, clicks: bool = False, levels: int = 4) -> Sam:
    """Give ``sam`` a fresh :class:`MaskRefiner` of ``width`` channels and ``levels`` U-Net levels (the
    identity until trained; :func:`~napari_adaqat.model.forward.refine_logits` applies it), taking clicks
    with ``clicks``, and record it in ``sam.spec``."""
    size = int(sam.image_encoder.img_size)
    if size % size_multiple(levels):
        raise ValueError(f"a {levels}-level mask refiner needs an input size that is a multiple of "
                         f"{size_multiple(levels)}, not {size} px")
    param = next(sam.parameters())
    sam.mask_refiner = MaskRefiner(width, clicks, levels).to(param.device)
    sam.spec = dataclasses.replace(sam.spec, mask_refiner=width, refiner_clicks=clicks,  # type: ignore[attr-defined]
                                   refiner_levels=levels)
    return sam


def add_refiner_clicks(sam: Sam) -> bool:
    """Let ``sam``'s trained mask refiner see the clicks (a zero-started branch: the outputs stay the same
    until it trains) and record it in ``sam.spec``; False if it has no refiner or already takes them."""
    refiner = getattr(sam, "mask_refiner", None)
    if refiner is None or refiner.takes_clicks:
        return False
    refiner.add_click_branch()
    sam.spec = dataclasses.replace(sam.spec, refiner_clicks=True)  # type: ignore[attr-defined]
    return True


def resize_position_tensors(state: dict[str, torch.Tensor], sam: Sam) -> dict[str, torch.Tensor]:
    """Interpolate ``pos_embed`` (1,H,W,C) and global-attention ``rel_pos_*`` ((2S-1),C)
    from the checkpoint's grid to ``sam``'s grid (bicubic / linear, as SAM-Med2D does)."""
    target = sam.state_dict()
    out = dict(state)
    for key, value in state.items():
        if key not in target or target[key].shape == value.shape:
            continue
        want = target[key].shape
        if key.endswith("pos_embed") and value.ndim == 4:
            grid = value.permute(0, 3, 1, 2).float()
            grid = F.interpolate(grid, size=want[1:3], mode="bicubic", align_corners=False)
            out[key] = grid.permute(0, 2, 3, 1).to(value.dtype)
        elif ".rel_pos_" in key and value.ndim == 2 and value.shape[1] == want[1]:
            line = value.T.unsqueeze(0).float()
            line = F.interpolate(line, size=want[0], mode="linear", align_corners=False)
            out[key] = line[0].T.to(value.dtype)
    return out


def check_state_keys(source: str | Path, target: dict[str, torch.Tensor], state: dict[str, torch.Tensor],
                     hint: str = "") -> None:
    """The one key check of a state dict against a model's (``target``: names and shapes only):
    a one-line :class:`ModelLoadError` naming missing/unexpected keys or the first shape mismatch
    (followed by ``hint``)."""
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    if missing or unexpected:
        parts = [f"{len(missing)} missing keys (e.g. {missing[0]})"] if missing else []
        parts += [f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})"] if unexpected else []
        raise ModelLoadError(f"{source}: does not match this model: " + "; ".join(parts))
    for key, value in state.items():
        if tuple(value.shape) != tuple(target[key].shape):
            raise ModelLoadError(f"{source}: shape mismatch for {key}: file {tuple(value.shape)} "
                                 f"vs model {tuple(target[key].shape)}{hint}")


def load_state_strict(sam: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` after :func:`check_state_keys` (one-line errors)."""
    check_state_keys(source, sam.state_dict(), state, hint=" (wrong --model-type?)")
    sam.load_state_dict(state, strict=True)


def _check_torch_file(path: Path) -> None:
    """Refuse, from its leading bytes, a file that cannot be a ``torch.save`` checkpoint (a zip
    archive, or a legacy pickle of protocol 2+), before torch parses it."""
    with path.open("rb") as fh:
        head = fh.read(64)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")) or (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"):
        return
    if not head:
        raise ModelLoadError(f"{path}: empty file (0 bytes); expected a PyTorch checkpoint")
    if len(head) > 8 and head[8:9] == b"{":
        raise ModelLoadError(f"{path}: is a safetensors file, not a PyTorch checkpoint; name it .safetensors")
    try:
        text = head.decode("utf-8")
        what = "holds text" if all(c.isprintable() or c in "\r\n\t" for c in text) else "has unrecognised content"
    except UnicodeDecodeError:
        what = "has unrecognised content"
    raise ModelLoadError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated): the file {what}; "
                         "a .pth/.pt file is a zip archive or a pickle written by torch.save")


def read_torch_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official SAM ``.pth`` safely (``weights_only=True``, CPU)."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: checkpoint file not found")
    _check_torch_file(path)
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # torch's message carries ANSI colours
        if "Weights only load failed" in text:  # the file holds more than tensors: never unpickled
            found = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed| Please|\n\n|$)", text, re.S)
            what = " ".join(found.group(1).split())[:100] if found else "objects other than tensors"
            raise ModelLoadError(f"{path}: refused: the checkpoint holds Python objects besides tensors ({what}) "
                                 "that could run code when loaded; only plain state_dicts of tensors are read") from None
        first = first_line(RuntimeError(text), limit=160) if text else type(exc).__name__
        raise ModelLoadError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated): {first}") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path}: checkpoint is not a state_dict of tensors")
    return state


def load_sam_checkpoint(path: str | Path, model_type: str = "vit_b", image_size: int | None = None) -> Sam:
    """Build ``model_type`` and load an official SAM ``.pth`` into it.

    The position embeddings are interpolated when ``image_size`` differs from the
    size the checkpoint was trained at.
    """
    state = read_torch_checkpoint(path)
    pos = state.get("image_encoder.pos_embed")
    if pos is not None and image_size is None and model_type in PRESETS:
        # keep the checkpoint's own input size unless asked otherwise
        image_size = int(pos.shape[1]) * PRESETS[model_type].patch_size
    sam = build_sam(model_type, image_size)
    state = resize_position_tensors(state, sam)
    load_state_strict(sam, state, str(path))
    return sam


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_breakdown(sam: Sam) -> dict[str, int]:
    """Parameter counts of the whole model and of each part: SAM's three, then the parts a model file may add
    (``mask_refiner``, ``vote_unet``); the parts sum to the total."""
    counts = {"total": count_parameters(sam)}
    counts.update((name, count_parameters(part)) for name, part in sam.named_children())
    return counts


MAX_SPEC = {"embed_dim": 4096, "depth": 128, "num_heads": 64, "image_size": 4096, "prompt_dim": 4096,
            "decoder_mlp_dim": 16384, "iou_hidden_dim": 4096}  # far above ViT-H; refuses absurd metadata


def spec_from_metadata(path: str | Path, spec_dict: object) -> SamSpec:
    """A :class:`SamSpec` from a model file's JSON metadata, checked before anything is built."""
    try:
        if not isinstance(spec_dict, dict):
            raise ValueError("'spec' must be an object")
        spec = SamSpec.from_dict(spec_dict)
        ints = (spec.embed_dim, spec.depth, spec.num_heads, spec.image_size, spec.patch_size,
                spec.prompt_dim, spec.decoder_mlp_dim, spec.decoder_heads, spec.iou_hidden_dim)
        if not all(isinstance(v, int) and v > 0 for v in ints) or spec.image_size % spec.patch_size:
            raise ValueError("sizes must be positive integers and image_size a multiple of patch_size")
        if not isinstance(spec.window_size, int) or spec.window_size < 0:
            raise ValueError("window_size must be a non-negative integer")
        if spec.encoder not in ("vit", "hybrid"):
            raise ValueError(f"unknown encoder {spec.encoder!r}")
        if spec.encoder == "hybrid" and (
                len(spec.conv_widths) != 4 or not all(isinstance(v, int) and 8 <= v <= 4096 and v % 8 == 0
                                                       for v in spec.conv_widths)
                or spec.patch_size != EMBED_STRIDE or spec.image_size % 16):
            raise ValueError("a hybrid encoder needs four conv widths (multiples of 8), patch_size 4 and "
                             "image_size a multiple of 16")
        if not isinstance(spec.fine_fusion, bool) or (spec.fine_fusion and spec.encoder != "hybrid"):
            raise ValueError("fine_fusion must be a boolean, and true only for a hybrid encoder")
        if type(spec.mask_refiner) is not int or not 0 <= spec.mask_refiner <= 64 or (
                spec.mask_refiner and spec.image_size % 8):
            raise ValueError("mask_refiner must be an integer number of channels from 0 (none) to 64 "
                             "(with image_size a multiple of 8)")
        if not isinstance(spec.refiner_clicks, bool) or (spec.refiner_clicks and not spec.mask_refiner):
            raise ValueError("refiner_clicks must be a boolean, and true only with a mask_refiner")
        if type(spec.refiner_levels) is not int or spec.refiner_levels not in REFINER_LEVELS or (
                spec.mask_refiner and spec.image_size % size_multiple(spec.refiner_levels)):
            raise ValueError("refiner_levels must be an integer from 2 to 6 (with image_size a multiple of "
                             "2 ** (levels - 1))")
        if type(spec.logit_offset) not in (int, float) or not -1.0 <= spec.logit_offset <= 1.0:
            raise ValueError("logit_offset must be a number of input pixels from -1 to 1")
        if type(spec.vote_unet) is not int or not 0 <= spec.vote_unet <= 64:
            raise ValueError("vote_unet must be an integer number of channels from 0 (none) to 64")
        if spec.embed_dim % spec.num_heads or len(spec.pixel_mean) != 3 or len(spec.pixel_std) != 3:
            raise ValueError("embed_dim must divide into heads; pixel_mean/std need 3 values")
        too_big = [k for k, limit in MAX_SPEC.items() if getattr(spec, k) > limit]
        if too_big:
            raise ValueError(f"implausibly large {', '.join(too_big)}")
    except (KeyError, TypeError, ValueError) as exc:  # ModelLoadError is a ValueError
        msg = first_line(RuntimeError(str(exc).split(f"{path}: ")[-1])) if str(exc) else type(exc).__name__
        raise ModelLoadError(f"{path}: invalid model spec in metadata: {msg[:200]}") from None
    return spec
