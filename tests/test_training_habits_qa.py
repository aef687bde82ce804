"""A hospital site's own annotated folder, the way sites keep them: every habit trains right or is refused
with one line (QA of ``adaqat train --data DIR`` and the Train dock's data check)."""
from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_adaqat.cli import main
from napari_adaqat.data.check import check_data, training_sets
from napari_adaqat.data.dataset import DataError, discover, load_pair


def _site(tmp_path: Path, cxr_dir: Path, mask_name=lambda stem: f"{stem}.png", masks="masks", save=None) -> Path:
    """The 4 real films in ``DATA/images`` and their masks in ``DATA/<masks>/<mask_name(stem)>``, written by
    ``save(path, mask uint8 0/255)`` (a copy by default)."""
    data = tmp_path / "site"
    (data / "images").mkdir(parents=True)
    (data / masks).mkdir()
    for image in sorted((cxr_dir / "images").glob("*.png")):
        shutil.copy(image, data / "images" / image.name)
        target = data / masks / mask_name(image.stem)
        if save is None:
            shutil.copy(cxr_dir / "masks" / image.name, target)
        else:
            save(target, np.asarray(Image.open(cxr_dir / "masks" / image.name)))
    return data


def _lung_fractions(data: Path) -> list[float]:
    pairs, _ = discover(data)
    return [float(load_pair(pair)[1].mean()) for pair in pairs.values()]


@pytest.mark.parametrize("habit", ["-mask", "_seg", "_Mask", " mask", "_label"])
def test_masks_named_with_a_sites_suffix_pair_with_their_films(tmp_path, cxr_dir, habit):
    data = _site(tmp_path, cxr_dir, mask_name=lambda stem: f"{stem}{habit}.png")
    report = check_data(data)
    assert (report.n_masks, report.bad, report.error) == (4, [], None), report.text()


def test_a_suffixed_mask_stays_with_the_film_of_its_own_name(tmp_path, cxr_dir):
    data = _site(tmp_path, cxr_dir)
    first = sorted((data / "images").iterdir())[0]
    shutil.copy(first, data / "images" / f"{first.stem}_seg.png")  # a film named like another's mask
    (data / "masks" / first.name).rename(data / "masks" / f"{first.stem}_seg.png")
    pairs, _ = discover(data)
    assert pairs[f"{first.stem}_seg"].mask.name == f"{first.stem}_seg.png" and pairs[first.stem].mask is None


def test_a_mac_named_mask_pairs_with_its_windows_named_film(tmp_path, cxr_dir):
    """macOS writes 'é' as 'e' + a combining accent (NFD); a film copied from Windows has one character (NFC)."""
    data = _site(tmp_path, cxr_dir)
    for image, name in zip(sorted((data / "images").iterdir()), ["José", "Müller", "Zoë", "Łukasz"]):
        image.rename(image.with_name(unicodedata.normalize("NFC", name) + ".png"))
        (data / "masks" / image.name).rename(data / "masks" / (unicodedata.normalize("NFD", name) + ".png"))
    report = check_data(data)
    assert (report.n_masks, report.bad, report.error) == (4, [], None), report.text()


def test_masks_in_a_folder_named_as_masks_are_used_and_another_name_is_said_in_one_line(tmp_path, cxr_dir):
    data = _site(tmp_path / "gt", cxr_dir, masks="GT")  # GT/ (ground truth): the one folder named as masks
    report = check_data(data)
    assert report.usable and not report.bad and report.n_masks == 4, report.text()
    data = _site(tmp_path / "lungs", cxr_dir, masks="Lungs")  # a name that does not say masks: not guessed
    report = check_data(data)
    assert not report.usable and len(report.bad) == 4
    assert "there is no masks/ folder beside images/ (found Lungs/: rename the one holding the masks to masks/)" \
        in report.bad[0]
    with pytest.raises(DataError, match=r"no usable training pairs .*found Lungs/"):
        training_sets(data, *discover(data))


def test_hidden_files_and_windows_mac_litter_are_no_films_nor_masks(tmp_path, cxr_dir):
    data = _site(tmp_path, cxr_dir)
    before = discover(data)[1]
    for folder in ("images", "masks"):
        (data / folder / ".~preview.png").write_bytes(b"editor scratch")
        (data / folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        (data / folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" * 8)
        (data / folder / "._x.png").write_bytes(b"\0\5\x16\7" + bytes(60))
    report = check_data(data)
    assert (report.n_images, report.n_masks, report.bad, report.error) == (4, 4, [], None), report.text()
    assert discover(data)[1] == before  # the split of the films is unchanged


def test_a_split_file_naming_files_with_their_extension_is_used(tmp_path, cxr_dir):
    data = _site(tmp_path, cxr_dir)
    names = sorted(p.name for p in (data / "images").iterdir())
    (data / "split.json").write_text(json.dumps({"train": names[:3], "val": names[3:], "test": []}))
    report = check_data(data)
    assert report.used == {"train": 3, "val": 1} and report.error is None, report.text()


def test_a_split_file_naming_films_not_there_says_which(tmp_path, cxr_dir):
    data = _site(tmp_path, cxr_dir)
    names = sorted(p.stem for p in (data / "images").iterdir())
    (data / "split.json").write_text(json.dumps({"train": names[:3], "val": ["ghost"], "test": []}))
    report = check_data(data)
    assert "⚠ split.json names 1 image(s) that are not in the folder (ghost)" in report.text()
    assert report.error.startswith("the validation set is empty")
    (data / "split.json").write_text(json.dumps({"train": ["a", "b"], "val": ["c"], "test": []}))
    report = check_data(data)  # a split file of another dataset: nothing to train, said before the run
    assert not report.usable and report.error == "no usable training pairs (the split's names are not in the folder)"
    with pytest.raises(DataError, match=r"no usable training pairs \(split.json names 3 image\(s\) .*\(a, b, c\)"):
        training_sets(data, *discover(data))


def test_inverted_masks_everywhere_refuse_the_run_in_one_line_leaving_nothing(tmp_path, cxr_dir, capsys):
    data = _site(tmp_path, cxr_dir, save=lambda path, mask: Image.fromarray(255 - mask).save(path))
    report = check_data(data)
    assert not report.usable and report.error.startswith("all 4 usable masks look inverted")
    out = tmp_path / "run"
    assert main(["train", "--stage", "all", "--preset", "finetune", "--data", str(data), "--out", str(out),
                 "--device", "cpu", "--epochs", "1"]) != 0
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "masks look inverted" in errors[0] and "lung = 255 (white)" in errors[0], errors
    assert not out.exists()


def test_inverted_masks_are_refused_by_train_as_by_the_data_check_when_val_overlaps_train(tmp_path, cxr_dir):
    """A split validating on training films on purpose counts each film once: the CLI refuses as the dock does."""
    data = _site(tmp_path, cxr_dir, save=lambda path, mask: Image.fromarray(255 - mask).save(path))
    names = sorted(p.stem for p in (data / "images").iterdir())
    (data / "split.json").write_text(json.dumps({"train": names, "val": names[:2], "test": [],
                                                 "val_overlaps_train": True}))
    assert check_data(data).error.startswith("all 4 usable masks look inverted")
    with pytest.raises(DataError, match="all 4 usable masks look inverted"):
        training_sets(data, *discover(data))


@pytest.mark.parametrize("habit", ["0/1", "16-bit", "palette", "bool", "upper-case"])
def test_mask_encodings_sites_use_give_the_same_lungs(tmp_path, cxr_dir, habit):
    save = {"0/1": lambda p, m: Image.fromarray((m > 0).astype(np.uint8)).save(p),
            "16-bit": lambda p, m: Image.fromarray((m > 0).astype(np.uint16) * 65535).save(p),
            "palette": lambda p, m: Image.fromarray((m > 0).astype(np.uint8)).convert("P").save(p),
            "bool": lambda p, m: Image.fromarray(m > 0).save(p),
            "upper-case": lambda p, m: Image.fromarray(m).save(p.with_suffix(".PNG"), format="PNG")}[habit]
    data = _site(tmp_path, cxr_dir, save=save)
    assert _lung_fractions(data) == pytest.approx(_lung_fractions(_site(tmp_path / "ref", cxr_dir)))


def test_two_films_with_one_name_say_which_is_left_out(tmp_path, cxr_dir):
    """``a.png`` beside ``a.jpg`` (an export in two formats): a dataset is keyed by name, so one is left out; the
    data check and `adaqat train` name it instead of dropping it silently."""
    data = _site(tmp_path, cxr_dir)
    first = sorted((data / "images").glob("*.png"))[0]
    Image.open(first).convert("L").save(first.with_suffix(".jpg"), quality=95)
    report = check_data(data)
    assert report.n_images == 4 and report.error is None
    line = next(b for b in report.bad if "same name" in b)
    assert line.endswith("has the same name; rename one to use both") and first.stem in line
    pairs, split = discover(data)
    assert any("same name" in b for b in training_sets(data, pairs, split)[1].bad)


def _val_name(data: Path) -> str:
    return discover(data)[1]["val"][0]


def test_a_bad_validation_mask_does_not_empty_validation_the_cut_is_made_again(tmp_path, cxr_dir, capsys):
    """A QA find: one JPEG mask among the seeded validation films refused the run ("the validation set is empty
    (14 usable training image(s))"), with no data check shown.  The seeded cut is now made over the usable pairs,
    said in the check, and kept in the run's split.json; the bad pair stays skipped and named."""
    data = _site(tmp_path, cxr_dir)
    bad = _val_name(data)
    mask = np.asarray(Image.open(data / "masks" / f"{bad}.png"))
    (data / "masks" / f"{bad}.png").unlink()
    Image.fromarray(mask).save(data / "masks" / f"{bad}.jpg", quality=70)  # blurred edges: not a mask
    report = check_data(data)
    assert report.usable and report.used == {"train": 2, "val": 1}
    assert "⚠ the seeded cut was made again over the 3 usable pairs" in report.text()
    out = tmp_path / "run"
    assert main(["train", "--stage", "1", "--preset", "finetune", "--data", str(data), "--out", str(out),
                 "--device", "cpu", "--epochs", "1", "--max-steps-per-epoch", "1", "--batch-size", "2"]) == 0
    split = json.loads((out / "split.json").read_text())
    assert len(split["val"]) == 1 and bad not in split["train"] + split["val"] and len(split["train"]) == 2
    assert "skipped 1 × mask is not binary" in capsys.readouterr().err  # the skipped pair, in the printed check


def test_masks_that_look_inverted_are_left_out_of_training_and_validation(tmp_path, cxr_dir):
    """A QA find: 3 of 12 masks flagged inverted were trained on, one as the validation film (val Dice 0.05, and
    that model kept).  Left out, as evaluate leaves them out; --masks-as-given keeps them."""
    data = _site(tmp_path, cxr_dir)
    flipped = _val_name(data)
    path = data / "masks" / f"{flipped}.png"
    Image.fromarray(255 - np.asarray(Image.open(path).convert("L"))).save(path)
    sets, report = training_sets(data, *discover(data), reseed=0)
    assert flipped not in {p.name for part in sets.values() for p in part} and report.used == {"train": 2, "val": 1}
    sets, _report = training_sets(data, *discover(data), masks_as_given=True, reseed=0)
    assert flipped in {p.name for p in sets["val"]}


def test_a_refused_run_prints_its_data_check_before_the_line(tmp_path, cxr_dir, capsys):
    """A QA find: a refusal said "the validation set is empty" without the check that says what was skipped."""
    data = _site(tmp_path, cxr_dir)
    for name in sorted(p.stem for p in (data / "images").iterdir())[:2]:  # two films without masks: 2 usable
        (data / "masks" / f"{name}.png").unlink()
    assert main(["train", "--stage", "1", "--preset", "finetune", "--data", str(data), "--out", str(tmp_path / "r"),
                 "--device", "cpu", "--epochs", "1"]) != 0
    err = capsys.readouterr().err
    check = err.index(f"adaqat train: data check of {data}")
    assert err.index("skipped 2 × missing mask") > check and err.rindex("error:") > check


def test_a_train_and_test_layout_without_val_says_to_add_a_val_folder(tmp_path, cxr_dir):
    """A QA find: Kaggle's train/ + test/ (no val/) was refused as "a run needs at least 3 usable images for the
    seeded 80:10:10 cut", which is not what that folder needs."""
    films = sorted((cxr_dir / "images").glob("*.png"))
    for part, chosen in (("train", films[:3]), ("test", films[3:])):
        for sub in ("images", "masks"):
            (tmp_path / "kaggle" / part / sub).mkdir(parents=True)
        for film in chosen:
            shutil.copy(film, tmp_path / "kaggle" / part / "images" / film.name)
            shutil.copy(cxr_dir / "masks" / film.name, tmp_path / "kaggle" / part / "masks" / film.name)
    report = check_data(tmp_path / "kaggle")
    assert report.error == ("the validation set is empty (3 usable training image(s)); the folder's train/, val/, "
                            "test/ layout has no usable val/ films: add a val/ folder (a few films with their masks, "
                            "as in train/), so that validation uses films the model does not train on")


def test_a_second_mask_of_a_film_is_named_as_such(tmp_path, cxr_dir):
    """A QA find: masks/X.png and masks/X_mask.png: X.png was used and X_mask.png called "a mask without an image
    (expected images/X_mask.png)", which hid that the film has two masks."""
    data = _site(tmp_path, cxr_dir)
    name = sorted(p.stem for p in (data / "images").iterdir())[0]
    shutil.copy(data / "masks" / f"{name}.png", data / "masks" / f"{name}_mask.png")
    report = check_data(data)
    assert report.usable and report.used == {"train": 3, "val": 1}
    assert f"✗ skipped 1 × a second mask of its film (the film's other mask is used, not this one): {name}_mask.png" \
        in report.text().splitlines()


def test_masks_that_are_not_two_lungs_are_warned_about(tmp_path, cxr_dir):
    """A QA find: heart-only, one-lung and rotated masks trained without a word (best Dice 0.29).  Now the data
    check (dock and CLI) says so where half the masks or more are not two lungs side by side."""
    from napari_adaqat.data.check import two_lungs

    def heart(path: Path, mask: np.ndarray) -> None:
        blob = np.zeros_like(mask)
        h, w = mask.shape
        blob[h // 3: 2 * h // 3, 2 * w // 5: 3 * w // 5] = 255
        Image.fromarray(blob).save(path)

    data = _site(tmp_path, cxr_dir, save=heart)
    line = "4 of 4 masks are not two lungs side by side (one region, or regions one above the other)"
    assert any(w.startswith(line) for w in check_data(data).warnings)
    _sets, report = training_sets(data, *discover(data))
    assert any(w.startswith(line) for w in report.warnings)
    real = np.asarray(Image.open(sorted((cxr_dir / "masks").glob("*.png"))[0]).convert("L")) > 127
    assert two_lungs(real) and not two_lungs(real.T) and not two_lungs(real[:, : real.shape[1] // 2])
    assert not any("two lungs" in w for w in check_data(cxr_dir).warnings)
