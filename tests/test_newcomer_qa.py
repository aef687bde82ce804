"""A newcomer's first hour with the CLI (QA): typos get one line with a hint, every ``--help`` shows its
defaults, ``adaqat info default`` works from any folder, a mistyped input folder leaves nothing behind,
and the evaluate report says what each table column and figure is."""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import pytest

from napari_adaqat.cli import main
from napari_adaqat.model import loading

needs_default = pytest.mark.skipif(not (loading.DEFAULT_MODEL.is_file() and loading.DEFAULT_BASELINE.is_file()),
                                   reason="bundled default model not installed")


def _error(argv: list[str], capsys) -> str:
    """The stderr of a command line that argparse refuses (exit status 2)."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_a_mistyped_command_gets_a_did_you_mean(capsys):
    err = _error(["segmnt", "scans/", "--out", "masks/"], capsys)
    last = err.strip().splitlines()[-1]
    assert last.startswith("adaqat: error: argument COMMAND: invalid choice: 'segmnt'")
    assert "did you mean 'segment'?" in last


def test_a_mistyped_option_is_refused_by_its_own_command_with_a_did_you_mean(capsys):
    err = _error(["segment", "scans/", "--out", "masks/", "--modle", "a.safetensors"], capsys)
    lines = err.strip().splitlines()
    assert lines[0].startswith("usage: adaqat segment ")  # the command's usage, not the top level's
    assert lines[-1] == ("adaqat segment: error: unrecognized arguments: --modle a.safetensors "
                         "(did you mean --model?)")
    err = _error(["evaluate", "--data", "d", "--out", "r", "--baseline", "default", "--splitt", "all"], capsys)
    assert err.strip().splitlines()[-1].endswith("(did you mean --split?)")


def test_a_missing_argument_shows_the_commands_first_example(capsys):
    err = _error(["info"], capsys)
    lines = err.strip().splitlines()
    assert lines[-1].startswith("adaqat info: error: the following arguments are required: FILE_OR_PRESET")
    assert "example: adaqat info default" in lines[-1]
    err = _error(["segment", "scans/"], capsys)
    assert "example: adaqat segment scans/ --out masks/" in err.strip().splitlines()[-1]


@pytest.mark.parametrize("command, option, default", [
    ("evaluate", "--split", "auto"), ("evaluate", "--box", "tight"), ("evaluate", "--device", "auto"),
    ("export", "--profile", "paper"), ("export", "--checkpoint", "best"), ("bench", "--device", "auto"),
])
def test_every_help_shows_the_defaults(command, option, default, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {option} "))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" " * 6))  # argparse wraps
    block = " ".join(" ".join(lines[start:end]).split())
    assert f"default: {default}" in block, block


def test_the_top_level_help_teaches_the_whole_chain_and_evaluate(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "adaqat train --stage all --preset finetune" in out and "adaqat evaluate" in out
    assert "Stage 1 -> Stage 2" in " ".join(out.split())


@needs_default
def test_info_default_is_the_bundled_model_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # not the repository: the epilog's example must not need its paths
    assert main(["info", "default"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert Path(report["file"]) == loading.DEFAULT_MODEL
    assert report["bytes"] == loading.DEFAULT_MODEL.stat().st_size and report["int8_layers"] > 0


def test_segment_of_only_missing_inputs_writes_nothing(tmp_path, capsys):
    """A mistyped folder used to leave --out with a results.csv whose error row stayed in every later run."""
    out = tmp_path / "masks"
    assert main(["segment", str(tmp_path / "sampel"), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"adaqat segment: error: {tmp_path / 'sampel'}: no such file or folder; nothing was written"]
    assert not out.exists()


def test_evaluate_on_a_missing_data_folder_says_only_that(tmp_path, capsys):
    assert main(["evaluate", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data folder not found" in err[0]


@pytest.fixture(scope="module")
def two_film_report(tmp_path_factory, cxr_dir) -> tuple[Path, str]:
    """The bundled INT8 model against its FP32 baseline on 2 real films; (report folder, printed summary)."""
    root = tmp_path_factory.mktemp("newcomer")
    data = root / "data"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
        for path in sorted((cxr_dir / sub).glob("*.png"))[:2]:
            shutil.copy(path, data / sub / path.name)
    out = root / "report"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["evaluate", "--data", str(data), "--split", "all", "--baseline", "default",
                     "--out", str(out), "--device", "cpu"]) == 0
    return out, buffer.getvalue()


@needs_default
def test_the_printed_summary_writes_plus_minus_as_a_person_reads_it(two_film_report):
    printed = two_film_report[1]
    assert "\\u00b1" not in printed and "±0.5 Dice points" in printed
    assert json.loads(printed)["n"] == "2 of 2"


@needs_default
def test_the_report_says_what_each_column_and_figure_is(two_film_report):
    page = (two_film_report[0] / "index.html").read_text()
    text = re.sub(r"\s+", " ", page)
    # Table 2's columns that are not plain words
    assert "reduction: parameters ÷ trainable" in text and "× vs official FP32" in text
    # Fig. 2: what is compared, and both colours of ΔSSIM
    assert "probability map" in text and "red: the baseline is closer" in text
    # each Fig. 3 plot and the paired plot has a caption
    for words in ("Q-Q plot", "histogram", "against |w|", "per layer", "FP32 weight against its INT8 value",
                  "above the diagonal"):
        assert words in text, words
    captions = re.findall(r"<figcaption>([^<]+)</figcaption>", page)
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(captions) == len(images) and all(len(c) > 20 for c in captions)
    assert all(src.startswith("data:image/png;base64,") for src in images)  # index.html alone shows every figure
    md = (two_film_report[0] / "report.md").read_text()
    assert md.count("![") == len(images) and "Q-Q plot" in md


def test_output_piped_into_a_reader_that_stops_early_ends_quietly():
    """`adaqat info default | head` used to end in "adaqat info: error: [Errno 32] Broken pipe"; it ends quietly
    with the shells' status for a writer whose reader left (141), not 0 as if all was written."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "napari_adaqat.cli", "info", "vit_nano"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the command prints (it imports for a second or more)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""
