"""Train a model on a project's labels: `train_project`, what Retrain and `medlabeler train` run.

    gen = train_project(project, method="mean-teacher", init="pretrained", steps=400, config={...})
    result = run_to_end(gen)            # or iterate the events in a worker thread
    result.version                      # the new candidate model version (None if cancelled)
    result.decision                     # promoted to active, or kept (engine.workflows.promotion)

A generator of training `Event`s that returns a `RunResult`; nothing is stored unless the run
finishes (cancel or an error keep the previous model). Validation uses the val split only; the
test split is read only by `evaluate_project`. Config keys: `run_config.DEFAULTS`; keys a method
declares in its own DEFAULTS go to the method (or put them under config["method"]).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Generator, Iterable

from medlabeler.engine.errors import InitMismatchError, TrainingError
from medlabeler.engine.workflows.model_versions import (finite_metrics, label_fingerprint, newest_pretrained,
                                                        read_weights, save_version)
from medlabeler.engine.workflows.run_config import (arch_for, device_for, forward_events, network_factory,
                                                    preprocess_for, recommendation, resolve_config)
from medlabeler.engine.workflows.promotion import TOLERANCE, promote_or_keep


def one_class_only(project) -> str | None:
    """Why a classifier cannot train on the training labels so far (they hold one class), or None.

    One class alone makes a model that predicts it everywhere at 100%: its entropy is 0 on every
    image, so the queue ranks nothing, and its validation AUC means nothing (a new user saw one
    promoted with "val auc 0.000"). Segmentation is not concerned: one mask holds background and
    structure.
    """
    if project.task.kind != "classification":
        return None
    seen = sorted(project.label_values(split="train"))
    if len(seen) >= 2 or not seen:
        return None
    names = project.task.names
    return (f"training labels of two classes are needed (so far only "
            f"{', '.join(names[i] for i in seen if 0 <= i < len(names))})")


def train_project(project, *, method: str | None = None, init=None, epochs: int | None = None,
                  steps: int | None = None, budget_s: float | None = None, config: dict | None = None,
                  cancel=None, promote: bool = True, tolerance: float | None = None) -> Generator:
    """Train `method` (None: the recommended one, engine.workflows.recommended) on the project's labeled
    train split (plus unlabeled images for semi-supervised methods), validate on val, and store
    the best weights as a new CANDIDATE model version; with `promote` it becomes active only if
    engine.workflows.promotion says so (never a regression on the current validation labels).

    Run length: `steps` optimizer steps (default: the recommended budget), or `epochs` passes
    over the labeled set when given; `budget_s` seconds end the run cleanly at the next step.
    `init`: None (random), "pretrained" (the newest pretraining's encoder) or a model version
    (its weights, or its encoder when the classes changed). Yields Events; returns a RunResult
    whose `version` is the new model version (None when cancelled) and `decision` the
    promotion decision."""
    from medlabeler.engine.data.datasets import build_project_data
    from medlabeler.engine.methods import build_method
    from medlabeler.engine.training.device import seed_everything
    from medlabeler.engine.training.events import Event
    from medlabeler.engine.training.evaluate import evaluate_model
    from medlabeler.engine.training.loop import FitConfig, fit

    task = project.task
    if not (init in (None, "", "none", "scratch", "pretrained") or str(init).isdigit()):
        raise TrainingError(f"init must be 'scratch', 'pretrained' or a model version, not {init!r}")
    one_class = one_class_only(project)
    if one_class:
        raise TrainingError(f"nothing to train a classifier on: {one_class}")
    rec = recommendation(project, config)
    method = method or rec.method
    config = _budget_config(config, rec.config if method == rec.method else
                            {k: v for k, v in rec.config.items() if k in ("steps",)}, epochs, steps)
    run, method_cfg = resolve_config(config, method, epochs=epochs, seed=getattr(task, "seed", 0))
    device = device_for(run)
    preprocess = preprocess_for(run, task.kind)
    # labels saved after this are not in the run (the loop counts them as new)
    labels_read_at, labels_mark = _utc_now(), project.label_mark()
    data = build_project_data(project, preprocess, unlabeled_splits=tuple(run["unlabeled_splits"]),
                              cache_mb=run["cache_mb"], seed=run["seed"], foreground=run["foreground_crops"])
    arch = arch_for(task.kind, run, data.spatial_dims)
    num_classes = task.num_classes
    seed_everything(run["seed"])
    factory = network_factory(task.kind, arch, data.in_channels, num_classes, run)
    learner = build_method(method, task=task.kind, model_factory=factory, num_classes=num_classes,
                           in_channels=data.in_channels, config=method_cfg)
    if getattr(learner, "kind", "train") != "train":
        raise TrainingError(f"{method!r} is a pretraining method: use pretrain_project")
    model_args = dict(learner.predictor().build_args)
    parent, init_text = _apply_init(project, learner, init, model_args)
    names = list(task.names)
    roi = preprocess.window_size(data.spatial_dims)

    def eval_fn(model, dataset):
        return evaluate_model(model, dataset, task=task.kind, device=device, names=names, roi_size=roi,
                              batch_size=run["batch_size"])

    yield Event("log", message=(
        f"training {method} ({arch}) from {init_text}: {len(data.labeled)} labeled, "
        f"{len(data.unlabeled)} unlabeled, {len(data.val)} validation images"
        + ("" if len(data.val) else "; no labeled validation images, so the last weights are kept")))
    held: list = []
    result = yield from forward_events(fit(
        learner, FitConfig.from_mapping(run, device=device, names=names), labeled=data.labeled,
        unlabeled=data.unlabeled, val=data.val if len(data.val) else None, eval_fn=eval_fn, cancel=cancel,
        stop_when=_deadline(budget_s), pretrained=learner.pretrained_parameters()), held)
    if result.cancelled:
        yield Event("done", step=result.steps, total_steps=result.total_steps, epoch=result.epochs,
                    message="cancelled: nothing saved, the previous model stays active")
        return result
    record = _model_record(project, method=method, method_cfg=method_cfg, settings=learner.settings(method_cfg),
                           names=names, model_args=model_args,
                           preprocess=data.tensors.preprocess, data=data, run=run, init_text=init_text, parent=parent,
                           labels_read_at=labels_read_at, labels_mark=labels_mark, result=result,
                           device=device)
    version = save_version(project, method_label=method, state=learner.predictor().state_dict(),
                           record=record, metrics=result.metrics, parent=parent, activate=False)
    result.version, result.record = version.version, record
    done = held[-1] if held else Event("done")
    done.message = f"saved candidate v{version.version}"
    if promote:
        active = project.active_model()
        yield Event("log", step=result.steps, total_steps=result.total_steps,
                    message=f"validating candidate v{version.version}" + (
                        f" against the active model v{active.version}" if active is not None else " (no active model yet)"))
        result.decision = _promote(project, version.version, device, tolerance)
        done.message = result.decision.message
    yield done
    return result


def _model_record(project, *, method, method_cfg, settings, names, model_args, preprocess, data, run, init_text,
                  parent, labels_read_at, labels_mark, result, device) -> dict[str, Any]:
    """What a model version records of its run: method, its config as given and as run (per-task
    defaults filled in), network, preprocessing, config, init, the labels it saw, the data, its
    metrics and the run's figures."""
    import medlabeler

    return {
        "kind": "model", "method": method, "method_config": method_cfg, "method_settings": settings, "task": project.task.kind, "names": names,
        "model": model_args, "preprocess": preprocess.to_dict(), "spatial_dims": data.spatial_dims,
        "config": {k: v for k, v in run.items() if k not in ("checkpoint_dir", "resume_from")},
        "init": init_text, "parent": parent, "n_labels": len(data.labeled),
        "labels": {**_label_snapshot(project, [data.labeled, data.val]), "train": len(data.labeled),
                   "val": len(data.val), "read_at": labels_read_at, "mark": labels_mark},
        "data": {"train_labeled": len(data.labeled), "unlabeled": len(data.unlabeled), "val": len(data.val),
                 "samples_sha1": _sha1(sorted(data.labeled.ids + data.unlabeled.ids + data.val.ids))},
        "metrics": finite_metrics(result.metrics), "monitor": result.monitor,
        "run": {"steps": result.steps, "epochs": result.epochs, "seconds": round(result.seconds, 2),
                "images_per_second": round(result.images_per_second, 2), "best_step": result.best_step,
                "device": str(device), "batch_size": result.batch_size, "distributed": result.distributed,
                "stopped_by": result.stopped_by},
        "medlabeler_version": medlabeler.__version__,
    }


def _promote(project, version: int, device, tolerance: float | None):
    """Promote the candidate or keep the active model (engine.workflows.promotion); under
    torchrun rank 0 alone validates and decides (the rule is applied once)."""
    from medlabeler.engine.training.distributed import on_main

    return on_main(lambda: promote_or_keep(
        project, version, device=device, tolerance=TOLERANCE if tolerance is None else tolerance))


def _budget_config(config: dict | None, rec_config: dict, epochs: int | None, steps: int | None) -> dict:
    """The run config with the run length settled: explicit `steps`/`epochs` first, then the
    config's, else the recommended step budget. Validation then runs about 10 times a run (not
    after every pass over a handful of labels)."""
    config = dict(config or {})
    for key, value in rec_config.items():
        if key not in ("steps", "epochs"):
            config.setdefault(key, value)
    if steps is not None:
        config["steps"] = int(steps)
    elif epochs is None and config.get("steps") is None and config.get("epochs") is None:
        if rec_config.get("steps") is not None:
            config["steps"] = int(rec_config["steps"])
    if config.get("steps") is not None and config.get("steps_per_epoch") is None and epochs is None:
        config["steps_per_epoch"] = max(1, int(config["steps"]) // 10)
    return config


def _deadline(budget_s: float | None):
    if budget_s is None:
        return None
    import time

    end = time.monotonic() + float(budget_s)

    def out_of_time() -> bool:
        return time.monotonic() >= end

    out_of_time.reason = "time budget"  # RunResult.stopped_by
    return out_of_time


def _apply_init(project, method, init, model_args: dict):
    """Load the init weights into `method`; returns (parent version, description)."""
    if init in (None, "", "none", "scratch"):
        return None, "random"
    if init == "pretrained":
        mv = newest_pretrained(project)
        if mv is None:
            raise TrainingError("no pretrained encoder in this project yet: run pretraining first")
    else:
        try:
            mv = project.model(int(init))
        except (TypeError, ValueError):
            raise TrainingError(f"init must be 'scratch', 'pretrained' or a model version, not {init!r}") from None
    state, record = read_weights(project, mv)
    saved_args = record.get("model", {})
    differ = [f"{key} {saved_args.get(key)} against {model_args.get(key)}" for key in
              ("arch", "in_channels", "features", "stem") if not _model_args_match(saved_args, model_args, (key,))]
    if differ:
        raise InitMismatchError(f"model v{mv.version} is another network than this run's ({'; '.join(differ)}): "
                                "its weights do not fit")
    if record.get("kind") == "encoder":
        method.load_encoder_state(state)
        return mv.version, f"encoder of v{mv.version} ({mv.method})"
    loaded = 0
    for module in method.modules():
        args = getattr(module, "build_args", None)
        if args is not None and _model_args_match(args, saved_args, ("arch", "in_channels", "num_classes", "features")):
            module.load_state_dict(state)
            loaded += 1
    if not loaded:  # the class count changed: reuse the encoder only
        prefix = "encoder."
        method.load_encoder_state({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        return mv.version, f"encoder of v{mv.version} ({mv.method})"
    return mv.version, f"weights of v{mv.version} ({mv.method})"


def _model_args_match(a: dict, b: dict, keys=("task", "arch", "in_channels", "features", "stem")) -> bool:
    return all(a.get(k) == b.get(k) for k in keys if k in a or k in b)


def _label_snapshot(project, datasets: Iterable) -> dict[str, Any]:
    ids = [sample_id for dataset in datasets for sample_id in dataset.ids]
    return {"count": len(ids), "ids_sha1": label_fingerprint(project, ids)}


def _sha1(items: Iterable) -> str:
    return hashlib.sha1(json.dumps(list(items), default=str).encode()).hexdigest()


def _utc_now() -> str:
    """The store's timestamp format (label and model times compare as strings)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def train_recommended(project, *, steps: int | None = None, budget_s: float | None = None,
                      config: dict | None = None, cancel=None, promote: bool = True,
                      tolerance: float | None = None) -> Generator:
    """The recommended pipeline (engine.workflows.recommended) end to end: when it pretrains and
    the project has no encoder of that SSL method yet, pretrain one first on every image (with
    the same sizes as `config`), then train the recommended method from it. What `medlabeler
    train` with no --method and `benchmark pipelines --methods auto` run; returns the training
    run's RunResult (None when the pretraining was cancelled)."""
    from medlabeler.engine.workflows.pretrain import pretrain_project

    rec = recommendation(project, config)
    init = None
    if rec.pretrain:
        newest = newest_pretrained(project)
        if newest is None or newest.method != f"pretrain:{rec.pretrain}":
            sizes = {k: v for k, v in (config or {}).items() if k not in ("steps", "epochs", "steps_per_epoch")}
            result = yield from pretrain_project(project, method=rec.pretrain, cancel=cancel,
                                                 config={**sizes, **rec.pretrain_config})
            if result is None or result.cancelled:
                return None
        init = "pretrained"
    elif rec.init not in (None, "pretrained"):
        init = rec.init
    return (yield from train_project(project, method=rec.method, init=init, steps=steps, budget_s=budget_s,
                                     config=config, cancel=cancel, promote=promote, tolerance=tolerance))
