"""Run profiles: how big a notebook's run is, chosen for the machine and printed by its parameters cell.

Introduced in every notebook's parameters cell (tagged ``parameters``)::

    PROFILE = profiles.active()   # smoke (pytest, helpers.course) | cpu (no GPU) | gpu; SKINSEG_PROFILE=... forces one
    print(PROFILE.describe("04"))
    IMG_SIZE = PROFILE.pick(smoke=64, cpu=128, gpu=256)

``smoke``  tiny data, images and models: proves every cell runs in seconds (pytest, ``python -m helpers.course``).
``cpu``    no CUDA or MPS device: sized so each notebook finishes in at most 10 minutes on 2 CPU cores and still
           learns for real.
``gpu``    a CUDA or Apple MPS device: the full recipe.

:func:`course_recipe` is the one home of notebook 04's recipe per profile (image size, epochs, batch size,
optimiser, loss, the models' sizes, seed and the run folder ``runs/04_<model>``): notebook 04 shows it, notebooks
05 and 06 and ``benchmarks/reliability_figures.py`` read it, so they reuse notebook 04's runs.

The choice, in order: the ``name`` passed to :func:`active`; ``SKINSEG_PROFILE``; ``smoke`` when
``SKINSEG_SMOKE`` is true; ``gpu`` when a CUDA or MPS device is available; else ``cpu``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from helpers import config, runtime
from helpers.train.loop import TrainConfig

T = TypeVar("T")

#: What each profile is for, in a phrase.
PURPOSE = {
    "smoke": "tiny data and models: checks that every cell runs, learns little",
    "cpu": "sized for 2 CPU cores: at most 10 minutes per notebook, still learns",
    "gpu": "the full recipe (256 px, full-size models, more epochs), sized for a GPU",
}

#: Pairs per split the cpu profile keeps of a large dataset (``course_splits(max_pairs=PROFILE.max_pairs)`` in every
#: notebook): the embedded set (480 / 60 / 60) is below it, HAM10000's 8,000 training images are not, and two
#: epochs of both models on all of them would take hours on 2 cores. The smoke profile has its own, smaller cap
#: (:data:`helpers.data.splits.SMOKE_MAX_PAIRS`); the gpu profile keeps every pair.
CPU_MAX_PAIRS: dict[str, int] = {"train": 800, "val": 120, "test": 150}

#: Where the times in :data:`MEASURED_SECONDS` were measured, per profile (None: never measured).
MEASURED_ON: dict[str, str | None] = {
    "smoke": "2 idle AMD EPYC cores with bf16, 2026-12-03 to 2026-12-07",
    "cpu": "2 idle AMD EPYC cores with bf16, 2026-12-07",
    "gpu": None,
}

#: Measured wall time of each notebook (by its number) per profile, in seconds, on the synthetic data;
#: None = not measured. Smoke: ``python -m helpers.course``; cpu: ``python -m helpers.course --full`` on a
#: machine without GPU; gpu: ``python -m helpers.course --full`` on a GPU machine. Copy the printed times here
#: after changing a notebook's parameters (README's notebook table shows the same figures). Notebook 01's times
#: include drawing the synthetic set on first use.
MEASURED_SECONDS: dict[str, dict[str, float | None]] = {
    "01": {"smoke": 9.1, "cpu": 34.1, "gpu": None},
    "02": {"smoke": 11.0, "cpu": 20.2, "gpu": None},
    "03": {"smoke": 15.0, "cpu": 16.0, "gpu": None},
    "04": {"smoke": 13.1, "cpu": 89.1, "gpu": None},
    "05": {"smoke": 12.0, "cpu": 29.0, "gpu": None},
    "06": {"smoke": 18.2, "cpu": 79.1, "gpu": None},
    "07": {"smoke": 38.2, "cpu": 29.0, "gpu": None},
}


def notebook_key(notebook: str) -> str:
    """The two-digit number that keys :data:`MEASURED_SECONDS`: ``"04_training.ipynb"`` -> ``"04"``."""
    return notebook.rsplit("/", 1)[-1][:2]


def format_duration(seconds: float) -> str:
    """``42`` -> ``"about 42 s"``, ``450`` -> ``"about 7.5 min"``."""
    return f"about {seconds:.0f} s" if seconds < 90 else f"about {seconds / 60:.1f} min"


def expected_time(notebook: str, profile: str) -> str:
    """The measured run time of ``notebook`` in ``profile`` as words, or ``"not measured"``."""
    seconds = MEASURED_SECONDS.get(notebook_key(notebook), {}).get(profile)
    if seconds is None:
        return "not measured"
    return f"{format_duration(seconds)} (synthetic data, measured on {MEASURED_ON[profile]})"


@dataclass(frozen=True)
class Profile:
    """One run profile.

    Attributes:
        name: ``"smoke"``, ``"cpu"`` or ``"gpu"``.
        reason: why it was chosen, in words (printed by :meth:`describe`).
        has_gpu: whether a CUDA or MPS device is available (the gpu profile can be forced without one).
    """

    name: str
    reason: str
    has_gpu: bool

    def __post_init__(self) -> None:
        if self.name not in config.PROFILE_NAMES:
            raise ValueError(f"unknown run profile {self.name!r}: use one of {', '.join(config.PROFILE_NAMES)}")

    @property
    def smoke(self) -> bool:
        """True for the smoke profile (the same answer as :func:`helpers.config.smoke_mode`)."""
        return self.name == "smoke"

    @property
    def max_pairs(self) -> dict[str, int] | None:
        """What notebooks pass to ``data.course_splits(max_pairs=...)``: :data:`CPU_MAX_PAIRS` in the cpu profile,
        else None (the smoke cap of ``course_splits`` in smoke mode, every pair on a GPU)."""
        return dict(CPU_MAX_PAIRS) if self.name == "cpu" else None

    def pick(self, *, smoke: T, cpu: T, gpu: T) -> T:
        """The value for this profile: ``IMG_SIZE = PROFILE.pick(smoke=64, cpu=128, gpu=256)``."""
        return {"smoke": smoke, "cpu": cpu, "gpu": gpu}[self.name]

    def describe(self, notebook: str) -> str:
        """What a parameters cell prints: the profile, why, its expected run time, and how to force another.

        Args:
            notebook: the notebook's file name or number, e.g. ``"04_training.ipynb"`` or ``"04"``.
        """
        lines = [f"Run profile: {self.name} ({PURPOSE[self.name]}), chosen because {self.reason}.",
                 f"Expected run time of notebook {notebook_key(notebook)}: {expected_time(notebook, self.name)}."]
        if self.name == "cpu":
            lines.append("Large datasets are cut to at most " + ", ".join(f"{n} {k}" for k, n in CPU_MAX_PAIRS.items())
                         + " pairs (PROFILE.max_pairs); the embedded set is smaller, so it is used whole.")
        if self.name == "gpu" and not self.has_gpu:
            lines.append("Warning: no CUDA or MPS device here, so the gpu profile's full recipe runs on the CPU "
                         "(much slower than the cpu profile).")
        for other in config.PROFILE_NAMES:
            if other != self.name:
                lines.append(f"  {other}: {PURPOSE[other]}; {expected_time(notebook, other)}.")
        lines.append(f"Force one: {config.PROFILE_ENV}=smoke|cpu|gpu in the environment before starting Jupyter, "
                     "or profiles.active(\"cpu\") in this cell.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


def gpu_available() -> bool:
    """True when a CUDA or Apple MPS device is available (what makes ``gpu`` the default profile)."""
    return runtime.select_device().type in ("cuda", "mps")


def active(name: str | None = None) -> Profile:
    """The run profile of this process.

    Args:
        name: ``"smoke"``, ``"cpu"`` or ``"gpu"`` to force one from a notebook; None chooses (see the module
            docstring for the order).

    Raises:
        ValueError: ``name`` or ``SKINSEG_PROFILE`` names no profile.
    """
    has_gpu = gpu_available()
    if name is not None:
        chosen = name.strip().lower()
        if chosen not in config.PROFILE_NAMES:
            raise ValueError(f"profiles.active({name!r}): unknown run profile, "
                             f"use one of {', '.join(config.PROFILE_NAMES)} or None to let the machine choose")
        return Profile(chosen, f'the notebook asked for it (profiles.active("{chosen}"))', has_gpu)
    forced = config.forced_profile()
    if forced is not None:
        return Profile(forced, f"{config.PROFILE_ENV}={forced} is set", has_gpu)
    if config.smoke_requested():
        return Profile("smoke", f"{config.SMOKE_ENV}=1 is set, as pytest and `python -m helpers.course` do", has_gpu)
    if has_gpu:
        return Profile("gpu", f"a GPU was found ({runtime.accelerator_name(runtime.select_device())})", has_gpu)
    return Profile("cpu", "no CUDA or MPS device was found", has_gpu)


#: The models :func:`course_recipe` knows, in notebook 04's order.
RECIPE_MODELS: tuple[str, ...] = ("resnet_unet_aspp", "se_unet")


def course_recipe(model: str, profile: Profile | str | None = None, **overrides: Any) -> TrainConfig:
    """Notebook 04's recipe for ``model`` in ``profile``, with its run folder ``runs/04_<model>``.

    The one home of the course recipe: notebooks 05 and 06 reuse notebook 04's runs because they build the same
    :class:`~helpers.train.loop.TrainConfig` here. Smaller models (and no ImageNet download) on the small profiles
    so both models train in minutes on a CPU; the gpu profile uses the full-size models.

    Args:
        model: one of :data:`RECIPE_MODELS`.
        profile: a :class:`Profile`, a profile name, or None for :func:`active`.
        overrides: TrainConfig fields that differ from the recipe (``epochs=``, ``out=``, ``resume=``...).

    Raises:
        ValueError: ``model`` is not one of :data:`RECIPE_MODELS`, or an override is no TrainConfig field.
    """
    if model not in RECIPE_MODELS:
        raise ValueError(f"course_recipe({model!r}): notebook 04's recipe covers {', '.join(RECIPE_MODELS)}")
    p = profile if isinstance(profile, Profile) else active(profile)
    model_kwargs = {
        "resnet_unet_aspp": p.pick(smoke=dict(encoder_name="resnet18", aspp_channels=64,
                                              decoder_channels=[64, 32, 16, 16, 8]),
                                   cpu=dict(encoder_name="resnet18"), gpu={}),
        "se_unet": p.pick(smoke=dict(base=8), cpu=dict(base=16), gpu=dict(base=32)),
    }[model]
    values: dict[str, Any] = dict(
        model=model, model_kwargs=model_kwargs,
        pretrained=not p.smoke and model != "se_unet",  # ImageNet encoder weights; the smoke run stays offline
        img_size=p.pick(smoke=64, cpu=96, gpu=256), epochs=p.pick(smoke=2, cpu=2, gpu=5),
        batch_size=p.pick(smoke=8, cpu=8, gpu=16), lr=1e-3, weight_decay=1e-4, warmup=0.1, loss="bce+dice",
        seed=0, out=str(config.runs_dir() / f"04_{model}"))
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ValueError(f"course_recipe: {', '.join(unknown)} is no TrainConfig field")
    return TrainConfig(**{**values, **overrides})
