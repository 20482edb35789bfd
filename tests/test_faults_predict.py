"""Issue 24, predict / evaluate / checkpoint part: each fault gets one ``error:`` line (exit 2), nothing half-written.

Items covered: 4 (``--img-size`` other than the training size warns; outside the model's range refused),
9 (a full / read-only disk while predict writes masks, overlays, the manifest, or evaluate writes --per-image),
10 (Ctrl-C in predict: how many masks, rerun completes, exit 130), 11 (``--img-size 100000``;
``benchmarks/reliability_figures.py`` on a bad checkpoint), 12 (truth masks named ``<id>.png``; the unsafe-checkpoint
message keeps torch's reason). Disks and Ctrl-C are simulated with monkeypatch; the data are a few tiny images.
"""
from __future__ import annotations

import errno
import importlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import models, runfolder
from helpers.cli.evaluate import main as evaluate_main
from helpers.cli.common import INTERRUPTED
from helpers.cli.predict import main as predict_main
from helpers.data.files import mask_name, read_mask, write_mask
from helpers.evaluation import predict
from helpers.evaluation.predict import MANIFEST, OVERLAY_DIR
from helpers.models.factory import MAX_IMG_SIZE

pytestmark = pytest.mark.usefixtures("isolated_home")  # fixture in tests/conftest.py

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
#: Image ids of the fixture folder, in the order predict_folder writes them (sorted file names).
IDS = ("ISIC_0000001", "ISIC_0000002", "ISIC_0000003")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained SE-U-Net (depth 4: inputs padded to multiples of 16) that records img_size 32, like best.pt."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / runfolder.BEST_FILE
    return models.save_checkpoint(path, models.build_model("se_unet", base=4), config={"img_size": 32})


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image_id in enumerate(IDS):
        pixels = np.random.default_rng(i).integers(0, 256, size=(20 + i, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{image_id}.png")
    return folder


def _one_line(err: str, *needles: str) -> str:
    """The single stderr line: no traceback, and it holds every needle."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _run_predict(argv: list[str]) -> int:
    """``python -m helpers.predict argv``; a KeyboardInterrupt escaping it fails the test (not the whole session)."""
    try:
        return predict_main(argv)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped python -m helpers.predict (a traceback for the learner)")


def _masks(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob(mask_name("*")))


def _manifest(out: Path) -> list[str]:
    return json.loads((out / MANIFEST).read_text(encoding="utf-8"))["masks"]


def _leftovers(folder: Path) -> list[str]:
    """Temporary files of atomic writes (``.<name>.tmp-*``) anywhere under ``folder``."""
    return [str(p) for p in folder.rglob(".*.tmp-*")]


# ------------------------------------------------------------------------------------- item 4 and 11: --img-size
def test_another_img_size_than_the_training_one_warns_naming_both(checkpoint, images, tmp_path, capsys):
    out = tmp_path / "pred"
    assert predict_main(["--checkpoint", str(checkpoint), "--images", str(images), "--out", str(out),
                         "--img-size", "16"]) == 0
    captured = capsys.readouterr()
    line = _one_line(captured.err, "warning:", "--img-size 16", "32 px", "leave --img-size out")
    assert line.startswith("warning: ")
    assert _masks(out) == sorted(mask_name(i) for i in IDS)
    assert predict_main(["--checkpoint", str(checkpoint), "--images", str(images), "--out", str(out)]) == 0
    assert capsys.readouterr().err == ""                     # the training size: no word


@pytest.mark.parametrize("size", ["7", "100000"])
def test_an_img_size_outside_the_models_range_is_refused_before_any_work(checkpoint, images, tmp_path, capsys,
                                                                         monkeypatch, size):
    def no_prediction(*args, **kwargs):
        raise AssertionError("predicted although the size is refused")

    monkeypatch.setattr(predict, "predict_batch", no_prediction)   # today's code would run out of memory here
    out = tmp_path / "pred"
    status = predict_main(["--checkpoint", str(checkpoint), "--images", str(images), "--out", str(out),
                           "--img-size", size])
    _one_line(capsys.readouterr().err, "error:", f"--img-size {size}", f"16 to {MAX_IMG_SIZE} px",
                    "trained at 32 px")
    assert status == 2
    assert not out.exists()


# ------------------------------------------------------------------------------------- item 9: a full disk
@pytest.mark.parametrize(("code", "cause", "target"), [
    (errno.ENOSPC, "no space left on the device", mask_name(IDS[1])),
    (errno.EROFS, "read-only", f"{OVERLAY_DIR}/{IDS[1]}_overlay.jpg"),
    (errno.EACCES, "permission denied", mask_name(IDS[1])),
])
def test_a_failed_write_in_predict_is_one_line_and_leaves_only_complete_masks(checkpoint, images, tmp_path, capsys,
                                                                             monkeypatch, code, cause, target):
    """The disk fails half-way through the second image's mask (or overlay): no traceback, no partial file."""
    real_save = Image.Image.save

    def failing_save(self, fp, *args, **kwargs):
        if Path(fp).name.startswith(f".{Path(target).name}.tmp-"):
            Path(fp).write_bytes(b"\x89PNG half")               # some bytes reached the disk
            raise OSError(code, os.strerror(code), str(fp))
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    out = tmp_path / "pred"
    status = predict_main(["--checkpoint", str(checkpoint), "--images", str(images), "--out", str(out),
                           "--overlays"])
    _one_line(capsys.readouterr().err, "error: cannot write", str(out / target), cause, "then rerun",
                    "1 of 3 images were done")
    assert status == 2
    written = _masks(out)
    assert written[0] == mask_name(IDS[0]) and read_mask(out / written[0]).shape == (20, 24)
    assert mask_name(IDS[2]) not in written
    assert _manifest(out) == written                        # the manifest lists exactly the masks on disk
    assert _leftovers(out) == []
    monkeypatch.undo()
    assert predict_main(["--checkpoint", str(checkpoint), "--images", str(images), "--out", str(out)]) == 0


def test_a_full_disk_for_the_manifest_is_one_line(checkpoint, images, tmp_path, capsys, monkeypatch):
    real_write_text = Path.write_text

    def full(self, *args, **kwargs):
        if self.name.startswith(f".{MANIFEST}.tmp-"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    out = tmp_path / "pred"
    assert predict_main(["--checkpoint", str(checkpoint), "--images", str(images), "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, "error: cannot write", str(out / MANIFEST), "no space left")
    assert _masks(out) == [] and _leftovers(out) == []


def _score_folders(tmp_path: Path) -> tuple[Path, Path]:
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    for k, image_id in enumerate(IDS):
        mask = np.zeros((12, 10), bool)
        mask[2:8, 2:6 + k] = True
        write_mask(truth / mask_name(image_id), mask)
        write_mask(pred / mask_name(image_id), np.roll(mask, 1, axis=0))
    return truth, pred


def test_evaluate_per_image_on_a_full_disk_is_one_line_and_leaves_no_csv(tmp_path, capsys, monkeypatch):
    truth, pred = _score_folders(tmp_path)
    csv = tmp_path / "scores" / "per_image.csv"
    csv.parent.mkdir()
    real_write_text = Path.write_text

    def full(self, text, *args, **kwargs):
        if self.parent == csv.parent:
            real_write_text(self, text[:10], *args, **kwargs)   # the start of the table reached the disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    status = evaluate_main(["--truth", str(truth), "--pred", str(pred), "--per-image", str(csv)])
    _one_line(capsys.readouterr().err, "error: cannot write", str(csv), "no space left on the device",
                    "free some space")
    assert status == 2
    assert list(csv.parent.iterdir()) == []


# ------------------------------------------------------------------------------------- item 10: Ctrl-C
@pytest.mark.parametrize("foreign", [False, True])
def test_ctrl_c_in_predict_says_how_many_masks_and_a_rerun_completes(checkpoint, images, tmp_path, capsys,
                                                                    monkeypatch, foreign):
    out = tmp_path / "pred"
    argv = ["--checkpoint", str(checkpoint), "--images", str(images), "--out", str(out)]
    if foreign:   # a mask that predict did not write, replaced with the user's --overwrite
        write_mask(out / mask_name(IDS[2]), np.ones((22, 24), bool))
    real_write_mask = predict.write_mask
    calls = []

    def interrupted(path, mask):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_write_mask(path, mask)

    monkeypatch.setattr(predict, "write_mask", interrupted)
    status = _run_predict(argv + (["--overwrite"] if foreign else []))
    _one_line(capsys.readouterr().err, "interrupted (Ctrl-C)", "1 of 3 masks were written", str(out),
                    "Run the same command again")
    assert status == INTERRUPTED == 130
    assert _manifest(out) == _masks(out) and mask_name(IDS[0]) in _masks(out)
    assert _leftovers(out) == []
    monkeypatch.undo()
    assert predict_main(argv) == 0                          # no --overwrite needed to complete it
    assert _masks(out) == sorted(mask_name(i) for i in IDS) == _manifest(out)


def test_ctrl_c_before_any_mask_is_one_line_too(checkpoint, images, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict, "predict_batch", interrupted)
    out = tmp_path / "pred"
    status = _run_predict(["--checkpoint", str(checkpoint), "--images", str(images), "--out", str(out)])
    _one_line(capsys.readouterr().err, "interrupted (Ctrl-C): 0 of 3 masks")
    assert status == 130 and _masks(out) == _manifest(out) == []


# ------------------------------------------------------------------------------------- item 12: clearer messages
def test_evaluate_names_the_masks_it_expects_and_the_ones_it_found(tmp_path, capsys):
    truth, pred = _score_folders(tmp_path)
    misnamed = tmp_path / "misnamed"
    misnamed.mkdir()
    for path in truth.iterdir():
        os.link(path, misnamed / path.name.replace(mask_name(""), ".png"))
    status = evaluate_main(["--truth", str(misnamed), "--pred", str(pred)])
    _one_line(capsys.readouterr().err, f"truth folder {misnamed} holds 3 file(s)", mask_name("<id>"),
                    "helpers.data.files.mask_name", f"found {IDS[0]}.png, {IDS[1]}.png, {IDS[2]}.png",
                    f"{IDS[0]}.png -> {mask_name(IDS[0])}")
    assert status == 2
    assert evaluate_main(["--truth", str(truth), "--pred", str(misnamed)]) == 2
    _one_line(capsys.readouterr().err, f"pred folder {misnamed}", "--pred")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert evaluate_main(["--truth", str(empty), "--pred", str(pred)]) == 2
    _one_line(capsys.readouterr().err, f"truth folder {empty} is empty")


class _Shell:
    """Unpickled, this would run a shell command: safe loading must refuse it before it runs."""

    def __reduce__(self):
        return os.system, ("true",)


def test_the_unsafe_checkpoint_message_keeps_torchs_reason(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": models.CHECKPOINT_FORMAT, "payload": _Shell()}, evil)
    with pytest.raises(models.CheckpointError) as caught:
        models.load_checkpoint(evil)
    message = str(caught.value)
    assert "\n" not in message
    for needle in ("evil.pt", f"unsupported GLOBAL {os.name}.system", "malicious", "another program",
                   "helpers.models.save_checkpoint(path, model)"):
        assert needle in message, needle
    dated = tmp_path / "dated.pt"
    torch.save({"format": models.CHECKPOINT_FORMAT, "when": __import__("datetime").date(2024, 1, 1)}, dated)
    with pytest.raises(models.CheckpointError, match="unsupported GLOBAL datetime.date"):
        models.load_checkpoint(dated)


# ------------------------------------------------------------------------------------- item 11: the benchmark
@pytest.fixture
def figures(monkeypatch, tmp_path):
    """benchmarks/reliability_figures.py, importable; making data would be a failure (the checkpoint comes first)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module("reliability_figures")

    def no_data(*args, **kwargs):
        raise AssertionError("data made before the checkpoint was checked")

    monkeypatch.setattr(module.data, "course_splits", no_data)
    return module


def test_reliability_figures_on_a_bad_checkpoint_is_one_line(figures, tmp_path, capsys):
    junk, bare, sizeless = tmp_path / "junk.pt", tmp_path / "bare.pt", tmp_path / "sizeless.pt"
    junk.write_bytes(b"not a checkpoint")
    torch.save(models.build_model("se_unet", base=4).state_dict(), bare)
    models.save_checkpoint(sizeless, models.build_model("se_unet", base=4))
    cases = {tmp_path / "missing.pt": "does not exist", junk: "not a PyTorch file",
             bare: "not a course checkpoint", sizeless: "does not record the training image size"}
    for path, reason in cases.items():
        status = figures.main(["--home", str(tmp_path / "home"), "--checkpoint", str(path)])
        _one_line(capsys.readouterr().err, "error: checkpoint", str(path), reason)
        assert status == 2
