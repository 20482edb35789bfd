"""The demo app's logic without a browser (issue 22): what analyse reports, what bad uploads are told, the CLI."""
import numpy as np
import pytest
import torch
from PIL import Image

from helpers import data, models, runfolder
from helpers.cli.demo import main as demo_main
from helpers.course import demo
from helpers.data import synthetic
from helpers.data.synthetic import generate_pair
from helpers.evaluation.predict import postprocess, predict_probabilities
from helpers.train.fit import fit
from helpers.train.loop import TrainConfig

pytestmark = pytest.mark.usefixtures("isolated_home")


def trained_checkpoint(folder) -> tuple[torch.nn.Module, object]:
    """A SE-U-Net trained 6 epochs on 16 synthetic 48 px pairs at 32 px: masks that are lesion-shaped blobs."""
    synthetic.write_dataset(folder / "syn", n=16, size=48, seed=5, progress=False)
    pairs = data.discover_pairs(folder / "syn")
    cfg = TrainConfig(model="se_unet", model_kwargs={"base": 4}, img_size=32, epochs=6, batch_size=4, lr=5e-3,
                      num_workers=0, out=str(folder / "run"))
    fit(cfg, splits={"train": pairs[:14], "val": pairs[14:]}, progress=False)
    best = folder / "run" / runfolder.BEST_FILE
    return models.load_model(best).eval(), best


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_checkpoint(tmp_path_factory.mktemp("demo"))[0]


@pytest.fixture(scope="module")
def image():
    return generate_pair(7, 96)[0]


def test_analyse_reports_the_mask_predict_writes_its_area_border_and_uncertainty(image, trained):
    model = trained
    result = demo.analyse(model, image, 32, unsure_threshold=0.25)
    expected = postprocess(predict_probabilities(model, image, 32, tta=True) > 0.5)
    np.testing.assert_array_equal(result.mask, expected)
    assert 0 < result.area_px == int(expected.sum()) < expected.size
    assert result.area_fraction == pytest.approx(result.area_px / expected.size)
    assert 0 < result.border_px < result.area_px and result.irregularity >= 0.8
    assert result.uncertainty.shape == image.shape[:2] and 0 <= result.uncertainty.min() <= result.uncertainty.max() <= 0.25
    assert result.image_uncertainty == pytest.approx(result.uncertainty.mean()) and not result.unsure
    assert demo.analyse(model, image, 32, unsure_threshold=result.image_uncertainty / 2).unsure


def test_the_unsure_flag_and_the_numbers_appear_in_the_report(image, trained):
    model = trained
    result = demo.analyse(model, image, 32, unsure_threshold=0.0)
    text = demo.report_markdown(result, 0.0)
    assert f"{result.area_px:,} pixels" in text and demo.UNSURE_MESSAGE in text
    assert demo.UNSURE_MESSAGE not in demo.report_markdown(demo.analyse(model, image, 32, unsure_threshold=0.25), 0.25)


def test_a_disc_has_irregularity_near_one():
    yy, xx = np.mgrid[:200, :200]
    disc = ((yy - 100) ** 2 + (xx - 100) ** 2 < 60**2).astype(np.uint8)
    edge = int(demo.border(disc).sum())
    assert 0.7 < edge**2 / (4 * np.pi * disc.sum()) < 1.3


@pytest.mark.parametrize("kind, message", [
    ("text", "is not an image this demo can read"), ("grey_mode", "is a grayscale photo"),
    ("grey_rgb", "is a grayscale photo"), ("huge", "megapixels"), ("none", "Upload a dermoscopy image")])
def test_bad_uploads_get_a_message_for_the_page(tmp_path, monkeypatch, kind, message):
    path = tmp_path / ("notes.txt" if kind == "text" else "photo.png")
    rgb = generate_pair(1, 64)[0]
    if kind == "text":
        path.write_text("not an image\n")
    elif kind == "grey_mode":
        Image.fromarray(rgb[..., 0]).save(path)
    elif kind == "grey_rgb":
        Image.fromarray(np.repeat(rgb[..., :1], 3, axis=2)).save(path)
    else:
        Image.fromarray(rgb).save(path)
        monkeypatch.setattr(demo, "MAX_PIXELS", rgb.shape[0] * rgb.shape[1] - 1)
    with pytest.raises(demo.DemoInputError, match=message):
        demo.load_upload(None if kind == "none" else path)
    overlay, heat, text = demo.respond(torch.nn.Identity(), 64, 0.01, None if kind == "none" else str(path))
    assert overlay is None and heat is None and message in text and "Traceback" not in text


def test_a_colour_image_is_accepted(tmp_path):
    path = tmp_path / "ok.png"
    Image.fromarray(generate_pair(2, 64)[0]).save(path)
    assert demo.load_upload(path).shape[2] == 3


def test_the_cli_refuses_a_missing_checkpoint_in_one_line(tmp_path, capsys):
    assert demo_main(["--checkpoint", str(tmp_path / runfolder.BEST_FILE)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1


def test_build_app_is_a_gradio_page_with_the_disclaimer(trained):
    gr = pytest.importorskip("gradio", reason='gradio not installed: pip install -e ".[demo]"')
    app = demo.build_app(trained, 32)
    assert isinstance(app, gr.Blocks)
    texts = [getattr(block, "value", "") for block in app.blocks.values()]
    assert sum("Teaching model, not a medical device" in str(t) for t in texts) == 2
