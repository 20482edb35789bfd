"""Shared bits of the benchmark scripts: the environment record, step times, tables, paths and JSON output.

Not part of :mod:`helpers`: the scripts in ``benchmarks/`` import it as a sibling module (``import _common``),
which works when they run as ``python benchmarks/<name>.py`` (their folder is first on ``sys.path``).
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from helpers.data.files import write_text_atomic


def environment(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on: torch version, device (and GPU name), threads, CPU count, Python."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so a wall-clock reading covers it (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StepTimes:
    """Wall-clock durations of repeated steps, in seconds, after warm-up.

    Attributes:
        seconds: one duration per timed step.
        items_per_step: images processed per step (the batch size).
    """

    seconds: list[float]
    items_per_step: int

    @property
    def median(self) -> float:
        """Median step time in seconds (robust to a neighbour's process stealing the CPU for a moment)."""
        return statistics.median(self.seconds)

    @property
    def images_per_s(self) -> float:
        """Throughput from the median step time: ``items_per_step / median``."""
        return self.items_per_step / self.median

    @property
    def mean_images_per_s(self) -> float:
        """Throughput from the total time: ``items_per_step * steps / sum(seconds)``."""
        return self.items_per_step * len(self.seconds) / sum(self.seconds)

    def summary(self) -> dict[str, float]:
        """``{"images_per_s", "mean_images_per_s", "median_step_s", "steps"}`` for the JSON output."""
        return {"images_per_s": self.images_per_s, "mean_images_per_s": self.mean_images_per_s,
                "median_step_s": self.median, "steps": len(self.seconds)}


def paired_ratio(full: StepTimes, bare: StepTimes) -> tuple[float, list[float]]:
    """Speed of the full path relative to the bare one, from interleaved steps.

    Step ``i`` of ``full`` and of ``bare`` ran back to back, so their ratio is little affected by a neighbour's
    load that comes and goes over seconds; the median over the pairs is the estimate.

    Returns:
        ``(median ratio, per-pair ratios)``, each ratio ``(full images/s) / (bare images/s)`` of one pair.

    Raises:
        ValueError: the two have different step counts.
    """
    if len(full.seconds) != len(bare.seconds) or not full.seconds:
        raise ValueError(f"need as many full as bare steps (>= 1), got {len(full.seconds)} and {len(bare.seconds)}")
    pairs = [(full.items_per_step / f) / (bare.items_per_step / b) for f, b in zip(full.seconds, bare.seconds)]
    return statistics.median(pairs), pairs


def take(loader: Iterable[Any], n: int) -> Iterator[Any]:
    """The first ``n`` batches of ``loader`` from a fresh iterator (as each epoch of training starts one).

    Raises:
        ValueError: the loader has fewer than ``n`` batches.
    """
    count = 0
    for batch in loader:
        if count == n:
            return
        count += 1
        yield batch
    if count < n:
        raise ValueError(f"the loader gave {count} batches, {n} needed: use more images or fewer steps")


def format_value(value: Any) -> str:
    """A table cell: floats with 4 decimals, None as ``-``, booleans as yes/no, anything else as str."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A fixed-width text table: ``columns`` is ``[(key, header), ...]``; missing keys print as ``-``."""
    cells = [[format_value(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max([len(header)] + [len(r[i]) for r in cells]) for i, (_, header) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def write_json(result: Mapping[str, Any], path: str | os.PathLike[str] | None) -> str:
    """``result`` as indented JSON; also written atomically to ``path`` (parents created) unless it is None or ``-``."""
    text = json.dumps(result, indent=2, default=str) + "\n"
    if path is not None and str(path) != "-":
        write_text_atomic(path, text)   # a search stopped mid-write keeps its previous result file
    return text


def shown_path(path: str | os.PathLike[str]) -> str:
    """``path`` as printed and stored in results: relative to the working directory when it lies under it,
    ``~/...`` under the home folder, else only its last two parts (``.../data/synthetic``), so no output
    carries the layout of the machine that ran it."""
    path = Path(path).expanduser()
    if not path.is_absolute():
        return str(path)
    resolved = path.resolve()
    for base, prefix in ((Path.cwd().resolve(), ""), (Path.home().resolve(), "~/")):
        if resolved.is_relative_to(base):
            rel = resolved.relative_to(base)
            return f"{prefix}{rel}" if str(rel) != "." else (prefix.rstrip("/") or ".")
    return str(Path("...", *resolved.parts[-2:]))


def eprint(*args: Any) -> None:
    """Print progress to stderr, so stdout stays the result (the table, or the JSON object)."""
    print(*args, file=sys.stderr, flush=True)


def epoch_printer(epochs: int, label: str = "") -> Callable[[str, dict[str, Any]], None]:
    """A :func:`helpers.train.fit.fit` callback printing one stderr line per finished epoch:
    ``  [label ]epoch k/N: train loss L, val Dice D, S s``."""
    prefix = f"{label} " if label else ""

    def callback(event: str, info: dict[str, Any]) -> None:
        if event == "epoch_end":
            row = info["row"]
            eprint(f"  {prefix}epoch {info['epoch']}/{epochs}: train loss {row['train_loss']:.4f}, val Dice "
                   f"{row['val_dice']:.4f}, {row['seconds']:.1f} s")
    return callback


def run_main(run: Callable[[], Mapping[str, Any]], format_result: Callable[[Mapping[str, Any]], str],
             json_path: str | os.PathLike[str] | None = None) -> int:
    """The body of a benchmark's ``main``: ``run()`` with its progress on stderr, then the JSON (to ``json_path``,
    if given) and the ``format_result`` text on stdout. Returns the exit status: 2 with one ``error:`` line for a
    ValueError or FileNotFoundError (a bad setting, a missing folder), else 0."""
    try:
        with contextlib.redirect_stdout(sys.stderr):  # progress to stderr; stdout is the result table
            result = run()
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_json(result, json_path)
    print(format_result(result))
    return 0
