"""Multi-process training on PyTorch distributed (DDP), launched by torchrun.

    torchrun --nproc_per_node 4 -m medlabeler train PROJECT --method mean-teacher

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR; with WORLD_SIZE > 1 every process
runs the same command and this module makes them one run (Li et al., "PyTorch Distributed:
Experiences on Accelerating Data Parallel Training", VLDB 2020):

- `prepare_device` starts the process group (nccl on CUDA, gloo on CPU) and gives each process
  its own GPU (cuda:LOCAL_RANK);
- `shard` gives each rank a disjoint part of the labeled / unlabeled samples (a seeded split,
  the same on every rank, padded by wrapping so every rank has as many as the largest part), so
  every rank also reads and caches only its own images;
- `wrap` puts what the optimiser trains under DistributedDataParallel: the loop calls the
  method's `training_step` through the wrapper, so gradients are averaged across ranks during
  backward. Parameters outside `trainable_parameters()` (EMA teachers) are left to the method
  and stay equal on all ranks because they follow the same averaged students. BatchNorm becomes
  SyncBatchNorm on CUDA (the batch statistics of small per-GPU batches are poor); on CPU
  PyTorch has no SyncBatchNorm, so each rank normalises its own batch and rank 0's running
  statistics are broadcast before each step;
- `on_main(fn)` runs a store write (a model version, its audit row, a promotion) on rank 0 only
  and hands its result to every rank, so all ranks agree on, say, the new version number.

With WORLD_SIZE unset (or 1) every function is a no-op and a run is a plain single-process run.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

SHOWN_IDS = 20  # sample ids per rank written into the run log (all go into the record)
SHUTDOWN_WAIT = timedelta(seconds=60)  # how long a finished rank waits for its peers before leaving


# --- who am I -----------------------------------------------------------------------------------


def world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))


def rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0") or 0)


def is_main() -> bool:
    return rank() == 0


def active() -> bool:
    """True inside a multi-process run whose process group is up."""
    return torch.distributed.is_available() and torch.distributed.is_initialized() and world_size() > 1


# --- setting up ---------------------------------------------------------------------------------


def prepare_device(device: torch.device) -> torch.device:
    """Start the process group when torchrun launched several processes (idempotent) and return
    this process's device: cuda:LOCAL_RANK on CUDA, else `device` unchanged."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0") or 0) % torch.cuda.device_count())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"backend": backend, "timeout": timedelta(minutes=30)}
        if backend == "nccl":
            kwargs["device_id"] = device
        torch.distributed.init_process_group(**kwargs)
        atexit.register(_shutdown)
    return device


def _shutdown() -> None:
    """Tear the process group down once every rank got here.

    A rank that destroys its group while a peer still holds the connection can abort the peer
    (gloo: "terminate called without an active exception"), so the ranks meet first; a rank that
    never arrives (it crashed) releases the others after `SHUTDOWN_WAIT`."""
    if not torch.distributed.is_initialized():
        return
    try:
        if torch.distributed.get_backend() == "gloo":
            torch.distributed.monitored_barrier(timeout=SHUTDOWN_WAIT)
        else:
            torch.distributed.barrier()
    except RuntimeError:
        pass  # a peer is gone: nothing left to wait for
    torch.distributed.destroy_process_group()


def backend() -> str | None:
    return torch.distributed.get_backend() if active() else None


# --- agreeing -----------------------------------------------------------------------------------


def broadcast(value: Any) -> Any:
    """Rank 0's `value` on every rank (any picklable object)."""
    if not active():
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank."""
    if not active():
        return [value]
    out: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(out, value)
    return out


def barrier() -> None:
    if active():
        torch.distributed.barrier()


def mean(value: torch.Tensor) -> float:
    """The mean of a scalar over the ranks (the loss every rank reports and checks)."""
    if not active():
        return float(value.detach().float())
    total = value.detach().float().reshape(1).clone()
    torch.distributed.all_reduce(total)
    return float(total) / world_size()


def on_main(fn: Callable[[], Any]) -> Any:
    """Run `fn` (a store write) on rank 0 only; every rank gets its result.

    If rank 0 fails, the others get a RuntimeError instead of waiting forever."""
    if not active():
        return fn()
    if not is_main():
        return _receive()
    try:
        value = fn()
    except BaseException as exc:
        broadcast((False, f"{type(exc).__name__}: {exc}"))
        raise
    broadcast((True, value))
    return value


def on_main_events(make_events: Callable[[], Any]):
    """`on_main` for an engine generator (scoring, a promotion that validates): rank 0 yields its
    events and returns its result; the other ranks yield nothing and return the same result."""
    if not active():
        return (yield from make_events())
    if not is_main():
        return _receive()
    try:
        value = yield from make_events()
    except BaseException as exc:
        broadcast((False, f"{type(exc).__name__}: {exc}"))
        raise
    broadcast((True, value))
    return value


def _receive() -> Any:
    ok, value = broadcast(None)
    if not ok:
        raise RuntimeError(f"rank 0 failed: {value}")
    return value


# --- data ---------------------------------------------------------------------------------------


class Shard(Dataset):
    """This rank's part of a dataset; remembers which samples were drawn (for the run record)."""

    def __init__(self, dataset, indices: Sequence[int]):
        self.dataset, self.indices = dataset, list(indices)
        all_ids = getattr(dataset, "ids", None)
        self.ids = [all_ids[i] for i in self.indices] if all_ids is not None else list(self.indices)
        self.seen: set = set()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        self.seen.add(self.ids[i])
        return self.dataset[self.indices[i]]


def shard(dataset, seed: int):
    """This rank's disjoint part of `dataset` (the dataset itself outside a multi-process run)."""
    if dataset is None or not active():
        return dataset
    n, world, me = len(dataset), world_size(), rank()
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).tolist()
    per_rank = -(-n // world)
    padded = [order[i % n] for i in range(per_rank * world)]  # wrap: n < world still feeds every rank
    return Shard(dataset, padded[me::world])


def run_summary(params: Sequence[torch.Tensor], **shards) -> dict[str, Any] | None:
    """Which samples each rank drew, per dataset name ("labeled", "unlabeled"), and whether the
    ranks ended with the same trained weights, gathered on every rank: {"world_size", "backend",
    "weights_agree", name: [ids of rank 0, ids of rank 1, ...]}. None outside DDP."""
    if not active():
        return None
    mine = {name: sorted(s.seen) for name, s in shards.items() if isinstance(s, Shard)}
    per_rank = gather(mine)
    with torch.no_grad():
        checksum = float(sum(p.detach().double().sum().cpu() for p in params))
    sums = gather(checksum)
    summary: dict[str, Any] = {"world_size": world_size(), "backend": backend(),
                               "weights_agree": max(sums) - min(sums) <= 1e-6 * max(1.0, abs(sums[0]))}
    for name in mine:
        summary[name] = [ranks_ids[name] for ranks_ids in per_rank]
    return summary


def describe(summary: dict[str, Any]) -> str:
    parts = []
    for name, per_rank in summary.items():
        if not isinstance(per_rank, list):
            continue
        for r, ids in enumerate(per_rank):
            shown = ", ".join(map(str, ids[:SHOWN_IDS])) + (", ..." if len(ids) > SHOWN_IDS else "")
            parts.append(f"rank {r} drew {len(ids)} {name} samples [{shown}]")
    return f"{summary['world_size']} processes ({summary['backend']}): " + "; ".join(parts)


# --- the model ----------------------------------------------------------------------------------


class _TrainingStep(nn.Module):
    """The method's `training_step` as a forward, so DDP sees (and reduces) what it trains."""

    def __init__(self, method: nn.Module):
        super().__init__()
        self.method = method

    def forward(self, batch: dict[str, torch.Tensor], progress: float):
        return self.method.training_step(batch, progress)


@dataclass
class Wrapped:
    """How the loop calls a method's step: through DDP in a multi-process run, else directly."""

    step: Callable[[dict[str, torch.Tensor], float], tuple[torch.Tensor, dict]]
    ddp: nn.Module | None = None


def wrap(method: nn.Module, params: list[nn.Parameter], device: torch.device) -> Wrapped:
    """Wrap `method` for training; `params` are what the optimiser steps (the others are ignored
    by DDP: EMA teachers and frozen parts)."""
    if not active():
        return Wrapped(method.training_step)
    if device.type == "cuda":
        _to_sync_batchnorm(method)
    trained = {id(p) for p in params}
    module = _TrainingStep(method)
    ignore = [name for name, p in module.named_parameters() if id(p) not in trained]
    if ignore:
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, ignore)
    # find_unused_parameters: some methods leave parts idle in a step (a projection head only
    # one view passes through, a branch a batch without unlabeled images skips)
    ddp = nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=True)  # buffers (BatchNorm statistics) follow rank 0's
    return Wrapped(ddp, ddp)


def _to_sync_batchnorm(method: nn.Module) -> None:
    """Swap BatchNorm layers for SyncBatchNorm in place, keeping every submodule object (methods
    keep references to their networks, e.g. `self.student`)."""
    for parent in list(method.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, nn.SyncBatchNorm):
                setattr(parent, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
