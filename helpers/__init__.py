"""Shared code of the skin-lesion segmentation course. See docs/ARCHITECTURE.md for the map."""
__version__ = "0.1.0"
