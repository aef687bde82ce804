"""Dataset folders, splits, box prompts and the one preprocessing transform.

Used alike by training, evaluation, batch segmentation and the docks; depends only on :mod:`io`.
"""
from napari_adaqat.data.boxes import box_for, check_box, default_box, mask_box, read_boxes_csv
from napari_adaqat.data.dataset import DataError, Pair, check_pairs, discover, load_pair, split_source
from napari_adaqat.data.folders import check_output_folder, collect_inputs
from napari_adaqat.data.split import SPLITS, load_split, make_split, save_split
from napari_adaqat.data.transforms import PreparedImage, normalize_and_pad, prepare_image, to_uint8_rgb, transform_boxes

__all__ = [
    "DataError", "Pair", "PreparedImage", "SPLITS",
    "box_for", "check_box", "check_output_folder", "check_pairs", "collect_inputs", "default_box", "discover",
    "load_pair", "load_split", "make_split", "mask_box", "normalize_and_pad", "prepare_image", "read_boxes_csv",
    "save_split", "split_source", "to_uint8_rgb", "transform_boxes",
]
