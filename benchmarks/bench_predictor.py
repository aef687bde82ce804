"""Stock SamPredictor vs our BoxPredictor: a thin script around ``adaqat bench``.

    python benchmarks/bench_predictor.py --model-type vit_tiny --image-size 256 --out bench.json
"""
from __future__ import annotations

import argparse
import sys

from napari_adaqat.cli import bench_cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_predictor.py")
    bench_cmd.add_arguments(parser)
    return bench_cmd.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
