"""Train a segmentation model from the command line: ``python -m helpers.train``.

A thin wrapper: it parses the arguments into a :class:`helpers.train.loop.TrainConfig`, calls
:func:`helpers.train.fit.fit` and prints where the run is (notebook 04 shows the same run in Python). Example (the reference recipe on a GPU)::

    python -m helpers.train --data data/isic2018 --model resnet_unet_aspp --img-size 256 --epochs 5 \\
        --batch-size 16 --lr 1e-3 --pretrained --out runs/resnet_unet_aspp

Interrupted? Run the same command with ``--resume``: it continues after the last finished epoch (after
Ctrl-C the command prints that command line and exits with status 130). A bad setting, a run folder another
run is writing (its lock names that run's process) or a checkpoint that cannot be saved (full disk,
read-only folder) is one ``error:`` line on stderr and exit status 2.

Several GPUs on one machine: start the same command through torchrun, one process per GPU::

    torchrun --standalone --nproc_per_node 4 -m helpers.train --data data/isic2018 --batch-size 16 ...

Each process trains with DistributedDataParallel on a quarter of the images; ``--batch-size`` is per
process, so every step then sees 4 x 16 = 64 images. Rank 0 alone prints and writes the run folder. On a
CPU the same works with the gloo backend (``--device cpu``). Without torchrun nothing changes.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from helpers import models, runfolder
from helpers.cli.common import (
    INTERRUPTED,
    USAGE_ERROR,
    OutputPathError,
    check_output_path,
    fail,
    interrupted,
    json_object_arg,
)
from helpers.data.files import DatasetError
from helpers.data.transforms import COLOUR_AUGMENTS
from helpers.runtime import DEVICE_CHOICES
from helpers.train import distributed
from helpers.train.fit import ResumeError, fit
from helpers.train.loop import ConfigError, NonFiniteLossError, TrainConfig, TrainingInterrupted

_DEFAULTS = TrainConfig()
#: TrainConfig fields whose option is not ``--<field with dashes>``.
_OPTIONS = {"num_workers": "--workers", "augment": "--no-augment", "data": "--data", "out": "--out"}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (defaults are the reference recipe of :class:`TrainConfig`)."""
    p = argparse.ArgumentParser(prog="python -m helpers.train", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=None,
                   help="dataset folder (ISIC, ISIC 2018, HAM10000 or train/val/test sub-folders); "
                        "default: SKINSEG_DATA or the embedded synthetic set")
    p.add_argument("--model", default=_DEFAULTS.model, help="helpers.models.build_model name")
    p.add_argument("--model-kwargs", type=json_object_arg, default={}, metavar="JSON",
                   help='extra model arguments as a JSON object, e.g. \'{"encoder_name": "resnet18"}\'')
    p.add_argument("--img-size", type=int, default=_DEFAULTS.img_size, help="square training size, pixels")
    p.add_argument("--epochs", type=int, default=_DEFAULTS.epochs)
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size,
                   help="images per step and process (under torchrun a step sees processes x batch size)")
    p.add_argument("--lr", type=float, default=_DEFAULTS.lr, help="peak learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float, default=_DEFAULTS.weight_decay)
    p.add_argument("--warmup", type=float, default=_DEFAULTS.warmup,
                   help="warm-up: < 1 = fraction of all steps, >= 1 = epochs")
    p.add_argument("--loss", default=_DEFAULTS.loss, help="bce+dice, bce, dice or tversky")
    p.add_argument("--loss-kwargs", type=json_object_arg, default={}, metavar="JSON",
                   help='the loss\'s arguments as a JSON object, e.g. \'{"alpha": 0.2, "beta": 0.8}\' for tversky')
    p.add_argument("--grad-clip", type=float, default=None, help="max gradient norm (off if not given)")
    p.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"], default=_DEFAULTS.amp,
                   help="mixed precision (auto: bf16/fp16 on CUDA, bf16 on CPUs with native bf16, else off)")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=_DEFAULTS.pretrained,
                   help="start from ImageNet encoder weights (downloaded once)")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="train without augmentations")
    p.add_argument("--colour-augment", choices=COLOUR_AUGMENTS, default=_DEFAULTS.colour_augment,
                   help="strength of the colour augmentations (strong: against another dermoscope's light)")
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    p.add_argument("--patience", type=int, default=None, help="early stopping patience in epochs (off if not given)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: chosen for this machine)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default=None, help="default: best available")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<model>)")
    p.add_argument("--resume", action="store_true", help=f"continue from <out>/{runfolder.LAST_FILE} if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the parsed arguments describe."""
    return TrainConfig(model=args.model, model_kwargs=args.model_kwargs, pretrained=args.pretrained, img_size=args.img_size, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, warmup=args.warmup,
                       loss=args.loss, loss_kwargs=args.loss_kwargs, grad_clip=args.grad_clip, amp=args.amp,
                       augment=args.augment, colour_augment=args.colour_augment,
                       seed=args.seed, patience=args.patience, num_workers=args.workers,
                       data=str(args.data) if args.data else None, out=str(args.out) if args.out else None,
                       device=args.device, resume=args.resume)


def option_name(field: str) -> str:
    """The command-line option of a TrainConfig field (``img_size`` -> ``--img-size``)."""
    return _OPTIONS.get(field, "--" + field.replace("_", "-"))


def resume_command(argv: list[str]) -> str:
    """The command line that resumes this run: the same arguments plus ``--resume`` (under torchrun too)."""
    world = distributed.get_world_size()
    start = f"torchrun --nproc_per_node {world} -m helpers.train" if world > 1 else "python -m helpers.train"
    return f"{start} {shlex.join(argv + ([] if '--resume' in argv else ['--resume']))}"


def interrupted_message(err: KeyboardInterrupt, cfg: TrainConfig, argv: list[str]) -> str:
    """Where Ctrl-C stopped the run, what ``last.pt`` holds and the command that resumes it."""
    if isinstance(err, TrainingInterrupted):
        where, last, saved = f"interrupted at epoch {err.epoch}", err.last_path, f"holds epoch {err.saved_epoch}"
        resumable = err.saved_epoch > 0
    else:  # before the first epoch began (reading data, building the model) or after the last
        where, last, saved = "interrupted", runfolder.last_path(cfg.run_dir()), "is unchanged"
        resumable = last.is_file()
    if not resumable:
        return f"{where}, before any epoch was saved: nothing to resume; run the same command again to start"
    return f"{where}: {last} {saved}; resume with {resume_command(argv)}"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 a training/data error, 2 a bad setting, an unwritable or
    locked --out or a checkpoint that could not be saved, 130 after Ctrl-C; the reason is one line on stderr)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ConfigError as err:  # an out-of-range setting, named by its option
        return fail(f"{option_name(err.name)} {err.value} {err.detail}")
    except ValueError as err:
        return fail(err)
    try:
        check_output_path(cfg.run_dir(), "--out" if args.out else "the run folder (--out)", folder=True)
    except OutputPathError as err:
        return fail(err)
    main_process = distributed.is_main_process
    try:
        result = fit(cfg, progress=not args.quiet)
    except KeyboardInterrupt as err:  # Ctrl-C: last.pt holds the last finished epoch
        return interrupted(interrupted_message(err, cfg, argv)) if main_process() else INTERRUPTED
    except runfolder.RunFolderError as err:  # locked by another run, or a file could not be written
        return fail(err) if main_process() else USAGE_ERROR
    except (NonFiniteLossError, ResumeError, DatasetError, models.CheckpointError, ValueError) as err:
        where = f" (rank {distributed.get_rank()})" if distributed.wants_distributed() else ""
        print(f"error{where}: {err}", file=sys.stderr)
        return 1
    if not main_process():  # under torchrun, rank 0 reports for all processes
        return 0
    last = result.history.iloc[-1] if len(result.history) else None
    world = distributed.get_world_size()
    print(f"run folder: {result.run_dir}" + (f" (trained by {world} processes)" if world > 1 else ""))
    if last is not None:
        print(f"epochs: {int(last['epoch'])} | last val Dice {last['val_dice']:.4f} | "
              f"best val Dice {result.best_score:.4f} at epoch {result.best_epoch}"
              + (" (stopped early)" if result.stopped_early else ""))
    print(f"best checkpoint: {result.best_path}\nresumable state: {result.last_path}\n"
          f"history: {runfolder.history_path(result.run_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
