"""Benchmarks that ship with the package: ``adaqat bench`` times stock ``segment_anything`` against
our predictor on the same weights and image, each side in its own process (:mod:`.speed`)."""
__all__ = ["speed"]
