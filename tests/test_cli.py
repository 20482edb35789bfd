"""The command-line entry points refuse impossible output paths and wrong folders with one line (issue 11).

Every case runs ``main([...])`` in-process: a traceback would surface here as an exception, so a returned
status of 2 with one ``error:`` line on stderr is the whole contract.
"""
import os

import numpy as np
import pytest
import torch

from helpers import models, runfolder
from helpers.cli import common
from helpers.cli.evaluate import main as evaluate_main
from helpers.cli.predict import main as predict_main
from helpers.cli.train import main as train_main
from helpers.data.files import mask_name, write_mask

pytestmark = pytest.mark.usefixtures("isolated_home")  # fixture in tests/conftest.py


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / runfolder.BEST_FILE
    return models.save_checkpoint(path, models.build_model("se_unet", base=4), config={"img_size": 32})


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a folder")
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# -------------------------------------------------------------------------------- common.check_output_path
def test_check_output_path_accepts_new_paths_and_creates_nothing(tmp_path):
    assert common.check_output_path(tmp_path / "a" / "b", "--out", folder=True) == tmp_path / "a" / "b"
    assert common.check_output_path(tmp_path / "c" / "s.csv", "--per-image", folder=False) == tmp_path / "c" / "s.csv"
    assert not any(tmp_path.iterdir())


def test_check_output_path_refuses_paths_under_files_and_files_for_folders(tmp_path, a_file):
    with pytest.raises(common.OutputPathError, match=r"--out .*notes.txt/run cannot be created: .*notes.txt is a file"):
        common.check_output_path(a_file / "run", "--out", folder=True)
    with pytest.raises(common.OutputPathError, match="is a file, not a folder"):
        common.check_output_path(a_file, "--out", folder=True)
    with pytest.raises(common.OutputPathError, match=r"is a folder: give a file name"):
        common.check_output_path(tmp_path, "--per-image", folder=False)


def test_check_output_path_refuses_a_folder_it_cannot_write(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(common.tempfile, "TemporaryFile", refuse)
    with pytest.raises(common.OutputPathError, match=rf"no permission to create files in {tmp_path}"):
        common.check_output_path(tmp_path / "new", "--out", folder=True)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write into read-only folders")
def test_check_output_path_probes_real_permissions(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(common.OutputPathError, match="no permission"):
            common.check_output_path(locked / "out", "--out", folder=True)
    finally:
        locked.chmod(0o700)


# -------------------------------------------------------------------------------- the three CLIs
def test_predict_out_under_a_file_is_one_line_and_status_2(checkpoint, tmp_path, a_file, capsys):
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(images / "x.png")
    code = predict_main(["--checkpoint", str(checkpoint), "--images", str(images), "--out", str(a_file / "pred")])
    assert code == 2 and "is a file" in one_error_line(capsys)


def test_train_out_under_a_file_is_refused_before_training(a_file, capsys):
    code = train_main(["--out", str(a_file / "run"), "--model", "se_unet", "--epochs", "1", "--quiet"])
    assert code == 2 and "--out" in one_error_line(capsys)


def test_evaluate_per_image_under_a_file_and_truth_equal_to_pred(tmp_path, a_file, capsys):
    masks = tmp_path / "masks"
    write_mask(masks / mask_name("ISIC_0000001"), np.eye(8, dtype=bool))
    code = evaluate_main(["--truth", str(masks), "--pred", str(masks)])
    assert code == 2 and "same folder" in one_error_line(capsys)
    code = evaluate_main(["--truth", str(masks), "--pred", str(tmp_path / "." / "masks")])
    assert code == 2 and "always get 1.0" in one_error_line(capsys)
    pred = tmp_path / "pred"
    write_mask(pred / mask_name("ISIC_0000001"), np.eye(8, dtype=bool))
    code = evaluate_main(["--truth", str(masks), "--pred", str(pred), "--per-image", str(a_file / "s.csv")])
    assert code == 2 and "--per-image" in one_error_line(capsys)
    assert evaluate_main(["--truth", str(masks), "--pred", str(pred), "--per-image", str(tmp_path / "s.csv")]) == 0
    assert (tmp_path / "s.csv").read_text().count("\n") == 2


def test_predict_checkpoint_folder_names_the_file_to_pass(checkpoint, tmp_path, capsys):
    code = predict_main(["--checkpoint", str(checkpoint.parent), "--images", str(tmp_path), "--out",
                         str(tmp_path / "pred")])
    assert code == 2 and f"pass {checkpoint}" in one_error_line(capsys)   # a bad input: status 2 (issue 24)


def test_a_failed_train_leaves_no_run_folder(tmp_path, capsys):
    empty = tmp_path / "empty_data"
    empty.mkdir()
    out = tmp_path / "runs" / "failed"
    code = train_main(["--data", str(empty), "--out", str(out), "--model", "se_unet", "--model-kwargs",
                       '{"base": 4}', "--img-size", "32", "--epochs", "1", "--workers", "0", "--quiet"])
    assert code == 1 and "empty" in one_error_line(capsys)
    assert not out.exists()
