"""Qt-free data check of the Train dock: a dataset folder's counts, split, used and skipped pairs.

The check itself lives in :mod:`napari_adaqat.data.check`, so the dock shows what ``adaqat train``
prints before its first epoch. Reading every pair takes a moment: the dock runs :func:`check_data` in a
worker thread.
"""
from napari_adaqat.data.check import MAX_LISTED, SOURCE_TEXT, DataReport, check_data

__all__ = ["MAX_LISTED", "SOURCE_TEXT", "DataReport", "check_data"]
