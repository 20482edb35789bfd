"""Search recipe settings (image size, loss, augmentation) on the validation split only.

    python benchmarks/recipe_search.py --data DATA_DIR --budget-minutes 10 \\
        --configs 128:bce+dice,96:bce+dice,160:bce+dice,128:dice,128:bce+dice:noaug [--json OUT]

Each configuration ``SIZE:LOSS[:noaug]`` trains the recipe model (``--model``, default ``resnet_unet_aspp``)
on ``train`` for the same wall-time budget, exactly as ``benchmarks/real_data.py`` trains it (budget probe,
then :func:`helpers.train.fit.fit` for the epochs that fit, ``best.pt`` by val Dice). Its score is the best
**val** thresholded Jaccard over flip TTA x post-processing x threshold (the grid ``--select-on-val`` uses),
with the plain threshold-0.5 figure beside it. The table is sorted best first and ends with the
``real_data.py`` command that trains the winner against the plain reference and reports it once on the
held-out split.

The held-out split is never read: its pairs are dropped right after the splits are made (and checked to
be disjoint from train and val). Results are written after every configuration, so a stopped search
keeps what it measured.
"""
from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common
import real_data

from helpers import config, runtime
from helpers.data.splits import check_no_leak
from helpers.evaluation import metrics
from helpers.train import losses

TABLE_COLUMNS = [("config", "config"), ("img_size", "img"), ("loss", "loss"), ("augment", "aug"),
                 ("epochs", "epochs"), ("train_seconds", "train s"), ("best_val_dice", "val Dice (fit)"),
                 ("val_threshold_jaccard_plain", "val thr. J @0.5"), ("val_threshold_jaccard", "val thr. J best"),
                 ("val_settings", "best settings")]
#: Keys of every row of the JSON ``rows`` list.
ROW_KEYS: tuple[str, ...] = tuple(key for key, _ in TABLE_COLUMNS) + ("over_budget", "budget_seconds")


@dataclass(frozen=True)
class SearchConfig:
    """One point of the search: square training size, loss name and whether to augment."""

    img_size: int
    loss: str
    augment: bool = True

    @property
    def label(self) -> str:
        """``128:bce+dice`` or ``128:bce+dice:noaug``, the form ``--configs`` takes."""
        return f"{self.img_size}:{self.loss}" + ("" if self.augment else ":noaug")


def parse_config(text: str) -> SearchConfig:
    """Parse ``SIZE:LOSS[:noaug]``.

    Raises:
        ValueError: the size is not an integer >= 32, the loss is unknown, or the third part is not ``noaug``.
    """
    parts = text.strip().split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "noaug"):
        raise ValueError(f"config {text!r}: expected SIZE:LOSS or SIZE:LOSS:noaug, e.g. 128:bce+dice")
    try:
        size = int(parts[0])
    except ValueError:
        raise ValueError(f"config {text!r}: image size {parts[0]!r} is not an integer") from None
    loss = parts[1].replace(" ", "").lower()
    if size < 32 or loss not in losses.LOSS_NAMES:
        raise ValueError(f"config {text!r}: need a size >= 32 and a loss in {losses.LOSS_NAMES}")
    return SearchConfig(size, loss, len(parts) == 2)


def _configs(text: str) -> list[SearchConfig]:
    """argparse type: comma-separated configs, duplicates refused."""
    try:
        out = [parse_config(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not out or len({c.label for c in out}) != len(out):
        raise argparse.ArgumentTypeError(f"need one or more distinct configs, got {text!r}")
    return out


DEFAULT_CONFIGS = "128:bce+dice,96:bce+dice,160:bce+dice,128:dice,128:bce+dice:noaug"


def build_parser() -> argparse.ArgumentParser:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="python benchmarks/recipe_search.py", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=None,
                   help="dataset folder in any supported layout; default: the synthetic set real_data.py draws")
    p.add_argument("--configs", type=_configs, default=_configs(DEFAULT_CONFIGS), metavar="SIZE:LOSS[:noaug],...")
    p.add_argument("--budget-minutes", type=float, default=10.0, help="training wall time per configuration")
    p.add_argument("--final-budget-minutes", type=float, default=20.0,
                   help="budget written into the printed real_data.py command for the winner")
    p.add_argument("--model", default=real_data.DEFAULT_MODELS[0], help="the recipe model to train")
    p.add_argument("--model-kwargs", type=real_data.model_kwargs_map, default={}, metavar="JSON",
                   help="build arguments of --model, e.g. '{\"resnet_unet_aspp\": {\"encoder_name\": \"resnet18\"}}'")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--probe-steps", type=int, default=3)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--device", choices=runtime.DEVICE_CHOICES, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic-n", type=int, default=real_data.SYNTHETIC_DEFAULT["n"])
    p.add_argument("--synthetic-size", type=int, default=real_data.SYNTHETIC_DEFAULT["size"])
    p.add_argument("--out", type=Path, default=None, help="work folder (default: runs/benchmarks/recipe_search)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the result as JSON here")
    return p


def _train_args(cfg: SearchConfig, args: argparse.Namespace) -> argparse.Namespace:
    """The ``real_data.py`` arguments that train ``cfg`` the way the benchmark would."""
    argv = ["--models", args.model, "--img-size", str(cfg.img_size), "--loss", cfg.loss,
            "--budget-minutes", str(args.budget_minutes), "--batch-size", str(args.batch_size),
            "--probe-steps", str(args.probe_steps), "--seed", str(args.seed)]
    argv += [] if cfg.augment else ["--no-augment"]
    argv += [] if args.workers is None else ["--workers", str(args.workers)]
    argv += [] if args.device is None else ["--device", args.device]
    parsed = real_data.build_parser().parse_args(argv)
    parsed.model_kwargs = args.model_kwargs
    return parsed


def search_one(cfg: SearchConfig, args: argparse.Namespace, splits: Mapping[str, Sequence[Any]],
               device: Any, out: Path) -> dict[str, Any]:
    """Train ``cfg`` on train within the budget and score it on val; one result row."""
    train_args = _train_args(cfg, args)
    trained = real_data.train_model(args.model, train_args, splits, device,
                                    out / cfg.label.replace(":", "_").replace("+", "-"))
    best, grid = real_data.select_on_val(trained.checkpoint, splits["val"], cfg.img_size, device)
    plain = next(r for r in grid if not r["tta"] and not r["postprocess"]
                 and r["threshold"] == metrics.DEFAULT_THRESHOLD)
    budget_s = args.budget_minutes * 60
    return {"config": cfg.label, "img_size": cfg.img_size, "loss": cfg.loss, "augment": cfg.augment,
            "epochs": trained.epochs, "train_seconds": trained.train_seconds, "budget_seconds": budget_s,
            "over_budget": trained.train_seconds > budget_s, "best_epoch": trained.best_epoch,
            "best_val_dice": trained.val_dice, "val_threshold_jaccard_plain": plain["val_threshold_jaccard"],
            "val_threshold_jaccard": best["val_threshold_jaccard"], "val_dice": best["val_dice"],
            "val_settings": real_data.settings_label(best["tta"], best["postprocess"], best["threshold"]),
            "grid": grid}


def final_command(best: Mapping[str, Any], data: Path | None, budget_minutes: float) -> str:
    """The ``real_data.py`` command that trains the winner against the reference and scores the held-out split."""
    argv = ["python", "benchmarks/real_data.py"] + (["--data", str(data)] if data else [])
    argv += ["--test", "holdout", "--budget-minutes", f"{budget_minutes:g}", "--img-size", str(best["img_size"]),
             "--loss", best["loss"], "--select-on-val"] + ([] if best["augment"] else ["--no-augment"])
    return shlex.join(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train and score every configuration; return the result dict (rows sorted best first)."""
    if args.budget_minutes <= 0:
        raise ValueError(f"need --budget-minutes > 0, got {args.budget_minutes}")
    device = runtime.select_device(args.device)
    dataset = real_data.load_dataset(args.data, args.synthetic_n, args.synthetic_size, args.seed)
    check_no_leak(dataset.splits, where=f"the search's splits ({dataset.description})")
    n_heldout = len(dataset.splits.get("test", []))
    splits = {"train": dataset.splits["train"], "val": dataset.splits["val"]}  # the held-out split stops here
    _common.eprint(f"data: {dataset.description}\nsplits: train {len(splits['train'])}, val {len(splits['val'])} "
                   f"(held-out {n_heldout}: not read); device {device}")
    out = Path(args.out) if args.out else config.runs_dir() / "benchmarks" / "recipe_search"
    result: dict[str, Any] = {"benchmark": "recipe_search", "data": dataset.description,
                              "synthetic": dataset.synthetic, "model": args.model, "n_train": len(splits["train"]),
                              "n_val": len(splits["val"]), "budget_minutes": args.budget_minutes,
                              "batch_size": args.batch_size, "seed": args.seed, "rows": [],
                              **_common.environment(device)}
    for cfg in args.configs:
        _common.eprint(f"== {cfg.label}")
        start = time.perf_counter()
        row = search_one(cfg, args, splits, device, out)
        _common.eprint(f"  val thresholded Jaccard {row['val_threshold_jaccard']:.4f} ({row['val_settings']}), "
                       f"{time.perf_counter() - start:.0f} s in all")
        result["rows"].append(row)
        result["rows"].sort(key=lambda r: -r["val_threshold_jaccard"])
        result["best"] = result["rows"][0]["config"]
        result["final_command"] = final_command(result["rows"][0], args.data, args.final_budget_minutes)
        _common.write_json(result, args.json)  # after every config: a stopped search keeps its rows
    return result


def format_result(result: Mapping[str, Any]) -> str:
    """The result as text: data line, table (best first), the winner and the command that reports it."""
    rows = [{**r, "augment": "on" if r["augment"] else "off"} for r in result["rows"]]
    return "\n".join([
        f"data: {result['data']}",
        f"model {result['model']}; train {result['n_train']}, val {result['n_val']} (the held-out split is not "
        f"read); budget {result['budget_minutes']:g} min per config; torch {result['torch']} on "
        f"{result['device']} ({result['threads']} threads)",
        _common.format_table(rows, TABLE_COLUMNS),
        f"best on val: {result['best']}",
        f"report it once on the held-out split: {result['final_command']}"])


def main(argv: list[str] | None = None) -> int:
    """Run the search, print the table, write ``--json``. Returns the exit status (2 for a bad setting)."""
    args = build_parser().parse_args(argv)
    return _common.run_main(lambda: run(args), format_result)  # run() writes --json after every config


if __name__ == "__main__":
    raise SystemExit(main())
