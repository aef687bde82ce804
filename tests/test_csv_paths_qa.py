"""CSVs of boxes and points as hospital sites write them: rows naming films by their absolute or Windows path
(backslashes, forward slashes, another case), two folders naming one film, rows naming films relative to the CSV's own folder, Excel's UTF-16 "Unicode Text" and
its plain "CSV" of a Western Windows PC (Windows-1252)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_adaqat.data import box_for, read_boxes_csv, read_points_csv, unmatched_boxes
from napari_adaqat.data.csv_match import match_rows


def test_csv_rows_with_an_absolute_path_match_inputs_given_relatively(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "films").mkdir()
    given = Path("films/chest.png")  # as `adaqat segment films --out masks` lists it
    (tmp_path / "points.csv").write_text(f"file,x,y,label\n{tmp_path / given},150,260,1\n")
    points = read_points_csv(tmp_path / "points.csv")
    assert box_for(given, points) is not None
    assert unmatched_boxes(points, [given]) == ([], [])
    boxes = {"films/chest.png": np.array([1.0, 2.0, 30.0, 40.0])}  # and a relative row for an absolute input
    assert box_for(tmp_path / given, boxes) is boxes["films/chest.png"]


def test_csv_rows_with_a_windows_path_match_the_film_by_its_name(tmp_path):
    """A CSV made on a hospital PC names films C:\\films\\a.png; here the film is films/a.png."""
    (tmp_path / "boxes.csv").write_text("file,x0,y0,x1,y1\nC:\\PACS export\\a.png,1,2,30,40\n", encoding="utf-8")
    (tmp_path / "points.csv").write_text("C:\\PACS export\\a.png,5,6,1\nC:\\PACS export\\a.png,7,8,0\n")
    boxes, points = read_boxes_csv(tmp_path / "boxes.csv"), read_points_csv(tmp_path / "points.csv")
    assert np.array_equal(box_for(Path("films/a.png"), boxes), [1, 2, 30, 40])
    assert box_for(Path("films/a.png"), points)[1].tolist() == [1, 0]
    assert unmatched_boxes(boxes, [Path("films/a.png")]) == ([], [])


def test_two_windows_folders_naming_one_film_are_refused_not_merged(tmp_path):
    csv_path = tmp_path / "points.csv"
    csv_path.write_text("file,x,y,label\nC:\\site A\\a.png,5,6,1\nD:\\site B\\a.png,7,8,0\n")
    with pytest.raises(ValueError, match=r"points.csv:3: .*both name 'a.png'"):
        read_points_csv(csv_path)
    csv_path.write_text("file,x,y,label\nC:\\site A\\a.png,5,6,1\na.png,7,8,0\n")  # nor with a bare name
    with pytest.raises(ValueError, match=r"points.csv:3: .*both name 'a.png'"):
        read_points_csv(csv_path)


def test_windows_paths_with_forward_slashes_or_another_case_name_one_film(tmp_path):
    """Java and web tools write C:/films/a.png; Windows paths are one file whatever their case."""
    csv_path = tmp_path / "points.csv"
    csv_path.write_text("file,x,y,label\nC:/PACS export/a.png,5,6,1\nc:\\pacs EXPORT\\a.png,7,8,0\n")
    coords, labels = box_for(Path("films/a.png"), read_points_csv(csv_path))
    assert coords.tolist() == [[5, 6], [7, 8]] and labels.tolist() == [1, 0]


def test_excel_unicode_text_utf16_tab_separated_csvs_are_read(tmp_path):
    (tmp_path / "boxes.txt").write_bytes("File\tX0\tY0\tX1\tY1\r\nröntgen 1.png\t1\t2\t30\t40\r\n".encode("utf-16"))
    assert read_boxes_csv(tmp_path / "boxes.txt")["röntgen 1.png"].tolist() == [1, 2, 30, 40]
    (tmp_path / "points.txt").write_bytes(b"\xff\xfe" + "chest.png\t150.5\t260\t0\r\n".encode("utf-16-le"))  # no header
    coords, labels = read_points_csv(tmp_path / "points.txt")["chest.png"]
    assert coords.tolist() == [[150.5, 260.0]] and labels.tolist() == [0]


def test_excel_plain_csv_of_a_windows_pc_cp1252_is_read(tmp_path):
    """Excel's "CSV (Comma delimited)" on a Western Windows PC writes Windows-1252, not UTF-8: "Müller" is read."""
    (tmp_path / "boxes.csv").write_bytes("file;x0;y0;x1;y1\r\nMüller Röntgen.png;1;2;30;40\r\n".encode("cp1252"))
    assert read_boxes_csv(tmp_path / "boxes.csv")["Müller Röntgen.png"].tolist() == [1, 2, 30, 40]


def test_csv_rows_relative_to_the_csv_folder_match_from_any_working_folder(tmp_path, monkeypatch):
    """site/points.csv names films/a.png (as written beside the films); the run is started from elsewhere."""
    site, elsewhere = tmp_path / "site", tmp_path / "home"
    (site / "films").mkdir(parents=True)
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    csv_path = site / "points.csv"
    csv_path.write_text("file,x,y,label\nfilms/a.png,5,6,1\n")
    films = [Path("../site/films/a.png"), Path("../site/films/b.png")]
    points = read_points_csv(csv_path)
    found = match_rows(csv_path, points, films)
    assert list(found) == [str(site / "films" / "a.png")] and found[str(site / "films" / "a.png")][1].tolist() == [1]
    assert unmatched_boxes(points, films, csv_path=csv_path) == ([], [films[1]])
    assert unmatched_boxes(points, films) == (["films/a.png"], films)  # (without the CSV's folder: no match)


def test_a_csv_mixing_utf8_and_windows_1252_rows_is_refused_not_garbled(tmp_path):
    """A UTF-8 CSV with a row pasted from a Windows-1252 file: neither reading is right for every row."""
    (tmp_path / "boxes.csv").write_bytes("file,x0,y0,x1,y1\nMüller.png,1,2,30,40\n".encode("utf-8")
                                         + "Jörg.png,1,2,30,40\n".encode("cp1252"))
    with pytest.raises(ValueError, match=r"boxes.csv: not a UTF-8 text file \(byte 0xf6 at offset \d+; some rows are "
                                         r"UTF-8, others not\); save it as CSV \(UTF-8\)"):
        read_boxes_csv(tmp_path / "boxes.csv")
