"""Does training in N processes (DDP, torchrun) learn what one process learns? Issue 24's check.

    python benchmarks/ddp_parity.py [--seeds 0 1 2] [--epochs 3] [--img-size 96] [--batch-size 8] [--nproc 2]
        [--model smp_unet] [--amp auto] [--variants single,ddp,ddp_local_bn] [--n-images 144] [--json OUT]

For every seed it trains the same recipe (:func:`helpers.train.fit.fit`, AdamW, warm-up + cosine, BCE + Dice,
augmentation) on the same synthetic images in several ways, each in a fresh process on the CPU:

* ``single``: one process, ``--batch-size`` images per step, ``--nproc`` CPU threads;
* ``single_redraw`` (only when named in ``--variants``): the same, with other random draws (the batches are
  loaded in one DataLoader worker, which has its own seed): how far two runs of one recipe fall apart by
  chance alone, the noise floor of every comparison here;
* ``ddp``: ``torchrun --nproc_per_node NPROC`` (gloo), ``batch-size / nproc`` images per process and step
  (the same images per step), one thread per process, with the BatchNorm layers synchronised over the
  processes (:class:`helpers.train.distributed.CpuSyncBatchNorm`, what ``fit`` does under torchrun);
* ``ddp_local_bn``: the same, but every process keeps BatchNorm statistics of its own images only (the
  behaviour before issue 24; :func:`helpers.train.distributed.wrap_model` with ``sync_batchnorm=False``).

It prints one row per seed with each variant's final validation Dice (the last epoch's, as ``history.csv``
records it), the mean over the seeds, each variant's difference from ``single``, and whether ``ddp`` is
within :data:`TOLERANCE` of it. Every run also reports its optimiser steps per epoch (from ``last.pt``), which
must be equal. The default 144 images (115 train, 15 val) keep two runs of one recipe within about 0.02 of
each other; with issue 24's 48 images (38 train, 5 val) they fall 0.10 apart on average, more than the
tolerance, so three seeds cannot settle a 0.05 question there (``single_redraw`` measures it; figures in
benchmarks/README.md). Progress goes to stderr; ``--json OUT`` also writes the result as JSON. Work files (the
synthetic set, the run folders) go to ``--out`` (default ``runs/benchmarks/ddp_parity/``).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import _common
import pandas as pd
import torch

from helpers import config, models, runfolder
from helpers.cli.common import fail, json_object_arg
from helpers.data import synthetic
from helpers.train import distributed
from helpers.train.fit import fit
from helpers.train.loop import AMP_CHOICES, TrainConfig

#: The ways of training compared (see the module docstring); ``single`` is the reference.
VARIANTS: tuple[str, ...] = ("single", "single_redraw", "ddp", "ddp_local_bn")
#: What runs without ``--variants``: the reference, the fix, the behaviour before it.
DEFAULT_VARIANTS: tuple[str, ...] = ("single", "ddp", "ddp_local_bn")
#: Issue 24's bar: the mean over seeds of ``ddp`` within this of ``single``'s.
TOLERANCE = 0.05
#: Keys of the JSON result (benchmarks/README.md documents them).
RESULT_KEYS: tuple[str, ...] = ("benchmark", "settings", "environment", "runs", "means", "differences",
                                "tolerance", "ddp_within_tolerance")
#: Seconds one training run may take before it is stopped and reported.
RUN_TIMEOUT_S = 3600


def build_parser() -> argparse.ArgumentParser:
    """The command line (``--worker SPEC`` is internal: one training run, started by :func:`main` itself, whose
    settings are one JSON object, so that torchrun reads none of them as its own options)."""
    p = argparse.ArgumentParser(prog="python benchmarks/ddp_parity.py",
                                description="single-process against torchrun (DDP) validation Dice, per seed")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--img-size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=8, help="images per step, all processes together")
    p.add_argument("--nproc", type=int, default=2, help="processes of the DDP runs (torchrun --nproc_per_node)")
    p.add_argument("--model", default="smp_unet")
    p.add_argument("--model-kwargs", type=json_object_arg, default={}, help="JSON object of build_model arguments")
    p.add_argument("--amp", choices=AMP_CHOICES, default="auto", help="TrainConfig.amp (default auto, the recipe's)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help=f"comma-separated, of {','.join(VARIANTS)} (default {','.join(DEFAULT_VARIANTS)})")
    p.add_argument("--n-images", type=int, default=144,
                   help="synthetic pairs, split 80/10/10 by course_splits (issue 24 used 48: see benchmarks/README.md)")
    p.add_argument("--synthetic-size", type=int, default=128, help="width of the synthetic images, pixels")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per DDP process (single: nproc x this)")
    p.add_argument("--out", type=Path, default=None, help="work folder (default runs/benchmarks/ddp_parity)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the result as JSON to OUT")
    p.add_argument("--worker", type=json_object_arg, default=None, help=argparse.SUPPRESS)
    return p


def check_args(args: argparse.Namespace) -> list[str]:
    """The variants asked for.

    Raises:
        ValueError: a setting that cannot run (the message names the option and what it takes).
    """
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"--variants {args.variants!r}: unknown {unknown}; choose from {','.join(VARIANTS)}")
    for name in ("epochs", "img_size", "batch_size", "n_images", "synthetic_size", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.nproc < 2:
        raise ValueError(f"--nproc must be >= 2 (a DDP run needs two processes), got {args.nproc}")
    if args.batch_size % args.nproc:
        raise ValueError(f"--batch-size {args.batch_size} is not a multiple of --nproc {args.nproc}: each "
                         "process must get the same share of a step's images")
    if len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"--seeds {args.seeds} repeats a seed: give each seed once")
    return variants


def is_single(variant: str) -> bool:
    """True for the variants that train in one process."""
    return variant.startswith("single")


def train_config(spec: Mapping[str, Any]) -> TrainConfig:
    """The recipe of one run (``spec``: :func:`worker_spec`): the course's defaults, the benchmark's settings."""
    return TrainConfig(model=spec["model"], model_kwargs=spec["model_kwargs"], img_size=spec["img_size"],
                       epochs=spec["epochs"], batch_size=spec["batch_size"], amp=spec["amp"], seed=spec["seed"],
                       num_workers=spec.get("num_workers", 0), data=spec["data"], out=spec["run_dir"], device="cpu")


def worker_spec(args: argparse.Namespace, variant: str, seed: int, data: Path, run_dir: Path) -> dict[str, Any]:
    """The settings of one run; ``batch_size`` is per process (``--batch-size / --nproc`` for the DDP variants).

    ``single_redraw`` loads its batches in one DataLoader worker process, whose seed differs from the main
    process's: the same recipe in one process with other random draws (data order, augmentations).
    """
    per_process = args.batch_size if is_single(variant) else args.batch_size // args.nproc
    return {"variant": variant, "seed": seed, "data": str(data), "run_dir": str(run_dir), "model": args.model,
            "model_kwargs": args.model_kwargs, "img_size": args.img_size, "epochs": args.epochs,
            "batch_size": per_process, "amp": args.amp, "num_workers": int(variant == "single_redraw")}


def worker(spec: Mapping[str, Any]) -> int:
    """One training run (in the process torchrun, or :func:`run_variant`, started)."""
    if spec["variant"] == "ddp_local_bn":   # the behaviour before issue 24: BatchNorm statistics per process
        distributed.wrap_model = functools.partial(distributed.wrap_model, sync_batchnorm=False)
    fit(train_config(spec), progress=False)
    return 0


def child_env(args: argparse.Namespace, threads: int) -> dict[str, str]:
    """The environment of a training process: the repository importable, ``threads`` CPU threads, no smoke
    mode or profile (the benchmark sets the recipe), work files under ``--out``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "SKINSEG_HOME": str(args.out / "home"),
           "SKINSEG_SMOKE": "0"}
    for name in ("SKINSEG_PROFILE", "SKINSEG_DATA", *distributed.TORCHRUN_VARIABLES):
        env.pop(name, None)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def worker_command(args: argparse.Namespace, variant: str, spec: Mapping[str, Any]) -> list[str]:
    """The command line of one run: this script in ``--worker`` mode, under torchrun for the DDP variants."""
    launcher = [sys.executable] if is_single(variant) else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc)]
    return [*launcher, str(Path(__file__).resolve()), "--worker", json.dumps(dict(spec))]


def run_result(run_dir: Path, variant: str, seed: int, seconds: float) -> dict[str, Any]:
    """What one finished run folder says: final and best validation Dice, optimiser steps per epoch."""
    history = pd.read_csv(runfolder.history_path(run_dir))
    last = models.load_checkpoint(runfolder.last_path(run_dir))
    epochs = int(history["epoch"].iloc[-1])
    return {"variant": variant, "seed": seed, "val_dice": float(history["val_dice"].iloc[-1]),
            "best_val_dice": float(history["val_dice"].max()), "epochs": epochs,
            "steps_per_epoch": int(last["scheduler"]["last_epoch"]) // epochs,
            "world_size": int(last.get("world_size", 1)), "seconds": round(seconds, 1)}


def run_variant(args: argparse.Namespace, variant: str, seed: int, data: Path) -> dict[str, Any]:
    """Train one variant for one seed in a fresh process (or ``nproc``); return :func:`run_result`'s row.

    Raises:
        RuntimeError: the run failed (its last lines of output are in the message).
    """
    run_dir = args.out / "runs" / f"{variant}-seed{seed}"
    threads = args.threads * args.nproc if is_single(variant) else args.threads
    start = time.perf_counter()
    spec = worker_spec(args, variant, seed, data, run_dir)
    proc = subprocess.run(worker_command(args, variant, spec), env=child_env(args, threads),
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} seed {seed} failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return run_result(run_dir, variant, seed, time.perf_counter() - start)


def summarise(runs: Sequence[Mapping[str, Any]], variants: Sequence[str]) -> dict[str, Any]:
    """Per-variant mean final val Dice over the seeds, each variant's difference from ``single``, the verdict."""
    means = {v: statistics.fmean(r["val_dice"] for r in runs if r["variant"] == v)
             for v in variants if any(r["variant"] == v for r in runs)}
    differences = {v: means[v] - means["single"] for v in means if v != "single"} if "single" in means else {}
    within = abs(differences["ddp"]) <= TOLERANCE if "ddp" in differences else None
    return {"means": means, "differences": differences, "tolerance": TOLERANCE, "ddp_within_tolerance": within}


def table(runs: Sequence[Mapping[str, Any]], variants: Sequence[str], summary: Mapping[str, Any]) -> str:
    """One row per seed (final val Dice of each variant, steps per epoch), then the means and differences."""
    rows = []
    for seed in sorted({r["seed"] for r in runs}):
        row: dict[str, Any] = {"seed": seed}
        for r in (r for r in runs if r["seed"] == seed):
            row[r["variant"]] = r["val_dice"]
            row[f"{r['variant']}_steps"] = r["steps_per_epoch"]
        rows.append(row)
    rows.append({"seed": "mean", **summary["means"]})
    rows.append({"seed": "- single", **summary["differences"]})
    columns = [("seed", "seed")] + [(v, f"{v} val Dice") for v in variants] + \
        [(f"{v}_steps", f"{v} steps/epoch") for v in variants]
    lines = [_common.format_table(rows, columns)]
    if summary["ddp_within_tolerance"] is not None:
        lines.append(f"ddp - single = {summary['differences']['ddp']:+.4f} on the mean of {len(rows) - 2} "
                     f"seed(s): {'within' if summary['ddp_within_tolerance'] else 'NOT within'} {TOLERANCE}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Train every variant for every seed, print the table (and ``--json``).

    Returns 0 when every run finished, 1 when one failed (its output is shown), 2 for a bad setting.
    """
    args = build_parser().parse_args(argv)
    if args.worker is not None:
        return worker(args.worker)
    try:
        variants = check_args(args)
    except ValueError as err:
        return fail(err)
    args.out = (args.out or config.runs_dir() / "benchmarks" / "ddp_parity").resolve()
    with contextlib.redirect_stdout(sys.stderr):   # "Drawing the synthetic dataset ...": stdout is the table
        data = synthetic.ensure_synthetic(args.n_images, args.synthetic_size, seed=0, root=args.out / "data")
    runs = []
    for seed in args.seeds:
        for variant in variants:
            _common.eprint(f"seed {seed}: training {variant} ...")
            try:
                runs.append(run_variant(args, variant, seed, data))
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                print(f"error: {err}", file=sys.stderr)
                return 1
            _common.eprint(f"  final val Dice {runs[-1]['val_dice']:.4f} in {runs[-1]['seconds']} s")
    summary = summarise(runs, variants)
    settings = {k: getattr(args, k) for k in ("seeds", "epochs", "img_size", "batch_size", "nproc", "model",
                                              "model_kwargs", "amp", "n_images", "synthetic_size", "threads")}
    result = {"benchmark": "ddp_parity", "settings": settings, "environment": _common.environment(torch.device("cpu")),
              "runs": runs, **summary}
    print(table(runs, variants, summary))
    if args.json:
        _common.write_json(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
