"""Dataset folders, splits, box prompts, output-folder rules and the one preprocessing transform.

Used alike by training, evaluation, batch segmentation and the docks; depends only on :mod:`io`.
Names load on first use (the transform needs torch; discovery and boxes do not).
"""
from napari_adaqat._lazy import lazy_exports

_MODULES = {
    "boxes": ("check_box", "default_box", "mask_box", "read_boxes_csv"),
    "csv_match": ("box_for", "describe_unmatched", "match_rows", "unmatched_boxes"),
    "check": ("DataReport", "check_data", "training_sets"),
    "dataset": ("DataError", "MaskFolder", "Pair", "check_pairs", "discover", "find_mask", "load_pair", "split_source"),
    "folders": ("check_output_folder", "collect_inputs", "describe_skipped", "scan_inputs"),
    "points": ("check_points", "points_for", "read_points_csv"),
    "split": ("OVERLAP_KEY", "SPLITS", "load_split", "make_split", "save_split"),
    "transforms": ("PreparedImage", "normalize_and_pad", "prepare_image", "resize_for_model", "to_uint8_rgb",
                   "transform_boxes"),
}
__all__ = sorted(name for names in _MODULES.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, {n: f".{m}:{n}" for m, names in _MODULES.items() for n in names})
