"""The Annotate dock's dataset folder holding files it did not write: Accept moves another tool's image or mask to
replaced/ (and says so) instead of replacing it, and an earlier mask that cannot be used (a 0/1/2 label map, another
size, empty) does not count as accepted once its film has been opened (a dataset opens without reading its masks):
the film is still to do, the count and resume say so.  A failed write puts back what was set aside; the usable masks
made before annotate.json recorded what the dock wrote are the dock's own once checked."""
from __future__ import annotations

import shutil

import numpy as np
from skimage.io import imsave

from napari_adaqat.data.annotation import AnnotationFolder
from napari_adaqat.io.images import film_shape
from napari_adaqat.io import read_mask


def lungs(shape) -> np.ndarray:
    h, w = shape
    mask = np.zeros(shape, bool)
    mask[h // 5:4 * h // 5, w // 10:2 * w // 5] = mask[h // 5:4 * h // 5, 3 * w // 5:9 * w // 10] = True
    return mask


def test_accept_moves_another_tools_image_and_mask_to_replaced(films, tmp_path):
    dataset = tmp_path / "dataset"
    folder = AnnotationFolder(films, dataset)
    film = folder.films[1]
    shape = film_shape(film.path)
    other_image = folder.films[2].path.read_bytes()  # another tool's file under the same name
    folder.image_path(1).parent.mkdir(parents=True)
    folder.image_path(1).write_bytes(other_image)
    folder.mask_path(1).parent.mkdir(parents=True)
    imsave(folder.mask_path(1), (~lungs(shape)).astype(np.uint8) * 255, check_contrast=False)
    other_mask = folder.mask_path(1).read_bytes()

    folder.accept(1, lungs(shape))
    assert folder.image_path(1).read_bytes() == film.path.read_bytes()
    np.testing.assert_array_equal(read_mask(folder.mask_path(1)), lungs(shape))
    assert (dataset / "replaced" / "images" / film.path.name).read_bytes() == other_image
    assert (dataset / "replaced" / "masks" / f"{film.name}.png").read_bytes() == other_mask
    line = folder.set_aside_line()
    assert f"masks/{film.name}.png (not written here) is kept as replaced/masks/{film.name}.png" in line
    assert f"images/{film.path.name} (not written here) is kept as replaced/images/{film.path.name}" in line

    again = AnnotationFolder(films, dataset)  # a restart: the dock's own mask is replaced by Accept, nothing kept
    again.accept(1, lungs(shape) & ~np.eye(*shape, dtype=bool))
    assert again.set_aside == [] and len(list((dataset / "replaced" / "masks").iterdir())) == 1
    imsave(again.mask_path(1), lungs(shape).astype(np.uint8) * 255, check_contrast=False)  # another tool again
    again.accept(1, lungs(shape))
    assert sorted(p.name for p in (dataset / "replaced" / "masks").iterdir()) == [f"{film.name}.png",
                                                                                f"{film.name}_2.png"]


def test_unusable_earlier_masks_count_as_not_done(films, tmp_path):
    dataset = tmp_path / "dataset"
    probe = AnnotationFolder(films, dataset)
    shapes = [film_shape(f.path) for f in probe.films]
    (dataset / "masks").mkdir(parents=True)
    label_map = lungs(shapes[0]).astype(np.uint8)
    label_map[:, shapes[0][1] // 2:] *= 2  # left lung 1, right lung 2: a label map
    imsave(probe.mask_path(0), label_map, check_contrast=False)
    imsave(probe.mask_path(1), lungs((256, 256)).astype(np.uint8) * 255, check_contrast=False)  # another size
    imsave(probe.mask_path(2), lungs(shapes[2]).astype(np.uint8) * 255, check_contrast=False)  # usable
    imsave(probe.mask_path(3), np.zeros(shapes[3], np.uint8), check_contrast=False)  # empty
    shutil.copy(probe.films[2].path, dataset / "masks" / "unrelated.png")  # no film of that name: ignored

    folder = AnnotationFolder(films, dataset)
    assert folder.progress_line() == "4 of 4 accepted, 0 skipped"  # opening a dataset reads no mask: presence counts
    assert [folder.known_problem(i) for i in range(4)] == [""] * 4
    notes = [folder.mask_note(i) for i in range(4)]  # what opening each film does: from then on the count is honest
    assert folder.progress_line() == "1 of 4 accepted, 0 skipped" and notes[2] == ""
    assert folder.resume_index() == 0 and folder.next_index(0) == 1 and folder.next_index(1) == 3
    rows = [folder.describe(i) for i in range(4)]
    assert rows == ["to do, earlier mask not usable"] * 2 + ["accepted", "to do, earlier mask not usable"]
    assert "label map" in folder.mask_note(0) and "its size is 256×256" in folder.mask_note(1)
    assert "it is empty" in folder.mask_note(3)
    assert folder.read_saved(0) == (None, "") and folder.read_saved(2)[1] == "saved"
    assert "Accept moves it to replaced/masks/." in folder.mask_note(1)
    folder.accept(0, lungs(shapes[0]))  # the label map is kept aside, the film is done
    assert (dataset / "replaced" / "masks" / probe.mask_path(0).name).is_file()
    assert folder.progress_line() == "2 of 4 accepted, 0 skipped"


def test_a_dicom_seg_the_dock_did_not_write_is_kept_aside(tmp_path, cxr_dir):
    from skimage.io import imread

    from test_dicom_seg import clinical_dicom  # tests/ is on sys.path

    films = tmp_path / "films"
    films.mkdir()
    clinical_dicom(films / "chest.dcm", imread(sorted((cxr_dir / "images").glob("*.png"))[1]))
    folder = AnnotationFolder(films, tmp_path / "dataset")
    other = folder.seg_path(0)
    other.parent.mkdir(parents=True)
    other.write_bytes(b"another tool's SEG")
    shape = film_shape(films / "chest.dcm")
    folder.accept(0, lungs(shape))
    assert folder.write_seg(0, lungs(shape)) == other and other.read_bytes() != b"another tool's SEG"
    assert (tmp_path / "dataset" / "replaced" / "dicom_seg" / "chest.dcm").read_bytes() == b"another tool's SEG"
    assert "dicom_seg/chest.dcm (not written here)" in folder.set_aside_line()
    folder.write_seg(0, lungs(shape))  # its own SEG: replaced, nothing more kept
    assert folder.set_aside == [] and len(list((tmp_path / "dataset" / "replaced" / "dicom_seg").iterdir())) == 1


def forbid_reads(monkeypatch, no_read) -> None:
    """Every way the annotation folder reads a mask, a film's size or a file's SHA-256 raises ``no_read``."""
    import napari_adaqat.data.annotation as annotation
    import napari_adaqat.data.annotation_checks as checks

    for module, names in ((annotation, ("read_mask", "sha256")), (checks, ("read_mask", "film_shape", "sha256"))):
        for name in names:
            monkeypatch.setattr(module, name, no_read)


def test_opening_a_dataset_reads_no_mask_nor_film(films, tmp_path, monkeypatch):
    dataset = tmp_path / "dataset"
    probe = AnnotationFolder(films, dataset)
    (dataset / "masks").mkdir(parents=True)
    for film in probe.films:  # another tool's masks (no annotate.json)
        imsave(dataset / "masks" / f"{film.name}.png", lungs(film_shape(film.path)).astype(np.uint8) * 255,
               check_contrast=False)

    def no_read(*_args, **_kwargs):
        raise AssertionError("read on open")

    forbid_reads(monkeypatch, no_read)
    folder = AnnotationFolder(films, dataset)
    assert folder.progress_line() == "4 of 4 accepted, 0 skipped" and folder.resume_index() is None
    assert folder.without_film() == [f.path.name for f in folder.films]  # said on open: training needs their films
    assert [folder.describe(i) for i in range(4)] == ["accepted"] * 4


def test_masks_of_a_dataset_made_before_the_written_record_are_the_docks_own(films, tmp_path):
    import json

    dataset = tmp_path / "dataset"
    folder = AnnotationFolder(films, dataset)
    shape = film_shape(folder.films[0].path)
    folder.accept(0, lungs(shape))
    state = json.loads(folder.state_path.read_text())
    del state["written"]  # annotate.json as the previous release wrote it
    folder.state_path.write_text(json.dumps(state))

    again = AnnotationFolder(films, dataset)  # its masks become the dock's own once checked (usable)
    assert again.take_checks(again.check_masks()[0]) == []
    assert f"masks/{folder.films[0].name}.png" in json.loads(folder.state_path.read_text())["written"]
    again.accept(0, lungs(shape) & ~np.eye(*shape, dtype=bool))  # its own mask: replaced, not kept aside
    assert again.set_aside == [] and again.set_aside_line() == "" and not (dataset / "replaced").exists()


def test_a_failed_write_puts_back_what_was_set_aside(films, tmp_path, monkeypatch):
    import napari_adaqat.data.annotation as annotation

    dataset = tmp_path / "dataset"
    folder = AnnotationFolder(films, dataset)
    shape = film_shape(folder.films[1].path)
    folder.image_path(1).parent.mkdir(parents=True)
    folder.image_path(1).write_bytes(folder.films[2].path.read_bytes())  # another tool's image and mask
    folder.mask_path(1).parent.mkdir(parents=True)
    imsave(folder.mask_path(1), (~lungs(shape)).astype(np.uint8) * 255, check_contrast=False)
    image, mask = folder.image_path(1).read_bytes(), folder.mask_path(1).read_bytes()

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(annotation, "write_mask", disk_full)
    try:
        folder.accept(1, lungs(shape))
    except OSError as exc:
        assert exc.errno == 28
    else:
        raise AssertionError("no OSError")
    assert folder.mask_path(1).read_bytes() == mask and folder.image_path(1).read_bytes() == image
    assert folder.set_aside == [] and not (dataset / "replaced").exists()


def test_the_films_of_another_tools_usable_masks_are_linked_once_checked(films, tmp_path):
    """Another tool's masks put in masks/ count as accepted; once checked, the films of the usable ones go into
    images/ (as Accept puts them), so training uses them; an unusable one's film does not, nor is any original
    written."""
    dataset = tmp_path / "dataset"
    probe = AnnotationFolder(films, dataset)
    (dataset / "masks").mkdir(parents=True)
    for film in probe.films[:3]:
        imsave(dataset / "masks" / f"{film.name}.png", lungs(film_shape(film.path)).astype(np.uint8) * 255,
               check_contrast=False)
    imsave(dataset / "masks" / f"{probe.films[2].name}.png", lungs((100, 120)).astype(np.uint8) * 255,
           check_contrast=False)  # another size: not usable
    originals = {f.path: f.path.read_bytes() for f in probe.films}
    folder = AnnotationFolder(films, dataset)
    assert len(folder.without_film()) == 3
    folder.take_checks(folder.check_masks()[0])
    assert folder.link_films() == [folder.films[0].path.name, folder.films[1].path.name]
    assert folder.without_film() == []  # the unusable mask no longer counts as accepted
    for index in (0, 1):
        assert folder.image_path(index).read_bytes() == originals[folder.films[index].path]
    assert not folder.image_path(2).exists() and not folder.image_path(3).exists()
    assert all(path.read_bytes() == data for path, data in originals.items())
    assert folder.link_films() == []  # once
