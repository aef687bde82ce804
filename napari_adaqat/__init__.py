"""napari-adaqat: AdaLoRA-QAT lung segmentation for chest X-rays."""
__version__ = "0.1.0"
