"""A clinician's and an ML engineer's walk through the CLI (QA round 2): a --boxes/--points row whose name fits
two films of a flat folder (``a`` beside ``a.png`` and ``a.dcm``) is refused with a name that works, a row that
names one film exactly wins over a film it fits by stem only, point labels as spreadsheets and napari write them,
and a mistyped command that means a report."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from skimage.io import imread

from napari_adaqat.cli import main
from test_dicom import make_dicom  # tests/ is on sys.path (pytest rootdir-less import)


def segment(*args: str | Path, nano_pth: Path) -> int:
    return main(["segment", *map(str, args), "--model", str(nano_pth), "--model-type", "vit_nano",
                 "--device", "cpu", "--no-clean"])


def rows_of(out: Path) -> dict[str, dict]:
    with (out / "results.csv").open(newline="", encoding="utf-8") as fh:
        return {Path(r["file"]).name: r for r in csv.DictReader(fh)}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def film_and_dicom(folder: Path, cxr_dir: Path, png: str = "a.png", dcm: str = "a.dcm") -> None:
    """``folder/png`` (a real film) and ``folder/dcm`` (the same film as a DICOM file) in one flat folder."""
    folder.mkdir(parents=True, exist_ok=True)
    source = sorted((cxr_dir / "images").glob("*.png"))[0]
    shutil.copy(source, folder / png)
    pixels = imread(source)
    make_dicom(folder / dcm, (pixels if pixels.ndim == 2 else pixels[..., 0]).astype(np.uint16) * 16)


def test_a_stem_that_fits_a_png_and_a_dcm_in_one_flat_folder_is_refused_naming_the_file_name(tmp_path, cxr_dir,
                                                                                            nano_pth, capsys):
    film_and_dicom(tmp_path / "flat", cxr_dir)
    out = tmp_path / "out"
    for option, text in (("--boxes", "file,x0,y0,x1,y1\na,10,10,200,200\n"), ("--points", "a,100,100,1\n")):
        prompts = write(tmp_path / "prompts.csv", text)
        assert segment(tmp_path / "flat", "--out", out, option, prompts, nano_pth=nano_pth) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert "'a' names 2 input files" in err, err
        assert "its file name and extension (e.g. a.dcm) or its full path; nothing was written" in err, err
        assert "full path (e.g." not in err and "or its full path or" not in err, err  # said once, not twice
        assert not out.exists()

    prompts = write(tmp_path / "boxes.csv", "file,x0,y0,x1,y1\na.dcm,10,10,200,200\n")  # what the line says works
    assert segment(tmp_path / "flat", "--out", out, "--boxes", prompts, nano_pth=nano_pth) == 0
    rows = rows_of(out)
    assert rows["a.dcm"]["box"] == "10.0 10.0 200.0 200.0", rows
    assert rows["a.png"]["box"] != rows["a.dcm"]["box"], rows  # the PNG got the default box
    assert "1 input(s) have no box and get the default box: a.png" in capsys.readouterr().err


def test_a_row_that_names_one_film_exactly_is_that_films_not_also_its_namesakes_by_stem(tmp_path, cxr_dir,
                                                                                        nano_pth, capsys):
    film_and_dicom(tmp_path / "flat", cxr_dir, png="IM0001.png", dcm="IM0001")  # an extension-less DICOM export
    out = tmp_path / "out"
    boxes = write(tmp_path / "boxes.csv", "file,x0,y0,x1,y1\nIM0001,10,10,200,200\n")
    assert segment(tmp_path / "flat", "--out", out, "--boxes", boxes, nano_pth=nano_pth) == 0
    rows = rows_of(out)
    assert rows["IM0001"]["box"] == "10.0 10.0 200.0 200.0", rows
    assert rows["IM0001.png"]["box"] != "10.0 10.0 200.0 200.0", rows
    err = capsys.readouterr().err
    assert "1 input(s) have no box and get the default box: IM0001.png" in err, err


def test_one_name_in_two_flat_input_folders_is_refused_naming_a_path_that_fits_one(tmp_path, cxr_dir, nano_pth,
                                                                                  capsys, monkeypatch):
    source = sorted((cxr_dir / "images").glob("*.png"))
    for i, site in enumerate(("siteA", "siteB")):
        (tmp_path / site).mkdir()
        shutil.copy(source[i], tmp_path / site / "a.png")
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "boxes.csv", "file,x0,y0,x1,y1\na.png,10,10,200,200\n")
    assert segment("siteA", "siteB", "--out", "out", "--boxes", "boxes.csv", nano_pth=nano_pth) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "its path from the folder you run in (e.g. siteA/a.png) or its full path" in err, err

    write(tmp_path / "boxes.csv", "file,x0,y0,x1,y1\nsiteA/a.png,10,10,200,200\n")  # what the line says works
    assert segment("siteA", "siteB", "--out", "out", "--boxes", "boxes.csv", nano_pth=nano_pth) == 0
    with (tmp_path / "out" / "results.csv").open(newline="", encoding="utf-8") as fh:
        boxes = {r["file"]: r["box"] for r in csv.DictReader(fh)}
    assert boxes["siteA/a.png"] == "10.0 10.0 200.0 200.0" != boxes["siteB/a.png"], boxes


def test_report_and_other_words_for_a_command_name_the_command_that_does_it(capsys):
    for word, command in (("report", "evaluate"), ("predict", "segment"), ("finetune", "train")):
        with pytest.raises(SystemExit) as exc:
            main([word])
        assert exc.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"to do that, use '{command}': adaqat {command} " in last, last
        assert "did you mean 'export'" not in last, last
    with pytest.raises(SystemExit):  # a prefix of one choice is that choice ('al' is as close to 'val' by ratio)
        main(["evaluate", "--data", "d", "--out", "r", "--split", "al"])
    assert capsys.readouterr().err.strip().endswith("did you mean 'all'?")


def test_a_misspelt_default_model_gets_a_did_you_mean(tmp_path, cxr_dir, capsys):
    for option, value in (("--baseline", "defualt"), ("--model", "Default")):
        code = main(["segment", str(cxr_dir / "images"), "--out", str(tmp_path / "out"), option, value])
        assert code == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"adaqat segment: error: {value}: model file not found; did you mean 'default' "
                       "(the bundled model)?")
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("yes, no", [("yes", "no"), ("True", "False"), ("pos", "neg"), ("1.00", "0.0"),
                                     ("Positive", "NEGATIVE")])
def test_point_labels_as_spreadsheets_and_napari_write_them_are_read(tmp_path, yes, no):
    from napari_adaqat.data import read_points_csv

    points = read_points_csv(write(tmp_path / "p.csv", f"file,x,y,label\na.png,1,2,{yes}\na.png,3,4,{no}\n"))
    assert points["a.png"][1].tolist() == [1, 0]


@pytest.mark.parametrize("label", ["lung", "2", "-1", "maybe"])
def test_other_point_labels_are_refused_naming_what_works(tmp_path, label):
    from napari_adaqat.data import read_points_csv

    with pytest.raises(ValueError) as exc:
        read_points_csv(write(tmp_path / "p.csv", f"file,x,y,label\na.png,1,2,{label}\n"))
    assert str(exc.value) == (f"{tmp_path / 'p.csv'}:2: (a.png) label is '{label}': write 1 (lung) or 0 (not lung); "
                              "true/false, yes/no and pos/neg work too")


def test_a_film_or_a_workbook_given_as_the_csv_is_named_for_what_it_is(tmp_path, cxr_dir, capsys):
    import zipfile

    film = sorted((cxr_dir / "images").glob("*.png"))[0]
    workbook = tmp_path / "boxes.xlsx"
    with zipfile.ZipFile(workbook, "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")
    for option, given, says in (("--points", film, "a PNG image, not a CSV file; give the CSV of prompts here"),
                                ("--boxes", workbook, "an Excel workbook (.xlsx) or another zip file, not a CSV file; "
                                                      "in Excel: File > Save As > CSV UTF-8")):
        assert main(["segment", str(cxr_dir / "images"), "--out", str(tmp_path / "out"), option, str(given)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"adaqat segment: error: {given}: {says}") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_a_film_given_as_data_is_one_line(tmp_path, cxr_dir, capsys):
    film = str(sorted((cxr_dir / "images").glob("*.png"))[0])
    for argv in (["evaluate", "--data", film, "--out", str(tmp_path / "r")],
                 ["train", "--stage", "all", "--preset", "finetune", "--data", film, "--out", str(tmp_path / "run")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.endswith(f"error: --data {film} is a file; give the dataset folder that holds images/ and masks/ "
                            "(see 'adaqat train --help')"), err
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_a_folder_as_out_and_overwriting_its_own_source(tmp_path, nano_pth, capsys):
    folder = tmp_path / "models"
    folder.mkdir()
    for out, force in ((f"{tmp_path / 'new'}/", []), (str(folder), ["--force"])):
        assert main(["export", str(nano_pth), "--model-type", "vit_nano", "--out", out, *force]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"adaqat export: error: --out {out} is a folder; give the model file to write, e.g. "
                       f"--out {Path(out) / 'model_int8.safetensors'}"), err
    assert not (tmp_path / "new").exists() and list(folder.iterdir()) == []
    before = nano_pth.read_bytes()
    assert main(["export", str(nano_pth), "--model-type", "vit_nano", "--out", str(nano_pth), "--force"]) == 2
    assert "is the file being exported; choose another --out" in capsys.readouterr().err
    assert nano_pth.read_bytes() == before


def test_a_finished_chain_says_what_it_made_and_the_commands_that_come_next(tmp_path, dataset, capsys, caplog):
    import shlex

    run = tmp_path / "run"
    assert main(["train", "--stage", "all", "--preset", "finetune", "--checkpoint", "default", "--data", str(dataset),
                 "--out", str(run), "--epochs", "2", "--qat-epochs", "1", "--batch-size", "2",
                 "--max-steps-per-epoch", "1", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert "epoch 1/2: " in out and " ETA " in out.split("epoch 1/2: ")[1].splitlines()[0], out  # time left
    assert " ETA " not in out.split("epoch 2/2: ")[1].splitlines()[0], out
    said = [r for r in caplog.records if "the start model's vote (a U-Net apart) is left out of this stage's model: "
            "--stage all fine-tunes it on the same films as its last step" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "WARNING"  # Stage 1 says it; Stage 2 starts from Stage 1's
    lines = err.strip().splitlines()
    assert lines[-3].startswith("adaqat train: the kept model's validation Dice 0.")
    assert str(run / "model_int8.safetensors") in lines[-3]
    assert lines[-2].startswith(f"next: adaqat segment FILMS --model {run / 'model_int8.safetensors'} --out masks/")
    evaluate = lines[-1].removeprefix("  or: ").split("  #")[0]
    assert evaluate.startswith("adaqat evaluate ") and "--split val" in evaluate, evaluate  # no test films here
    report = tmp_path / "report"
    assert main([*shlex.split(evaluate)[1:-1], str(report)]) == 0  # the printed command runs as it is
    assert (report / "index.html").is_file()


def test_a_box_csv_without_a_header_is_read_as_a_point_csv_is(tmp_path):
    from napari_adaqat.data import read_boxes_csv

    boxes = read_boxes_csv(write(tmp_path / "b.csv", "a.png,10,20,300,400\nb.png,1,2,30,40\n"))
    assert boxes["a.png"].tolist() == [10, 20, 300, 400] and boxes["b.png"].tolist() == [1, 2, 30, 40]


def test_info_with_a_misspelt_name_says_what_was_meant(capsys):
    for given, meant in (("defualt", "default"), ("vit_bb", "vit_b")):
        assert main(["info", given]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"adaqat info: error: {given}: no such file") and err.endswith(f"did you mean {meant!r}?")


def test_bench_refuses_a_folder_or_someone_elses_file_as_out_before_timing_anything(tmp_path, capsys):
    mine = write(tmp_path / "notes.json", '{"mine": 1}\n')
    for out, says in ((str(tmp_path), "is a folder; give the JSON file to write"),
                      (str(mine), "exists and is not an adaqat bench report; choose another file")):
        assert main(["bench", "--model-type", "vit_nano", "--image-size", "64", "--out", out]) == 2
        assert capsys.readouterr().err.strip() == f"adaqat bench: error: --out {out} {says}" + (
            f", e.g. --out {Path(out) / 'bench.json'}" if "folder" in says else "")
    assert mine.read_text() == '{"mine": 1}\n'


def test_train_never_replaces_a_config_or_split_file_of_the_users_in_out(tmp_path, dataset, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    write(out / "config.json", '{"my": "settings"}\n')
    write(out / "split.json", '{"train": ["a"], "val": [], "test": []}\n')
    assert main(["train", "--stage", "1", "--preset", "finetune", "--checkpoint", "default", "--data", str(dataset),
                 "--out", str(out), "--epochs", "1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"adaqat train: error: --out {out} holds config.json, split.json not written by adaqat train, "
                   "which a run would replace; choose another --out folder"), err
    assert (out / "config.json").read_text() == '{"my": "settings"}\n'
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "split.json"]


def test_a_report_without_a_baseline_does_not_describe_one_in_fig2(tmp_path, cxr_dir, nano_pth, capsys):
    import re

    report = tmp_path / "report"
    assert main(["evaluate", "--data", str(cxr_dir), "--split", "all", "--model", str(nano_pth), "--model-type",
                 "vit_nano", "--out", str(report), "--device", "cpu"]) == 0
    text = re.sub(r"\s+", " ", (report / "report.md").read_text(encoding="utf-8"))
    fig2 = text.split("## Fig. 2")[1].split("##")[0]
    assert "worst image by the model's Dice" in fig2 and "(No baseline: no ΔSSIM.)" in fig2, fig2
    assert "baseline's Dice" not in fig2 and "red: the baseline is closer" not in fig2, fig2


@pytest.mark.parametrize("kind", ["png", "dicom"])
def test_a_film_given_as_the_model_is_named_a_film(tmp_path, cxr_dir, capsys, kind):
    """Before: 'not a safetensors file, or truncated (bad header length)' for the film a newcomer put after --model."""
    film = sorted((cxr_dir / "images").glob("*.png"))[0]
    if kind == "dicom":
        film = make_dicom(tmp_path / "film.dcm", np.zeros((64, 64), np.uint16))
    assert main(["segment", str(film), "--model", str(film), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"is a {kind.upper()} image, not a model file" in err and len(err.splitlines()) == 1


def test_a_csv_from_a_windows_pc_names_films_in_any_case(tmp_path, cxr_dir, nano_pth, capsys):
    """Before: 'IMG001.PNG' in the CSV matched no input (a warning) and img001.png got the default box."""
    scans = tmp_path / "scans"
    scans.mkdir()
    films = sorted((cxr_dir / "images").glob("*.png"))[:2]
    shutil.copy(films[0], scans / "img001.png")
    shutil.copy(films[1], scans / "Img002.png")
    boxes = write(tmp_path / "boxes.csv", "file,x0,y0,x1,y1\nIMG001.PNG,10,20,200,300\nimg002,12,22,202,302\n")
    assert segment(scans, "--out", tmp_path / "out", "--boxes", boxes, nano_pth=nano_pth) == 0
    rows = rows_of(tmp_path / "out")
    assert rows["img001.png"]["box"] == "10.0 20.0 200.0 300.0" and rows["Img002.png"]["box"] == "12.0 22.0 202.0 302.0"
    err = capsys.readouterr().err
    assert "name no input" not in err and "have no box" not in err


def test_a_csv_name_that_fits_two_films_only_by_case_is_refused(tmp_path, cxr_dir, nano_pth, capsys):
    scans = tmp_path / "scans"
    scans.mkdir()
    film = sorted((cxr_dir / "images").glob("*.png"))[0]
    for name in ("a.png", "A.png"):
        shutil.copy(film, scans / name)
    boxes = write(tmp_path / "boxes.csv", "file,x0,y0,x1,y1\na.PNG,10,20,200,300\n")
    assert segment(scans, "--out", tmp_path / "out", "--boxes", boxes, nano_pth=nano_pth) == 2
    assert "names 2 input files" in capsys.readouterr().err and not (tmp_path / "out" / "results.csv").exists()


def test_a_film_with_points_and_no_box_is_not_said_to_get_the_default_box(tmp_path, cxr_dir, nano_pth, capsys):
    """Before: 'input(s) have no box and get the default box: b.png' for a film segmented from its points alone."""
    scans = tmp_path / "scans"
    scans.mkdir()
    films = sorted((cxr_dir / "images").glob("*.png"))[:3]
    for name, film in zip(("a.png", "b.png", "c.png"), films):
        shutil.copy(film, scans / name)
    boxes = write(tmp_path / "boxes.csv", "file,x0,y0,x1,y1\na.png,10,20,200,300\n")
    points = write(tmp_path / "points.csv", "file,x,y,label\nb.png,150,260,1\nc.png,150,260,0\n")
    assert segment(scans, "--out", tmp_path / "out", "--boxes", boxes, "--points", points, nano_pth=nano_pth) == 0
    err = capsys.readouterr().err
    assert "1 input(s) have no box and get the default box: c.png" in err  # only negative points: the default box
    assert "have no points" not in err  # (the --boxes line names the films of the default box)
    assert rows_of(tmp_path / "out")["b.png"]["box"] == ""
    # --points alone: a film without a row is named, as --boxes names its own (a QA find: it said nothing)
    assert segment(scans, "--out", tmp_path / "out2", "--points", points, nano_pth=nano_pth) == 0
    assert "points.csv: 1 input(s) have no points and get the default box: a.png" in capsys.readouterr().err
