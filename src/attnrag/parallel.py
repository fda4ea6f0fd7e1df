"""Data-parallel training on ``torch.distributed``, launched with ``torchrun``.

attnrag does not ship a training engine of its own: a multi-process run is ``torchrun`` + a process
group (``nccl`` on GPUs, ``gloo`` on CPUs) + ``DistributedDataParallel``. This module holds the few
pieces the trainer needs on top of that, behind one object, :class:`Dist`:

* :func:`init_distributed` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR``/``MASTER_PORT``), picks the backend and this rank's device, and joins the group.
  Without torchrun it returns a single-process :class:`Dist` whose collectives are no-ops, so the
  same code path serves one process and many.
* :meth:`Dist.shard` splits a global batch of example indices into per-rank slices.
* :meth:`Dist.global_mean` re-weights a rank's *mean* loss so that DDP's gradient average equals the
  gradient of the mean over the global batch even when ranks hold different numbers of terms
  (uneven slices, or token-mean losses whose token counts differ between ranks).
* :meth:`Dist.wrap` puts DDP around the trainable modules without changing how the trainer calls
  them: the loss closure runs *inside* DDP's forward (Lightning's "forward redirection"), so models
  keep their own methods (``embed_queries``, ``reader.loss`` ...) and their state-dict names.
* rank-0-only side effects (:attr:`Dist.is_main`, :meth:`Dist.on_main`) and small collectives
  (:meth:`Dist.all_gather`, :meth:`Dist.all_gather_object`, :meth:`Dist.mean`, :meth:`Dist.all_true`,
  :meth:`Dist.barrier`).

Why the re-weighting is exact: DDP averages gradients over ``W`` ranks. If rank ``r`` computes the
mean of its ``n_r`` loss terms ``L_r = (1/n_r) sum_{i in r} l_i`` and scales it by
``W * n_r / N`` (``N = sum_r n_r``), the averaged gradient is
``(1/W) sum_r (W n_r / N) grad L_r = (1/N) sum_i grad l_i``: the gradient of the global mean.
``n_r`` is the number of questions for a ``batchmean`` loss (distillation, EMDR) and the number of
answer tokens for the reader's token-mean LM loss. Only the float reduction order differs from a
single process.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as tdist
from torch import nn

from .errors import InputError

__all__ = ["Dist", "Replica", "init_distributed", "lm_token_count", "pick_device", "shard_range", "single_process"]


def shard_range(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """``[start, end)`` of rank ``rank``'s contiguous share of ``n`` items.

    The first ``n % world_size`` ranks get one item more; shards are in rank order, so concatenating
    them gives back the original order (what "global passage order" means for a sharded index).
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of size {world_size}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def lm_token_count(batch) -> int:
    """The number of tokens a reader's token-mean LM loss averages over (``labels[:, 1:] != -100``):
    the count :meth:`Dist.global_mean` weights that loss by."""
    return int((batch.labels[:, 1:] != -100).sum())


@dataclass
class Dist:
    """This process's place in a data-parallel job; a world of one when not launched by torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    # ------------------------------------------------------------------ identity
    @property
    def enabled(self) -> bool:
        """True when there are other ranks to talk to."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, shows progress bars and writes run files."""
        return self.rank == 0

    @property
    def comm_device(self) -> torch.device:
        """Where tensors must live for collectives: this rank's GPU for nccl, the CPU for gloo."""
        return self.device if self.backend == "nccl" else torch.device("cpu")

    # ------------------------------------------------------------------ collectives
    def barrier(self) -> None:
        if self.enabled:
            if self.backend == "nccl":
                tdist.barrier(device_ids=[self.device.index])
            else:
                tdist.barrier()

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's ``tensor`` along dim 0, in rank order (first dims may differ)."""
        if not self.enabled:
            return tensor
        home = tensor.device
        x = tensor.detach().to(self.comm_device).contiguous()
        sizes = self.all_gather_sizes(x.shape[0])
        width = max(sizes)
        if x.shape[0] < width:  # all_gather needs equal shapes: pad, then cut the padding off again
            pad = torch.zeros((width - x.shape[0], *x.shape[1:]), dtype=x.dtype, device=x.device)
            x = torch.cat([x, pad])
        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        tdist.all_gather(parts, x)
        return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)]).to(home)

    def all_gather_sizes(self, n: int) -> list[int]:
        """Every rank's ``n``, in rank order."""
        if not self.enabled:
            return [int(n)]
        t = torch.tensor([n], dtype=torch.int64, device=self.comm_device)
        parts = [torch.empty_like(t) for _ in range(self.world_size)]
        tdist.all_gather(parts, t)
        return [int(p.item()) for p in parts]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's picklable ``obj``, in rank order."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        tdist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj if self.rank == src else None]
        tdist.broadcast_object_list(box, src=src)
        return box[0]

    def sum(self, value: float | int) -> float:
        """The sum of a Python number over ranks (float64 on the wire)."""
        if not self.enabled:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.comm_device)
        tdist.all_reduce(t)
        return float(t.item())

    def mean(self, value: float) -> float:
        """The mean of a Python number over ranks (for logging a loss every rank computed part of)."""
        return value if not self.enabled else self.sum(value) / self.world_size

    def all_true(self, flag: bool | torch.Tensor) -> bool:
        """True only if ``flag`` is true on every rank (all ranks must take the same branch around a
        collective such as DDP's backward, or the job hangs)."""
        flag = bool(flag.all()) if isinstance(flag, torch.Tensor) else bool(flag)
        if not self.enabled:
            return flag
        t = torch.tensor([0 if flag else 1], dtype=torch.int64, device=self.comm_device)
        tdist.all_reduce(t)
        return int(t.item()) == 0

    # ------------------------------------------------------------------ data parallelism
    def shard(self, indices: Sequence[int]) -> list[int]:
        """This rank's contiguous slice of a global batch (sizes differ by at most one)."""
        if self.enabled and len(indices) < self.world_size:
            raise InputError(f"the global batch ({len(indices)} examples) is smaller than the number of "
                             f"processes ({self.world_size}); raise the batch size or use fewer processes",
                             field="batch_size")
        start, end = shard_range(len(indices), self.world_size, self.rank)
        return list(indices[start:end])

    def global_mean(self, loss: torch.Tensor, count: int | float) -> torch.Tensor:
        """Scale this rank's mean ``loss`` over ``count`` terms by ``W * count / sum(count)``.

        After DDP's gradient averaging the update is that of the mean over all ranks' terms, and
        :meth:`mean` of the scaled losses is the global mean loss. Collective: every rank calls it.
        """
        if not self.enabled:
            return loss
        total = self.sum(count)
        if total <= 0:
            raise ValueError("global_mean: no loss terms on any rank")
        return loss * (self.world_size * float(count) / total)

    def wrap(self, module: nn.Module, params: Sequence[nn.Parameter] | None = None) -> Replica:
        """DDP around ``module`` (only ``params`` are synchronised when given). Collective."""
        return Replica(module, self, params)

    def on_main(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """Run ``fn`` on rank 0 only, then wait for it on every rank (saving files, writing manifests)."""
        out = fn(*args, **kwargs) if self.is_main else None
        self.barrier()
        return out


def single_process(device: str | torch.device | None = None) -> Dist:
    return Dist(device=pick_device(device))


class _Forward(nn.Module):
    """Holds the trainable modules so DDP registers their parameters; its forward runs the caller's
    loss closure, so the closure's use of those modules happens inside DDP's forward."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.inner = module

    def forward(self, fn: Callable[..., torch.Tensor], *args, **kwargs) -> torch.Tensor:
        return fn(*args, **kwargs)


class Replica:
    """``replica(loss_fn, *args)`` computes a loss whose ``backward()`` all-reduces the gradients.

    One process: a plain call. Several: ``DistributedDataParallel`` with
    ``find_unused_parameters=True`` (towers have parameters a loss may not reach, e.g. BERT's pooler,
    and a frozen passage tower), buffers not re-broadcast every step (no module here updates a buffer
    in training) and parameters outside ``params`` ignored. DDP broadcasts rank 0's weights when it is
    built, so every rank starts from the same model.
    """

    def __init__(self, module: nn.Module, dist: Dist, params: Sequence[nn.Parameter] | None = None) -> None:
        self.module = module
        self.dist = dist
        self.ddp: nn.Module | None = None
        if not dist.enabled or not any(p.requires_grad for p in module.parameters()):
            return
        from torch.nn.parallel import DistributedDataParallel as DDP

        holder = _Forward(module)
        if params is not None:
            keep = {id(p) for p in params}
            ignore = [f"inner.{name}" for name, p in module.named_parameters()
                      if p.requires_grad and id(p) not in keep]
            if ignore:
                DDP._set_params_and_buffers_to_ignore_for_model(holder, ignore)
        kwargs: dict[str, Any] = {"find_unused_parameters": True}
        if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters:
            kwargs["forward_sync_buffers"] = False
        else:  # older torch
            kwargs["broadcast_buffers"] = False
        if dist.device.type == "cuda":
            kwargs["device_ids"] = [dist.device.index]
        self.ddp = DDP(holder, **kwargs)

    def __call__(self, fn: Callable[..., torch.Tensor], *args, **kwargs) -> torch.Tensor:
        if self.ddp is None:
            return fn(*args, **kwargs)
        return self.ddp(fn, *args, **kwargs)

    @contextlib.contextmanager
    def accumulate(self, sync: bool = True) -> Iterator[None]:
        """Wrap forward *and* backward of a micro-batch; ``sync=False`` (all but the last micro-batch
        of a gradient-accumulation step) skips the all-reduce, which then happens once per step."""
        if self.ddp is None or sync:
            yield
        else:
            with self.ddp.no_sync():
                yield


# ---------------------------------------------------------------------- process group set-up
def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The one device rule for every model attnrag loads: ``None``/``"auto"`` -> CUDA when available,
    else CPU; anything else is taken as a torch device name."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str | torch.device | None = "auto", backend: str | None = None,
                     timeout_s: float | None = None) -> Dist:
    """Join the process group torchrun describes in the environment, or return a world of one.

    Backend: ``nccl`` when this rank trains on a GPU (``device`` auto/cuda and CUDA available), else
    ``gloo``; ``backend`` overrides. Rank ``r`` on a node uses GPU ``LOCAL_RANK``. Calling it again
    reuses the existing group; the group is destroyed at interpreter exit.
    """
    if not launched_by_torchrun() and not (tdist.is_available() and tdist.is_initialized()):
        return single_process(device)
    if not tdist.is_available():
        raise RuntimeError("this torch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    want = pick_device(device)
    if want.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK={local_rank} but this node has {torch.cuda.device_count()} GPUs; "
                               "use --nproc_per_node <= the number of GPUs")
        rank_device = torch.device("cuda", local_rank)
        torch.cuda.set_device(rank_device)
    else:
        rank_device = torch.device("cpu")
    if not tdist.is_initialized():
        chosen = backend or ("nccl" if rank_device.type == "cuda" else "gloo")
        kwargs: dict[str, Any] = {"backend": chosen}
        if timeout_s is not None:
            kwargs["timeout"] = timedelta(seconds=timeout_s)
        tdist.init_process_group(**kwargs)
        atexit.register(_destroy)
    chosen = tdist.get_backend()
    return Dist(rank=tdist.get_rank(), world_size=tdist.get_world_size(), local_rank=local_rank,
                device=rank_device, backend=str(chosen))


def _destroy() -> None:
    if tdist.is_available() and tdist.is_initialized():
        with contextlib.suppress(Exception):
            tdist.destroy_process_group()
