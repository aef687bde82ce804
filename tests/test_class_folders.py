"""Public sets that keep a folder per class, each with its films and masks: COVID-19 Radiography's root
(COVID/ Normal/ …, each images/ + masks/) and COVID-QU-Ex's Train/COVID-19/ Non-COVID/ Normal/ (each images/ +
lung masks/), read as one dataset; and the seeded cut made over the films that have masks only."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from napari_adaqat.cli import main
from napari_adaqat.data import DataError, discover, load_pair
from napari_adaqat.data.check import check_data
from napari_adaqat.data.layout import class_folders, layout_note, pair_places


def _class(folder: Path, films: list[Path], cxr_dir: Path, masks: str = "masks", prefix: str = "") -> None:
    """``folder/images/PREFIXk.png`` with ``folder/MASKS/PREFIXk.png``."""
    for sub in ("images", masks):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for k, film in enumerate(films, start=1):
        shutil.copy(film, folder / "images" / f"{prefix}{k}.png")
        shutil.copy(cxr_dir / "masks" / film.name, folder / masks / f"{prefix}{k}.png")


def _films(cxr_dir: Path) -> list[Path]:
    return sorted((cxr_dir / "images").glob("*.png"))


def test_covid19_radiography_root_reads_its_class_folders_as_one_dataset(tmp_path, cxr_dir, capsys):
    root = tmp_path / "COVID-19_Radiography_Dataset"
    films = _films(cxr_dir)
    _class(root / "COVID", films[:2], cxr_dir, prefix="COVID-")
    _class(root / "Normal", films[2:4], cxr_dir, prefix="Normal-")
    (root / "COVID.metadata.xlsx").write_bytes(b"PK\x03\x04")
    assert class_folders(root) == [root / "COVID", root / "Normal"]
    assert layout_note(root) == ("films and masks from 2 class folder(s) of COVID-19_Radiography_Dataset/ "
                                 "(COVID/, Normal/), each images/ and masks/")
    pairs, split = discover(root)
    assert sorted(pairs) == ["COVID-1", "COVID-2", "Normal-1", "Normal-2"]
    assert pairs["Normal-2"].mask == root / "Normal" / "masks" / "Normal-2.png"
    assert sorted(sum(split.values(), [])) == sorted(pairs)
    (root / "Viral Pneumonia" / "images").mkdir(parents=True)  # a class whose masks were not unpacked: said
    shutil.copy(films[0], root / "Viral Pneumonia" / "images" / "Viral Pneumonia-1.png")
    assert layout_note(root).endswith("(COVID/, Normal/), each images/ and masks/; left out, films without a "
                                      "masks folder: Viral Pneumonia/")
    assert sorted(discover(root)[0]) == sorted(pairs)
    film, mask = load_pair(pairs["COVID-1"])
    assert film.shape == mask.shape and mask.any()

    out = tmp_path / "report"
    assert main(["evaluate", "--data", str(root), "--split", "all", "--out", str(out), "--device", "cpu"]) == 0
    assert "note: films and masks from 2 class folder(s)" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 4 and summary["model"]["dice"]["median"] > 0.9


def test_covid_qu_ex_split_folders_of_class_folders_with_lung_masks(tmp_path, cxr_dir):
    """Lung Segmentation Data/Train|Val|Test/COVID-19|Normal/images + lung masks (+ infection masks beside)."""
    root = tmp_path / "Lung Segmentation Data"
    films = _films(cxr_dir)
    for part, chosen in (("Train", films[:2]), ("Val", films[2:3]), ("Test", films[3:4])):
        _class(root / part / "COVID-19", chosen, cxr_dir, masks="lung masks", prefix=f"covid_{part}_")
        _class(root / part / "Normal", chosen, cxr_dir, masks="lung masks", prefix=f"Normal_{part}_")
        (root / part / "COVID-19" / "infection masks").mkdir()
    assert pair_places(root)[1:] == [root / p / c for p in ("Train", "Val", "Test") for c in ("COVID-19", "Normal")]
    pairs, split = discover(root)
    assert len(pairs) == 8 and len(split["train"]) == 4 and split["val"] == ["Normal_Val_1", "covid_Val_1"]
    assert pairs["covid_Test_1"].mask == root / "Test" / "COVID-19" / "lung masks" / "covid_Test_1.png"
    report = check_data(root)
    assert report.source == "layout" and report.n_masks == 8 and not report.bad and report.error is None
    assert "likewise in each split folder" in layout_note(root)


def test_the_same_film_name_in_two_class_folders_is_refused_in_one_line(tmp_path, cxr_dir):
    root = tmp_path / "set"
    films = _films(cxr_dir)
    _class(root / "COVID", films[:1], cxr_dir)
    _class(root / "Normal", films[1:2], cxr_dir)
    with pytest.raises(DataError, match=r"Normal/images/1.png: a film of the same name is in COVID/ too"):
        discover(root)


def test_a_root_of_class_folders_is_a_data_folder_for_training(tmp_path, cxr_dir):
    """train's preflight takes it (before: 'no images/ folder')."""
    from napari_adaqat.train.config import TrainConfig
    from napari_adaqat.train.preflight import preflight

    root = tmp_path / "set"
    _class(root / "COVID", _films(cxr_dir)[:2], cxr_dir, prefix="c")
    _class(root / "Normal", _films(cxr_dir)[2:], cxr_dir, prefix="n")
    preflight(TrainConfig(data=str(root), out=str(tmp_path / "run"), checkpoint="default"))
    shutil.rmtree(root / "COVID")
    shutil.rmtree(root / "Normal" / "masks")  # a class folder without masks is no dataset
    with pytest.raises(ValueError, match=r"set: no images/ folder \(expected .*\(found Normal/\)\)"):
        preflight(TrainConfig(data=str(root), out=str(tmp_path / "run2"), checkpoint="default"))


def test_the_seeded_cut_is_over_the_films_with_masks(tmp_path, cxr_dir):
    """Shenzhen: 662 films, 566 masks. The films without a mask go to train, where the check names them; the cut of
    those with masks is the one a folder of only them gets."""
    root = tmp_path / "set"
    masked = tmp_path / "masked"
    films = sorted((cxr_dir / "images").glob("*.png"))
    for k in range(30):
        film = films[k % len(films)]
        for place in (root, masked):
            (place / "images").mkdir(parents=True, exist_ok=True)
            (place / "masks").mkdir(exist_ok=True)
        has_mask = k % 3 != 0
        for place in ((root, masked) if has_mask else (root,)):
            shutil.copy(film, place / "images" / f"f{k:02d}.png")
            if has_mask:
                shutil.copy(cxr_dir / "masks" / film.name, place / "masks" / f"f{k:02d}.png")
    pairs, split = discover(root)
    _, masked_split = discover(masked)
    without = sorted(name for name, pair in pairs.items() if pair.mask is None)
    assert len(without) == 10
    assert split["val"] == masked_split["val"] and split["test"] == masked_split["test"]
    assert split["train"] == sorted(masked_split["train"] + without)
    assert not set(without) & set(split["val"] + split["test"])


def test_films_with_their_masks_beside_them_in_one_folder(tmp_path, cxr_dir, capsys):
    """A Kaggle habit: a.png beside a_mask.png in one folder given as --data; a film without one is named."""
    root = tmp_path / "lungs"
    root.mkdir()
    films = _films(cxr_dir)
    for k, film in enumerate(films):
        shutil.copy(film, root / f"p{k}.png")
        if k:
            shutil.copy(cxr_dir / "masks" / film.name, root / f"p{k}_mask.png")
    assert layout_note(root) == "films and their masks side by side in lungs/ (a mask named as its film + _mask, _seg …)"
    pairs, _ = discover(root)
    assert sorted(pairs) == [f"p{k}" for k in range(len(films))]
    assert pairs["p1"].mask == root / "p1_mask.png" and pairs["p0"].mask is None
    with pytest.raises(DataError, match=r"p0.png: missing mask \(expected p0_mask.png beside it\)"):
        load_pair(pairs["p0"])
    out = tmp_path / "report"
    assert main(["evaluate", "--data", str(root), "--split", "all", "--out", str(out), "--device", "cpu"]) == 0
    assert "note: films and their masks side by side in lungs/" in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["n"] == len(films) - 1


def test_an_adaqat_output_beside_its_films_is_never_read_as_references(tmp_path, cxr_dir):
    root = tmp_path / "out"
    root.mkdir()
    film = _films(cxr_dir)[0]
    shutil.copy(film, root / "a.png")
    shutil.copy(cxr_dir / "masks" / film.name, root / "a_mask.png")
    (root / "results.csv").write_text("file,status,error,box,area_px,seconds,mask\n")
    with pytest.raises(DataError, match="holds films itself"):
        discover(root)


def test_split_folders_are_never_classes_and_are_read_once(tmp_path, cxr_dir):
    """Review: without train/ (trainset/), val/ + test/ were merged as classes and re-cut (test films trained);
    in the split layout each part was listed twice (every orphan line twice)."""
    films = _films(cxr_dir)
    root = tmp_path / "set"
    for part, chosen in (("trainset", films[:2]), ("val", films[2:3]), ("test", films[3:4])):
        _class(root / part, chosen, cxr_dir, prefix=f"{part}_")
    with pytest.raises(DataError, match=r"set: empty dataset: no images found \(expected .*found test/, trainset/, val/"):
        discover(root)
    (root / "trainset").rename(root / "train")
    shutil.copy(cxr_dir / "masks" / films[0].name, root / "train" / "masks" / "orphan.png")
    assert pair_places(root) == [root, root / "train", root / "val", root / "test"]
    report = check_data(root)
    assert report.source == "layout" and report.orphans == 1 and sum("orphan.png" in b for b in report.bad) == 1


def test_side_by_side_only_by_a_mask_beside_its_film_and_named_where_it_was_looked_for(tmp_path, cxr_dir):
    """A film saved as x-gt.png beside x.png is no mask (its pixels say so); the parent of a side-by-side folder
    reads it; images/ + masks/ with one mask beside a film still says where the missing mask was expected."""
    films = _films(cxr_dir)
    root = tmp_path / "films"
    root.mkdir()
    shutil.copy(films[0], root / "x.png")
    shutil.copy(films[1], root / "x-gt.png")
    with pytest.raises(DataError, match="holds films itself, no images/ folder and no masks beside them"):
        discover(root)
    side = tmp_path / "DATA" / "lungs"
    side.mkdir(parents=True)
    for k, film in enumerate(films[:3]):
        shutil.copy(film, side / f"p{k}.png")
        shutil.copy(cxr_dir / "masks" / film.name, side / f"p{k}_mask.png")
    pairs, _ = discover(tmp_path / "DATA")
    assert sorted(pairs) == ["p0", "p1", "p2"] and pairs["p2"].mask == side / "p2_mask.png"
    data = tmp_path / "ds"
    _class(data, films[:2], cxr_dir, prefix="a")
    shutil.copy(films[2], data / "images" / "c.png")
    shutil.copy(cxr_dir / "masks" / films[3].name, data / "images" / "a1_mask.png")  # one mask beside a film
    pairs, _ = discover(data)
    with pytest.raises(DataError, match=r"c.png: missing mask \(expected masks/c.png"):
        load_pair(pairs["c"])


def test_per_patient_sub_folders_of_images_are_named_in_the_refusal(tmp_path, cxr_dir, capsys):
    """images/P1/x.png + masks/P1/x.png (a per-patient export): the refusal names a sub-folder and its film and
    says what training reads (before: 'no images found (expected DIR/images and DIR/masks (found images/, masks/))',
    which named the folders it had found)."""
    root = tmp_path / "export"
    for k, film in enumerate(_films(cxr_dir)[:2], start=1):
        for sub, source in (("images", film), ("masks", cxr_dir / "masks" / film.name)):
            (root / sub / f"P{k}").mkdir(parents=True)
            shutil.copy(source, root / sub / f"P{k}" / "chest.png")
    with pytest.raises(DataError, match=r"images: holds sub-folders of films \(P1/chest\.png, …\), not films: "
                                        r"training reads films directly in images/ .* \(e\.g\. P1_chest\.png\)$"):
        discover(root)
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--checkpoint", "default"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds sub-folders of films" in err[0]


def test_a_data_folder_holding_only_an_archive_says_to_unpack_it(tmp_path, capsys):
    """A QA find: a data folder with only films.zip said "empty dataset" without a word of the ZIP."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "films.zip").write_bytes(b"PK\x03\x04" + b"\0" * 60)
    with pytest.raises(DataError, match=r"empty dataset: no images found \(expected .*\); films\.zip: it is a ZIP "
                                        r"archive; unpack it and give the folder of its films$"):
        discover(root)
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--preset", "finetune"]) == 2
    assert "films.zip: it is a ZIP archive; unpack it" in capsys.readouterr().err
