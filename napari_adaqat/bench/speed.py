"""Benchmark stock ``segment_anything.SamPredictor`` against our ``BoxPredictor``.

Both sides use the same weights and the same image in one run.  Each side runs in
its own child process (``python -m napari_adaqat.bench.speed --side stock|ours
--workdir DIR``), so its peak RSS is its own.  The parent writes ``config.json`` and
``image.npy`` into DIR; each child writes ``<side>.json`` and ``<side>.npz``
(image embedding and mask), from which the parent computes the agreement.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from napari_adaqat.util.errors import first_line

SIDES = ("stock", "ours", "small")  # "small": ours at BenchConfig.small_size (the 512-px mode), if set
Log = Callable[[str], None]


def log_stderr(message: str) -> None:
    print(f"adaqat bench: {message}", file=sys.stderr, flush=True)


@dataclass
class BenchConfig:
    """What to measure; ``device`` is a concrete device (not 'auto')."""

    model_type: str = "vit_b"
    image_size: int | None = None  # None: the preset's (or the file's) own size
    model: str | None = None  # None: random weights (seeded); 'default': the bundled model; else a file
    image: str | None = None  # None: synthetic 512x512 radiograph
    device: str = "cpu"
    repeats: int = 2
    warmup: int = 1
    prompt_repeats: int = 20
    seed: int = 0
    threads: int | None = None  # torch intra-op threads; None: torch's default
    small_size: int | None = None  # also time our embedding at this input size (e.g. 512), same weights resized
    int8_gemm: bool = False  # ours: an INT8 file's encoder layers as INT8 GEMMs (approximate); else exact


def default_repeats(device: str, model_type: str = "vit_b") -> tuple[int, int, int]:
    """(embed repeats, warmup, prompt repeats): few for the big presets on a CPU (~30 s per ViT-B embedding)."""
    if device != "cpu":
        return 10, 2, 50
    return (2, 1, 20) if model_type in ("vit_b", "vit_l", "vit_h") else (10, 1, 20)


def synthetic_radiograph(size: int = 512, seed: int = 0) -> np.ndarray:
    """A deterministic (size, size) uint8 gray image shaped like a frontal chest X-ray:
    bright body and mediastinum, two dark lung fields, ribs and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    body = np.exp(-(((x - 0.5) / 0.42) ** 6 + ((y - 0.55) / 0.55) ** 6))
    img = 0.15 + 0.55 * body
    for cx in (0.32, 0.68):
        lung = np.exp(-(((x - cx) / 0.14) ** 2 + ((y - 0.48) / 0.27) ** 2) ** 2)
        img -= 0.35 * lung
    ribs = 0.06 * (np.sin(y * 2 * np.pi * 11 + 8 * (x - 0.5) ** 2) > 0.6) * body
    spine = 0.25 * np.exp(-((x - 0.5) / 0.045) ** 2) * body
    img = img + ribs + spine + rng.normal(0.0, 0.02, img.shape).astype(np.float32)
    return np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)


def bench_box(shape: tuple[int, int]) -> np.ndarray:
    """The box prompt: the whole image minus a 2 % margin (as ``adaqat segment`` by default)."""
    h, w = shape
    return np.array([0.02 * w, 0.02 * h, w - 1 - 0.02 * w, h - 1 - 0.02 * h], dtype=np.float64)


def load_input_image(path: str | None, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: the given file (via ``read_image``) or the synthetic radiograph."""
    from napari_adaqat.io import read_image

    gray = synthetic_radiograph(512, seed) if path is None else \
        np.round(np.clip(read_image(path).pixels, 0.0, 1.0) * 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))


# ---------------------------------------------------------------- one side, in a child

def _load_sam(config: BenchConfig, side: str = "stock"):
    """The model a side uses: seeded random weights of the preset, or a model file (ours keeps a model
    file's INT8 weights INT8 in memory, stock gets them dequantized).  The "small" side gets the same
    weights at ``config.small_size`` (position tensors interpolated)."""
    import torch

    size = config.small_size if side == "small" else config.image_size
    if config.model is None:
        from napari_adaqat.model.build import build_sam

        torch.manual_seed(config.seed)
        sam = build_sam(config.model_type, config.image_size)
    else:
        from napari_adaqat.model.loading import load_model

        ours = side == "ours"
        sam = load_model(config.model, model_type=config.model_type, image_size=size, device="cpu",
                            keep_int8=ours, int8_matmul=ours and config.int8_gemm)
    if side == "small" and int(sam.image_encoder.img_size) != size:
        from napari_adaqat.model.build import build_sam, load_state_strict, resize_position_tensors

        small = build_sam(sam.spec, size)
        load_state_strict(small, resize_position_tensors(sam.state_dict(), small), "bench")
        sam = small
    return sam


def _require_plain(sam) -> None:
    """Stock SamPredictor must run plain segment_anything/torch modules (no adapters, no fake-quant)."""
    odd = sorted({type(m).__module__ + "." + type(m).__name__ for m in sam.modules()
                  if not type(m).__module__.startswith(("segment_anything", "torch.nn"))})
    if odd:
        hybrid = any("hybrid_encoder" in name for name in odd)
        raise ValueError(f"stock SamPredictor cannot run this model (has {odd[0]}); " + (
            "the bundled model's encoder is not a SAM ViT: give a ViT model (e.g. 'adaqat export' of a ViT-B run)"
            if hybrid else "export it with 'adaqat export'"))


def weights_digest(sam) -> str:
    """Digest of the plain (FP32) weights; INT8-runtime layers are dequantized one at a time."""
    from napari_adaqat.model.int8_runtime import plain_state_items

    digest = hashlib.sha1()
    for name, tensor in plain_state_items(sam):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensor.detach().cpu().float().numpy()).data)
    return digest.hexdigest()[:16]


def _sync(device: str) -> None:
    import torch

    {"cuda": torch.cuda.synchronize, "mps": torch.mps.synchronize}.get(device.split(":")[0], lambda: None)()


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MiB (see :func:`napari_adaqat.model.runtime.peak_rss_mb`:
    a child's own peak, not the parent's inherited one)."""
    from napari_adaqat.model.runtime import peak_rss_mb as peak

    return peak()


def _stats(times: list[float], scale: float) -> dict[str, float]:
    arr = np.asarray(times, dtype=np.float64) * scale
    return {"median": float(np.median(arr)), "p90": float(np.percentile(arr, 90)), "min": float(arr.min())}


def run_side(side: str, config: BenchConfig, image: np.ndarray, log: Log = log_stderr
             ) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Time one side in this process: returns (result dict, image embedding (C, E, E) float32,
    mask (H, W) bool).  ``config.threads`` is applied by the child process, not here."""
    import torch

    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    device = config.device
    rss_start = peak_rss_mb()
    sam = _load_sam(config, side)
    digest = weights_digest(sam)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    if side == "stock":
        from segment_anything import SamPredictor

        _require_plain(sam)
        predictor = SamPredictor(sam.to(device).eval())

        def embed() -> torch.Tensor:
            predictor.set_image(image)
            return predictor.features

        def prompt(box: np.ndarray) -> np.ndarray:
            return predictor.predict(box=box, multimask_output=False)[0][0]
    else:
        from napari_adaqat.inference.predictor import BoxPredictor, EmbeddingCache

        predictor = BoxPredictor(sam, device, cache=EmbeddingCache(max_items=1))

        def embed() -> torch.Tensor:
            predictor.cache = EmbeddingCache(max_items=1)  # a fresh cache: always compute
            predictor.set_image(image)
            assert not predictor.last_embed_from_cache
            return predictor.cache.get(predictor.key_of(image)).features

        def prompt(box: np.ndarray) -> np.ndarray:
            return predictor.predict(box).masks[0]

    rss_loaded = peak_rss_mb()
    box = bench_box(image.shape[:2])
    embed_times: list[float] = []
    cpu_times: list[float] = []  # process CPU seconds (all threads): less skewed by a busy machine
    with torch.inference_mode():
        for i in range(config.warmup + config.repeats):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            features = embed()
            _sync(device)
            seconds = time.perf_counter() - t0
            cpu_times.append(time.process_time() - c0)
            kind = "warm-up" if i < config.warmup else f"embed {i - config.warmup + 1}/{config.repeats}"
            log(f"[{side}] {kind}: {seconds:.3f} s")
            if i >= config.warmup:
                embed_times.append(seconds)
        prompt_times: list[float] = []
        prompt_cpu: list[float] = []
        for i in range((2 if config.warmup else 0) + config.prompt_repeats):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            mask = prompt(box)
            _sync(device)
            if i >= (2 if config.warmup else 0):
                prompt_times.append(time.perf_counter() - t0)
                prompt_cpu.append(time.process_time() - c0)
    embed_stats, prompt_stats = _stats(embed_times, 1.0), _stats(prompt_times, 1000.0)
    log(f"[{side}] box prompt: median {prompt_stats['median']:.2f} ms over {len(prompt_times)}")
    result: dict[str, Any] = {
        "side": side, "weights_sha1": digest,
        "image_size": int(sam.image_encoder.img_size),
        "model_type": getattr(getattr(sam, "spec", None), "name", None),
        "embed_s": embed_stats["median"], "embed_s_min": embed_stats["min"], "embed_times_s": embed_times,
        "embed_cpu_s": float(np.median(cpu_times[config.warmup:])),
        "prompt_cpu_ms": 1000 * float(np.median(prompt_cpu)),
        "prompt_ms": prompt_stats["median"], "prompt_ms_p90": prompt_stats["p90"],
        "prompt_ms_min": prompt_stats["min"],
        "peak_rss_mb": peak_rss_mb(), "rss_after_start_mb": rss_start, "rss_after_load_mb": rss_loaded,
        "torch_threads": torch.get_num_threads(),
        "int8_matmul": any(getattr(m, "int8_matmul", False) for m in sam.modules()),
    }
    if cuda:
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    feats = features.detach().float().cpu().numpy()[0]
    return result, feats, np.asarray(mask, dtype=bool)


def _child_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one side of 'adaqat bench' (internal; run by the parent)")
    parser.add_argument("--side", choices=SIDES, required=True)
    parser.add_argument("--workdir", required=True, help="holds config.json and image.npy")
    args = parser.parse_args(argv)
    work = Path(args.workdir)
    config = BenchConfig(**json.loads((work / "config.json").read_text()))
    image = np.load(work / "image.npy")
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    try:
        result, feats, mask = run_side(args.side, config, image)
    except (ValueError, OSError, RuntimeError) as exc:  # one line, not a traceback
        log_stderr(f"[{args.side}] error: {first_line(exc)}")
        return 2
    np.savez(work / f"{args.side}.npz", features=feats, mask=mask)
    (work / f"{args.side}.json").write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------- the parent

def _run_child(side: str, work: Path, log: Log) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    log(f"[{side}] starting a separate process")
    cmd = [sys.executable, "-m", "napari_adaqat.bench.speed", "--side", side, "--workdir", str(work)]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL)  # stderr passes through: progress lines
    if proc.returncode != 0 or not (work / f"{side}.json").is_file():
        raise RuntimeError(f"the {side} side failed (exit code {proc.returncode}); see the messages above")
    arrays = np.load(work / f"{side}.npz")
    return json.loads((work / f"{side}.json").read_text()), arrays["features"], arrays["mask"]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else float("nan")


def environment(device: str) -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    def version(name: str) -> str | None:
        return next((d.version for d in md.distributions(name=name)), None)

    env: dict[str, Any] = {
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(), "platform": platform.platform(), "machine": platform.machine(),
        "processor": platform.processor() or None, "python": platform.python_version(),
        "torch": torch.__version__, "segment_anything": version("segment_anything"),
        "napari_adaqat": version("napari-adaqat"), "numpy": np.__version__, "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    return env


def run_bench(config: BenchConfig, log: Log = log_stderr) -> dict[str, Any]:
    """Measure both sides, each in its own process, and return the JSON-ready report."""
    if config.repeats < 1 or config.prompt_repeats < 1 or config.warmup < 0:
        raise ValueError("repeats and prompt repeats must be >= 1, warmup >= 0")
    if config.model is not None:
        from napari_adaqat.model.loading import resolve_model_path

        if not resolve_model_path(config.model).is_file():  # a missing bundled model raises its own line
            raise FileNotFoundError(f"model file not found: {config.model}")
    if config.model is None:
        from napari_adaqat.model.build import get_spec

        get_spec(config.model_type, config.image_size)  # a bad preset fails here, not in a child
    image = load_input_image(config.image, config.seed)
    env = environment(config.device)
    load, cpus = env["load_avg_1m"], env["cpus_usable"] or 1
    if config.device == "cpu" and load is not None and load > 0.5 * cpus:
        log(f"warning: the CPU is busy (load {load:.1f} on {cpus} CPUs); timings will be skewed"
            + ("" if config.threads else ", and multi-threaded torch can slow down many-fold: try --threads 1"))
    started = time.perf_counter()
    sides: dict[str, tuple[dict[str, Any], np.ndarray, np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="adaqat-bench-") as tmp:
        work = Path(tmp)
        (work / "config.json").write_text(json.dumps(dataclasses.asdict(config)))
        np.save(work / "image.npy", image)
        for side in SIDES if config.small_size else SIDES[:2]:
            sides[side] = _run_child(side, work, log)
    (stock, s_feats, s_mask), (ours, o_feats, o_mask) = sides["stock"], sides["ours"]
    union = np.logical_or(s_mask, o_mask).sum()
    both = {f"{pre}{key}": side[key] for pre, side in (("stock_", stock), ("", ours))
            for key in ("embed_s", "prompt_ms", "prompt_ms_p90", "peak_rss_mb", "peak_gpu_mb") if key in side}
    report: dict[str, Any] = {
        "model_type": ours.get("model_type") or config.model_type, "image_size": ours["image_size"],
        "model": config.model or f"random weights (seed {config.seed})",
        "image": config.image or "synthetic 512x512 radiograph", "image_shape": list(image.shape[:2]),
        "box": bench_box(image.shape[:2]).round(2).tolist(), "device": config.device,
        "repeats": config.repeats, "warmup": config.warmup, "prompt_repeats": config.prompt_repeats,
        "same_weights": stock["weights_sha1"] == ours["weights_sha1"],
        **both, "embed_ratio": ours["embed_s"] / stock["embed_s"],
        "stock_embed_cpu_s": stock["embed_cpu_s"], "embed_cpu_s": ours["embed_cpu_s"],
        "embed_cpu_ratio": ours["embed_cpu_s"] / stock["embed_cpu_s"],
        "stock_prompt_cpu_ms": stock["prompt_cpu_ms"], "prompt_cpu_ms": ours["prompt_cpu_ms"],
        "prompt_ratio": ours["prompt_ms"] / stock["prompt_ms"],
        "feature_cosine": cosine(s_feats, o_feats),
        "feature_max_abs_diff": float(np.abs(s_feats.astype(np.float64) - o_feats).max()),
        "mask_iou": float(np.logical_and(s_mask, o_mask).sum() / union) if union else 1.0,
        "mask_identical": bool(np.array_equal(s_mask, o_mask)),
        "torch_threads": ours["torch_threads"], "wall_s": time.perf_counter() - started,
        **env, "sides": {name: side[0] for name, side in sides.items()},
    }
    if "small" in sides:  # the 512-px mode, against stock at the full size
        small = sides["small"][0]
        report.update(small_image_size=small["image_size"], small_embed_s=small["embed_s"],
                      small_embed_ratio=small["embed_s"] / stock["embed_s"], small_prompt_ms=small["prompt_ms"],
                      small_embed_cpu_ratio=small["embed_cpu_s"] / stock["embed_cpu_s"],
                      small_peak_rss_mb=small["peak_rss_mb"])
    return report


def summary_line(report: dict[str, Any]) -> str:
    def mb(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0f} MB"

    return (f"{report['model_type']} @ {report['image_size']} px on {report['device']}: "
            f"embed stock {report['stock_embed_s']:.3f} s, ours {report['embed_s']:.3f} s "
            f"(x{report['embed_ratio']:.2f}); box prompt stock {report['stock_prompt_ms']:.1f} ms, "
            f"ours {report['prompt_ms']:.1f} ms; peak RSS stock {mb(report['stock_peak_rss_mb'])}, "
            f"ours {mb(report['peak_rss_mb'])}; feature cosine {report['feature_cosine']:.6f}, "
            f"mask IoU {report['mask_iou']:.4f}"
            + (f"; ours at {report['small_image_size']} px: embed {report['small_embed_s']:.3f} s "
               f"(x{report['small_embed_ratio']:.2f} of stock)" if "small_embed_s" in report else ""))


if __name__ == "__main__":
    sys.exit(_child_main())
