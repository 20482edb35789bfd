"""Pytest configuration shared by unit tests and the nbval notebook run.

Smoke mode (``SKINSEG_SMOKE=1``) shrinks data, image size and epochs so every notebook runs on two CPU
cores; it is set here, before any notebook kernel starts, so kernels inherit it. Set ``SKINSEG_SMOKE=0``
in the environment to run the notebooks' full recipe under pytest instead.
"""
import os

os.environ.setdefault("SKINSEG_SMOKE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
