"""Every command line, thin, over the library: argument parsing, one-line errors, exit codes.

- :mod:`~helpers.cli.data`: ``python -m helpers.data synth|check|download`` (notebook 01).
- :mod:`~helpers.cli.train`: ``python -m helpers.train`` (notebook 04).
- :mod:`~helpers.cli.predict`, :mod:`~helpers.cli.evaluate`: ``python -m helpers.predict`` and
  ``python -m helpers.evaluate`` (notebook 05).
- :mod:`~helpers.cli.course`: ``python -m helpers.course [run|strip|list|sync]``.
- :mod:`~helpers.cli.common`: what they share: output paths checked before any work, ``fail``.

The ``python -m`` names are kept by ``helpers/{data,train,course}/__main__.py`` and the two entry modules
``helpers/evaluation/predict.py`` and ``helpers/cli/evaluate.py``; nothing in the library imports this package.
"""
