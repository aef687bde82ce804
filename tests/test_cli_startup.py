"""The CLI as a newcomer first meets it: every ``--help``, ``--version`` and argument error answers without
importing torch, scipy, scikit-image, numpy or napari (help used to take seconds); the defaults it shows
are the engine's own; and a reader that leaves early (``adaqat ... | head``) gets status 141, quietly."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from napari_adaqat.cli import COMMANDS, SIGPIPE_STATUS, build_parser

HEAVY = ("torch", "scipy", "skimage", "numpy", "napari", "PIL", "pydicom", "matplotlib", "segment_anything")

# (argv, exit status, a word of what it printed): help of each command, the version, and the usage errors
FAST = [(["--help"], 0, "examples"), (["--version"], 0, "napari-adaqat"), (["segmnt"], 2, "did you mean 'segment'"),
        (["segment", "scans/"], 2, "example: adaqat segment"),
        (["segment", "scans/", "--ouy", "masks/"], 2, "required: --out; --ouy is no option: did you mean --out?"),
        (["evaluate", "--dat", "D"], 2, "required: --out; example: adaqat evaluate"),  # (--dat: argparse's --data)
        (["evaluate", "--data", "D", "--out", "r", "--modle"],
                                                                2, "did you mean --model"),
        (["info"], 2, "the following arguments are required"), (["export", "run", "--out", "m.safetensors", "-x"], 2, "unrecognized arguments: -x"),
        (["evaluate", "--data", "D", "--out", "r", "--nsd-tol", "-1"], 2,
         "argument --nsd-tol: a distance above 0 (mm, or px without a pixel spacing), not '-1'"),
        (["evaluate", "--data", "D", "--out", "r", "--equivalence-margin", "abc"], 2,
         "argument --equivalence-margin: a Dice margin between 0 and 1 (e.g. 0.005), not 'abc'"),
        (["segment", "scans/", "--out", ""], 2, "--out is empty (an unset shell variable?)"),
        *[([name, "--help"], 0, "usage: adaqat " + name) for name in COMMANDS]]

CHILD = """
import contextlib, io, json, sys
from napari_adaqat.cli import main
results = []
for argv, _, _ in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    results.append([code, out.getvalue() + err.getvalue()])
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps({"results": results, "heavy": heavy}))
"""


def test_help_version_and_argument_errors_import_no_heavy_library():
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(FAST), json.dumps(HEAVY)],
                          capture_output=True, text=True, check=True, timeout=120)
    report = json.loads(done.stdout)
    for (argv, code, words), (got_code, text) in zip(FAST, report["results"]):
        assert got_code == code and words in text, (argv, got_code, text[-300:])
    assert report["heavy"] == [], f"imported just to print help or a usage error: {report['heavy']}"


def test_help_shows_the_engines_own_defaults():
    """The light homes of what help shows are the engine's (one home each), and help prints them."""
    from napari_adaqat.data import boxes
    from napari_adaqat.metrics import stats
    from napari_adaqat.model import adalora, adalora_config, build, modes, spec
    from napari_adaqat.train import config, interactive
    from napari_adaqat.util import defaults

    assert (boxes.CLIP_MARGIN_MIN_PX, boxes.CLIP_MARGIN_FRACTION) == (defaults.CLIP_MARGIN_MIN_PX,
                                                                        defaults.CLIP_MARGIN_FRACTION)
    assert stats.EQUIVALENCE_MARGIN is defaults.EQUIVALENCE_MARGIN and build.PRESETS is spec.PRESETS
    assert adalora.AdaLoRAConfig is adalora_config.AdaLoRAConfig
    assert interactive.DEEPEST_CLICK_PROB is config.DEEPEST_CLICK_PROB
    commands = build_parser().commands
    text = {name: " ".join(parser.format_help().split()) for name, parser in commands.items()}
    assert f"max({boxes.CLIP_MARGIN_MIN_PX:g} px, {100 * boxes.CLIP_MARGIN_FRACTION:g}% of the longer" in text["segment"]
    assert f"(default {stats.EQUIVALENCE_MARGIN})" in text["evaluate"]
    assert all(name in text["info"] and name in text["export"] for name in build.PRESETS)
    assert "--mode {" + ",".join(modes.TRAIN_MODES) + "}" in text["train"]  # choices from the torch-free homes
    assert "--budget {" + ",".join(adalora_config._BUDGETS) + "}" in text["train"]


def _first_bytes_then_leave(argv: list[str]) -> tuple[bytes, int, str]:
    """Run ``adaqat ARGV`` into a 4 KiB pipe whose reader takes the first bytes and closes it, as ``| head -1``."""
    import fcntl

    if not hasattr(fcntl, "F_SETPIPE_SZ"):
        pytest.skip("needs Linux pipes (F_SETPIPE_SZ)")
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)  # output longer than this blocks until the reader reads
    proc = subprocess.Popen([sys.executable, "-m", "napari_adaqat.cli", *argv], stdout=write_end,
                            stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    os.close(write_end)
    first = os.read(read_end, 100)
    os.close(read_end)  # the reader leaves while the command still has output to write
    err = proc.stderr.read().decode()
    return first, proc.wait(timeout=300), err


@pytest.mark.parametrize("argv, starts", [
    (["train", "--help"], b"usage: adaqat train"),  # ~8 KB of help: argparse used to swallow the error (status 0)
    (["info", "default"], b"{"),  # ~34 KB of JSON: the command stops mid-output (status 0 before)
])
def test_a_reader_that_leaves_early_gets_status_141_and_no_noise(argv, starts):
    if argv == ["info", "default"]:
        from napari_adaqat.model import loading

        if not loading.DEFAULT_MODEL.is_file():
            pytest.skip("bundled default model not installed")
    first, code, err = _first_bytes_then_leave(argv)
    assert first.startswith(starts)
    assert code == SIGPIPE_STATUS == 141 and err == "", (code, err)
