"""The course around the library: run profiles, the Colab setup cell, the headless runner, the exercises.

- :mod:`~helpers.course.profiles`: smoke / cpu / gpu profiles and ``course_recipe``, notebook 04's recipe.
- :mod:`~helpers.course.colab`: the Open-in-Colab badge and setup cell, ``install_missing``, Drive.
- :mod:`~helpers.course.runner`: executing and stripping notebooks (``python -m helpers.course``,
  :mod:`helpers.cli.course`).
- :mod:`~helpers.course.exercises`: one checker module per notebook (``nb01`` ... ``nb06``).

Importing this package imports nothing heavy: the setup cell imports :mod:`helpers.course.colab` before the
course's dependencies are installed.
"""
