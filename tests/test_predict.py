"""Prediction: probabilities at the image's size, flip TTA, post-processing, ISIC mask files, the CLI,
and the end-to-end check train -> predict -> official ISIC scorer == helpers.evaluation.metrics."""
import copy
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from helpers import data, models, runfolder
from helpers.cli.predict import main as predict_main
from helpers.data import synthetic
from helpers.data.files import mask_name, read_image, read_mask, write_mask
from helpers.evaluation import metrics
from helpers.evaluation.predict import (
    MANIFEST,
    OVERLAY_DIR,
    list_images,
    postprocess,
    predict_batch,
    predict_folder,
    predict_probabilities,
    predicting,
)
from helpers.train.fit import fit
from helpers.train.loop import TrainConfig

#: The file-name ending of every ISIC mask: ``<id>_segmentation.png``.
MASK_ENDING = mask_name("")


pytestmark = pytest.mark.usefixtures("isolated_home")  # fixture in tests/conftest.py


def _random_image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained SE-U-Net checkpoint that records img_size 32, like fit's best.pt."""
    torch.manual_seed(0)
    model = models.build_model("se_unet", base=4)
    path = tmp_path_factory.mktemp("ckpt") / runfolder.BEST_FILE
    return models.save_checkpoint(path, model, config={"img_size": 32})


class PixelModel(nn.Module):
    """A 1x1 convolution: every pixel's logit depends on that pixel only, so it is flip-equivariant."""

    def __init__(self, seed: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        # Weight and bias from a private generator: the same model whatever torch's global RNG went through.
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            nn.init.normal_(self.conv.weight, generator=generator)
            nn.init.normal_(self.conv.bias, generator=generator)

    def forward(self, x):
        return self.conv(x)


class RampModel(nn.Module):
    """Ignores the image and predicts a left-to-right, top-to-bottom ramp: not flip-equivariant."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        n, _, h, w = x.shape
        ramp = torch.linspace(-4, 4, w)[None, :] + torch.linspace(-2, 2, h)[:, None]
        return ramp.expand(n, 1, h, w) + self.dummy


# -------------------------------------------------------------------------------- in memory
def test_probabilities_come_back_at_the_image_size():
    prob = predict_probabilities(PixelModel(), _random_image(45, 70), img_size=32)
    assert prob.shape == (45, 70) and prob.dtype == np.float32
    assert 0.0 <= prob.min() and prob.max() <= 1.0


def test_tta_leaves_a_flip_equivariant_model_unchanged():
    image = _random_image(40, 40, seed=2)
    plain = predict_probabilities(PixelModel(), image, 32)
    tta = predict_probabilities(PixelModel(), image, 32, tta=True)  # a second model: the same weights
    np.testing.assert_allclose(tta, plain, atol=1e-6)


def test_tta_averages_the_four_flips():
    image = _random_image(32, 32)
    plain = predict_probabilities(RampModel(), image, 32)
    tta = predict_probabilities(RampModel(), image, 32, tta=True)
    assert not np.allclose(plain, plain[:, ::-1], atol=1e-3)          # the ramp is not symmetric...
    np.testing.assert_allclose(tta, tta[:, ::-1], atol=1e-6)          # ...its flip average is
    np.testing.assert_allclose(tta, tta[::-1, :], atol=1e-6)
    expected = np.mean([plain, plain[:, ::-1], plain[::-1, :], plain[::-1, ::-1]], axis=0)
    np.testing.assert_allclose(tta, expected, atol=1e-5)


def test_batch_prediction_equals_one_by_one():
    images = [_random_image(30, 50, 1), _random_image(64, 48, 2)]
    model = models.build_model("se_unet", base=4).eval()
    batched = predict_batch(model, images, 32)
    for image, prob in zip(images, batched):
        np.testing.assert_allclose(prob, predict_probabilities(model, image, 32), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        predict_batch(model, [np.zeros((8, 8), np.uint8)], 32)


def _model_state(model):
    """Everything predicting may not change: each module's training flag, and each tensor's values, device,
    dtype and memory layout."""
    flags = [(name, m.training) for name, m in model.named_modules()]
    tensors = {name: (t.detach().clone(), t.device, t.dtype, t.is_contiguous(memory_format=torch.channels_last))
               for name, t in model.state_dict(keep_vars=True).items()}
    return flags, tensors


def _assert_same_state(before, after):
    assert after[0] == before[0], "the training flags changed"
    assert after[1].keys() == before[1].keys()
    for name, (value, *rest) in before[1].items():
        assert after[1][name][1:] == tuple(rest), f"{name}: device, dtype or memory format changed"
        assert torch.equal(after[1][name][0], value), f"{name} changed"


def test_predict_batch_leaves_the_callers_model_as_it_was():
    """Predictions in eval mode; afterwards the model still trains, with its frozen BatchNorm still frozen."""
    torch.manual_seed(0)
    model = models.build_model("se_unet", base=4, dropout=0.2).to(memory_format=torch.channels_last)
    model.train()
    frozen = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    frozen.eval()  # a sub-module in eval mode inside a training model, as a frozen encoder would be
    before, reference = _model_state(model), copy.deepcopy(model).eval()
    images = [_random_image(30, 40, 3), _random_image(36, 36, 4)]
    probs = predict_batch(model, images, 32, tta=True, batch_size=1)
    _assert_same_state(before, _model_state(model))
    assert model.training and not frozen.training
    for prob, expected in zip(probs, predict_batch(reference, images, 32, tta=True)):
        np.testing.assert_allclose(prob, expected, atol=1e-6)  # eval mode: no dropout, running statistics


def test_predicting_on_another_device_uses_a_copy_and_restores_flags_after_an_error():
    model = models.build_model("se_unet", base=4).train()
    before = _model_state(model)
    with predicting(model, "cpu") as net:  # the model's own device: the model itself, in eval mode
        assert net is model and not model.training
    with predicting(model, "meta") as net:  # another device: a copy there (meta: a device without data)
        assert net is not model and not net.training
        assert {t.device.type for t in net.state_dict().values()} == {"meta"}
    with pytest.raises(RuntimeError, match="boom"), predicting(model):
        raise RuntimeError("boom")
    _assert_same_state(before, _model_state(model))


def test_postprocess_keeps_the_largest_region_and_fills_its_holes():
    mask = np.zeros((20, 20), np.uint8)
    mask[2:12, 2:12] = 1          # the lesion, 10x10...
    mask[5:8, 5:8] = 0            # ...with a hole
    mask[15:18, 15:18] = 1        # a small island
    mask[12, 12] = 1              # touches the lesion diagonally: part of it (8-connectivity)
    out = postprocess(mask)
    expected = np.zeros_like(mask)
    expected[2:12, 2:12] = 1
    expected[12, 12] = 1
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8
    assert not postprocess(np.zeros((5, 5), bool)).any()
    with pytest.raises(ValueError, match="H, W"):
        postprocess(np.zeros((2, 5, 5)))


# -------------------------------------------------------------------------------- folders
@pytest.fixture()
def flat_images(tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    sizes = {"ISIC_0000001": (45, 60), "ISIC_0000002": (37, 29), "img three": (32, 32)}
    for i, (name, (h, w)) in enumerate(sizes.items()):
        Image.fromarray(_random_image(h, w, i)).save(folder / f"{name}.{'png' if i == 1 else 'jpg'}")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder / mask_name("ISIC_0000001"))  # not an image
    return folder, sizes


def test_predict_folder_writes_isic_masks_at_each_original_size(checkpoint, flat_images, tmp_path):
    folder, sizes = flat_images
    written = predict_folder(checkpoint, folder, tmp_path / "pred", batch_size=2, threshold=0.5)
    assert sorted(p.name for p in written) == sorted(mask_name(name) for name in sizes)
    for path in written:
        with Image.open(path) as im:
            assert im.mode == "L"
            arr = np.asarray(im)
        assert arr.shape == sizes[path.name.removesuffix(MASK_ENDING)]
        assert set(np.unique(arr)) <= {0, 255}


def test_predict_folder_reads_isic_layout_and_writes_overlays_apart(checkpoint, flat_images, tmp_path):
    folder, sizes = flat_images
    isic = tmp_path / "isic"
    shutil.copytree(folder, isic / "images")
    (isic / "masks").mkdir()
    written = predict_folder(checkpoint, isic, tmp_path / "pred", overlays=True, tta=True, postprocess=True)
    assert len(written) == len(sizes)
    overlays = sorted((tmp_path / "pred" / OVERLAY_DIR).glob("*_overlay.jpg"))
    assert [p.name for p in overlays] == sorted(f"{name}_overlay.jpg" for name in sizes)
    with Image.open(overlays[0]) as im:
        assert im.size == (60, 45)      # ISIC_0000001 is 45x60 (HxW)


def test_predict_folder_accepts_a_list_of_image_files(checkpoint, flat_images, tmp_path):
    folder, sizes = flat_images
    chosen = [folder / "ISIC_0000002.png", folder / "img three.jpg"]
    written = predict_folder(checkpoint, chosen, tmp_path / "some")
    assert [p.name for p in written] == [mask_name("ISIC_0000002"), mask_name("img three")]
    (tmp_path / "other").mkdir()
    twin = tmp_path / "other" / "ISIC_0000002.jpg"
    shutil.copy(folder / "ISIC_0000001.jpg", twin)
    with pytest.raises(ValueError, match="ISIC_0000002"):
        predict_folder(checkpoint, [*chosen, twin], tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="empty"):
        predict_folder(checkpoint, [], tmp_path / "x")


def test_threshold_moves_the_masks(checkpoint, flat_images, tmp_path):
    folder, _ = flat_images
    low = predict_folder(checkpoint, folder, tmp_path / "low", threshold=0.01)
    high = predict_folder(checkpoint, folder, tmp_path / "high", threshold=0.99)
    area = lambda paths: sum(int((np.asarray(Image.open(p)) > 0).sum()) for p in paths)  # noqa: E731
    assert area(low) > area(high)
    with pytest.raises(ValueError, match="threshold"):
        predict_folder(checkpoint, folder, tmp_path / "x", threshold=1.5)


def test_bad_checkpoints_raise_checkpoint_error(tmp_path, flat_images):
    folder, _ = flat_images
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(models.CheckpointError, match="junk.pt"):
        predict_folder(junk, folder, tmp_path / "out")
    no_size = models.save_checkpoint(tmp_path / "nosize.pt", models.build_model("se_unet", base=4))
    with pytest.raises(models.CheckpointError, match="img_size"):
        predict_folder(no_size, folder, tmp_path / "out")
    assert len(predict_folder(no_size, folder, tmp_path / "out", img_size=32)) == 3


def test_list_images_explains_an_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no .jpg"):
        list_images(tmp_path)


def test_cli(checkpoint, flat_images, tmp_path, capsys):
    folder, sizes = flat_images
    out = tmp_path / "cli"
    assert predict_main(["--checkpoint", str(checkpoint), "--images", str(folder), "--out", str(out),
                         "--tta", "--postprocess", "--threshold", "0.4", "--overlays"]) == 0
    assert f"wrote {len(sizes)} masks" in capsys.readouterr().out
    assert len(list(out.glob(f"*{MASK_ENDING}"))) == len(sizes)
    assert predict_main(["--checkpoint", str(tmp_path / "missing.pt"), "--images", str(folder),
                         "--out", str(out)]) == 2
    assert "missing.pt" in capsys.readouterr().err


# -------------------------------------------------------------------------------- end to end
def test_train_predict_and_official_scorer_agree_with_our_metrics(tmp_path):
    """Train a tiny model, predict held-out images, score with isic-challenge-scoring and evaluate_folders."""
    synthetic.write_dataset(tmp_path / "syn", n=14, size=48, seed=5, progress=False)
    pairs = data.discover_pairs(tmp_path / "syn")
    cfg = TrainConfig(model="se_unet", model_kwargs={"base": 4}, img_size=32, epochs=2, batch_size=4, lr=3e-3,
                      num_workers=0, out=str(tmp_path / "run"))
    result = fit(cfg, splits={"train": pairs[:8], "val": pairs[8:10]}, progress=False)
    # The official scorer only accepts ISIC_<7 digits> names: copy the held-out pairs under such names.
    images, truth = tmp_path / "test" / "images", tmp_path / "test" / "masks"
    images.mkdir(parents=True)
    truth.mkdir()
    for i, pair in enumerate(pairs[10:]):
        shutil.copy(pair.image, images / f"ISIC_{i:07d}{pair.image.suffix}")
        shutil.copy(pair.mask, truth / mask_name(f"ISIC_{i:07d}"))
    # A threshold between the probabilities' quartiles so masks are neither empty nor full after 2 epochs.
    model = models.load_model(result.best_path)
    probs = np.concatenate([predict_probabilities(model, read_image(p), 32).ravel()
                            for p in sorted(images.iterdir())])
    threshold = float(np.clip(np.quantile(probs, 0.6), 0.01, 0.99))
    pred = tmp_path / "pred"
    predict_folder(result.best_path, tmp_path / "test", pred, threshold=threshold)
    official = subprocess.run([sys.executable, "-m", "isic_challenge_scoring", "-o", "json", "segmentation",
                               str(truth), str(pred)], capture_output=True, text=True, check=True)
    macro = json.loads(official.stdout)["macro_average"]
    per_image, ours = metrics.evaluate_folders(truth, pred)
    predicted = per_image["tp"] + per_image["fp"]
    assert (predicted > 0).all() and (predicted < per_image[["tp", "fp", "fn", "tn"]].sum(axis=1)).all()
    for name in metrics.METRIC_NAMES:
        assert ours[name] == pytest.approx(macro[name], abs=1e-9), name


def test_error_overlay_colours_tp_fp_fn_and_keeps_tn():
    from helpers.evaluation import plots

    image = np.full((4, 4, 3), 100, np.uint8)
    truth = np.array([[1, 1, 0, 0]] * 4, np.uint8)
    pred = np.array([[1, 0, 1, 0]] * 4, np.uint8)
    out = plots.error_overlay(image, truth, pred, alpha=1.0)
    for col, key in ((0, "tp"), (1, "fn"), (2, "fp")):
        np.testing.assert_allclose(out[0, col], plots.ERROR_COLORS[key])
    np.testing.assert_allclose(out[0, 3], 100 / 255)
    with pytest.raises(ValueError, match="size"):
        plots.error_overlay(image, truth[:2], pred)
    fig = plots.prediction_grid([image, image], [truth, truth], [pred, pred], titles=["a", "b"])
    assert len(fig.axes) == 8


# -------------------------------------------------------------------------------- refusals (issue 11)
def test_predict_refuses_a_folder_of_masks_it_did_not_write(checkpoint, flat_images, tmp_path):
    folder, sizes = flat_images
    truth = tmp_path / "truth"
    truth.mkdir()
    write_mask(truth / mask_name("ISIC_0000001"), np.ones((45, 60), bool))
    before = (truth / mask_name("ISIC_0000001")).read_bytes()
    with pytest.raises(ValueError, match=r"already holds 1 mask\(s\) that helpers.evaluation.predict did not write.*"
                                         r"ISIC_0000001_segmentation.png.*--overwrite"):
        predict_folder(checkpoint, folder, truth)
    assert (truth / mask_name("ISIC_0000001")).read_bytes() == before and not (truth / MANIFEST).exists()
    assert len(predict_folder(checkpoint, folder, truth, overwrite=True)) == len(sizes)
    out = tmp_path / "pred"
    predict_folder(checkpoint, folder, out)
    assert len(predict_folder(checkpoint, folder, out, threshold=0.3)) == len(sizes)   # its own masks: fine


def test_predict_refuses_the_truth_folder_beside_the_images_even_with_overwrite(checkpoint, flat_images, tmp_path):
    folder, _ = flat_images
    isic = tmp_path / "isic"
    shutil.copytree(folder, isic / "images")
    (isic / "masks").mkdir()
    for target in (isic, isic / "images"):
        with pytest.raises(ValueError, match="ground-truth mask folder of these images"):
            predict_folder(checkpoint, target, isic / "masks", overwrite=True)
    assert not any((isic / "masks").iterdir())


def test_duplicate_ids_in_a_folder_are_refused_naming_both_files(checkpoint, tmp_path):
    folder = tmp_path / "dupes"
    folder.mkdir()
    Image.fromarray(_random_image(20, 20, 1)).save(folder / "x.jpg")
    Image.fromarray(_random_image(20, 20, 2)).save(folder / "x.png")
    Image.fromarray(_random_image(20, 20, 3)).save(folder / "y.png")
    with pytest.raises(ValueError, match=r"x\.jpg and .*x\.png.*rename or remove one"):
        predict_folder(checkpoint, folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_one_image_file_is_predicted_and_a_non_image_file_is_explained(checkpoint, flat_images, tmp_path):
    folder, sizes = flat_images
    written = predict_folder(checkpoint, folder / "ISIC_0000002.png", tmp_path / "one")
    assert [p.name for p in written] == [mask_name("ISIC_0000002")]
    assert read_mask(written[0]).shape == sizes["ISIC_0000002"]
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(ValueError, match=r"notes.txt is not an image file.*one image file"):
        predict_folder(checkpoint, notes, tmp_path / "one")


def test_a_run_folder_as_checkpoint_says_which_file_to_pass(checkpoint, flat_images, tmp_path):
    folder, _ = flat_images
    with pytest.raises(models.CheckpointError, match=rf"{checkpoint.parent.name} is a folder.*pass .*best\.pt"):
        predict_folder(checkpoint.parent, folder, tmp_path / "out")


def test_a_killed_predict_leaves_no_partial_mask(checkpoint, flat_images, tmp_path, monkeypatch):
    """The PNG encoder dies half-way through the second mask: no 0-byte or truncated mask is left."""
    folder, _ = flat_images
    real_save = Image.Image.save
    calls = []

    def dying_save(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 2:
            with open(fp, "wb"):
                pass                          # the file exists, empty, when the process is killed
            raise KeyboardInterrupt
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", dying_save)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        predict_folder(checkpoint, folder, out)
    monkeypatch.undo()
    masks = sorted(out.glob(f"*{MASK_ENDING}"))
    assert [p.name for p in masks] == [mask_name("ISIC_0000001")]           # the first, complete
    assert read_mask(masks[0]).shape == (45, 60)
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, masks[0].name])   # no temporary file
