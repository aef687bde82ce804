"""Which input a CSV row names (box and point CSVs alike): by path, file name or stem, in any case when no name
fits exactly; a row that names two inputs is refused, rows naming none and inputs without a box are listed for
a warning."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, TypeVar

import numpy as np

from napari_adaqat.util.text import listed, pairing_key


def _keys(path: Path, roots: Sequence[Path] = ()) -> tuple[str, ...]:
    """How a CSV row may name ``path``: as given, absolute, relative to the working folder, relative to one of
    ``roots`` (the input folders of a recursive run: ``P1/S1/IM0001``, with or without its extension), by name,
    by stem."""
    absolute = os.path.abspath(path)
    try:
        relative = os.path.relpath(absolute)
    except ValueError:  # on another drive (Windows)
        relative = absolute
    inner = [path.relative_to(root) for root in roots if root in path.parents]
    below = [form for rel in inner for form in (rel.as_posix(), rel.with_name(path.stem).as_posix())]
    return tuple(dict.fromkeys((str(path), absolute, relative, *below, path.name, path.stem)))


def _real(path: str | Path) -> str:
    """``path`` with its folder's symbolic links resolved, not the file's own (films kept as links to shared
    content, as git-annex or DVC keep them, stay two films)."""
    head, name = os.path.split(os.path.abspath(path))
    return os.path.join(os.path.realpath(head), name)


def _path_aliases(names: Sequence[str], csv_path: str | Path | None = None) -> dict[str, str]:
    """{another spelling of the same file: the CSV name} for names that are paths: ``./nas/a.png`` and
    ``nas//a.png`` as ``nas/a.png``, and any path through a symbolic link as the real one (a row written from the
    mount's real path, the films given through a link, or the other way round).  A relative path is also read
    from the CSV's own folder (``films/a.png`` in ``site/points.csv`` is ``site/films/a.png``, from any folder)."""
    aliases: dict[str, str] = {}
    beside = os.path.dirname(os.path.abspath(csv_path)) if csv_path is not None else None
    for name in names:
        if "/" in name or os.sep in name:
            forms = [os.path.normpath(name), _real(name)]
            if beside is not None and not os.path.isabs(name):
                forms += [os.path.normpath(os.path.join(beside, name)), _real(os.path.join(beside, name))]
            for form in forms:
                aliases.setdefault(form, name)
    return aliases


def box_for(path: Path, boxes: dict[str, np.ndarray], roots: Sequence[Path] = ()) -> np.ndarray | None:
    """The box of ``path`` in a CSV's boxes, looked up by path (as given, absolute, relative, relative to one of
    ``roots``), then name, then stem."""
    for key in _keys(path, roots):
        if key in boxes:
            return boxes[key]
    return None


Row = TypeVar("Row")


def _exact(key: str, path: Path, roots: Sequence[Path]) -> bool:
    """Whether CSV name ``key`` names ``path`` with its extension (a path or its file name), not by its stem alone."""
    stems = {path.stem} | {path.relative_to(r).with_name(path.stem).as_posix() for r in roots if r in path.parents}
    return key not in stems or key in {path.name, str(path)}


def _taken(rows: dict[str, Row], files: list[Path], roots: Sequence[Path],
           csv_path: str | Path | None = None) -> dict[str, list[Path]]:
    """{CSV name: the inputs it fits}, each input by the first of its :func:`_keys` in ``rows``.  A name that fits
    several inputs but names exactly one of them with its extension (``IM0001`` beside ``IM0001.png``) is that one's.
    An input no name fits exactly takes the one name that fits in any case (``IMG001.PNG`` from a Windows PC).
    ``csv_path``: relative paths in the rows are also read from the CSV's folder (:func:`_path_aliases`)."""
    taken: dict[str, list[Path]] = {}
    folded: dict[str, list[str]] = {}
    for name in rows:
        folded.setdefault(pairing_key(name), []).append(name)
    aliases = _path_aliases(list(rows), csv_path)
    for path in files:
        keys = _keys(path, roots)
        key = next((k for k in keys if k in rows), None)
        if key is None and aliases:  # (resolved only for a CSV that names films by path, and only when needed)
            key = next((aliases[k] for k in (*keys, _real(path)) if k in aliases), None)
        if key is None:
            key = next((names[0] for k in keys if len(names := folded.get(pairing_key(k), ())) == 1), None)
        if key is not None:
            taken.setdefault(key, []).append(path)
    for key, paths in taken.items():
        exact = [p for p in paths if _exact(key, p, roots)]
        if len(paths) > 1 and len(exact) == 1:
            taken[key] = exact
    return taken


def match_rows(csv_path: str | Path, rows: dict[str, Row], files: list[Path],
               roots: Sequence[Path] = ()) -> dict[str, Row]:
    """{absolute path of an input: its CSV row} (:func:`box_for`'s rule), for a run to look up exactly.
    Raises ValueError, one line, when a row names more than one input (``IM0001`` in every series of a PACS
    tree, ``a`` beside ``a.png`` and ``a.dcm``): a CSV row is one film's prompt, never silently everyone's.
    A row naming one input exactly and others by their stem only is the exact one's (:func:`_taken`)."""
    taken = _taken(rows, files, roots, csv_path)
    for key, paths in taken.items():
        if len(paths) > 1:
            how, example = _example(paths[0], files, roots)
            raise ValueError(f"{csv_path}: {key!r} names {len(paths)} input files ({paths[0]}, {paths[1]}"
                             f"{', ...' if len(paths) > 2 else ''}); give each film its own row with {how} "
                             f"(e.g. {example}){'' if how == 'its full path' else ' or its full path'}; "
                             "nothing was written")
    return {os.path.abspath(path): rows[key] for key, paths in taken.items() for path in paths}


def _example(path: Path, files: list[Path], roots: Sequence[Path]) -> tuple[str, str]:
    """(how, name): the shortest name of ``path`` that no other input has: its file name with its extension, its
    path relative to its input folder, its path from the working folder, else its full path."""
    forms = [("its file name and extension", path.name)]
    forms += [("its path relative to the input folder", path.relative_to(r).as_posix())
              for r in roots if r in path.parents]
    try:
        relative = os.path.relpath(os.path.abspath(path))
    except ValueError:  # on another drive (Windows)
        relative = ".."
    if not relative.startswith(".."):
        forms.append(("its path from the folder you run in", relative))
    for how, name in forms:
        if sum(name in _keys(other, roots) for other in files) == 1:
            return how, name
    return "its full path", os.path.abspath(path)


def unmatched_boxes(boxes: dict[str, np.ndarray], files: list[Path], roots: Sequence[Path] = (),
                    csv_path: str | Path | None = None) -> tuple[list[str], list[Path]]:
    """(CSV names that match no input file, input files without a CSV box) for a warning line; ``csv_path``: as
    :func:`match_rows` reads the rows."""
    taken = _taken(boxes, files, roots, csv_path)
    boxed = {path for paths in taken.values() for path in paths}
    return sorted(set(boxes) - set(taken)), [path for path in files if path not in boxed]


def describe_unmatched(csv_path: str | Path, boxes: dict[str, np.ndarray], files: list[Path],
                       roots: Sequence[Path] = (), pointed: Sequence[str] = ()) -> list[str]:
    """Warning lines (possibly none) about CSV rows naming no input and inputs without a box; ``pointed``: the
    absolute paths of inputs segmented from their positive points alone (not "the default box")."""
    names, unboxed = unmatched_boxes(boxes, files, roots, csv_path)
    by_points = set(pointed)  # (a set, once: a folder of 10,000 films)
    unboxed = [path for path in unboxed if os.path.abspath(path) not in by_points]
    lines = []
    if names:
        lines.append(f"{csv_path}: {len(names)} row(s) name no input file and are ignored: {listed(names, 5)}")
    if unboxed:
        lines.append(f"{csv_path}: {len(unboxed)} input(s) have no box and get the default box: "
                     f"{listed((p.name for p in unboxed), 5)}")
    return lines

