"""Quantization error report: how far the INT8 weights are from the FP32 ones.

For every quantized tensor (the fake-quant modules of a QAT model, or, for an FP32
model, the weights that :func:`qat.quantize_targets` would quantize) the error
``e = w - fake_quant_int8(w)`` is summarised per layer and overall (mean, std, max |e|,
Pearson r between FP32 and INT8 weights), binned against ``|w|``, and compared with a
normal distribution in a Q-Q plot (``scipy.stats.probplot``).  The figures and the files are
:mod:`napari_adaqat.report.quant_figures`'s (this layer draws nothing).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from napari_adaqat.model.qat import fake_quant_int8, int8_scale, quantize_targets, quantized_modules

N_BINS = 20


def _tensors(model: nn.Module, variant: str) -> dict[str, Tensor]:
    """{"<layer>.<param>": fp32 tensor} of the quantized (or to-be-quantized) tensors."""
    mods = quantized_modules(model)
    if mods:
        return {f"{n}.{t}": m._parameters[t].detach().float().cpu()
                for n, m in mods.items() for t in m.quantized_tensor_names()}
    return {f"{n}.weight": model.get_submodule(n)._parameters["weight"].detach().float().cpu()
            for n in quantize_targets(model, variant)}


class _Moments:
    """Streaming float64 sums for mean/std of e and Pearson r of (w, w_q)."""

    def __init__(self) -> None:
        self.n = 0
        self.s = dict.fromkeys(("e", "ee", "w", "ww", "q", "qq", "wq"), 0.0)

    def add(self, w: Tensor, q: Tensor) -> None:
        w, q = w.double().flatten(), q.double().flatten()
        e = w - q
        self.n += w.numel()
        for k, v in (("e", e.sum()), ("ee", (e * e).sum()), ("w", w.sum()), ("ww", (w * w).sum()),
                     ("q", q.sum()), ("qq", (q * q).sum()), ("wq", (w * q).sum())):
            self.s[k] += float(v)

    def summary(self) -> dict:
        n, s = self.n, self.s
        mean = s["e"] / n
        var = max(s["ee"] / n - mean * mean, 0.0)
        cov = s["wq"] / n - (s["w"] / n) * (s["q"] / n)
        vw = s["ww"] / n - (s["w"] / n) ** 2
        vq = s["qq"] / n - (s["q"] / n) ** 2
        r = cov / math.sqrt(vw * vq) if vw > 0 and vq > 0 else float("nan")
        return {"n": n, "error_mean": mean, "error_std": math.sqrt(var), "pearson_r": r}


def quantization_error(model: nn.Module, variant: str = "full", max_points: int = 200_000,
                       seed: int = 0) -> tuple[dict, dict[str, np.ndarray]]:
    """(the report dict, the samples its figures plot: ``w``, ``e`` (sampled weights and errors), ``osm``,
    ``osr`` (Q-Q points), ``edges`` (the |w| bin edges)).

    ``model``: FP32 or QAT SAM (adapters may be injected; ``qkv`` is never included).
    ``max_points`` bounds the random sample used for the Q-Q plot and histograms.
    Keys: ``layers`` (per tensor: n, scale, error_mean, error_std, error_max_abs,
    pearson_r), ``overall``, ``error_vs_abs_w`` (bins), ``qq`` (probplot slope,
    intercept, r), ``prompt_encoder_linears`` (always 0).
    """
    from scipy import stats

    tensors = _tensors(model, variant)
    if not tensors:
        raise ValueError("the model has no quantized (or quantizable) layers")
    total = sum(t.numel() for t in tensors.values())
    gen = torch.Generator().manual_seed(seed)
    overall, layers = _Moments(), {}
    samples_w, samples_e = [], []
    for name, w in tensors.items():
        s = int8_scale(w)
        q = fake_quant_int8(w, s)
        e = (w - q).flatten()
        m = _Moments()
        m.add(w, q)
        overall.add(w, q)
        layers[name] = {**m.summary(), "scale": float(s), "error_max_abs": float(e.abs().max()),
                        "error_max_over_half_scale": float(e.abs().max() / (s / 2))}
        k = min(w.numel(), max(1, round(max_points * w.numel() / total)))
        idx = torch.randperm(w.numel(), generator=gen)[:k]
        samples_w.append(w.flatten()[idx])
        samples_e.append(e[idx])
    sw = torch.cat(samples_w).numpy().astype(np.float64)
    se = torch.cat(samples_e).numpy().astype(np.float64)

    # error vs |w|: equal-count bins (edges from the sample), statistics over all weights
    edges = np.unique(np.quantile(np.abs(sw), np.linspace(0, 1, N_BINS + 1)))
    nb = len(edges) - 1
    cnt, s1, s2, sa = (np.zeros(nb) for _ in range(4))
    edges_t = torch.from_numpy(edges[1:-1])
    for w in tensors.values():
        wf = w.flatten().double()
        e = wf - fake_quant_int8(w).flatten().double()
        b = torch.bucketize(wf.abs(), edges_t).numpy()
        en = e.numpy()
        cnt += np.bincount(b, minlength=nb)[:nb]
        s1 += np.bincount(b, en, minlength=nb)[:nb]
        s2 += np.bincount(b, en * en, minlength=nb)[:nb]
        sa += np.bincount(b, np.abs(en), minlength=nb)[:nb]
    safe = np.maximum(cnt, 1)
    bmean = s1 / safe
    bins = {"abs_w_low": edges[:-1].tolist(), "abs_w_high": edges[1:].tolist(), "count": cnt.astype(int).tolist(),
            "error_mean": bmean.tolist(), "error_std": np.sqrt(np.maximum(s2 / safe - bmean ** 2, 0)).tolist(),
            "abs_error_mean": (sa / safe).tolist()}

    (osm, osr), (slope, intercept, r) = stats.probplot(se, dist="norm")
    report = {
        "n_layers": len(layers), "n_weights": total, "variant_if_fp32": variant,
        "prompt_encoder_linears": 0,
        "note": "symmetric per-tensor INT8 (scale=max|w|/127); errors are bounded by scale/2 per layer, "
                "so a pooled Q-Q plot shows lighter-than-normal tails",
        "overall": {**overall.summary(), "error_max_abs": max(v["error_max_abs"] for v in layers.values())},
        "layers": layers, "error_vs_abs_w": bins,
        "qq": {"dist": "norm", "slope": float(slope), "intercept": float(intercept), "r": float(r),
               "n_sample": int(se.size)},
    }
    return report, {"w": sw, "e": se, "osm": osm, "osr": osr, "edges": edges}
