"""helpers.course.profiles: the run profile follows the environment and the device, and says what it costs."""
from pathlib import Path

import pytest

from helpers import config
from helpers.course import profiles
from helpers.train.loop import TrainConfig


@pytest.fixture
def clean_env(monkeypatch):
    """No profile forced, smoke off, no GPU: each test sets what it needs."""
    monkeypatch.delenv("SKINSEG_PROFILE", raising=False)
    monkeypatch.setenv("SKINSEG_SMOKE", "0")
    monkeypatch.setattr(profiles, "gpu_available", lambda: False)
    return monkeypatch


def test_smoke_when_smoke_mode_is_set(clean_env):
    clean_env.setenv("SKINSEG_SMOKE", "1")
    profile = profiles.active()
    assert profile.name == "smoke" and profile.smoke
    assert config.smoke_mode() is True
    assert "SKINSEG_SMOKE" in profile.reason


def test_cpu_without_gpu_and_gpu_with_one(clean_env):
    assert profiles.active().name == "cpu"
    assert config.smoke_mode() is False
    clean_env.setattr(profiles, "gpu_available", lambda: True)
    clean_env.setattr(profiles.runtime, "accelerator_name", lambda device: "Fake GPU 80GB")
    profile = profiles.active()
    assert profile.name == "gpu" and "Fake GPU 80GB" in profile.reason


def test_gpu_device_detection_uses_select_device(clean_env):
    clean_env.undo()  # the real gpu_available, with the device mocked
    clean_env.delenv("SKINSEG_PROFILE", raising=False)
    clean_env.setenv("SKINSEG_SMOKE", "0")
    clean_env.setattr(profiles.runtime, "select_device", lambda prefer=None: profiles.runtime.torch.device("mps"))
    clean_env.setattr(profiles.runtime, "accelerator_name", lambda device: "Apple MPS")
    assert profiles.active().name == "gpu"
    clean_env.setattr(profiles.runtime, "select_device", lambda prefer=None: profiles.runtime.torch.device("cpu"))
    assert profiles.active().name == "cpu"


@pytest.mark.parametrize("forced", ["smoke", "cpu", "GPU"])
def test_environment_forces_a_profile_over_smoke(clean_env, forced):
    clean_env.setenv("SKINSEG_SMOKE", "1")
    clean_env.setenv("SKINSEG_PROFILE", forced)
    profile = profiles.active()
    assert profile.name == forced.lower()
    assert "SKINSEG_PROFILE" in profile.reason
    assert config.smoke_mode() is (forced == "smoke")


def test_argument_forces_a_profile_over_the_environment(clean_env):
    clean_env.setenv("SKINSEG_PROFILE", "smoke")
    profile = profiles.active("cpu")
    assert profile.name == "cpu" and "profiles.active" in profile.reason


def test_unknown_profile_is_a_clear_error(clean_env):
    clean_env.setenv("SKINSEG_PROFILE", "fast")
    with pytest.raises(ValueError, match=r"SKINSEG_PROFILE='fast'.*smoke, cpu, gpu"):
        profiles.active()
    with pytest.raises(ValueError, match="SKINSEG_PROFILE"):
        config.smoke_mode()
    clean_env.delenv("SKINSEG_PROFILE")
    with pytest.raises(ValueError, match=r"active\('huge'\).*smoke, cpu, gpu"):
        profiles.active("huge")


def test_pick_returns_the_value_of_the_profile():
    values = dict(smoke=64, cpu=128, gpu=256)
    assert [profiles.Profile(n, "test", False).pick(**values) for n in ("smoke", "cpu", "gpu")] == [64, 128, 256]
    with pytest.raises(TypeError):
        profiles.Profile("cpu", "test", False).pick(64, 128, 256)  # keywords only: no silent order mix-up


def test_describe_names_profile_reason_times_and_how_to_force(monkeypatch):
    monkeypatch.setitem(profiles.MEASURED_SECONDS, "04", {"smoke": 41.0, "cpu": 450.0, "gpu": None})
    monkeypatch.setitem(profiles.MEASURED_ON, "smoke", "a test CPU")
    monkeypatch.setitem(profiles.MEASURED_ON, "cpu", "a test CPU")
    text = profiles.Profile("cpu", "no CUDA or MPS device was found", False).describe("04_training.ipynb")
    assert "Run profile: cpu" in text and "no CUDA or MPS device was found" in text
    assert "notebook 04: about 7.5 min (synthetic data, measured on a test CPU)" in text
    assert "smoke:" in text and "about 41 s" in text
    assert "gpu:" in text and "not measured" in text
    assert "SKINSEG_PROFILE=smoke|cpu|gpu" in text
    assert "Warning" not in text


def test_describe_warns_when_gpu_is_forced_without_one():
    text = profiles.Profile("gpu", "SKINSEG_PROFILE=gpu is set", False).describe("02")
    assert "Warning: no CUDA or MPS device" in text
    assert "Warning" not in profiles.Profile("gpu", "a GPU was found", True).describe("02")


def test_measured_table_covers_every_notebook_and_profile():
    from helpers.course.colab import notebook_paths

    for path in notebook_paths():
        assert profiles.notebook_key(path.name) in profiles.MEASURED_SECONDS, path.name
    for times in profiles.MEASURED_SECONDS.values():
        assert set(times) == set(config.PROFILE_NAMES)
        for name, seconds in times.items():
            assert seconds is None or profiles.MEASURED_ON[name], f"{name} time without where it was measured"


def test_readme_notebook_table_shows_the_measured_times():
    """The README's smoke / cpu / gpu columns are the figures of MEASURED_SECONDS (one source, two views)."""
    readme = (Path(config.repo_root()) / "README.md").read_text(encoding="utf-8")
    header = "| # | notebook | what you do | smoke | cpu | gpu | Colab |"
    assert header in readme
    columns = header.strip("|").split("|")
    rows = {}
    for line in readme[readme.index(header):].splitlines()[2:]:
        if not line.startswith("| 0"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = dict(zip((c.strip() for c in columns), cells))
    assert set(rows) == set(profiles.MEASURED_SECONDS)
    for key, times in profiles.MEASURED_SECONDS.items():
        for name in config.PROFILE_NAMES:
            seconds = times[name]
            assert rows[key][name] == ("not measured" if seconds is None else f"{seconds:.0f} s"), (key, name)


#: Notebook 04's recipe as its parameters cell held it before it moved to profiles.course_recipe (2026-12-06):
#: (img_size, epochs, batch_size, resnet_unet_aspp kwargs, se_unet kwargs, ImageNet weights for the ResNet).
RECIPE_BEFORE = {
    "smoke": (64, 2, 8, dict(encoder_name="resnet18", aspp_channels=64, decoder_channels=[64, 32, 16, 16, 8]),
              dict(base=8), False),
    "cpu": (96, 2, 8, dict(encoder_name="resnet18"), dict(base=16), True),
    "gpu": (256, 5, 16, {}, dict(base=32), True),
}


@pytest.mark.parametrize("profile", sorted(RECIPE_BEFORE))
@pytest.mark.parametrize("model", ["resnet_unet_aspp", "se_unet"])
def test_course_recipe_keeps_notebook04s_values(profile, model, clean_env):
    img_size, epochs, batch_size, resnet_kwargs, se_kwargs, pretrained = RECIPE_BEFORE[profile]
    expected = TrainConfig(
        model=model, model_kwargs=resnet_kwargs if model == "resnet_unet_aspp" else se_kwargs,
        pretrained=pretrained and model != "se_unet", img_size=img_size, epochs=epochs, batch_size=batch_size,
        lr=1e-3, weight_decay=1e-4, warmup=0.1, loss="bce+dice", seed=0, out=str(config.runs_dir() / f"04_{model}"))
    assert profiles.course_recipe(model, profiles.active(profile)) == expected
    assert profiles.course_recipe(model, profile) == expected  # a profile name does the same


def test_course_recipe_takes_overrides_and_refuses_unknown_models_and_fields(clean_env):
    cfg = profiles.course_recipe("se_unet", "smoke", epochs=7, resume=True)
    assert (cfg.epochs, cfg.resume, cfg.img_size) == (7, True, 64)
    with pytest.raises(ValueError, match="resnet_unet_aspp, se_unet"):
        profiles.course_recipe("smp_unet", "smoke")
    with pytest.raises(ValueError, match="epoch is no TrainConfig field"):
        profiles.course_recipe("se_unet", "smoke", epoch=3)


def test_the_cpu_profile_caps_a_large_dataset_and_leaves_the_embedded_one_whole(tmp_path):
    from helpers.data import splits as splits_module
    from helpers.data import synthetic

    cpu, gpu, smoke = (profiles.Profile(n, "test", False) for n in ("cpu", "gpu", "smoke"))
    assert cpu.max_pairs == profiles.CPU_MAX_PAIRS and gpu.max_pairs is None and smoke.max_pairs is None
    cpu.max_pairs["train"] = 1                                    # a copy: the module's cap cannot be changed
    assert profiles.CPU_MAX_PAIRS["train"] > 1
    n = synthetic.DEFAULT_FULL["n"]                               # the embedded set, split 80/10/10
    sizes = {"train": n - 2 * (n // 10), "val": n // 10, "test": n // 10}
    assert all(sizes[k] <= profiles.CPU_MAX_PAIRS[k] for k in sizes), "the cap would cut the embedded set"
    assert set(profiles.CPU_MAX_PAIRS) == set(splits_module.SPLITS)
    assert "800 train, 120 val, 150 test" in cpu.describe("04") and "max_pairs" not in gpu.describe("04")


def test_every_notebook_reads_its_splits_under_the_profiles_cap():
    # Notebooks 04-07 reuse each other's runs only when they split the same pairs: one call, the same cap.
    import nbformat

    for path in sorted(Path(__file__).parent.parent.joinpath("notebooks").glob("0*.ipynb")):
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        calls = code.count("data.course_splits(seed=SEED")
        assert calls >= 1 and calls == code.count("data.course_splits(seed=SEED, max_pairs=PROFILE.max_pairs)"), path.name
