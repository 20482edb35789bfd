"""Multi-process training with DistributedDataParallel (DDP): the few helpers :func:`helpers.train.fit.fit` needs.

No notebook runs it (the notebooks train in one process): it takes notebook 04's command line,
``python -m helpers.train``, to several GPUs under torchrun (README, "Several GPUs").

``torchrun --nproc_per_node N -m helpers.train ...`` starts N copies of the training script. torchrun tells each
copy who it is through environment variables: ``RANK`` (0..N-1 over all machines), ``LOCAL_RANK`` (0..N-1 on
this machine, i.e. which GPU to use), ``WORLD_SIZE`` (N) and ``MASTER_ADDR``/``MASTER_PORT`` (where the
processes meet). Each process then

1. joins a *process group* (:func:`init_distributed`): the ``nccl`` backend on CUDA GPUs, ``gloo`` on the CPU;
2. trains on its own share of the training images (a ``DistributedSampler``), while DDP averages the
   gradients over all processes after every backward pass, so all copies of the model stay identical;
   its BatchNorm layers normalise with the statistics of the whole step's batch, all processes together
   (``nn.SyncBatchNorm`` on CUDA, :class:`CpuSyncBatchNorm` on the CPU, put in by :func:`wrap_model`), so
   N processes with ``batch_size`` B train the network one process with batch N x B would (see "Why
   SyncBatchNorm" below);
3. validates its own share of the validation images (:class:`ShardSampler`, which, unlike
   ``DistributedSampler``, never pads the last share with repeated images) and adds its sums of per-image
   scores to the others' (:func:`all_reduce_sums`): every process then holds the scores of the whole
   validation set, each image counted exactly once;
4. leaves the writing of files to the main process (:func:`is_main_process`, rank 0), while the others wait
   at a :func:`barrier` where they need those files.

Without torchrun (no ``WORLD_SIZE`` > 1 in the environment) every helper here is a no-op or returns the
single-process answer: rank 0 of a world of 1. Notebook 04 (training) shows the torchrun command; nothing
here is needed to follow the course on one device.

Why SyncBatchNorm (issue 24). A BatchNorm layer in training mode normalises each channel with the mean and
variance of the batch it is given, and its running statistics (what validation and prediction use) are a
moving average of those. Under DDP each process sees only its own ``batch_size`` images, so with plain
BatchNorm 2 processes x 4 images are *not* one batch of 8: every layer normalises with the statistics of 4
images (noisier, and different from what the running averages converge to), and the running statistics
that are validated and saved are rank 0's, from its 4 images per step. Gradient averaging, the learning
rate, the number of steps, the shards and the validation reduction were all already equal to the
single-process run's (tests/test_distributed.py checks each); the BatchNorm statistics were the one
systematic difference: after one step of 2 x 4 images some layer's gradient differed from one process's on
the 8 images by 1.7 times that layer's largest gradient (smp_unet, ResNet18 encoder, 96 px), its running
statistics by 0.07. Synchronised BatchNorm sums
each channel's count, sum and sum of squares over all processes, forwards and backwards, so one DDP step
computes the same normalisation, running statistics and gradients as one process with the whole batch (to
float rounding). torch's ``nn.SyncBatchNorm`` does it on CUDA but refuses CPU models, so the CPU (gloo)
gets :class:`CpuSyncBatchNorm`. The validation Dice gaps that issue 24 reported (48 synthetic images, 5 of
them for validation, 15 steps) were mostly chance: two single-process runs of one recipe with other random
draws differ by 0.10 on average there (benchmarks/ddp_parity.py; figures in benchmarks/README.md).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler

#: The environment variables torchrun sets for every process it starts.
TORCHRUN_VARIABLES: tuple[str, ...] = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _env_int(name: str, default: int) -> int:
    """Integer environment variable ``name`` (``default`` when unset).

    Raises:
        RuntimeError: the variable is set but is not an integer.
    """
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError as err:
        raise RuntimeError(f"environment variable {name}={value!r} is not an integer: torchrun sets it; "
                           f"unset it to train in a single process") from err


def requested_world_size() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``), 1 when not launched by torchrun."""
    return _env_int("WORLD_SIZE", 1)


def wants_distributed() -> bool:
    """True when this process was started by torchrun with two or more processes (``WORLD_SIZE`` > 1)."""
    return requested_world_size() > 1


def is_distributed() -> bool:
    """True when a process group of two or more processes is initialised (see :func:`init_distributed`)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank: from the process group when initialised, else ``RANK`` from torchrun, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def get_world_size() -> int:
    """Number of processes: from the process group when initialised, else ``WORLD_SIZE``, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return requested_world_size()


def get_local_rank() -> int:
    """This process's index on its machine (``LOCAL_RANK``, which GPU it uses); 0 without torchrun."""
    return _env_int("LOCAL_RANK", 0)


def is_main_process() -> bool:
    """True on rank 0 (and in a single-process run): the process that writes files and prints progress."""
    return get_rank() == 0


def backend_for(device: torch.device) -> str:
    """The process-group backend for ``device``: ``nccl`` for CUDA GPUs, ``gloo`` for the CPU.

    Raises:
        RuntimeError: ``device`` is Apple MPS (DDP does not support it) or another type.
    """
    if device.type == "cuda":
        return "nccl"
    if device.type == "cpu":
        return "gloo"
    raise RuntimeError(f"multi-process training (torchrun) is not supported on {device.type!r}: "
                       "run with --device cpu, or without torchrun")


def local_device(device: torch.device) -> torch.device:
    """The device this process trains on: ``cuda:LOCAL_RANK`` for CUDA (one GPU per process), else ``device``.

    Raises:
        RuntimeError: ``LOCAL_RANK`` names a GPU this machine does not have.
    """
    if device.type != "cuda":
        return device
    local_rank, count = get_local_rank(), torch.cuda.device_count()
    if local_rank >= count:
        raise RuntimeError(f"LOCAL_RANK={local_rank} but this machine has {count} CUDA GPU(s): start at most "
                           f"{count} processes (torchrun --nproc_per_node {count}), or train on the CPU "
                           "with --device cpu")
    return torch.device("cuda", local_rank)


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group torchrun described in the environment; return this process's device.

    The backend is ``nccl`` on CUDA (each process then uses GPU ``LOCAL_RANK``) and ``gloo`` on the CPU.

    Args:
        device: the device type to train on (``cuda`` or ``cpu``), e.g. from :func:`helpers.runtime.select_device`.

    Returns:
        ``cuda:LOCAL_RANK`` on CUDA, else ``device``.

    Raises:
        RuntimeError: a torchrun variable is missing (the message names it), the process group is already
            initialised, torch has no distributed support, or ``device`` is not CUDA or CPU.
    """
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed: train without torchrun")
    if dist.is_initialized():
        raise RuntimeError("the process group is already initialised: call cleanup_distributed() first")
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise RuntimeError(f"environment variables {missing} are not set: start the script with "
                           "torchrun --nproc_per_node N (or python -m torch.distributed.run), which sets them")
    backend = backend_for(device)
    device = local_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=get_rank(), world_size=requested_world_size())
    return device


def cleanup_distributed() -> None:
    """Leave the process group (no-op when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process reaches this point (no-op in a single process)."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Run the ``with`` body on rank 0 first, then on the other ranks (no-op in a single process).

    For work that writes shared files the first time and reads them afterwards (the synthetic dataset, the
    preprocessing cache): rank 0 creates them while the others wait, then the others find them ready.
    """
    if is_distributed() and not is_main_process():
        barrier()
    yield
    if is_distributed() and is_main_process():
        barrier()


def _collective_device() -> torch.device:
    """Where tensors for collectives must live: the current GPU for nccl, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sums(values: Mapping[str, float]) -> dict[str, float]:
    """Sum each value over all processes; every process gets the totals (identity in a single process).

    Use it for sums and counts, never for means: reduce ``{"dice_sum": ..., "images": ...}`` and divide
    afterwards, so processes that saw different numbers of images are weighted correctly.

    Args:
        values: name -> number (Python float/int or a 0-d tensor); the same names on every process.

    Returns:
        name -> total over all processes, as float (summed in float64).

    Raises:
        ValueError: a value is not a scalar.
    """
    names = list(values)
    try:
        numbers = [float(values[name]) for name in names]
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"all_reduce_sums needs one number per name, got {dict(values)!r}: {err}") from err
    if not is_distributed() or not names:
        return dict(zip(names, numbers))
    tensor = torch.tensor(numbers, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return dict(zip(names, tensor.cpu().tolist()))


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running statistics) to every process (no-op in one process).

    In training mode each process updates its BatchNorm statistics from its own batches; broadcasting rank
    0's before validation makes every process evaluate exactly the model rank 0 saves.
    """
    if not is_distributed():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=src)


class _AllReduceSum(torch.autograd.Function):
    """Sum a tensor over all processes; the backward pass sums the incoming gradients the same way.

    Each process's loss depends on every process's activations through the summed statistics, so the
    gradient of the summed statistics is the sum of every process's gradient of them.
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.detach().contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics span every process's batch, on the CPU (gloo).

    torch's ``nn.SyncBatchNorm`` does this on GPUs only (DistributedDataParallel refuses it in a CPU model:
    "SyncBatchNorm layers only work with GPU modules"). In training under an initialised process group each
    channel's element count, sum and sum of squares are summed over all processes (in float64, and
    differentiably: :class:`_AllReduceSum`), so the output, the gradients and the running statistics equal
    those of one plain ``BatchNorm`` given all processes' images as one batch. In evaluation mode, or without
    a process group, it is plain BatchNorm. Any input of 2 or more dimensions ``(N, C, ...)``. Its
    ``state_dict`` has BatchNorm's keys, so checkpoints load into models built with ``nn.BatchNorm2d``.
    Made by :func:`convert_sync_batchnorm`.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (N, C, ...), got {input.dim()}D input")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        self._check_input_dim(input)
        return self._synchronised(input)

    def _momentum_factor(self) -> float:
        """The running statistics' update weight for this step (counting the step, as ``nn.BatchNorm`` does)."""
        if not self.track_running_stats or self.num_batches_tracked is None:
            return 0.0
        self.num_batches_tracked.add_(1)
        return 1.0 / float(self.num_batches_tracked) if self.momentum is None else float(self.momentum)

    def _synchronised(self, x: torch.Tensor) -> torch.Tensor:
        """Batch normalisation of ``x`` with statistics over every process's batch (CPU, float32 maths)."""
        factor = self._momentum_factor()
        channels, dims = x.shape[1], [0, *range(2, x.dim())]
        var, mean = torch.var_mean(x.float(), dim=dims, correction=0)
        count = x.numel() // max(channels, 1)
        local = torch.cat([mean.double() * count, (var.double() + mean.double() ** 2) * count,
                           torch.full((1,), float(count), dtype=torch.float64)])
        total = _AllReduceSum.apply(local)
        n = total[-1]
        if float(n.detach()) <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                             f"{tuple(x.shape)} in each of {dist.get_world_size()} process(es)")
        global_mean = total[:channels] / n
        global_var = (total[channels:2 * channels] / n - global_mean ** 2).clamp_min(0.0)
        if factor and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                unbiased = global_var * (n / (n - 1))
                self.running_mean.mul_(1 - factor).add_(global_mean.to(self.running_mean.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
        shape = [1, channels] + [1] * (x.dim() - 2)
        scale = torch.rsqrt(global_var + self.eps).float()
        shift = -global_mean.float() * scale
        if self.weight is not None:
            scale, shift = scale * self.weight, shift * self.weight
        if self.bias is not None:
            shift = shift + self.bias
        return (x.float() * scale.view(shape) + shift.view(shape)).to(x.dtype)


#: The BatchNorm layers :func:`convert_sync_batchnorm` replaces.
BATCHNORM_TYPES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def convert_sync_batchnorm(module: nn.Module, device: torch.device | None = None) -> nn.Module:
    """``module`` with every BatchNorm layer synchronised over the processes, holding the same parameters and
    buffers (the very tensors: an optimiser built before still updates them).

    CUDA (``device``): torch's ``nn.SyncBatchNorm``; the CPU (the default): :class:`CpuSyncBatchNorm`.
    Changed in place and returned (a new object only when ``module`` itself is a BatchNorm layer).
    """
    if device is not None and device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    out = module
    if isinstance(module, BATCHNORM_TYPES):
        out = CpuSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, convert_sync_batchnorm(child))
    return out


def wrap_model(model: nn.Module, device: torch.device, *, sync_batchnorm: bool = True) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel when distributed (``device_ids`` on CUDA, none on CPU).

    Returns ``model`` itself in a single process. The wrapper's ``.module`` is the original model: save and
    validate that one (see :func:`unwrap`). With ``sync_batchnorm`` (the default) its BatchNorm layers are
    first synchronised, in place (:func:`convert_sync_batchnorm`: ``nn.SyncBatchNorm`` on CUDA,
    :class:`CpuSyncBatchNorm` on the CPU; same parameters, so an optimiser built on ``model`` keeps working),
    so N processes train what one process with N times the batch would; ``False`` keeps per-process
    BatchNorm statistics (what ``benchmarks/ddp_parity.py`` compares against).
    """
    if not is_distributed():
        return model
    if sync_batchnorm:
        model = convert_sync_batchnorm(model, device)
    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (see :func:`wrap_model`); ``model`` itself otherwise."""
    return model.module if isinstance(model, DistributedDataParallel) else model


class ShardSampler(Sampler[int]):
    """Evaluation sampler: rank ``r`` of ``world_size`` gets indices ``r, r + world_size, ...``, in order.

    Unlike ``torch.utils.data.DistributedSampler`` it never pads (never repeats an index), so the shards
    together cover ``range(n)`` exactly once; shards may differ in length by one. Use it only where the
    processes do not synchronise per batch (validation), and combine the results with :func:`all_reduce_sums`.

    Raises:
        ValueError: ``n < 0``, ``world_size < 1`` or ``rank`` outside ``[0, world_size)``.
    """

    def __init__(self, n: int, rank: int | None = None, world_size: int | None = None) -> None:
        self.rank = get_rank() if rank is None else rank
        self.world_size = get_world_size() if world_size is None else world_size
        if n < 0 or self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"ShardSampler needs n >= 0, world_size >= 1 and 0 <= rank < world_size, "
                             f"got n={n}, rank={self.rank}, world_size={self.world_size}")
        self.n = n

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))
