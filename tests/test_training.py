"""Training: the schedule, fit's run folder, resuming after an interruption, divergence, the CLI.

Everything is tiny (32 px, 10 synthetic images, an SE-U-Net with base 4, 2 epochs) so the file runs in
seconds on two CPU cores.
"""
import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import data, models, runfolder, runtime
from helpers.cli.train import main as train_main
from helpers.train import loop, losses, resume
from helpers.train.fit import HISTORY_COLUMNS, ResumeError, build_loaders, build_parts, fit, train_or_load
from helpers.train.loop import NonFiniteLossError, TrainConfig

pytestmark = pytest.mark.usefixtures("isolated_home")  # fixture in tests/conftest.py


@pytest.fixture(scope="module")
def splits(tiny_root):
    pairs = data.discover_pairs(tiny_root)
    return {"train": pairs[:8], "val": pairs[8:]}


def tiny_config(out, **overrides) -> TrainConfig:
    # Dropout makes the run depend on torch's global RNG, which resuming must restore too.
    values = dict(model="se_unet", model_kwargs={"base": 4, "dropout": 0.1}, img_size=32, epochs=2, batch_size=4, lr=3e-3,
                  num_workers=0, out=str(out), seed=0)
    values.update(overrides)
    return TrainConfig(**values)


# -------------------------------------------------------------------------------- config and schedule
def test_defaults_are_the_reference_recipe():
    cfg = TrainConfig()
    assert (cfg.model, cfg.img_size, cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay) == \
        ("resnet_unet_aspp", 256, 5, 16, 1e-3, 1e-4)
    assert cfg.loss == "bce+dice" and cfg.grad_clip is None and cfg.amp == "auto" and not cfg.pretrained
    assert cfg.patience is None and cfg.seed == 0


def test_config_round_trips_through_json(tmp_path):
    cfg = tiny_config(tmp_path / "run", grad_clip=1.0, patience=3, model_kwargs={"base": 4, "depth": 3})
    assert TrainConfig.load(cfg.save(tmp_path / "c.json")) == cfg
    with_tuple = tiny_config(tmp_path / "run", model_kwargs={"decoder_channels": (16, 8)})
    assert TrainConfig.load(with_tuple.save(tmp_path / "t.json")) == with_tuple
    with pytest.raises(ValueError, match="unknown TrainConfig fields.*'learning_rate'"):
        TrainConfig.from_dict({**cfg.to_dict(), "learning_rate": 1})


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(lr=-1.0), dict(grad_clip=0.0), dict(amp="fp8"),
                                 dict(patience=0), dict(img_size=32.5), dict(colour_augment="wild")])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError, match=next(iter(bad)).split("_")[0]):
        TrainConfig(**bad)


def test_lr_factor_warms_up_linearly_then_follows_a_cosine():
    total, warm = 100, 10
    factors = [loop.lr_factor(s, total, warm) for s in range(total + 1)]
    assert factors[:warm] == pytest.approx([(s + 1) / warm for s in range(warm)])
    assert factors[warm] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.5)                # half-way through the cosine
    assert factors[total] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(factors[warm:], factors[warm + 1:]))
    assert loop.lr_factor(100, 100, 0, min_ratio=0.1) == pytest.approx(0.1)


def test_warmup_is_a_fraction_below_one_and_epochs_from_one():
    assert loop.warmup_steps(0.1, steps_per_epoch=20, total_steps=100) == 10
    assert loop.warmup_steps(2, steps_per_epoch=20, total_steps=100) == 40
    assert loop.warmup_steps(9, steps_per_epoch=20, total_steps=100) == 100   # capped


def test_build_scheduler_steps_the_optimizer_lr_per_batch():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1e-3)
    sched = loop.build_scheduler(opt, epochs=2, steps_per_epoch=5, warmup=0.2)   # 2 warm-up steps of 10
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(5e-4) and lrs[1] == pytest.approx(1e-3)
    assert lrs[2] > lrs[5] > lrs[9] > 0
    with pytest.raises(ValueError, match="steps_per_epoch"):
        loop.build_scheduler(opt, epochs=2, steps_per_epoch=0)


def test_amp_is_off_on_cpus_without_native_bf16_and_fp16_needs_cuda(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    cpu = torch.device("cpu")
    assert loop.resolve_amp("auto", cpu) is None
    assert loop.resolve_amp("off", cpu) is None
    assert loop.resolve_amp("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="CUDA"):
        loop.resolve_amp("fp16", cpu)


def test_channels_last_follows_the_device_unless_forced(monkeypatch):
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert loop.resolve_channels_last(None, cpu) is True and loop.resolve_channels_last(None, cuda) is True
    assert loop.resolve_channels_last(False, cpu) is False and loop.resolve_channels_last(None, mps) is False
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert loop.resolve_channels_last(None, cpu) is False and loop.resolve_channels_last(True, cpu) is True


def test_build_parts_uses_the_resolved_layout(tmp_path, splits, monkeypatch):
    for native, expected in ((True, torch.channels_last), (False, torch.contiguous_format)):
        monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda native=native: native)
        cfg = tiny_config(tmp_path / str(native), epochs=1)
        parts = build_parts(cfg, build_loaders(cfg, splits), torch.device("cpu"))
        weight = next(p for p in parts.model.parameters() if p.dim() == 4)
        assert parts.channels_last is native and weight.is_contiguous(memory_format=expected)


class LayoutProbe(torch.nn.Module):
    """A 1x1 convolution that records whether each input batch it sees is in the NHWC memory layout."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1)
        self.seen: list[bool] = []

    def forward(self, x):
        self.seen.append(x.is_contiguous(memory_format=torch.channels_last))
        return self.conv(x)


def test_input_batches_follow_the_channels_last_setting():
    """train_one_epoch and validate convert each batch to NHWC exactly when channels_last is on."""
    batch = {"image": torch.randn(2, 3, 8, 8), "mask": (torch.rand(2, 1, 8, 8) > 0.5).float()}
    assert not batch["image"].is_contiguous(memory_format=torch.channels_last)  # the loader's NCHW layout
    loss_fn, cpu = torch.nn.BCEWithLogitsLoss(), torch.device("cpu")
    for channels_last in (True, False):
        model = LayoutProbe()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        loop.train_one_epoch(model, [batch], loss_fn, optimizer, device=cpu, channels_last=channels_last)
        loop.validate(model, [batch], loss_fn, device=cpu, channels_last=channels_last)
        assert model.seen == [channels_last, channels_last], f"channels_last={channels_last}"


def test_rng_state_round_trip():
    state = resume.rng_state()
    first = (np.random.rand(), torch.rand(1).item(), __import__("random").random())
    resume.set_rng_state(state)
    assert (np.random.rand(), torch.rand(1).item(), __import__("random").random()) == first


# -------------------------------------------------------------------------------- fit
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, splits):
    out = tmp_path_factory.mktemp("runs") / "full"
    return fit(tiny_config(out), splits=splits, progress=False)


def test_fit_writes_history_best_and_last(finished_run):
    result = finished_run
    run = result.run_dir
    assert set(runfolder.RUN_FILES) <= {p.name for p in run.iterdir()}
    hist = pd.read_csv(run / runfolder.HISTORY_FILE)
    assert list(hist.columns) == list(HISTORY_COLUMNS)
    assert hist["epoch"].tolist() == [1, 2]
    pd.testing.assert_frame_equal(hist, result.history, check_dtype=False)
    assert np.isfinite(hist.drop(columns="epoch").to_numpy()).all()
    assert ((hist["val_dice"] >= 0) & (hist["val_dice"] <= 1)).all()
    assert hist["lr"].iloc[1] < hist["lr"].iloc[0]                  # cosine decay
    assert result.best_epoch == int(hist["val_dice"].idxmax()) + 1
    assert result.best_score == pytest.approx(hist["val_dice"].max())
    assert json.loads((run / runfolder.CONFIG_FILE).read_text())["model_kwargs"] == {"base": 4, "dropout": 0.1}


def test_best_checkpoint_loads_and_last_holds_the_resumable_state(finished_run):
    model = models.load_model(finished_run.best_path, expected_name="se_unet")
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    best = models.load_checkpoint(finished_run.best_path)
    assert best["epoch"] == finished_run.best_epoch and best["config"]["img_size"] == 32
    last = models.load_checkpoint(finished_run.last_path)
    assert last["epoch"] == 2 and len(last["history"]) == 2
    assert {"optimizer", "scheduler", "scaler", "rng", "best_score"} <= set(last)
    assert {"python", "numpy", "torch"} <= set(last["rng"])
    assert last["scheduler"]["last_epoch"] == 2 * 2                 # 8 images / batch 4 = 2 steps per epoch


def _stop_in_epoch(epoch: int, batch: int):
    def callback(event, info):
        if event == "batch_end" and info["epoch"] == epoch and info["batch"] == batch:
            raise KeyboardInterrupt
    return callback


def test_resume_after_interruption_matches_the_uninterrupted_run(tmp_path, splits, finished_run):
    cfg = tiny_config(tmp_path / "interrupted")
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, splits=splits, progress=False, callbacks=[_stop_in_epoch(2, 1)])
    assert pd.read_csv(cfg.run_dir() / runfolder.HISTORY_FILE)["epoch"].tolist() == [1]
    assert models.load_checkpoint(cfg.run_dir() / runfolder.LAST_FILE)["epoch"] == 1

    resumed = fit(tiny_config(tmp_path / "interrupted", resume=True), splits=splits, progress=False)
    assert resumed.history["epoch"].tolist() == [1, 2]             # no duplicate, none missing
    assert pd.read_csv(resumed.run_dir / runfolder.HISTORY_FILE)["epoch"].tolist() == [1, 2]
    # Deterministic on the CPU: the same data order, augmentations, RNG and optimiser state -> same weights.
    full = models.load_checkpoint(finished_run.last_path)["state_dict"]
    again = models.load_checkpoint(resumed.last_path)["state_dict"]
    assert all(torch.equal(full[k], again[k]) for k in full)
    cols = ["train_loss", "val_loss", "val_dice"]
    np.testing.assert_allclose(resumed.history[cols].to_numpy(), finished_run.history[cols].to_numpy())


def test_resuming_a_finished_run_trains_nothing(splits, finished_run):
    cfg = TrainConfig.load(finished_run.run_dir / runfolder.CONFIG_FILE)
    cfg.resume = True
    calls = []
    result = fit(cfg, splits=splits, progress=False, callbacks=[lambda event, info: calls.append(event)])
    assert calls == [] and result.history["epoch"].tolist() == [1, 2]


def test_train_or_load_reuses_a_finished_run_and_retrains_another_recipe(splits, finished_run, capsys):
    cfg = TrainConfig.load(finished_run.run_dir / runfolder.CONFIG_FILE)
    calls = []
    same = train_or_load(cfg, splits=splits, progress=False, callbacks=[lambda e, i: calls.append(e)])
    assert calls == [] and same.best_epoch == finished_run.best_epoch
    other = train_or_load(tiny_config(finished_run.run_dir.parent / "other", epochs=1), splits=splits,
                                   progress=False)
    assert other.history["epoch"].tolist() == [1]
    changed = dataclasses.replace(cfg, out=str(other.run_dir), epochs=2)
    retrained = train_or_load(changed, splits=splits, progress=False)
    assert "epochs=1" in capsys.readouterr().out and retrained.history["epoch"].tolist() == [1, 2]


def test_a_fresh_run_removes_the_previous_runs_checkpoints(tmp_path, splits, monkeypatch, capsys):
    cfg = tiny_config(tmp_path / "again", epochs=1)
    fit(cfg, splits=splits, progress=False)
    class NaNLoss(torch.nn.Module):
        def forward(self, logits, target):
            return logits.mean() * float("nan")

    monkeypatch.setattr(losses, "build_loss", lambda name: NaNLoss())
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written"):
        fit(cfg, splits=splits, progress=False)
    assert f"replacing {runfolder.BEST_FILE}, {runfolder.LAST_FILE}" in capsys.readouterr().out
    assert not (cfg.run_dir() / runfolder.BEST_FILE).exists() and not (cfg.run_dir() / runfolder.LAST_FILE).exists()


def test_resume_refuses_a_different_recipe_naming_the_field(splits, finished_run):
    cfg = TrainConfig.load(finished_run.run_dir / runfolder.CONFIG_FILE)
    cfg.resume, cfg.lr = True, 0.01
    with pytest.raises(ResumeError, match="lr=0.003.*lr=0.01"):
        fit(cfg, splits=splits, progress=False)
    cfg.lr = 3e-3
    with pytest.raises(ResumeError, match="split differs"):
        fit(cfg, splits={"train": splits["train"][:6], "val": splits["val"]}, progress=False)


def test_resume_reads_a_field_missing_from_an_older_checkpoint_as_its_default(splits, finished_run, tmp_path):
    # a last.pt written before colour_augment existed resumes under the default and is refused under another value
    checkpoint = models.load_checkpoint(finished_run.run_dir / runfolder.LAST_FILE)
    del checkpoint["config"]["colour_augment"]
    cfg = TrainConfig.load(finished_run.run_dir / runfolder.CONFIG_FILE)
    fingerprint = checkpoint["data_fingerprint"]
    resume.check_resumable(checkpoint, cfg, fingerprint, tmp_path / "last.pt")
    with pytest.raises(ResumeError, match="colour_augment='mild' but this config has colour_augment='strong'"):
        resume.check_resumable(checkpoint, dataclasses.replace(cfg, colour_augment="strong"), fingerprint,
                        tmp_path / "last.pt")


def test_nan_loss_stops_with_advice_and_keeps_best(tmp_path, splits, monkeypatch):
    real_build = losses.build_loss

    class NaNAfter(torch.nn.Module):
        """The real loss for the first ``n`` calls, then NaN."""

        def __init__(self, n):
            super().__init__()
            self.inner, self.calls, self.n = real_build("bce+dice"), 0, n

        def forward(self, logits, target):
            self.calls += 1
            loss = self.inner(logits, target)
            return loss * float("nan") if self.calls > self.n else loss

    # epoch 1 = 2 training + 1 validation calls; the NaN arrives in epoch 2.
    monkeypatch.setattr(losses, "build_loss", lambda name: NaNAfter(3))
    cfg = tiny_config(tmp_path / "nan")
    with pytest.raises(NonFiniteLossError, match=r"(?s)nan at epoch 2.*lower learning rate.*grad-clip"):
        fit(cfg, splits=splits, progress=False)
    best = models.load_checkpoint(cfg.run_dir() / runfolder.BEST_FILE)
    assert best["epoch"] == 1 and models.load_checkpoint(cfg.run_dir() / runfolder.LAST_FILE)["epoch"] == 1
    assert pd.read_csv(cfg.run_dir() / runfolder.HISTORY_FILE)["epoch"].tolist() == [1]


def test_early_stopping_ends_the_run(tmp_path, splits, monkeypatch):
    scores = iter([0.5, 0.4, 0.3, 0.2])
    real_validate = loop.validate

    def fake_validate(*args, **kwargs):
        return {**real_validate(*args, **kwargs), "val_dice": next(scores)}

    monkeypatch.setattr(loop, "validate", fake_validate)
    result = fit(tiny_config(tmp_path / "early", epochs=4, patience=2), splits=splits, progress=False)
    assert result.stopped_early and result.history["epoch"].tolist() == [1, 2, 3] and result.best_epoch == 1


def test_autocast_and_channels_last_paths_run_on_cpu(tmp_path, splits):
    """The GPU code paths (autocast, NHWC layout) exercised on the CPU with bfloat16."""
    result = fit(tiny_config(tmp_path / "bf16", epochs=1, amp="bf16", channels_last=True), splits=splits,
                 progress=False)
    assert np.isfinite(result.history[["train_loss", "val_loss", "val_dice"]].to_numpy()).all()
    weights = models.load_checkpoint(result.best_path)["state_dict"]
    assert all(v.dtype != torch.bfloat16 for v in weights.values())   # weights stay float32 under autocast


def _batches(n=2, size=8, seed=0):
    """``n`` loader-style batches of 2 random images with random binary masks."""
    g = torch.Generator().manual_seed(seed)
    return [{"image": torch.randn(2, 3, size, size, generator=g),
             "mask": (torch.rand(2, 1, size, size, generator=g) > 0.5).float()} for _ in range(n)]


def _grad_norms_after_each_step(grad_clip):
    """Global gradient norms that AdamW used at each step of train_one_epoch, for a loss with huge gradients."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 1, 1)
    norms = []

    def record(event, info):   # batch_end comes after optimizer.step: the gradients are the ones it used
        norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))))

    def steep_loss(logits, masks):
        return 1000.0 * torch.nn.functional.binary_cross_entropy_with_logits(logits, masks)

    opt = torch.optim.SGD(model.parameters(), lr=1e-6)
    loop.train_one_epoch(model, _batches(), steep_loss, opt, device=torch.device("cpu"),
                             grad_clip=grad_clip, callbacks=[record])
    return norms


def test_gradient_clipping_caps_the_global_norm_at_each_step():
    unclipped = _grad_norms_after_each_step(None)
    assert min(unclipped) > 10                                   # the loss really has large gradients
    clipped = _grad_norms_after_each_step(0.5)
    assert len(clipped) == 2 and max(clipped) == pytest.approx(0.5, rel=1e-4)


class _DtypeSpy(torch.nn.Module):
    """A 1x1 convolution that records the dtype its output has inside the forward (bf16 under CPU autocast)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1)
        self.seen = []

    def forward(self, x):
        y = self.conv(x)
        self.seen.append(y.dtype)
        return y


@pytest.mark.parametrize("amp_dtype, expected", [(torch.bfloat16, torch.bfloat16), (None, torch.float32)])
def test_train_one_epoch_and_validate_run_the_forward_under_autocast(amp_dtype, expected):
    model, cpu, loss = _DtypeSpy(), torch.device("cpu"), losses.build_loss("bce")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loop.train_one_epoch(model, _batches(), loss, opt, device=cpu, amp_dtype=amp_dtype)
    assert model.seen == [expected, expected]
    assert model.conv.weight.dtype == torch.float32              # autocast never changes the weights
    model.seen.clear()
    scores = loop.validate(model, _batches(1), loss, device=cpu, amp_dtype=amp_dtype)
    assert model.seen == [expected] and math.isfinite(scores["val_loss"])


def test_cli_trains_in_process(tmp_path, tiny_root, capsys):
    out = tmp_path / "cli"
    code = train_main(["--data", str(tiny_root), "--model", "se_unet", "--model-kwargs", '{"base": 4}',
                       "--img-size", "32", "--epochs", "1",
                       "--batch-size", "4", "--lr", "0.003", "--out", str(out), "--workers", "0", "--quiet",
                       "--no-pretrained", "--seed", "1", "--loss", "bce", "--grad-clip", "1.0"])
    assert code == 0
    assert "best checkpoint" in capsys.readouterr().out
    cfg = TrainConfig.load(out / runfolder.CONFIG_FILE)
    assert (cfg.loss, cfg.grad_clip, cfg.seed, cfg.epochs, cfg.data) == ("bce", 1.0, 1, 1, str(tiny_root))
    assert cfg.model_kwargs == {"base": 4} and not cfg.pretrained
    assert len(pd.read_csv(out / runfolder.HISTORY_FILE)) == 1
    assert train_main(["--epochs", "0", "--out", str(out)]) == 2     # a range: one line naming the option
    assert capsys.readouterr().err == "error: --epochs 0 must be a positive integer\n"
    with pytest.raises(SystemExit):                                   # a type: argparse's usage message
        train_main(["--model-kwargs", "base=4", "--out", str(out)])
    assert "model-kwargs" in capsys.readouterr().err


def test_plot_history_draws_both_panels_per_run(finished_run):
    from helpers.evaluation import plots

    fig = plots.plot_history({"a": finished_run.history, "b": finished_run.history})
    ax_loss, ax_dice = fig.axes
    assert len(ax_loss.lines) == 4 and len(ax_dice.lines) == 4      # train + val per run; Dice + best marker
    np.testing.assert_allclose(ax_dice.lines[0].get_ydata(), finished_run.history["val_dice"])
    with pytest.raises(ValueError, match="val_dice"):
        plots.plot_history(finished_run.history.drop(columns="val_dice"))


# -------------------------------------------------------------------------------- the loss: a name with arguments, or an object
class CountingTversky(torch.nn.Module):
    """A learner's Tversky loss (notebook 05, exercise 3) that records each call, to prove fit trains with it."""

    def __init__(self, alpha: float = 0.3, beta: float = 0.7) -> None:
        super().__init__()
        self.alpha, self.beta, self.calls = alpha, beta, []

    def forward(self, logits, target):
        self.calls.append((torch.is_grad_enabled(), logits.shape[0]))  # validation runs without gradients
        p, y = torch.sigmoid(logits).flatten(1), target.flatten(1)
        tp, fp, fn = (p * y).sum(1), (p * (1 - y)).sum(1), ((1 - p) * y).sum(1)
        return 1 - ((tp + 1) / (tp + self.alpha * fp + self.beta * fn + 1)).mean()


def test_a_named_loss_takes_its_arguments():
    cfg = TrainConfig(loss="tversky", loss_kwargs={"alpha": 0.2, "beta": 0.8})
    loss = losses.resolve_loss(cfg.loss, cfg.loss_kwargs)
    assert isinstance(loss, losses.TverskyLoss) and (loss.alpha, loss.beta) == (0.2, 0.8)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(loop.ConfigError, match="bad arguments for loss 'tversky'.*gamma"):
        TrainConfig(loss="tversky", loss_kwargs={"gamma": 2})


@pytest.mark.parametrize("loss, kwargs, message", [
    (CountingTversky, {}, r"is the class CountingTversky, not an object: pass an instance"),
    (CountingTversky(), {"alpha": 0.5}, "carries its own arguments"),
    (lambda logits, target: logits.mean(), {}, "torch.nn.Module instance"),
    ("focal", {}, "unknown loss 'focal'"),
])
def test_a_loss_that_cannot_train_is_refused_naming_the_fix(loss, kwargs, message):
    with pytest.raises(loop.ConfigError, match=message):
        TrainConfig(loss=loss, loss_kwargs=kwargs)


def test_fit_trains_with_the_loss_object_it_is_given(tmp_path, splits):
    loss = CountingTversky(0.3, 0.7)
    cfg = tiny_config(tmp_path / "own_loss", loss=loss, epochs=1)
    result = fit(cfg, splits=splits, progress=False)
    assert [b for training, b in loss.calls if training] == [4, 4]  # 8 training images, batch 4: the object trained
    assert sum(b for training, b in loss.calls if not training) == len(splits["val"])  # and validated
    saved = json.loads((result.run_dir / runfolder.CONFIG_FILE).read_text())
    assert saved["loss"] == "object:CountingTversky(alpha=0.3, beta=0.7)" and saved["loss_kwargs"] == {}
    with pytest.raises(ValueError, match=r"trained with a loss object \(CountingTversky\(alpha=0.3, beta=0.7\)\).*"
                                         "pass the object again"):
        TrainConfig.load(result.run_dir / runfolder.CONFIG_FILE)
    loss.calls.clear()
    again = train_or_load(cfg, splits=splits, progress=False)  # the same object again: the finished run is loaded
    assert loss.calls == [] and again.best_epoch == result.best_epoch
    other = dataclasses.replace(cfg, loss=CountingTversky(0.5, 0.5), resume=True)
    with pytest.raises(ResumeError, match=r"loss='object:CountingTversky\(alpha=0.3, beta=0.7\)'.*alpha=0.5"):
        fit(other, splits=splits, progress=False)


def test_the_cli_passes_loss_arguments(tmp_path):
    from helpers.cli.train import build_parser, config_from_args
    args = build_parser().parse_args(["--loss", "tversky", "--loss-kwargs", '{"alpha": 0.1, "beta": 0.9}'])
    assert config_from_args(args).loss_kwargs == {"alpha": 0.1, "beta": 0.9}
