"""Record what each training epoch saw: one helper for the in-process tests and the torchrun driver script.

Not a test module (no ``test_`` prefix); ``tests/test_distributed.py`` imports it, and its DRIVER script puts
this folder on ``sys.path`` to import it in every torchrun process.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from helpers.train import loop


def record_epochs(set_attribute: Callable[[Any, str, Any], None] = setattr) -> list[dict]:
    """Replace ``loop.train_one_epoch`` (through ``set_attribute``: ``monkeypatch.setattr`` in a test, plain
    ``setattr`` in a driver process) by a wrapper that appends ``{"epoch", "steps", "images", "ids"}`` of each
    finished epoch to the returned list."""
    epochs: list[dict] = []
    real_epoch = loop.train_one_epoch

    def recording_epoch(model, loader, *args, **kwargs):
        ids: list[str] = []

        def batches():
            for batch in loader:
                ids.extend(batch["id"])
                yield batch
        result = real_epoch(model, batches(), *args, **kwargs)
        epochs.append({"epoch": kwargs["epoch"], "steps": result["steps"], "images": result["images"], "ids": ids})
        return result

    set_attribute(loop, "train_one_epoch", recording_epoch)
    return epochs
