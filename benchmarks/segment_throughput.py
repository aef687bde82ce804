"""Films per second of ``adaqat segment`` next to the model alone, and the bookkeeping at 100,000 rows.

1. Throughput: N films (from a folder, repeated under new names when N is larger) go through
   :func:`~napari_adaqat.inference.batch.segment_files` (what ``adaqat segment`` runs after loading the
   model: read, segment, write the mask, quality, journal, results.csv) and, in the same process, through
   the model alone (``Engine.segment`` on the same images, read beforehand), paired film by film (after
   each row, the model alone on that film) so that both see the same machine load.  The ratio is segment
   films/s over model films/s.  ``--cli`` also times the whole command in a fresh process (start-up and
   model loading included).
2. Bookkeeping at ``--rows`` synthetic rows (no model): a results.csv of that size as the run's base,
   then the per-film costs of the journal (append + flush), the skip check (set lookup + mask stat), the
   start of a run (recover, begin, load, mask names), one compaction and the final one; the per-film
   share at the compaction rule of :mod:`napari_adaqat.inference.batch` (at most 1/(1 + COMPACT_EVERY)
   of the run's time); and, for comparison, what rewriting the whole results.csv after every film cost.

    python benchmarks/segment_throughput.py /work/shared/data/cxr/permissive_512/images -n 60 \\
        --rows 100000 --out benchmarks/results/segment_throughput.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_adaqat.data.boxes import default_box
from napari_adaqat.inference import batch as B
from napari_adaqat.inference.mask_names import mask_names
from napari_adaqat.inference import journal as J
from napari_adaqat.inference.engine import Engine, ModelRef
from napari_adaqat.io import read_image


def stage_films(source: Path, n: int, folder: Path) -> list[Path]:
    """``n`` films from ``source`` (sorted), symlinked into ``folder`` under unique names."""
    images = sorted(p for p in source.iterdir() if p.suffix.lower() in (".png", ".jpg", ".tif", ".dcm"))
    folder.mkdir(parents=True)
    out = []
    for i in range(n):
        link = folder / f"{i:06d}_{images[i % len(images)].name}"
        link.symlink_to(images[i % len(images)].resolve())
        out.append(link)
    return out


def throughput(films: list[Path], work: Path, device: str, cli: bool, batch_size: int = 8) -> dict:
    """Paired timing: after each row ``segment_files`` yields, the model alone segments the same film
    (its own engine, so no embedding is cached for it), so both share the machine's load minute by minute."""
    engine, alone = Engine(), Engine()
    for e in (engine, alone):
        e.predictor(ModelRef(), device)  # loaded once, as adaqat segment does before its loop
    pixels = {p: read_image(p).pixels for p in films}
    warm = next(iter(pixels.values()))
    alone.segment(warm, default_box(warm.shape[:2]), ModelRef(), None, device)  # warm-up
    rows = B.segment_files(films, ModelRef(), work / f"out{batch_size}", device=device, engine=engine,
                           batch_size=batch_size)
    seg_s = model_s = 0.0
    ok = 0
    while True:
        t0 = time.perf_counter()
        row = next(rows, None)  # the first includes the run's start, the last its final compaction
        seg_s += time.perf_counter() - t0
        if row is None:
            break
        ok += row.status == "ok"
        image = pixels[Path(row.file)]
        t0 = time.perf_counter()
        alone.segment(image, default_box(image.shape[:2]), ModelRef(), None, device)
        model_s += time.perf_counter() - t0
    n = len(films)
    result = {"films": n, "device": device, "batch_size": batch_size, "model_alone_s_per_film": round(model_s / n, 4),
              "segment_s_per_film": round(seg_s / n, 4), "model_films_per_s": round(n / model_s, 3),
              "segment_films_per_s": round(n / seg_s, 3), "ratio": round(model_s / seg_s, 3), "ok_rows": ok}
    if cli:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "napari_adaqat", "segment", str(films[0].parent), "--out",
                        str(work / f"cli{batch_size}"), "--device", device, "--batch-size", str(batch_size)],
                       check=True, capture_output=True)
        wall = time.perf_counter() - t0
        result["cli_wall_s"] = round(wall, 2)
        result["cli_films_per_s_incl_startup"] = round(n / wall, 3)
    return result


def synthetic_row(i: int) -> dict:
    return {"file": f"/archive/patient{i:07d}/study/film{i:07d}.dcm", "status": "ok", "error": "",
            "box": "10.2 10.2 501.8 501.8", "area_px": 81234 + i % 1000, "seconds": 0.1034,
            "mask": f"/out/film{i:07d}_mask.png", "ssim_vs_baseline": "", "quality": 0.9612, "review": 0}


def bookkeeping(rows: int, work: Path, model_s: float, films: int = 2000) -> dict:
    out = work / "book"
    out.mkdir()
    J.write_results(out / J.RESULTS_CSV, (synthetic_row(i) for i in range(rows)))
    size_mb = (out / J.RESULTS_CSV).stat().st_size / 1e6
    t0 = time.perf_counter()
    J.recover(out)
    J.begin(out)
    loaded = J.load_results(out / J.RESULTS_CSV)
    paths = [Path(r["file"]) for r in loaded.values()]
    names = mask_names(paths[:0], loaded, out, ".png")  # existing rows keep their names (no stat needed)
    done_keys = {k for k, r in loaded.items() if r["status"] == "ok"}
    del loaded
    start_s = time.perf_counter() - t0
    journal = J.Journal(out)
    new = [synthetic_row(rows + i) for i in range(films)]
    t0 = time.perf_counter()
    for i, row in enumerate(new):
        _skip = row["file"] in done_keys and (out / names.get(row["file"], "x")).is_file()
        journal.claim(i, row["file"], row["mask"])
        journal.record(i, row)
    per_film_journal = (time.perf_counter() - t0) / films
    journal.close()
    compactions = []
    for _ in range(3):
        t0 = time.perf_counter()
        J.compact(out)
        compactions.append(time.perf_counter() - t0)
    compact_s = statistics.median(compactions)
    t0 = time.perf_counter()
    J.finish(out)
    final_s = time.perf_counter() - t0
    share = 1 / (1 + B.COMPACT_EVERY)  # compaction's worst-case share of the run's time
    periodic_per_film = share * (model_s + per_film_journal) / (1 - share)
    per_film = per_film_journal + periodic_per_film + (start_s + final_s) / rows
    return {"rows": rows, "results_csv_mb": round(size_mb, 1), "journal_per_film_s": round(per_film_journal, 6),
            "run_start_s": round(start_s, 3), "compaction_s": round(compact_s, 3), "final_compaction_s": round(final_s, 3),
            "periodic_compaction_per_film_s_worst": round(periodic_per_film, 6),
            "bookkeeping_per_film_s": round(per_film, 6), "model_s_per_film": round(model_s, 4),
            "without_periodic_compaction_per_film_s": round(per_film - periodic_per_film, 6),
            "without_periodic_fraction_of_model": round((per_film - periodic_per_film) / model_s, 5),
            "bookkeeping_fraction_of_model": round(per_film / model_s, 4),
            "old_rewrite_every_film_s": round(compact_s, 3),
            "old_fraction_of_model": round(compact_s / model_s, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("films", type=Path, help="folder of films")
    p.add_argument("-n", type=int, default=60, help="films to segment (default 60)")
    p.add_argument("--rows", type=int, default=100_000, help="synthetic results.csv rows (default 100000; 0: skip)")
    p.add_argument("--batch-size", type=int, nargs="+", default=[8], metavar="N",
                   help="adaqat segment --batch-size values to time (GPU only; default 8)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cli", action="store_true", help="also time the whole command in a fresh process")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="adaqat-throughput-") as tmp:
        work = Path(tmp)
        films = stage_films(args.films, args.n, work / "films")
        runs = [throughput(films, work, args.device, args.cli, b) for b in args.batch_size]
        result = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "torch_threads": _threads(),
                  "throughput": runs[0] if len(runs) == 1 else runs}
        model_s = runs[0]["model_alone_s_per_film"]
        if args.rows:
            result["bookkeeping"] = bookkeeping(args.rows, work, model_s)
        shutil.rmtree(work / "films")
    result["acceptance"] = {"ratio_at_least_0.85": all(r["ratio"] >= 0.85 for r in runs)}
    if args.rows:
        result["acceptance"]["bookkeeping_below_5_percent"] = result["bookkeeping"]["bookkeeping_fraction_of_model"] < 0.05
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


def _threads() -> int:
    import torch

    return torch.get_num_threads() if "OMP_NUM_THREADS" not in os.environ else int(os.environ["OMP_NUM_THREADS"])


if __name__ == "__main__":
    main()
