"""Throughput of the course's training step and prediction path against the bare model, in one process.

    python benchmarks/throughput.py [--model resnet_unet_aspp] [--img-size 256] [--batch-size 16] [--steps N]
        [--device cpu|cuda] [--amp] [--channels-last] [--compile] [--precisions] [--json]
        [--predict-modes | --predict-modes-only [--checkpoint best.pt --images DIR]]

Training: images/s of the full step as :func:`helpers.train.loop.train_one_epoch` runs it (a
:func:`helpers.data.make_loaders` DataLoader with the training augmentations, on a synthetic set of that
size, then forward, loss, backward, AdamW step, scheduler step) against the bare model's
forward + loss + backward + step on tensors already in memory (same model, loss, optimiser, batch, size).

Inference: images/s of :func:`helpers.evaluation.predict.predict_batch` on decoded ``(H, W, 3) uint8`` images (resize,
normalise, forward, sigmoid, resize back to each image's size) and of :func:`helpers.evaluation.predict.predict_folder`
on image files (decode, predict, threshold, write PNG masks; one call, model loading included) against the
bare model's forward on in-memory tensors.

Full and bare steps alternate one by one (``--warmup`` untimed pairs, then ``--steps`` timed ones), so a
neighbour's load on a shared machine hits both alike. Images/s use each side's median step time;
``train_ratio`` and ``infer_ratio`` (course path / bare: 1.0 means the pipeline costs nothing beyond the
network) are the median over the back-to-back pairs of their ratio, which cancels load that comes and goes.
``infer_files_ratio`` pairs one predict_folder call with the bare forward over as many batches.

``--precisions`` adds the fp32 and bf16 rows: the bare training step in float32 and under autocast
(bfloat16 on the CPU, the recipe's ``auto`` choice on CUDA), each with and without ``channels_last``, one
step of each in turn per round, so ``speedup`` (float32 contiguous time / the row's time, median over rounds)
cancels a neighbour's load like the ratios above.
``--predict-modes`` adds the prediction rows of notebook 07: :func:`helpers.evaluation.predict.predict_batch` in
float32 (``amp="off"``, contiguous), as it runs by default (``amp="auto"``: bf16 autocast and NHWC input on CPUs with
native bf16 and on CUDA) and through ONNX Runtime (:class:`helpers.evaluation.export.OnnxModel`, as many threads as
torch), one batch of each in turn per round; images/s from the median batch, ``speedup`` vs fp32 (median over
rounds), and each mode's masks against the fp32 masks over all the images (Dice per image: mean and minimum).
``--checkpoint`` and ``--images`` measure a trained model on real images (e.g. the holdout);
``--predict-modes-only`` skips the training and loader rows.
With ``--json`` stdout is ONE JSON object; progress goes to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import math
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import _common
import torch
from torch import nn

from helpers import config, data, models, runtime
from helpers.cli.common import json_object_arg
from helpers.data import layouts, synthetic
from helpers.data.files import read_image
from helpers.evaluation import export, metrics, predict
from helpers.models.checkpoint import trained_img_size
from helpers.train import fit, loop

#: The throughput ratio the course aims for at 256 px, batch 16 (issue 5).
TARGET_RATIO = 0.9
#: Keys every JSON result has (documented in benchmarks/README.md; the smoke test checks them).
RESULT_KEYS: tuple[str, ...] = (
    "benchmark", "model", "img_size", "batch_size", "steps", "warmup", "amp", "channels_last",
    "compile", "workers", "train_images_per_s", "train_bare_images_per_s", "train_ratio", "train_first_batch_s",
    "infer_images_per_s", "infer_bare_images_per_s", "infer_ratio", "infer_files_images_per_s",
    "infer_files_ratio", "target_ratio", "meets_target", "torch", "device", "threads")


def build_parser() -> argparse.ArgumentParser:
    """Command-line arguments (defaults: the course recipe at 256 px, batch 16)."""
    p = argparse.ArgumentParser(prog="python benchmarks/throughput.py", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="resnet_unet_aspp", help="helpers.models.build_model name")
    p.add_argument("--model-kwargs", type=json_object_arg, default={}, metavar="JSON", help="extra model arguments")
    p.add_argument("--img-size", type=int, default=256, help="square model input, pixels")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=5, help="timed steps per side and round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per side and round (at least 1)")
    p.add_argument("--loss", default="bce+dice", help="helpers.train.losses.build_loss name (the recipe's)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers; default: what helpers.data chooses for this machine")
    p.add_argument("--device", choices=runtime.DEVICE_CHOICES, default=None, help="default: best available")
    p.add_argument("--amp", action="store_true", help="mixed precision (bf16 on the CPU, auto on CUDA)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory layout")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (both sides)")
    p.add_argument("--precisions", action="store_true",
                   help="also time the bare training step in fp32 and bf16 autocast, channels_last on and off")
    p.add_argument("--predict-modes", action="store_true",
                   help="also time predict_batch in fp32, amp=auto and ONNX Runtime, with mask Dice vs fp32")
    p.add_argument("--predict-modes-only", action="store_true", help="only the --predict-modes rows")
    p.add_argument("--checkpoint", type=Path, default=None, help="--predict-modes with this trained model")
    p.add_argument("--images", type=Path, default=None, help="--predict-modes on these images (a folder)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also cProfile one full training round and print its top N functions to stderr")
    p.add_argument("--data-root", type=Path, default=None,
                   help="where the synthetic set is drawn (default: the course data folder)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def _check_args(args: argparse.Namespace) -> None:
    """Raise ValueError for settings that cannot be measured."""
    for name in ("img_size", "batch_size", "steps", "warmup"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.img_size < 32:
        raise ValueError(f"--img-size {args.img_size} is below 32, the smallest synthetic image: use >= 32")


def _amp_setting(enabled: bool, device: torch.device) -> str:
    """The TrainConfig ``amp`` for ``--amp``: ``bf16`` on the CPU, the recipe's ``auto`` choice on CUDA."""
    if not enabled:
        return "off"
    return "auto" if device.type == "cuda" else "bf16"


class _Setup:
    """Model, loss, optimiser, scheduler, loader and in-memory tensors shared by every measurement.

    Model, loss, optimiser (AdamW), scheduler and scaler come from :func:`helpers.train.fit.build_parts` with the
    recipe's defaults for everything the arguments do not set (two epochs of schedule).
    """

    def __init__(self, args: argparse.Namespace, device: torch.device, pairs: list[layouts.Pair]) -> None:
        self.device = device
        self.batch_size = args.batch_size
        self.img_size = args.img_size
        loader = data.make_loaders({"train": pairs}, args.img_size, args.batch_size, augment=True,
                                   num_workers=args.workers, seed=0, persistent_workers=False)["train"]
        cfg = loop.TrainConfig(model=args.model, model_kwargs=args.model_kwargs, img_size=args.img_size,
                                   batch_size=args.batch_size, epochs=2, loss=args.loss,
                                   amp=_amp_setting(args.amp, device), channels_last=args.channels_last)
        parts = fit.build_parts(cfg, {"train": loader}, device)
        self.loader = loader
        self.workers = loader.num_workers
        self.amp_dtype = parts.amp_dtype
        self.channels_last = parts.channels_last
        self.model = parts.model
        self.net: nn.Module = torch.compile(parts.net) if args.compile else parts.net
        self.loss_fn = parts.loss_fn
        self.optimizer = parts.optimizer
        self.scheduler = parts.scheduler
        self.scaler = parts.scaler
        memory = torch.channels_last if parts.channels_last else torch.contiguous_format
        generator = torch.Generator().manual_seed(0)
        shape = (args.batch_size, 3, args.img_size, args.img_size)
        self.x = torch.randn(shape, generator=generator).to(device, memory_format=memory)
        self.y = (torch.rand((args.batch_size, 1, args.img_size, args.img_size), generator=generator) > 0.5
                  ).float().to(device)


def bare_train_step(s: _Setup) -> None:
    """Forward, loss, backward and optimiser step on the in-memory batch: the network's own cost."""
    s.net.train()
    with loop.autocast(s.device, s.amp_dtype):
        logits = s.net(s.x)
    loss = s.loss_fn(logits.float(), s.y)
    s.optimizer.zero_grad(set_to_none=True)
    s.scaler.scale(loss).backward()
    s.scaler.step(s.optimizer)
    s.scaler.update()


def measure_training(s: _Setup, steps: int, warmup: int) -> dict[str, Any]:
    """Full and bare training steps, interleaved one by one, after ``warmup`` of each.

    One pass of :func:`helpers.train.loop.train_one_epoch` runs over ``warmup + steps`` loader batches; its
    ``batch_end`` callback runs and times one bare step each time, so both kinds of step see the same
    neighbours' load. A full step's time runs from the end of the previous bare step to its own
    ``batch_end``: waiting for the batch plus the whole optimisation step.

    Returns:
        ``{"full": StepTimes, "bare": StepTimes, "first_batch_s": seconds from the call to the first
        batch_end (DataLoader start-up, worker start included)}``.
    """
    resumed = [time.perf_counter()]
    full: list[float] = []
    bare: list[float] = []

    def interleave(event: str, info: dict[str, Any]) -> None:
        if event != "batch_end":
            return
        _common.synchronize(s.device)
        end = time.perf_counter()
        full.append(end - resumed[-1])
        bare_train_step(s)
        _common.synchronize(s.device)
        resumed.append(time.perf_counter())
        bare.append(resumed[-1] - end)

    loop.train_one_epoch(s.net, _common.take(s.loader, warmup + steps), s.loss_fn, s.optimizer, s.scheduler,
                             device=s.device, amp_dtype=s.amp_dtype, scaler=s.scaler,
                             channels_last=s.channels_last, callbacks=[interleave])
    return {"full": _common.StepTimes(full[warmup:], s.batch_size),
            "bare": _common.StepTimes(bare[warmup:], s.batch_size), "first_batch_s": full[0]}


#: The ``--precisions`` rows: (label, --amp, --channels-last); the first is the reference of ``speedup``.
PRECISION_ROWS: tuple[tuple[str, bool, bool], ...] = (
    ("fp32", False, False), ("fp32 + channels_last", False, True),
    ("autocast", True, False), ("autocast + channels_last", True, True))


def measure_precisions(args: argparse.Namespace, device: torch.device, pairs: list[layouts.Pair]
                       ) -> list[dict[str, Any]]:
    """The bare training step in each of :data:`PRECISION_ROWS`, one step of each per round, in turn.

    Each row has its own model, optimiser and batch built by :class:`_Setup` (so by
    :func:`helpers.train.fit.build_parts`, as ``fit`` builds them); ``--warmup`` rounds are untimed.

    Returns:
        One dict per row: ``what``, ``amp`` (the autocast dtype or ``off``), ``channels_last``,
        ``images_per_s`` (median step), ``speedup`` (median over rounds of the first row's step time / this
        row's) and ``pair_speedups``.
    """
    setups = [_Setup(argparse.Namespace(**{**vars(args), "amp": amp, "channels_last": cl}), device, pairs)
              for _, amp, cl in PRECISION_ROWS]
    times: list[list[float]] = [[] for _ in setups]
    for i in range(args.warmup + args.steps):
        for setup, row_times in zip(setups, times):
            start = time.perf_counter()
            bare_train_step(setup)
            _common.synchronize(device)
            if i >= args.warmup:
                row_times.append(time.perf_counter() - start)
    reference = _common.StepTimes(times[0], args.batch_size)
    rows = []
    for (label, _, _), setup, row_times in zip(PRECISION_ROWS, setups, times):
        steps = _common.StepTimes(row_times, args.batch_size)
        speedup, pairs_ = _common.paired_ratio(steps, reference)
        rows.append({"what": label, "amp": str(setup.amp_dtype).removeprefix("torch.") if setup.amp_dtype else "off",
                     "channels_last": setup.channels_last, "images_per_s": steps.images_per_s,
                     "speedup": speedup, "pair_speedups": pairs_})
    return rows


def profile_training(s: _Setup, steps: int, top: int) -> None:
    """cProfile one pass of ``train_one_epoch`` over ``steps`` batches; print the ``top`` functions to stderr."""
    profiler = cProfile.Profile()
    with profiler:
        loop.train_one_epoch(s.net, _common.take(s.loader, steps), s.loss_fn, s.optimizer, s.scheduler,
                                 device=s.device, amp_dtype=s.amp_dtype, scaler=s.scaler,
                                 channels_last=s.channels_last)
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(top)
    _common.eprint(f"cProfile of train_one_epoch over {steps} batches (cumulative time):\n" + stream.getvalue())


def bare_infer_step(s: _Setup) -> None:
    """The model's forward pass alone on the in-memory batch (eval mode, no gradients)."""
    s.net.eval()
    with torch.no_grad(), loop.autocast(s.device, s.amp_dtype):
        s.net(s.x)


def measure_inference(s: _Setup, images: list[Any], steps: int, warmup: int) -> dict[str, _common.StepTimes]:
    """The bare forward and :func:`helpers.evaluation.predict.predict_batch` on ``images`` (one batch), interleaved."""
    bare: list[float] = []
    full: list[float] = []
    for i in range(warmup + steps):
        for step, times in ((lambda: bare_infer_step(s), bare),
                            (lambda: predict.predict_batch(s.net, images, s.img_size, device=s.device), full)):
            start = time.perf_counter()
            step()
            _common.synchronize(s.device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return {"bare": _common.StepTimes(bare, s.batch_size), "full": _common.StepTimes(full, len(images))}


def measure_predict_folder(s: _Setup, images_dir: Path, work: Path) -> dict[str, float]:
    """One :func:`helpers.evaluation.predict.predict_folder` call (checkpoint load to the last PNG written), paired.

    Right after the call, the bare forward runs as many batches as the call predicted, so the ratio of
    the two back-to-back timings is little affected by a neighbour's load. The weights are those being
    trained here (any weights cost the same).

    Returns:
        ``{"images_per_s", "bare_images_per_s", "ratio", "n"}`` of the pair.
    """
    ckpt = models.save_checkpoint(work / "throughput.pt", s.model, config={"img_size": s.img_size})
    start = time.perf_counter()
    written = predict.predict_folder(ckpt, images_dir, work / "predictions", batch_size=s.batch_size,
                                     device=s.device)
    _common.synchronize(s.device)
    folder_s = time.perf_counter() - start
    batches = math.ceil(len(written) / s.batch_size)
    start = time.perf_counter()
    for _ in range(batches):
        bare_infer_step(s)
    _common.synchronize(s.device)
    bare_s = time.perf_counter() - start
    ips, bare_ips = len(written) / folder_s, batches * s.batch_size / bare_s
    return {"images_per_s": ips, "bare_images_per_s": bare_ips, "ratio": ips / bare_ips, "n": len(written)}


#: The ``--predict-modes`` rows: label -> (predict_batch ``amp``, ``channels_last``, through ONNX Runtime).
PREDICT_MODES: dict[str, tuple[str, bool | None, bool]] = {
    "fp32": ("off", False, False), "auto": ("auto", None, False), "onnxruntime": ("off", False, True)}


def _mode_models(model: nn.Module, img_size: int, work: Path) -> dict[str, nn.Module]:
    """The model each of :data:`PREDICT_MODES` runs: ``model`` itself, or its ONNX export in ONNX Runtime."""
    onnx_model = export.OnnxModel(export.export_onnx(model, work / "throughput.onnx", img_size),
                                  threads=torch.get_num_threads())
    return {label: onnx_model if onnx else model for label, (_, _, onnx) in PREDICT_MODES.items()}


def measure_predict_modes(model: nn.Module, images: list[Any], img_size: int, batch_size: int, steps: int,
                          warmup: int, work: Path) -> list[dict[str, Any]]:
    """:func:`predict_batch` in each of :data:`PREDICT_MODES`, one batch of each per round, then agreement.

    Round ``i`` predicts batch ``i`` (cycling over ``images``) in every mode in turn; ``warmup`` rounds are
    untimed. Then every image is predicted in every mode and its mask (> 0.5) scored against the fp32 mask.

    Returns:
        One dict per mode: ``what``, ``amp`` (autocast dtype or off), ``channels_last``, ``images_per_s``,
        ``speedup`` (vs fp32, median over rounds), ``dice_vs_fp32`` (mean), ``min_dice_vs_fp32``,
        ``max_prob_gap`` (largest probability difference from fp32 over all pixels).
    """
    nets = _mode_models(model, img_size, work)
    batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
    times: dict[str, list[float]] = {label: [] for label in PREDICT_MODES}
    for i in range(warmup + steps):
        for label, (amp, layout, _) in PREDICT_MODES.items():
            start = time.perf_counter()
            predict.predict_batch(nets[label], batches[i % len(batches)], img_size, amp=amp, channels_last=layout)
            if i >= warmup:
                times[label].append(time.perf_counter() - start)
    probs = {label: predict.predict_batch(nets[label], images, img_size, amp=amp, channels_last=layout,
                                          batch_size=batch_size) for label, (amp, layout, _) in PREDICT_MODES.items()}
    device = next(model.parameters()).device
    reference = _common.StepTimes(times["fp32"], batch_size)
    rows = []
    for label, (amp, layout, onnx) in PREDICT_MODES.items():
        steps_ = _common.StepTimes(times[label], batch_size)
        dice = [metrics.image_scores(p > 0.5, q > 0.5)["dice"] for p, q in zip(probs[label], probs["fp32"])]
        dtype = None if onnx else runtime.resolve_amp(amp, device)
        rows.append({"what": label, "amp": str(dtype).removeprefix("torch.") if dtype else "off",
                     "channels_last": False if onnx else runtime.resolve_channels_last(layout, device),
                     "images_per_s": steps_.images_per_s, "speedup": _common.paired_ratio(steps_, reference)[0],
                     "dice_vs_fp32": sum(dice) / len(dice), "min_dice_vs_fp32": min(dice),
                     "max_prob_gap": max(float(abs(p - q).max()) for p, q in zip(probs[label], probs["fp32"]))})
    return rows


def _predict_modes_inputs(args: argparse.Namespace, s: _Setup | None, device: torch.device,
                          pairs: list[layouts.Pair]) -> tuple[nn.Module, int, list[Any], str]:
    """Model, input size, decoded images and a description for ``--predict-modes``."""
    if args.checkpoint is not None:
        ckpt = models.load_checkpoint(args.checkpoint)
        model = models.load_model(ckpt, map_location="cpu").to(device)
        size = trained_img_size(ckpt, args.checkpoint)
        what = f"{_common.shown_path(args.checkpoint)} at {size} px"
    else:
        model = s.model if s is not None else _Setup(args, device, pairs).model
        size, what = args.img_size, f"untrained {args.model} at {args.img_size} px"
    paths = predict.list_images(args.images) if args.images is not None else [p.image for p in pairs]
    return model, size, [read_image(p) for p in paths], f"{what}, {len(paths)} images"


def synthetic_pairs(n: int, size: int, root: Path | None) -> tuple[Path, list[layouts.Pair]]:
    """The synthetic set of ``n`` pairs ``size`` px wide (drawn once, then reused) and its pairs."""
    folder = synthetic.ensure_synthetic(n, size, seed=0, root=root)
    return folder, layouts.discover_pairs(folder)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure everything ``args`` asks for; return the result dict (keys :data:`RESULT_KEYS` and more)."""
    _check_args(args)
    device = runtime.select_device(args.device)
    runtime.seed_everything(0)
    n = args.batch_size * (args.warmup + args.steps)
    folder, pairs = synthetic_pairs(n, args.img_size, args.data_root)
    if args.predict_modes_only:
        return predict_modes_result(args, None, device, pairs)
    s = _Setup(args, device, pairs)
    _common.eprint(f"{args.model} at {args.img_size}px, batch {args.batch_size}, {s.workers} loader worker(s), "
                   f"on {device} with {torch.get_num_threads()} threads")
    _common.eprint(f"training: {args.warmup} + {args.steps} full steps, each followed by a bare step")
    train = measure_training(s, args.steps, args.warmup)
    if args.profile:
        profile_training(s, args.warmup + args.steps, args.profile)
    images = [read_image(p.image) for p in pairs[:args.batch_size]]
    _common.eprint(f"inference: {args.warmup} + {args.steps} bare forwards and predict_batch calls, interleaved")
    infer = measure_inference(s, images, args.steps, args.warmup)
    work = config.runs_dir() / "benchmarks" / "throughput"
    _common.eprint(f"inference: one predict_folder call on {n} files, then the bare forward on as many batches")
    files = measure_predict_folder(s, folder, work)
    train_ratio, train_pairs = _common.paired_ratio(train["full"], train["bare"])
    infer_ratio, infer_pairs = _common.paired_ratio(infer["full"], infer["bare"])
    result: dict[str, Any] = {
        "benchmark": "throughput", "model": args.model, "model_kwargs": args.model_kwargs,
        "img_size": args.img_size, "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
        "loss": args.loss, "amp": str(s.amp_dtype).removeprefix("torch.") if s.amp_dtype
        else "off", "channels_last": args.channels_last, "compile": args.compile, "workers": s.workers,
        "synthetic_images": f"{n} pairs, {images[0].shape[1]}x{images[0].shape[0]} px (WxH), "
                            f"{_common.shown_path(folder)}",
        "train_images_per_s": train["full"].images_per_s, "train_bare_images_per_s": train["bare"].images_per_s,
        "train_ratio": train_ratio,
        "train_first_batch_s": train["first_batch_s"],
        "train_mean_ratio": train["full"].mean_images_per_s / train["bare"].mean_images_per_s,
        "infer_images_per_s": infer["full"].images_per_s, "infer_bare_images_per_s": infer["bare"].images_per_s,
        "infer_ratio": infer_ratio,
        "infer_files_images_per_s": files["images_per_s"], "infer_files_n": files["n"],
        "infer_files_bare_images_per_s": files["bare_images_per_s"], "infer_files_ratio": files["ratio"],
        "target_ratio": TARGET_RATIO,
        "details": {"train_full": train["full"].summary(), "train_bare": train["bare"].summary(),
                    "train_pair_ratios": train_pairs, "infer_pair_ratios": infer_pairs,
                    "infer_predict_batch": infer["full"].summary(), "infer_bare": infer["bare"].summary()},
        **_common.environment(device),
    }
    result["meets_target"] = bool(result["train_ratio"] >= TARGET_RATIO and result["infer_ratio"] >= TARGET_RATIO)
    if args.precisions:
        _common.eprint(f"precisions: {args.warmup} + {args.steps} rounds of one bare step per row")
        result["precisions"] = measure_precisions(args, device, pairs)
    if args.predict_modes:
        result.update(predict_modes_result(args, s, device, pairs))
    if args.compile:
        result["note"] = "predict_folder loads its own, uncompiled model from the checkpoint"
    return result


def predict_modes_result(args: argparse.Namespace, s: _Setup | None, device: torch.device,
                         pairs: list[layouts.Pair]) -> dict[str, Any]:
    """The ``--predict-modes`` part of the result: ``predict_modes`` rows, what they measured, the environment."""
    model, size, images, what = _predict_modes_inputs(args, s, device, pairs)
    _common.eprint(f"predict modes: {what}; {args.warmup} + {args.steps} rounds of one batch of "
                   f"{args.batch_size} per mode, then every image in every mode")
    work = config.runs_dir() / "benchmarks" / "throughput"
    rows = measure_predict_modes(model, images, size, args.batch_size, args.steps, args.warmup, work)
    return {"benchmark": "throughput", "predict_modes_on": what, "batch_size": args.batch_size,
            "predict_modes": rows, **_common.environment(device)}


def format_predict_modes(result: dict[str, Any]) -> str:
    """The ``--predict-modes`` table: images/s, speedup and mask agreement with fp32 per mode."""
    return (f"predict_batch by mode on {result['predict_modes_on']}, batch {result['batch_size']}; torch "
            f"{result['torch']} on {result['device']} ({result['threads']} threads)\n" + _common.format_table(
                result["predict_modes"], [("what", "predict_batch"), ("amp", "autocast"), ("channels_last", "NHWC"),
                                          ("images_per_s", "images/s"), ("speedup", "speedup"),
                                          ("dice_vs_fp32", "mask Dice vs fp32"), ("min_dice_vs_fp32", "min Dice"),
                                          ("max_prob_gap", "max prob gap")]))


def format_result(result: dict[str, Any]) -> str:
    """The result as a short table: images/s of the course path, of the bare model, and their ratio."""
    if "train_images_per_s" not in result:
        return format_predict_modes(result)
    rows = [
        {"what": "training step", "course": result["train_images_per_s"], "bare": result["train_bare_images_per_s"],
         "ratio": result["train_ratio"]},
        {"what": "predict_batch (decoded)", "course": result["infer_images_per_s"],
         "bare": result["infer_bare_images_per_s"], "ratio": result["infer_ratio"]},
        {"what": "predict_folder (files)", "course": result["infer_files_images_per_s"],
         "bare": result["infer_files_bare_images_per_s"], "ratio": result["infer_files_ratio"]},
    ]
    table = _common.format_table(rows, [("what", "images/s"), ("course", "course path"), ("bare", "bare model"),
                                        ("ratio", "ratio")])
    head = (f"{result['model']} at {result['img_size']}px, batch {result['batch_size']}, {result['workers']} "
            f"worker(s), amp {result['amp']}, channels_last {result['channels_last']}, compile "
            f"{result['compile']}; torch {result['torch']} on {result['device']} ({result['threads']} threads)")
    verdict = (f"target ratio >= {result['target_ratio']}: "
               + ("met" if result["meets_target"] else "NOT met (run with --profile 25 to see where time goes)"))
    text = f"{head}\n{table}\nfirst training batch (loader start-up): {result['train_first_batch_s']:.3f} s\n" \
           f"{verdict}"
    if "precisions" in result:
        text += "\nbare training step by precision (speedup: vs fp32, median over interleaved rounds)\n" + \
            _common.format_table(result["precisions"], [("what", "bare training step"), ("amp", "autocast"),
                                                        ("images_per_s", "images/s"), ("speedup", "speedup")])
    if "predict_modes" in result:
        text += "\n" + format_predict_modes(result)
    return text


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table, or one JSON object with ``--json``. Returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # helpers' progress lines must not break the JSON
            result = run(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(_common.write_json(result, None) if args.json else format_result(result), end="" if args.json else "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
