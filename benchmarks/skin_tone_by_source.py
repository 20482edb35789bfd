"""Where ITA is defined: the skin's median CIELAB ``b*`` and ITA category per source of a dataset.

ITA (``helpers.evaluation.subgroups.skin_ita``) is defined for yellowish skin, ``b* > 0``; on dermoscopy the
device's white balance can make the skin bluish or neutral, and the angle then says nothing about the patient.
This script counts, per source (the metadata CSV's ``dataset`` column; one source "all" without it), how many
images have an undefined ITA and how the others fall into the ITA categories::

    python benchmarks/skin_tone_by_source.py --data ../shared/data/ham10000-small --n 300 [--json OUT]

``--n`` images are drawn with a seeded hash of their ids (``helpers.data.splits.subset_pairs``, ``--seed``) from
all splits together; the masks are the ground truth.
"""
from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

import _common
import numpy as np

from helpers import data
from helpers.data.splits import subset_pairs
from helpers.evaluation import subgroups


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="dataset folder (any layout helpers.data reads)")
    p.add_argument("--n", type=int, default=300, help="images drawn (seeded), from all splits together")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the result as JSON here")
    return p


def measure(root: str, n: int, seed: int) -> dict[str, Any]:
    """Per source: images, undefined ITA (skin b* <= 0 or no skin), median b*, and the ITA category counts."""
    dataset = data.resolve_dataset(root)
    pairs = [p for split in data.course_splits(dataset, seed=seed, max_pairs={}).values() for p in split]
    chosen = subset_pairs(pairs, min(n, len(pairs)), seed=seed)
    per_source: dict[str, dict[str, Any]] = {}
    for pair in chosen:
        lightness, b_star = subgroups.skin_lab(data.read_image(pair.image), data.read_mask(pair.mask))
        ita = subgroups.skin_tone_ita(lightness, b_star)
        row = per_source.setdefault(dataset.sources.get(pair.id, "all"), {"b_star": [], "categories": Counter()})
        row["b_star"].append(b_star)
        row["categories"]["unknown" if np.isnan(ita) else subgroups.ita_category(ita)] += 1
    return {source: {"images": len(row["b_star"]), "undefined": row["categories"]["unknown"],
                     "undefined_share": row["categories"]["unknown"] / len(row["b_star"]),
                     "median_b_star": float(np.nanmedian(row["b_star"])),
                     "categories": {name: row["categories"][name] for name in (*subgroups.ITA_NAMES, "unknown")}}
            for source, row in sorted(per_source.items())}


def main(argv: list[str] | None = None) -> int:
    """Print the per-source table (and write JSON with ``--json``)."""
    args = build_parser().parse_args(argv)
    if args.n < 1:
        raise SystemExit("error: --n must be at least 1")
    result = measure(args.data, args.n, args.seed)
    rows = [{"source": s, "images": r["images"], "undefined": r["undefined"],
             "share": f"{r['undefined_share']:.0%}", "median b*": round(r["median_b_star"], 1),
             **{k: v for k, v in r["categories"].items() if k != "unknown"}} for s, r in result.items()]
    columns = [(key, key) for key in rows[0]] if rows else []
    print(_common.format_table(rows, columns))
    total, undefined = sum(r["images"] for r in result.values()), sum(r["undefined"] for r in result.values())
    print(f"ITA undefined (skin b* <= 0) on {undefined} of {total} images ({undefined / max(total, 1):.0%}); "
          f"seed {args.seed}")
    if args.json:
        _common.write_json({"data": args.data, "n": args.n, "seed": args.seed, "sources": result}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
