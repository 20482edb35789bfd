"""The evaluation stage: scores, predictions, reliability and figures (notebooks 05 and 06).

- :mod:`~helpers.evaluation.metrics`: Jaccard / Dice / accuracy / sensitivity / specificity, the ISIC
  thresholded Jaccard, confusion matrix and report, ``DEFAULT_THRESHOLD`` and ``THRESHOLD_GRID``.
- :mod:`~helpers.evaluation.predict`: ``predict_batch`` (THE batched prediction), post-processing, mask folders.
- :mod:`~helpers.evaluation.reliability`: intervals, calibration, uncertainty (notebook 06).
- :mod:`~helpers.evaluation.subgroups`: skin tone (ITA), artefacts, subgroup tables (notebook 06).
- :mod:`~helpers.evaluation.plots`: overlays, grids, curves, ``save_figure``.

``python -m helpers.predict`` and ``python -m helpers.evaluate`` are :mod:`helpers.cli.predict` and
:mod:`helpers.cli.evaluate`.
"""
