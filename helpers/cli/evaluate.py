"""Score predicted masks against ground truth the ISIC 2018 way: ``python -m helpers.evaluate``.

    python -m helpers.evaluate --truth data/val/masks --pred runs/preds [--json] [--per-image scores.csv]

Both folders hold ``<id>_segmentation.png`` masks (single channel, 0/255). Prints the macro-averaged
metrics (mean over images, with std and median) as a table, or one JSON object with ``--json``; the
per-image scores go to a CSV with ``--per-image``. The numbers equal the official scorer's
(``isic-challenge-scoring segmentation TRUTH PRED``); ``threshold_jaccard`` is the ISIC 2018 ranking score.
All the logic is :func:`helpers.evaluation.metrics.evaluate_folders`; masks are read with the one mask rule
(:func:`helpers.data.files.read_mask`), so a 0/1, colour or alpha-only mask is refused with its name and the fix
instead of scoring 0. Every failure (a folder without ``<id>_segmentation.png`` masks names what it holds; a full
or read-only disk names the CSV) is one ``error:`` line on stderr, exit status 2. Introduced in notebook 05
(``05_evaluation``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from helpers.cli.common import OutputPathError, check_output_path, fail
from helpers.data.files import OutputWriteError, write_text_atomic, writing
from helpers.evaluation.metrics import METRIC_NAMES, evaluate_folders


def format_summary(summary: dict[str, float]) -> str:
    """The summary of :func:`helpers.evaluation.metrics.summarize` as a fixed-width text table, one metric per row."""
    lines = [f"{'metric':<18} {'mean':>8} {'std':>8} {'median':>8}"]
    for name in METRIC_NAMES:
        if name in summary:
            lines.append(f"{name:<18} {summary[name]:>8.4f} {summary[name + '_std']:>8.4f} "
                         f"{summary[name + '_median']:>8.4f}")
    lines.append(f"images: {summary['n_images']} (macro average: every image weighs the same)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m helpers.evaluate``."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.evaluate",
        description="Score predicted masks against ground truth with the ISIC 2018 conventions "
                    "(per-image scores, macro-averaged; threshold_jaccard is the ranking score).")
    parser.add_argument("--truth", required=True, type=Path, help="folder of ground-truth <id>_segmentation.png")
    parser.add_argument("--pred", required=True, type=Path, help="folder of predicted <id>_segmentation.png")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--per-image", type=Path, metavar="CSV", help="also write per-image scores to this CSV")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 success, 2 for a usage or data error, printed to stderr)."""
    args = build_parser().parse_args(argv)
    if args.truth.resolve() == args.pred.resolve():
        return fail(f"--truth and --pred are the same folder ({args.truth}): masks scored against themselves "
                    "always get 1.0. Pass the folder python -m helpers.predict wrote as --pred")
    try:
        if args.per_image is not None:
            check_output_path(args.per_image, "--per-image", folder=False)
        per_image, summary = evaluate_folders(args.truth, args.pred)
        if args.per_image is not None:
            with writing(args.per_image):   # atomic: a full disk leaves no half-written CSV
                write_text_atomic(args.per_image, per_image.to_csv())
    except (OutputPathError, OutputWriteError, ValueError, FileNotFoundError) as err:
        return fail(err)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
