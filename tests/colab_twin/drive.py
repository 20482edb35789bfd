"""The Colab twin's driver: every notebook through the setup cell's Colab branch, in Colab's package stack.

Run by ``tests/colab_twin/run.sh`` with the twin's Python (a virtual environment holding Colab's versions of
the packages the course touches, see ``colab-base.txt``). For each notebook, as Colab does for each notebook
it opens, the driver starts from a fresh runtime: an empty ``/content`` (here ``<twin>/content``), the
packages exactly as Colab ships them (anything a previous notebook's setup cell added is uninstalled), and a
kernel that has imported ``google.colab`` at start (a fake package, see ``run.sh``). Only the fake Google
Drive (``<twin>/gdrive``) survives from one runtime to the next, as a real Drive does.

The notebook's own setup cell runs for real: ``git clone`` of the course (here from a local snapshot of the
checkout instead of the not-yet-published GitHub address), ``pip install`` of what Colab lacks, the package
with ``--no-deps``. Notebooks 01-03 keep ``USE_DRIVE = False``; 04-06 set it True, and 05 must reuse 04's
checkpoint from Drive in its new runtime instead of training again.

It fails (exit 1) on: a cell error; a line on stderr or in the output that a learner would read as a warning or
an error (not on :data:`ALLOWED`); a package that the setup cell upgraded, downgraded or removed; the committed
setup cell differing from ``helpers.course.colab.setup_cell_source()``; notebook 05 retraining notebook 04's model.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Lines that look like warnings but are not the course's doing or are expected; each with its reason.
ALLOWED: dict[str, str] = {
    # pip on this build machine reads a find-links index of local files; a real Colab has none.
    r"^WARNING: Location 'file:///opt/": "this build machine's pip configuration, not Colab's",
    # The twin has no internet, so notebook 03's pretrained cell shows its offline fallback; Colab has the Hub.
    r"^offline fallback: ImageNet weights for encoder": "the twin is offline; on Colab the weights download",
    # An exercise stub left as it is says so; the learner reads it as a to-do, not as a fault.
    r"^exercise \d+ not attempted yet": "the stubs are the learner's to fill in",
}
#: What makes a line read as a warning or an error to a learner.
SUSPICIOUS = re.compile(r"warn|error|traceback|exception|deprecat|failed|not found|cannot|could not", re.I)
#: Packages the setup cell may add to Colab's stack (what Colab lacks, and the course's package).
EXPECTED_NEW = {"segmentation-models-pytorch", "skinseg-helpers"}
#: ... and, per notebook, what its own setup adds (notebook 07: the ONNX packages of the ``.[demo]`` extra that
#: Colab lacks, with onnxscript's dependency onnx-ir; Colab ships gradio).
EXPECTED_NEW_BY_NOTEBOOK = {"07": {"onnx", "onnx-ir", "onnxruntime", "onnxscript"}}
#: Notebooks whose setup cell runs with USE_DRIVE = True (the others keep the committed False).
DRIVE_NOTEBOOKS = ("04", "05", "06")


def installed(python: str) -> dict[str, str]:
    """``{name: version}`` of every distribution in ``python``'s environment (what ``pip list`` shows)."""
    out = subprocess.run([python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                         check=True, capture_output=True, text=True).stdout
    return {d["name"].lower().replace("_", "-"): d["version"] for d in json.loads(out)}


def changes(before: dict[str, str], after: dict[str, str]) -> tuple[list[str], list[str]]:
    """``(added, changed)``: names new in ``after``, and ``name a -> b`` for changed or removed ones."""
    added = sorted(set(after) - set(before))
    changed = [f"{n} {before[n]} -> {after.get(n, 'removed')}" for n in sorted(before) if after.get(n) != before[n]]
    return added, changed


def restore(python: str, baseline: dict[str, str]) -> None:
    """Undo what a previous runtime's setup cell did (uninstall what it added, put back what it changed), so the
    next notebook starts from Colab's stack as shipped. A change was already reported as a failure."""
    current = installed(python)
    added, changed = changes(baseline, current)
    if added:
        subprocess.run([python, "-m", "pip", "uninstall", "-y", "-q", *added], check=True)
    back = [f"{name}=={baseline[name]}" for name in baseline if current.get(name) != baseline[name]]
    if back:
        subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check", *back],
                       check=True)


def twin_notebook(source: Path, dest: Path, setup_src: str, canonical: str, use_drive: bool) -> None:
    """Copy ``source`` to ``dest`` with the twin's setup cell (local clone address and folder).

    Raises:
        SystemExit: the committed setup cell is not the canonical one (run ``python -m helpers.course sync``).
    """
    import nbformat

    from helpers.course import colab

    nb = nbformat.read(source, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(colab.SETUP_MARKER)]
    if len(cells) != 1 or cells[0].source != canonical:
        raise SystemExit(f"{source.name}: its setup cell is not helpers.course.colab.setup_cell_source(): "
                         "run python -m helpers.course sync")
    cell_src = setup_src
    if use_drive:
        cell_src = cell_src.replace("USE_DRIVE = False", "USE_DRIVE = True", 1)
    cells[0].source = cell_src
    nbformat.write(nb, dest)


def output_lines(nb) -> list[tuple[int, str, str]]:
    """``(cell index, stream, line)`` for every line a learner sees under the cells (streams and plain text)."""
    lines = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                text, kind = out.text, out.name
            elif out.output_type == "error":
                text, kind = f"{out.ename}: {out.evalue}", "error"
            else:
                text, kind = out.get("data", {}).get("text/plain", ""), "display"
            lines += [(i, kind, line) for line in text.splitlines() if line.strip()]
    return lines


def suspicious(lines: list[tuple[int, str, str]]) -> list[str]:
    """The lines that read as a warning or an error: everything on stderr, and stdout/display lines that
    match :data:`SUSPICIOUS`, minus :data:`ALLOWED`. Exercise stubs printing "not attempted" are fine."""
    found = []
    for cell, kind, line in lines:
        if any(re.search(p, line) for p in ALLOWED):
            continue
        if kind in {"stderr", "error"} or SUSPICIOUS.search(line):
            found.append(f"cell {cell} [{kind}] {line[:300]}")
    return found


def run_one(path: Path, args, env: dict[str, str], baseline: dict[str, str], canonical: str) -> dict:
    """One notebook in a fresh twin runtime; returns its report."""
    import nbformat
    from nbclient import NotebookClient

    from helpers.course import colab

    content = args.twin / "content"
    shutil.rmtree(content, ignore_errors=True)
    content.mkdir(parents=True)
    restore(sys.executable, baseline)
    setup_src = colab.setup_cell_source(repo_url=args.origin, branch="main", clone_dir=str(content / "skinseg"))
    use_drive = path.name[:2] in DRIVE_NOTEBOOKS
    dest = content / path.name
    twin_notebook(path, dest, setup_src, canonical, use_drive)
    nb = nbformat.read(dest, as_version=4)
    start = time.perf_counter()
    error = None
    old_env = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(content)}}).execute()
    except Exception as exc:  # a cell failed: keep going to report the others, fail at the end
        error = str(exc)[-3000:]
    finally:
        os.environ.clear()
        os.environ.update(old_env)
        nbformat.write(nb, args.out / path.name)
    seconds = time.perf_counter() - start
    added, changed = changes(baseline, installed(sys.executable))
    report = {"notebook": path.name, "seconds": round(seconds, 1), "use_drive": use_drive, "error": error,
              "suspicious": suspicious(output_lines(nb)), "added": added, "changed": changed,
              "unexpected_new": [a for a in added
                                 if a not in EXPECTED_NEW | EXPECTED_NEW_BY_NOTEBOOK.get(path.name[:2], set())]}
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True, help="the checkout whose notebooks/ to run")
    parser.add_argument("--origin", required=True, help="git address the setup cell clones (a snapshot)")
    parser.add_argument("--twin", type=Path, required=True, help="the twin's work folder")
    parser.add_argument("--only", nargs="*", default=None, help="notebook number prefixes, e.g. 04 05")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--baseline", type=Path, required=True,
                        help="JSON {name: version} of the freshly built environment (Colab's stack as shipped)")
    args = parser.parse_args()
    args.out = args.twin / "executed"
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(args.repo))  # stdlib-only modules: colab writes the setup cell, runfolder names files
    from helpers import runfolder
    from helpers.course import colab

    canonical = colab.setup_cell_source()
    paths = sorted((args.repo / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        paths = [p for p in paths if p.name[:2] in args.only]
    gdrive = args.twin / "gdrive"
    shutil.rmtree(gdrive, ignore_errors=True)
    gdrive.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKINSEG_") and k not in {"MPLBACKEND"}}
    env.update({"SKINSEG_SMOKE": "1", colab.COLAB_ROOT_ENV: str(args.twin / "content"),
                "COLAB_TWIN_GDRIVE": str(gdrive), "IPYTHONDIR": str(args.twin / "ipython"),
                "PYDEVD_DISABLE_FILE_VALIDATION": "1"})  # debugpy's frozen-modules note on the kernel's stderr
    env.pop("NO_ALBUMENTATIONS_UPDATE", None)  # the course must set it itself, as it must on Colab
    baseline = json.loads(args.baseline.read_text())
    print(f"Colab twin: python {sys.version.split()[0]}, torch {baseline.get('torch')}, torchvision "
          f"{baseline.get('torchvision')}, numpy {baseline.get('numpy')}, ipywidgets {baseline.get('ipywidgets')}, "
          f"ipython {baseline.get('ipython')}, albumentations {baseline.get('albumentations')}; "
          f"segmentation-models-pytorch {baseline.get('segmentation-models-pytorch', 'absent')}", flush=True)
    reports, failed = [], False
    run04_last = runfolder.last_path(gdrive / "MyDrive" / colab.DRIVE_FOLDER / "runs" / "04_resnet_unet_aspp")
    stamp_after_04 = None
    for path in paths:
        report = run_one(path, args, env, baseline, canonical)
        if path.name.startswith("04") and run04_last.is_file():
            stamp_after_04 = run04_last.stat().st_mtime_ns
        if path.name.startswith("05"):
            reused = stamp_after_04 is not None and run04_last.is_file() and \
                run04_last.stat().st_mtime_ns == stamp_after_04
            report["reused_04_from_drive"] = reused
            if not reused:
                report["suspicious"].append(f"notebook 05 did not reuse notebook 04's run from Drive ({run04_last})")
        bad = report["error"] or report["suspicious"] or report["changed"] or report["unexpected_new"]
        failed |= bool(bad)
        print(f"  {path.name:<44} {report['seconds']:6.1f} s  {'FAILED' if bad else 'ok'}"
              f"  (drive {'on' if report['use_drive'] else 'off'}; setup cell added {', '.join(report['added'])})",
              flush=True)
        for key in ("error", "changed", "unexpected_new", "suspicious"):
            if report[key]:
                print(f"    {key}:\n      " + "\n      ".join(
                    report[key] if isinstance(report[key], list) else [report[key]]), flush=True)
        reports.append(report)
    smp = installed(sys.executable).get("segmentation-models-pytorch")
    restore(sys.executable, baseline)  # leave Colab's stack as shipped, for the next run of a kept twin
    summary = {"python": sys.version.split()[0], "packages": {k: baseline.get(k) for k in (
        "torch", "torchvision", "numpy", "albumentations", "ipywidgets", "ipython", "ipykernel",
        "opencv-python", "pillow", "scikit-learn", "timm", "huggingface-hub")},
        "installed_by_setup_cell": sorted({a for r in reports for a in r["added"]}),
        "smp": smp,
        "notebooks": reports, "total_seconds": round(sum(r["seconds"] for r in reports), 1), "ok": not failed}
    (args.twin / "report.json").write_text(json.dumps(summary, indent=1))
    print(f"Colab twin {'FAILED' if failed else 'passed'}: {len(reports)} notebooks in "
          f"{summary['total_seconds']} s; report {args.twin / 'report.json'}, executed copies {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
