"""Notebook 06 reuses notebook 04's runs only if its parameters cell repeats notebook 04's recipe: check it does."""
import nbformat
import pytest

from helpers import config

RECIPE = ("IMG_SIZE", "EPOCHS", "BATCH_SIZE", "LR", "WEIGHT_DECAY", "WARMUP", "LOSS", "PRETRAINED", "RESNET_KWARGS",
          "SE_UNET_KWARGS", "SEED")


def _parameters(notebook: str, profile: str, monkeypatch) -> dict:
    path = next((config.repo_root() / "notebooks").glob(f"{notebook}_*.ipynb"))
    cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    monkeypatch.setenv(config.PROFILE_ENV, profile)
    monkeypatch.setenv("SKINSEG_SMOKE", "1" if profile == "smoke" else "0")
    namespace: dict = {}
    exec("from helpers import config, metrics, profiles\n" + cell.source, namespace)
    return {name: namespace[name] for name in RECIPE}


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_notebook06_repeats_notebook04_recipe(profile, monkeypatch, capsys):
    assert _parameters("06", profile, monkeypatch) == _parameters("04", profile, monkeypatch), (
        "notebook 06's parameters cell must repeat notebook 04's recipe values so train_or_load reuses runs/04_*")
