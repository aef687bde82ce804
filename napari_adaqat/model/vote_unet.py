"""A second opinion on the whole film: a small U-Net whose vote the model's box-alone mask takes (issue 32).

Out of fold, the mean of the model's and an independently trained U-Net's lung probabilities segments better than
either (BENCHMARKS.md, thirteenth and fourteenth sessions): the two networks' errors differ.  A head on the model's
own refiner features does not help: it repeats the model's errors.  So a model file may carry a
:class:`VoteUNet` (``spec.vote_unet``: its width), trained apart on the same films, and the predictor combines:

* a box alone: the mean of the two networks' logits (> 0 ⟺ the mean of their probabilities > 0.5);
* a box with clicks or a mask prompt (a brush edit): the same, except where the model alone decides (:func:`combine`):
  where those prompts flipped the model's box-alone answer, and where the mask shown for the box came from the
  vote against the model and the prompts pushed the model further its own way.  So a click is not outvoted by the
  U-Net's habit, and a click elsewhere leaves the vote's corrections alone;
* points alone (no box), or a mask prompt without a box: the model alone.

The vote is trained apart: a fine-tune's stages leave it out (:func:`detach_vote_unet`), and ``adaqat train --stage
all`` fine-tunes it on the same films as its last step (:mod:`napari_adaqat.train.vote_finetune`).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch
from torch import nn

from napari_adaqat.data.transforms import PreparedImage, prepare_image, to_uint8_rgb
from napari_adaqat.model.logit_grid import FRESH_MODEL_OFFSET, upsample_on_grid
from napari_adaqat.model.mask_refiner import DetailUNet

VOTE_SIZE = 256  # the U-Net's input side: the film resized (longest side) and zero-padded, as the model's input
# its normalisation (SAM's), whatever the model's
VOTE_MEAN, VOTE_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
VOTE_WIDTH = 16  # the first level's channels (16: the U-Net reference's 16-32-64-128-256)
VOTE_LEVELS = 5
VOTE_OFFSET = FRESH_MODEL_OFFSET  # where its logit cells lie, in input pixels (model/logit_grid.py: from scratch)
CLICK_MOVE = 1.0  # logits: how far the prompts must push the model its own way to overrule the vote (combine)


class _BatchNorm(nn.BatchNorm2d):
    """BatchNorm2d without its batch counter (an int64 buffer, used only with ``momentum=None``): every tensor
    of the module is a float, as model files hold; a counter in a loaded state (the U-Net reference's files)
    is ignored."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.num_batches_tracked = None  # type: ignore[assignment]

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:  # type: ignore[no-untyped-def]
        state_dict.pop(prefix + "num_batches_tracked", None)
        nn.Module._load_from_state_dict(self, state_dict, prefix, *args)  # not _NormBase's: it adds the counter


def double_conv(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions with BatchNorm + ReLU (the U-Net reference's blocks)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), _BatchNorm(c_out), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), _BatchNorm(c_out), nn.ReLU(inplace=True))


class VoteUNet(DetailUNet):
    """(B, 3, S, S) normalised, padded image → (B, 1, S, S) lung logits, no prompt; S a multiple of 16."""

    def __init__(self, width: int = VOTE_WIDTH) -> None:
        super().__init__([width * 2 ** i for i in range(VOTE_LEVELS)], block=double_conv)
        self.width = width
        self.head = nn.Conv2d(width, 1, 1)

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> "VoteUNet":
        """The U-Net of a saved state (its width read from the head), loaded, in eval mode."""
        head = state.get("head.weight")
        if head is None or head.dim() != 4:
            raise KeyError("no head.weight (1, width, 1, 1)")
        net = cls(int(head.shape[1]))
        net.load_state_dict(state)
        return net.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(super().forward(x))


def attach_vote_unet(sam: nn.Module, net: VoteUNet) -> nn.Module:
    """Give ``sam`` the vote ``net`` and record its width in ``sam.spec``."""
    param = next(sam.parameters())
    sam.vote_unet = net.to(param.device).eval()  # type: ignore[assignment]
    sam.spec = dataclasses.replace(sam.spec, vote_unet=net.width)  # type: ignore[attr-defined]
    return sam


def detach_vote_unet(sam: nn.Module) -> bool:
    """Take the vote out of ``sam`` (and its spec); False if it had none."""
    if getattr(sam, "vote_unet", None) is None:
        return False
    del sam.vote_unet
    sam.spec = dataclasses.replace(sam.spec, vote_unet=0)  # type: ignore[attr-defined]
    return True


def combine(logits: torch.Tensor, vote: torch.Tensor, alone: torch.Tensor | None = None) -> torch.Tensor:
    """The voted logits (N, H, W), threshold 0 (SAM's ``mask_threshold``): the mean of ``logits`` (N, H, W), the
    model's for the prompt, and ``vote`` (H, W).  With ``alone`` (N, H, W), the model's logits for the same boxes
    alone (the prompt also had clicks or a mask prompt), the model's ``logits`` where (a) their sign differs from
    ``alone``'s (the prompts flipped the model), or (b) the box-alone mask shown, sign(alone + vote), differs from
    the model's answer now, and the prompts moved the model at least :data:`CLICK_MOVE` towards that answer (the
    vote had overruled the model there; the user's prompt sides with the model)."""
    mean = (logits + vote.to(logits.dtype)) / 2
    if alone is None:
        return mean
    now = logits > 0
    flipped = now != (alone > 0)
    pushed = (now != (alone + vote.to(alone.dtype) > 0)) & ((logits - alone) * torch.sign(logits) >= CLICK_MOVE)
    return torch.where(flipped | pushed, logits, mean)


@torch.no_grad()
def vote_logits(net: VoteUNet, rgb: np.ndarray, prepared: PreparedImage | None = None,
                offset: float = VOTE_OFFSET, aspect: float = 1.0) -> torch.Tensor:
    """The vote of ``net`` on a film ``rgb`` (H, W[, 3]) → logits (H, W) float32 at the film's size, read where its
    cells lie (``offset``, model/logit_grid.py); ``prepared``: the film already through ``prepare_image`` at
    :data:`VOTE_SIZE` with its normalisation; ``aspect``: the film's pixel height over width (data/transforms.py)."""
    if prepared is None:
        prepared = prepare_image(to_uint8_rgb(rgb), VOTE_SIZE, VOTE_MEAN, VOTE_STD, aspect)
    param = next(net.parameters())
    low = net(prepared.tensor[None].to(param.device, param.dtype))[0, 0].float().cpu()
    return upsample_on_grid(low, VOTE_SIZE, prepared.input_size, prepared.original_size, offset)


class FilmVote:
    """One film's vote at its size, and the model's box-alone logits of the last boxes (the guard of
    :func:`combine`), computed once per box however many clicks follow."""

    def __init__(self, sam: nn.Module, rgb: np.ndarray, prepared: PreparedImage | None = None,
                 aspect: float = 1.0) -> None:
        """``rgb`` (H, W[, 3]) uint8 film; ``prepared``: the model's own input of it, reused when it is the vote's;
        ``aspect``: the film's pixel height over width, as ``prepared`` was made."""
        same = prepared is not None and prepared.tensor.shape[-1] == VOTE_SIZE and all(
            torch.allclose(t.view(-1).cpu(), torch.tensor(v)) for t, v in ((sam.pixel_mean, VOTE_MEAN),
                                                                            (sam.pixel_std, VOTE_STD)))
        self.logits = vote_logits(sam.vote_unet, rgb, prepared if same else None, aspect=aspect)
        self._alone: tuple[bytes, torch.Tensor] | None = None

    def apply(self, logits: torch.Tensor, boxes: torch.Tensor, extra_prompts: bool,
              box_alone: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The voted logits (N, H, W) of a prediction's ``logits`` for ``boxes`` (N, 4); ``extra_prompts``: it also
        had clicks or a mask prompt, and ``box_alone(b)`` gives the model's logits (M, H, W) for boxes ``b``
        (M, 4) alone (called with each distinct box once: one box shared by N rows of clicks decodes once)."""
        key = boxes.detach().cpu().numpy().tobytes()
        if not extra_prompts:
            self._alone = (key, logits)
            return combine(logits, self.logits)
        if self._alone is None or self._alone[0] != key:
            distinct, row = torch.unique(boxes.cpu(), dim=0, return_inverse=True)  # row indexes CPU logits
            self._alone = (key, box_alone(distinct.to(boxes.device))[row])
        return combine(logits, self.logits, self._alone[1])


def film_vote(sam: nn.Module, rgb: np.ndarray, prepared: PreparedImage | None = None,
              aspect: float = 1.0) -> FilmVote | None:
    """The :class:`FilmVote` of a model with a vote (``aspect``: the film's pixel height over width), else None."""
    return FilmVote(sam, rgb, prepared, aspect) if getattr(sam, "vote_unet", None) is not None else None
