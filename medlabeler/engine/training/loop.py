"""The training loop as a generator of events (stardist-napari style: same code sync or threaded).

    events = fit(method, FitConfig(steps=200, batch_size=8, device="cpu"), labeled=train, val=val)
    result = run_to_end(events)         # or iterate the events in a worker thread

`fit` yields `Event`s and returns a `RunResult` as the generator's return value. What a run is
told lives in one record, `FitConfig` (length, batches, optimiser, device, validation, resume
points); the data and the callbacks are fit's keyword arguments. The loop owns optimiser (AdamW),
warmup+cosine learning rate, device and AMP, batches, validation, best-weights selection on the
val split, resume points and the failure policy:
- a NaN/inf loss raises TrainingError at once (nothing is saved; the caller keeps its old model);
- CUDA/MPS out of memory halves the batch sizes and retries once, then raises TrainingError;
- `cancel.cancel()` stops the run before its next batch (result.cancelled = True).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Generator, Iterable, Iterator, Mapping

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


@dataclass
class FitConfig:
    """How one run trains: everything `fit` is told except the data and the callbacks.

    Length: `steps` optimizer steps, else `epochs` (default 10) passes of `steps_per_epoch`
    steps (default: one pass over the labeled set, or the unlabeled set for label-free methods).
    Validation runs every `eval_every` epochs and ranks the weights by `monitor` (default "dice"
    for segmentation, "auc" for classification); with `restore_best` the predictor ends with the
    best of them. `names` are the class names the default evaluation reports. `checkpoint_dir`
    gets a resume point after every epoch; `resume_from` continues from one (weights + step; the
    optimiser restarts, the schedule continues).
    """

    epochs: int | None = None
    steps: int | None = None
    steps_per_epoch: int | None = None
    batch_size: int = 8
    unlabeled_batch_size: int | None = None  # None: batch_size
    lr: float = 1e-3
    encoder_lr_scale: float = 1.0  # times lr for fit's `pretrained` parameters
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    max_grad_norm: float | None = 5.0
    device: str | torch.device | None = None  # None / "auto": the best device present
    amp: bool | None = None  # None: automatic (CUDA only)
    seed: int = 0
    monitor: str | None = None
    eval_every: int = 1
    names: list[str] | None = None
    restore_best: bool = True
    checkpoint_dir: str | Path | None = None
    resume_from: str | Path | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], **overrides) -> "FitConfig":
        """The record from a larger config (the workflows' run config): its keys that are fields
        here, then `overrides`."""
        known = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in values.items() if k in known}, **overrides})


def fit(
    method: nn.Module,
    config: FitConfig,
    *,
    labeled=None,
    unlabeled=None,
    val=None,
    eval_fn: Callable[[nn.Module, Any], dict[str, float]] | None = None,
    cancel: CancelToken | None = None,
    on_epoch_end: Callable[[int, float], bool | None] | None = None,
    stop_when: Callable[[], bool] | None = None,
    pretrained: Iterable[nn.Parameter] = (),
) -> Generator[Event, None, RunResult]:
    """Train `method` (a `Method`: training_step/after_optimizer_step/predictor) as `config` says.

    `labeled` yields (image (C,H,W), label) items, `unlabeled` (image, slice position) items,
    `val` (image, label) items; only the datasets the method uses are drawn from. Validation
    (`eval_fn(predictor, val)`, default: `evaluate_model`) runs on `val` only. `cancel` stops the
    run before its next batch. `on_epoch_end(epoch, mean_loss)` runs after each epoch; returning
    True ends the run there (a curriculum stage that plateaued). `stop_when()` is asked after
    every step; True ends the run cleanly there, validated and kept like a finished one (a time
    budget ran out). `pretrained` parameters (a loaded encoder) learn at `encoder_lr_scale` times
    the rate of the others. Nothing runs before the first event is asked for.
    """
    run = _Run(method, config, labeled=labeled, unlabeled=unlabeled, val=val, eval_fn=eval_fn,
               cancel=CancelToken() if cancel is None else cancel, on_epoch_end=on_epoch_end,
               stop_when=stop_when, pretrained=pretrained)
    return (yield from run.events())


class _Run:
    """One fit: set up in the constructor (checks, schedule, resume, optimiser, batches), then
    `events()` trains, validates, checkpoints and finishes."""

    def __init__(self, method, config: FitConfig, *, labeled, unlabeled, val, eval_fn, cancel,
                 on_epoch_end, stop_when, pretrained=()):
        self.method, self.config, self.cancel = method, config, cancel
        self.on_epoch_end, self.stop_when = on_epoch_end, stop_when
        device = config.device
        self.device = distributed.prepare_device(device if isinstance(device, torch.device) else pick_device(device))
        self.task = getattr(method, "task", "classification")
        self.name = getattr(method, "name", type(method).__name__)
        self.monitor = config.monitor or ("dice" if self.task == "segmentation" else "auc")
        self.uses_labels = bool(getattr(method, "uses_labels", True))
        self.uses_unlabeled = bool(getattr(method, "uses_unlabeled", False))
        self._check_data(labeled, unlabeled)
        self.unlabeled_batch_size = config.unlabeled_batch_size or config.batch_size
        # under torchrun each rank draws from its own part (so an epoch is a pass over all ranks' parts)
        self.labeled = distributed.shard(labeled, config.seed)
        self.unlabeled = distributed.shard(unlabeled, config.seed + 1)
        self.steps_per_epoch, self.total_steps = self._plan_steps()

        seed_everything(config.seed)
        self.start_step = self._resume()
        method.to(self.device)
        method.train()
        self.params = self._trainable_parameters()
        scaled = {id(p) for p in pretrained} if config.encoder_lr_scale != 1 else set()
        self.optimizer = _adamw(self.params, config.lr, config.weight_decay,
                                scaled=scaled, scale=config.encoder_lr_scale)
        self.training_step = distributed.wrap(method, self.params, self.device).step
        if distributed.rank():  # other ranks: other augmentations (rank 0 repeats a 1-process run)
            seed_everything(config.seed + self.start_step + 7919 * distributed.rank())
        self.plan = amp_plan(self.device, config.amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.plan.scaler)
        self.warmup = warmup_steps_for(self.total_steps, config.warmup_fraction)
        self.batches = self._batches(config.batch_size, self.unlabeled_batch_size, config.seed + self.start_step)
        self.predictor = method.predictor()
        self.val = val
        self.evaluate = self._evaluator(eval_fn, val)

        self.result = RunResult(total_steps=self.total_steps, planned_steps=self.total_steps, monitor=self.monitor,
                                batch_size=config.batch_size)
        self.best_score, self.best_state = (-math.inf,), None
        self.images_seen, self.started = 0, time.perf_counter()
        self.oom_retried = False
        self.step, self.epoch, self.epoch_loss, self.epoch_batches = self.start_step, 0, 0.0, 0

    # --- set-up -------------------------------------------------------------------------------

    def _check_data(self, labeled, unlabeled) -> None:
        name = self.name
        if self.uses_labels and (labeled is None or len(labeled) == 0):
            raise TrainingError(f"method {name!r} needs labeled images, and none are labeled in the training split yet")
        self.without_unlabeled = self.uses_unlabeled and self.uses_labels and (unlabeled is None or len(unlabeled) == 0)
        if self.without_unlabeled:  # everything is labeled: a semi-supervised method learns from the labels alone
            self.uses_unlabeled = False
        if self.uses_unlabeled and (unlabeled is None or len(unlabeled) == 0):
            raise TrainingError(f"method {name!r} needs unlabeled images, and there are none")
        if not self.uses_labels and not self.uses_unlabeled:
            raise TrainingError(f"method {name!r} uses neither labeled nor unlabeled data")
        if self.config.batch_size < 1:
            raise ValueError("batch_size must be at least 1")

    def _plan_steps(self) -> tuple[int, int]:
        """(steps per epoch, total steps): `steps` overrides `epochs`."""
        config = self.config
        if self.uses_labels:
            primary, primary_batch = self.labeled, config.batch_size
        else:
            primary, primary_batch = self.unlabeled, self.unlabeled_batch_size
        steps_per_epoch = config.steps_per_epoch or max(1, math.ceil(len(primary) / primary_batch))
        if config.steps is not None:
            total_steps = int(config.steps)
        else:
            total_steps = int(config.epochs if config.epochs is not None else 10) * steps_per_epoch
        if total_steps < 1:
            raise ValueError("a run needs at least one step")
        return steps_per_epoch, total_steps

    def _resume(self) -> int:
        """The step the run starts at: 0, or the resume point's (weights loaded into the method)."""
        resume_from, seed = self.config.resume_from, self.config.seed
        if resume_from is None:
            return 0
        record = load_resume_point(resume_from, self.method)
        if record.get("method") not in (None, self.name):
            raise TrainingError(f"resume point {resume_from} was saved by method {record.get('method')!r}, "
                                f"not {self.name!r}")
        start_step = min(int(record["step"]), self.total_steps)
        seed_everything(seed + start_step)  # continue with fresh, reproducible randomness
        return start_step

    def _trainable_parameters(self) -> list[nn.Parameter]:
        method = self.method
        trainable = getattr(method, "trainable_parameters", None)
        params = list(trainable() if callable(trainable) else (p for p in method.parameters() if p.requires_grad))
        if not params:
            raise TrainingError(f"method {self.name!r} has no trainable parameters")
        return params

    def _batches(self, batch_size: int, unlabeled_batch_size: int, seed: int) -> "_Batches":
        return _Batches(self.labeled if self.uses_labels else None, self.unlabeled if self.uses_unlabeled else None,
                        batch_size, unlabeled_batch_size, seed)

    def _evaluator(self, eval_fn, val):
        if val is None or len(val) == 0:
            return None  # no labeled validation images: keep the last weights
        if eval_fn is not None:
            return eval_fn
        from .evaluate import evaluate_model

        task, device, names = self.task, self.device, self.config.names

        def evaluate(model, data):
            return evaluate_model(model, data, task=task, device=device, names=names)

        return evaluate

    # --- the run ------------------------------------------------------------------------------

    def events(self) -> Generator[Event, None, RunResult]:
        yield self._log(self._opening_line(), step=self.start_step)
        with deterministic(self.device):
            while self.step < self.total_steps:
                if self.cancel.is_set():
                    self.result.cancelled = True
                    break
                tick = time.perf_counter()
                self._set_learning_rate()
                outcome = self._optimizer_step()
                if outcome is None:  # out of memory
                    yield self._halve_batches()
                    continue
                yield self._count_step(*outcome, tick=tick)
                self._check_budget()
                if self.step % self.steps_per_epoch and self.step != self.total_steps:
                    continue
                if (yield from self._end_epoch()):
                    break
        return (yield from self._finish())

    def _opening_line(self) -> str:
        plan, batch = self.plan, self.config.batch_size
        autocast = f" with {str(plan.dtype).removeprefix('torch.')} autocast" if plan.dtype else ""
        every = self.config.eval_every * self.steps_per_epoch
        checks = f", validated every {every}" if self.val is not None and every < self.total_steps else ""
        return (f"{self.name} on {self.device.type}{autocast}: {self.total_steps} steps{checks}, batch {batch}"
                + (f" + {self.unlabeled_batch_size} unlabeled" if self.uses_unlabeled and self.uses_labels else "")
                + (f", resumed at step {self.start_step}" if self.start_step else "")
                + ("; no unlabeled images, so it learns from the labels alone" if self.without_unlabeled else ""))

    def _log(self, message: str, *, step: int | None = None, **fields) -> Event:
        return Event("log", step=self.step if step is None else step, total_steps=self.total_steps,
                     message=message, **fields)

    def _set_learning_rate(self) -> None:
        factor = warmup_cosine(self.step, self.total_steps, self.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * factor * group.get("lr_scale", 1.0)

    def _optimizer_step(self) -> tuple[float, dict, int] | None:
        """(loss, the method's logs, images drawn) of one step; None when the device ran out of
        memory (this frame, with the batch, is gone by the time the caller frees memory)."""
        try:
            batch = self.batches.next(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            with self.plan.autocast(self.device):
                loss, logs = self.training_step(batch, self.step / self.total_steps)
            loss_value = distributed.mean(loss)  # the same on all ranks, so all stop on a NaN
            if not math.isfinite(loss_value):
                raise TrainingError(
                    f"training of {self.name!r} stopped: the loss became {loss_value} at step {self.step + 1} "
                    f"(epoch {self.step // self.steps_per_epoch + 1}). The previous model is kept; try a lower "
                    f"learning rate (now {self.config.lr:g}) or check the images for extreme values.")
            self.scaler.scale(loss).backward()
            if self.config.max_grad_norm:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        except TrainingError:
            raise
        except Exception as exc:
            if not _is_out_of_memory(exc):
                raise
            return None
        return loss_value, logs, sum(int(batch[k].shape[0]) for k in ("x", "u") if k in batch)

    def _halve_batches(self) -> Event:
        """Out of memory: halve the batch sizes and retry once; else raise TrainingError."""
        device, batches = self.device.type, self.batches
        if distributed.active():  # the ranks cannot change batch size in step
            raise TrainingError(
                f"training of {self.name!r} ran out of {device} memory on rank {distributed.rank()} "
                f"with batch size {batches.batch_size} per process; set a smaller batch_size")
        self.optimizer.zero_grad(set_to_none=True)
        _free_device_memory(self.device)
        new_size, new_u = max(1, batches.batch_size // 2), max(1, batches.unlabeled_batch_size // 2)
        if self.oom_retried or (new_size == batches.batch_size and new_u == batches.unlabeled_batch_size):
            raise TrainingError(
                f"training of {self.name!r} ran out of {device} memory even with batch size "
                f"{batches.batch_size}; use smaller images, a smaller model, or the CPU")
        self.oom_retried = True
        self.batches = self._batches(new_size, new_u, self.config.seed + self.step)
        self.result.batch_size = new_size
        return self._log(f"out of {device} memory: batch size halved to {new_size}, retrying")

    def _count_step(self, loss_value: float, logs: dict, n_images: int, *, tick: float) -> Event:
        self.step += 1
        self.method.after_optimizer_step(self.step)
        self.images_seen += n_images
        seconds = max(time.perf_counter() - tick, 1e-9)
        self.epoch_loss += loss_value
        self.epoch_batches += 1
        self.epoch = (self.step - 1) // self.steps_per_epoch + 1
        self.result.final_loss = loss_value
        return Event("step", step=self.step, total_steps=self.total_steps, epoch=self.epoch, loss=loss_value,
                     lr=self.optimizer.param_groups[0]["lr"], metrics=dict(logs or {}),
                     images_per_second=n_images / seconds)

    def _check_budget(self) -> None:
        """Asked after every step: `stop_when()` True ends the run at this step (a time budget).
        Rank 0's clock decides for all ranks (a budget must stop every rank at one step)."""
        if self.step < self.total_steps and self.stop_when is not None \
                and distributed.broadcast(bool(self.stop_when())):
            # what the caller's stop stands for ("time budget"), where it says (a plateau may stop too)
            self.result.stopped_by = getattr(self.stop_when, "reason", "caller's stop")
            self.total_steps = self.step  # the budget ran out: close this epoch, validate, stop

    def _end_epoch(self) -> Generator[Event, None, bool]:
        """Epoch event, `on_epoch_end`, validation, resume point; returns True to end the run."""
        epoch, step = self.epoch, self.step
        mean_loss = self.epoch_loss / max(1, self.epoch_batches)
        yield Event("epoch", step=step, total_steps=self.total_steps, epoch=epoch, loss=mean_loss,
                    lr=self.optimizer.param_groups[0]["lr"],
                    images_per_second=self.images_seen / max(time.perf_counter() - self.started, 1e-9))
        self.epoch_loss, self.epoch_batches = 0.0, 0
        self.result.epochs = epoch
        stop_early = bool(self.on_epoch_end(epoch, mean_loss)) if self.on_epoch_end is not None else False
        stop_early = distributed.broadcast(stop_early)
        if stop_early:
            if step < self.total_steps:
                self.result.stopped_by = "plateau"
            self.total_steps = step
        if self._validation_due(epoch):
            if self.cancel.is_set():
                self.result.cancelled = True
                return True
            yield self._validate(epoch)
        if self.config.checkpoint_dir is not None and distributed.is_main():
            yield self._save_resume_point(epoch)
        if stop_early:
            yield self._log(f"stopped after epoch {epoch}: the loss stopped improving", epoch=epoch)
        return stop_early

    def _validation_due(self, epoch: int) -> bool:
        if self.evaluate is None or not distributed.is_main():  # rank 0 keeps the best weights
            return False
        return epoch % max(1, self.config.eval_every) == 0 or self.step == self.total_steps

    def _validate(self, epoch: int) -> Event:
        """Score the predictor on `val`; keep a CPU copy of its weights when they are the best yet."""
        metrics = {k: float(v) for k, v in self.evaluate(self.predictor, self.val).items()}
        self.method.train()
        result = self.result
        result.last_metrics = metrics
        score = _score(metrics, self.monitor)
        if _one_class(metrics):  # any model that predicts that class everywhere scores best: no judge
            return Event("metric", step=self.step, total_steps=self.total_steps, epoch=epoch, metrics=metrics,
                         message="validation labels hold one class only: it cannot tell the steps apart, "
                                 "the last weights are kept")
        if self.best_state is None or score > self.best_score:
            self.best_score, self.best_state = score, _cpu_copy(self.predictor.state_dict())
            result.best_metrics, result.best_step = metrics, self.step
        return Event("metric", step=self.step, total_steps=self.total_steps, epoch=epoch, metrics=metrics,
                     message=f"validation {self.monitor} {metrics.get(self.monitor, math.nan):.4f}")

    def _save_resume_point(self, epoch: int) -> Event:
        path = save_resume_point(Path(self.config.checkpoint_dir) / RESUME_FILE, self.method, step=self.step,
                                 epoch=epoch, seed=self.config.seed, total_steps=self.total_steps,
                                 extra={"method": self.name})
        return Event("checkpoint", step=self.step, total_steps=self.total_steps, epoch=epoch, message=str(path))

    def _finish(self) -> Generator[Event, None, RunResult]:
        result, step, total_steps = self.result, self.step, self.total_steps
        result.steps, result.total_steps = step, total_steps
        result.seconds = time.perf_counter() - self.started
        # under torchrun: the whole job's rate (every rank draws as many images per step)
        result.images_per_second = self.images_seen * distributed.world_size() / max(result.seconds, 1e-9)
        result.distributed = distributed.run_summary(self.params, labeled=self.labeled, unlabeled=self.unlabeled)
        if result.distributed:
            yield self._log(distributed.describe(result.distributed))
        if self.config.restore_best and self.best_state is not None and not result.cancelled:
            self.predictor.load_state_dict(self.best_state)
        self.method.eval()
        yield Event("done", step=step, total_steps=total_steps, epoch=result.epochs, loss=result.final_loss,
                    metrics=result.metrics, images_per_second=result.images_per_second,
                    message="cancelled" if result.cancelled else "finished")
        return result


# --- parts ------------------------------------------------------------------------------------


def _adamw(params: list[nn.Parameter], lr: float, weight_decay: float, *, scaled: set[int] = frozenset(),
           scale: float = 1.0) -> torch.optim.Optimizer:
    """AdamW with no weight decay on biases and normalisation parameters; the parameters whose ids
    are in `scaled` learn at `scale` times `lr` (their group's "lr_scale")."""
    groups = []
    for lr_scale, members in ((1.0, [p for p in params if id(p) not in scaled]),
                              (scale, [p for p in params if id(p) in scaled])):
        groups += [{"params": [p for p in members if p.ndim >= 2], "weight_decay": weight_decay, "lr_scale": lr_scale},
                   {"params": [p for p in members if p.ndim < 2], "weight_decay": 0.0, "lr_scale": lr_scale}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


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


def _score(metrics: dict[str, float], monitor: str) -> tuple[float, ...]:
    """What ranks validations (higher is better): `monitor`, then balanced accuracy and accuracy
    for ties and where it is undefined (-inf). On a few validation images AUC reaches 1.0 early
    and stays there; ranked by AUC alone, the first such step was kept and the better-separated
    weights after it were thrown away."""
    values = (metrics.get(key) for key in (monitor, "balanced_accuracy", "accuracy"))
    return tuple(float(v) if v is not None and math.isfinite(v) else -math.inf for v in values)


def _one_class(metrics: dict[str, float]) -> bool:
    """Classification metrics of validation labels that hold a single class (recall defined for one
    class only): AUC is undefined and balanced accuracy rewards predicting that class everywhere."""
    recalls = [v for k, v in metrics.items() if k.startswith("recall_")]
    return bool(recalls) and sum(1 for v in recalls if math.isfinite(v)) < 2


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
