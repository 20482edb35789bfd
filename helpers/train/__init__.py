"""The training stage: losses, the loop notebook 04 builds, and the run that wraps it.

- :mod:`~helpers.train.losses`: BCE, Dice, BCE + Dice, Tversky for ``(N, 1, H, W)`` logits (notebook 02).
- :mod:`~helpers.train.loop`: what notebook 04 teaches: ``TrainConfig``, optimiser, schedule, epoch loops.
- :mod:`~helpers.train.fit`: ``fit`` / ``train_or_load``: a whole run into a run folder (:mod:`helpers.runfolder`).
- :mod:`~helpers.train.resume`: the ``last.pt`` state a killed run resumes from.
- :mod:`~helpers.train.distributed`: torchrun / DistributedDataParallel wiring.

``python -m helpers.train`` is :mod:`helpers.cli.train`.
"""
