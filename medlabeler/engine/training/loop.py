"""The training loop as a generator of events (stardist-napari style: same code sync or threaded).

`fit(method, ...)` yields `Event`s and returns a `RunResult` as the generator's return value;
`run_to_end(fit(...))` drives it synchronously. The loop owns optimiser (AdamW), warmup+cosine
learning rate, device and AMP, batches, validation, best-weights selection on the val split,
resume points and the failure policy:
- a NaN/inf loss raises TrainingError at once (nothing is saved; the caller keeps its old model);
- CUDA/MPS out of memory halves the batch sizes and retries once, then raises TrainingError;
- `cancel.cancel()` stops the run before its next batch (result.cancelled = True).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Generator, Iterator

import torch
from torch import nn

from medlabeler.engine.errors import TrainingError

from . import distributed
from .cancel import CancelToken
from .checkpoint import load_resume_point, save_resume_point
from .device import amp_plan, deterministic, pick_device, seed_everything
from .events import Event, RunResult, run_to_end  # noqa: F401  (re-exported: the loop's driver)
from .schedule import warmup_cosine, warmup_steps_for

RESUME_FILE = "resume.safetensors"


def _is_out_of_memory(exc: BaseException) -> bool:
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _free_device_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def _score(metrics: dict[str, float], monitor: str) -> float:
    """The value that ranks validations (higher is better); -inf when undefined."""
    for key in (monitor, "balanced_accuracy", "accuracy"):
        value = metrics.get(key)
        if value is not None and math.isfinite(value):
            return float(value)
    return -math.inf


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


class _Batches:
    """The labeled and unlabeled batch streams of a run (rebuilt when the batch size changes)."""

    def __init__(self, labeled, unlabeled, batch_size: int, unlabeled_batch_size: int, seed: int):
        from medlabeler.engine.data.datasets import InfiniteBatches

        self.batch_size, self.unlabeled_batch_size = batch_size, unlabeled_batch_size
        self.labeled: Iterator | None = None
        self.unlabeled: Iterator | None = None
        if labeled is not None:
            self.labeled = iter(InfiniteBatches(labeled, batch_size, seed=seed * 2 + 1))
        if unlabeled is not None:
            self.unlabeled = iter(InfiniteBatches(unlabeled, unlabeled_batch_size, seed=seed * 2 + 2))

    def next(self, device: torch.device) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        if self.labeled is not None:
            x, y = next(self.labeled)[:2]
            batch["x"] = x.to(device, torch.float32, non_blocking=True)
            batch["y"] = y.to(device, torch.long, non_blocking=True)
        if self.unlabeled is not None:
            items = next(self.unlabeled)
            batch["u"] = items[0].to(device, torch.float32, non_blocking=True)
            if len(items) > 1:
                batch["u_pos"] = items[1].to(device, torch.float32).reshape(-1)
            else:
                batch["u_pos"] = torch.full((items[0].shape[0],), math.nan, device=device)
        return batch


def fit(
    method: nn.Module,
    *,
    labeled=None,
    unlabeled=None,
    val=None,
    epochs: int | None = None,
    steps: int | None = None,
    steps_per_epoch: int | None = None,
    batch_size: int = 8,
    unlabeled_batch_size: int | None = None,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    warmup_fraction: float = 0.05,
    max_grad_norm: float | None = 5.0,
    device: str | torch.device | None = None,
    amp: bool | None = None,
    cancel: CancelToken | None = None,
    seed: int = 0,
    eval_fn: Callable[[nn.Module, Any], dict[str, float]] | None = None,
    monitor: str | None = None,
    eval_every: int = 1,
    names: list[str] | None = None,
    restore_best: bool = True,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    on_epoch_end: Callable[[int, float], bool | None] | None = None,
    stop_when: Callable[[], bool] | None = None,
) -> Generator[Event, None, RunResult]:
    """Train `method` (a `Method`: training_step/after_optimizer_step/predictor).

    `labeled` yields (image (C,H,W), label) items, `unlabeled` (image, slice position) items,
    `val` (image, label) items; only the datasets the method uses are drawn from. An epoch is one
    pass over the labeled set (or the unlabeled set for label-free methods) unless
    `steps_per_epoch` is given; `steps` overrides `epochs`. Validation (`eval_fn(predictor, val)`,
    default: `evaluate_model`) runs every `eval_every` epochs on `val` only, and with
    `restore_best` the predictor ends with the weights that scored best on `monitor` (default
    "dice" / "auc"). `checkpoint_dir` gets a resume point after every epoch; `resume_from`
    continues from one (weights + step; the optimiser restarts, the schedule continues).
    `on_epoch_end(epoch, mean_loss)` runs after each epoch; returning True ends the run there
    (a curriculum stage that plateaued). `stop_when()` is asked after every step; True ends the
    run cleanly there, validated and kept like a finished one (a time budget ran out).
    """
    cancel = CancelToken() if cancel is None else cancel
    device = distributed.prepare_device(device if isinstance(device, torch.device) else pick_device(device))
    task = getattr(method, "task", "classification")
    name = getattr(method, "name", type(method).__name__)
    monitor = monitor or ("dice" if task == "segmentation" else "auc")
    uses_labels = bool(getattr(method, "uses_labels", True))
    uses_unlabeled = bool(getattr(method, "uses_unlabeled", False))
    if uses_labels and (labeled is None or len(labeled) == 0):
        raise TrainingError(f"method {name!r} needs labeled images, and none are labeled in the training split yet")
    if uses_unlabeled and (unlabeled is None or len(unlabeled) == 0):
        raise TrainingError(f"method {name!r} needs unlabeled images, and there are none")
    if not uses_labels and not uses_unlabeled:
        raise TrainingError(f"method {name!r} uses neither labeled nor unlabeled data")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    unlabeled_batch_size = unlabeled_batch_size or batch_size
    # under torchrun each rank draws from its own part (so an epoch is a pass over all ranks' parts)
    labeled, unlabeled = distributed.shard(labeled, seed), distributed.shard(unlabeled, seed + 1)
    primary, primary_batch = (labeled, batch_size) if uses_labels else (unlabeled, unlabeled_batch_size)
    steps_per_epoch = steps_per_epoch or max(1, math.ceil(len(primary) / primary_batch))
    if steps is not None:
        total_steps = int(steps)
    else:
        total_steps = int(epochs if epochs is not None else 10) * steps_per_epoch
    if total_steps < 1:
        raise ValueError("a run needs at least one step")
    n_epochs = math.ceil(total_steps / steps_per_epoch)

    seed_everything(seed)
    start_step = 0
    if resume_from is not None:
        record = load_resume_point(resume_from, method)
        if record.get("method") not in (None, name):
            raise TrainingError(f"resume point {resume_from} was saved by method {record.get('method')!r}, not {name!r}")
        start_step = min(int(record["step"]), total_steps)
        seed_everything(seed + start_step)  # continue with fresh, reproducible randomness
    method.to(device)
    method.train()
    trainable = getattr(method, "trainable_parameters", None)
    params = list(trainable() if callable(trainable) else (p for p in method.parameters() if p.requires_grad))
    if not params:
        raise TrainingError(f"method {name!r} has no trainable parameters")
    # no weight decay on biases and normalisation parameters
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)
    training_step = distributed.wrap(method, params, device).step
    if distributed.rank():  # other ranks: other augmentations (rank 0 repeats a 1-process run)
        seed_everything(seed + start_step + 7919 * distributed.rank())
    plan = amp_plan(device, amp)
    scaler = torch.amp.GradScaler(device.type, enabled=plan.scaler)
    warmup = warmup_steps_for(total_steps, warmup_fraction)
    batches = _Batches(labeled if uses_labels else None, unlabeled if uses_unlabeled else None,
                       batch_size, unlabeled_batch_size, seed + start_step)
    predictor = method.predictor()
    has_val = val is not None and len(val) > 0
    evaluate = eval_fn if has_val else None  # no labeled validation images: keep the last weights
    if evaluate is None and has_val:
        from .evaluate import evaluate_model

        def evaluate(model, data):
            return evaluate_model(model, data, task=task, device=device, names=names)

    result = RunResult(total_steps=total_steps, monitor=monitor, batch_size=batch_size)
    best_score, best_state = -math.inf, None
    images_seen, started = 0, time.perf_counter()
    oom_retried = False
    yield Event("log", step=start_step, total_steps=total_steps, message=(
        f"{name} on {device.type}{' with ' + str(plan.dtype).removeprefix('torch.') + ' autocast' if plan.dtype else ''}: "
        f"{total_steps} steps ({n_epochs} epochs x {steps_per_epoch}), batch {batch_size}"
        + (f" + {unlabeled_batch_size} unlabeled" if uses_unlabeled and uses_labels else "")
        + (f", resumed at step {start_step}" if start_step else "")))

    step, epoch_loss, epoch_batches = start_step, 0.0, 0
    with deterministic(device):
        while step < total_steps:
            if cancel.is_set():
                result.cancelled = True
                break
            tick = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = lr * warmup_cosine(step, total_steps, warmup)
            try:
                batch = batches.next(device)
                optimizer.zero_grad(set_to_none=True)
                with plan.autocast(device):
                    loss, logs = training_step(batch, step / total_steps)
                loss_value = distributed.mean(loss)  # the same on all ranks, so all stop on a NaN
                if not math.isfinite(loss_value):
                    raise TrainingError(
                        f"training of {name!r} stopped: the loss became {loss_value} at step {step + 1} "
                        f"(epoch {step // steps_per_epoch + 1}). The previous model is kept; try a lower "
                        f"learning rate (now {lr:g}) or check the images for extreme values.")
                scaler.scale(loss).backward()
                if max_grad_norm:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
            except TrainingError:
                raise
            except Exception as exc:
                if not _is_out_of_memory(exc):
                    raise
                if distributed.active():  # the ranks cannot change batch size in step
                    raise TrainingError(
                        f"training of {name!r} ran out of {device.type} memory on rank {distributed.rank()} "
                        f"with batch size {batches.batch_size} per process; set a smaller batch_size") from None
                batch = loss = None
                optimizer.zero_grad(set_to_none=True)
                _free_device_memory(device)
                new_size, new_u = max(1, batches.batch_size // 2), max(1, batches.unlabeled_batch_size // 2)
                if oom_retried or (new_size == batches.batch_size and new_u == batches.unlabeled_batch_size):
                    raise TrainingError(
                        f"training of {name!r} ran out of {device.type} memory even with batch size "
                        f"{batches.batch_size}; use smaller images, a smaller model, or the CPU") from None
                oom_retried = True
                batches = _Batches(labeled if uses_labels else None, unlabeled if uses_unlabeled else None,
                                   new_size, new_u, seed + step)
                result.batch_size = new_size
                yield Event("log", step=step, total_steps=total_steps, message=(
                    f"out of {device.type} memory: batch size halved to {new_size}, retrying"))
                continue
            step += 1
            method.after_optimizer_step(step)
            n_images = sum(int(batch[k].shape[0]) for k in ("x", "u") if k in batch)
            images_seen += n_images
            seconds = max(time.perf_counter() - tick, 1e-9)
            epoch_loss += loss_value
            epoch_batches += 1
            epoch = (step - 1) // steps_per_epoch + 1
            yield Event("step", step=step, total_steps=total_steps, epoch=epoch, loss=loss_value,
                        lr=optimizer.param_groups[0]["lr"], metrics=dict(logs or {}),
                        images_per_second=n_images / seconds)
            result.final_loss = loss_value
            # rank 0's clock decides for all ranks (a time budget must stop every rank at one step)
            if step < total_steps and stop_when is not None and distributed.broadcast(bool(stop_when())):
                total_steps = step  # the budget ran out: close this epoch, validate, stop
            if step % steps_per_epoch and step != total_steps:
                continue
            yield Event("epoch", step=step, total_steps=total_steps, epoch=epoch,
                        loss=epoch_loss / max(1, epoch_batches), lr=optimizer.param_groups[0]["lr"],
                        images_per_second=images_seen / max(time.perf_counter() - started, 1e-9))
            mean_loss = epoch_loss / max(1, epoch_batches)
            epoch_loss, epoch_batches = 0.0, 0
            result.epochs = epoch
            stop_early = bool(on_epoch_end(epoch, mean_loss)) if on_epoch_end is not None else False
            stop_early = distributed.broadcast(stop_early)
            if stop_early:
                total_steps = step
            validate = evaluate is not None and distributed.is_main()  # rank 0 keeps the best weights
            if validate and (epoch % max(1, eval_every) == 0 or step == total_steps):
                if cancel.is_set():
                    result.cancelled = True
                    break
                metrics = {k: float(v) for k, v in evaluate(predictor, val).items()}
                method.train()
                result.last_metrics = metrics
                score = _score(metrics, monitor)
                if best_state is None or score > best_score:
                    best_score, best_state = score, _cpu_copy(predictor.state_dict())
                    result.best_metrics, result.best_step = metrics, step
                yield Event("metric", step=step, total_steps=total_steps, epoch=epoch, metrics=metrics,
                            message=f"validation {monitor} {metrics.get(monitor, math.nan):.4f}")
            if checkpoint_dir is not None and distributed.is_main():
                path = save_resume_point(Path(checkpoint_dir) / RESUME_FILE, method, step=step, epoch=epoch,
                                         seed=seed, total_steps=total_steps, extra={"method": name})
                yield Event("checkpoint", step=step, total_steps=total_steps, epoch=epoch, message=str(path))
            if stop_early:
                yield Event("log", step=step, total_steps=total_steps, epoch=epoch,
                            message=f"stopped after epoch {epoch}: the loss stopped improving")
                break

    result.steps, result.total_steps = step, total_steps
    result.seconds = time.perf_counter() - started
    # under torchrun: the whole job's rate (every rank draws as many images per step)
    result.images_per_second = images_seen * distributed.world_size() / max(result.seconds, 1e-9)
    result.distributed = distributed.run_summary(params, labeled=labeled, unlabeled=unlabeled)
    if result.distributed:
        yield Event("log", step=step, total_steps=total_steps, message=distributed.describe(result.distributed))
    if restore_best and best_state is not None and not result.cancelled:
        predictor.load_state_dict(best_state)
    method.eval()
    yield Event("done", step=step, total_steps=total_steps, epoch=result.epochs, loss=result.final_loss,
                metrics=result.metrics, images_per_second=result.images_per_second,
                message="cancelled" if result.cancelled else "finished")
    return result


train = fit
