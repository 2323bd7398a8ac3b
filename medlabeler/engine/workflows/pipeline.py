"""The glue the CLI and the GUI call: train, pretrain, evaluate and predict on a project.

    gen = train_project(project, method="mean-teacher", init="pretrained", epochs=20, config={...})
    result = run_to_end(gen)            # or iterate the events in a worker thread
    result.version                      # the new, active model version (None if cancelled)

`train_project` and `pretrain_project` are generators of training `Event`s that return a
`RunResult`; nothing is stored unless the run finishes (cancel or an error keep the previous
model). Validation uses the val split only; the test split is read only by `evaluate_project`.
Config keys: see `DEFAULTS`; keys a method declares in its own DEFAULTS go to the method (or put
them under config["method"]).
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Generator, Iterable, Iterator

import numpy as np

from medlabeler.engine.errors import ProjectError, TrainingError

DEFAULTS: dict[str, Any] = {
    "image_size": 128,          # side of the square 2D model input (CPU-friendly default)
    "volume_size": 64,          # side of the cubic input for whole volumes (arch unet3d)
    "resize": "letterbox",      # "letterbox" | "stretch" | "crop" (native resolution, sliding window)
    "ct_window": None,          # None | [center, width] | "soft_tissue" | "lung" | "bone" | "brain"
    "percentiles": [1.0, 99.0],  # intensity clip of grey images (per volume), before z-scoring
    "arch": None,               # resnet18/34/50 (classification), unet/unet-alt/unet3d; None = default
    "features": [16, 32, 64, 128],  # U-Net widths per level
    "stem": "standard",         # ResNet stem: "standard" or "small" (images <= 64 px)
    "dropout": 0.1,             # > 0 enables MC dropout (BALD)
    "epochs": 20,
    "steps": None,              # total steps; overrides epochs
    "steps_per_epoch": None,    # default: one pass over the labeled (or pretraining) images
    "batch_size": 8,
    "unlabeled_batch_size": 8,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "warmup_fraction": 0.05,
    "max_grad_norm": 5.0,
    "eval_every": 1,            # validate every N epochs
    "device": "auto",           # "auto" | "cpu" | "cuda" | "cuda:1" | "mps"
    "amp": None,                # None = automatic (CUDA only), False = off
    "seed": None,               # None = the project's seed
    "cap_threads": True,        # leave one CPU core to the GUI
    "cache_mb": 1024,           # in-memory cache of preprocessed tensors
    "unlabeled_splits": ["train"],              # unlabeled pool of semi-supervised methods
    "pretrain_splits": ["train", "val", "test"],  # images SSL pretraining sees (no labels used)
    "checkpoint_dir": None,     # resume points after every epoch
    "resume_from": None,
    "curriculum": None,         # list of stage dicts (see ssl.curriculum.CurriculumStage)
    "curriculum_method": "simclr",
    "generic_source": None,     # folder of extra unlabeled images for a curriculum's first stage
    "method": {},               # config of the method (build_method)
}


# --- config -----------------------------------------------------------------------------------


def resolve_config(config: dict | None, method: str | None = None, *, epochs: int | None = None,
                   seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """(run config with defaults filled in, method config). Keys neither here nor in the method's
    DEFAULTS raise ValueError naming them."""
    config = dict(config or {})
    if "size" in config and "image_size" not in config:
        config["image_size"] = config.pop("size")
    method_cfg = dict(config.pop("method", None) or {})
    method_keys: set[str] = set()
    if method and method != "curriculum":
        from medlabeler.engine.methods import method_class

        method_keys = set(getattr(method_class(method), "DEFAULTS", {}))
    unknown = []
    for key in list(config):
        if key in DEFAULTS:
            continue
        if key in method_keys:
            method_cfg[key] = config.pop(key)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(DEFAULTS)}"
                         + (f" and the method's {sorted(method_keys)}" if method_keys else ""))
    run = {**DEFAULTS, **config}
    if epochs is not None:
        run["epochs"] = int(epochs)
    if run["seed"] is None:
        run["seed"] = int(seed)
    if "seed" in method_keys and method_cfg.get("seed") is None:
        method_cfg["seed"] = int(run["seed"])
    return run, method_cfg


def _preprocess(run: dict):
    from medlabeler.engine.data.datasets import Preprocess

    return Preprocess.from_config(run)


def _device(run: dict):
    from medlabeler.engine.training.device import cap_threads, pick_device
    from medlabeler.engine.training.distributed import prepare_device

    device = prepare_device(pick_device(run["device"]))  # under torchrun: this rank's GPU
    if device.type == "cpu" and run["cap_threads"]:
        cap_threads(leave_one=True)
    return device


def _arch(task: str, run: dict, spatial_dims: int) -> str:
    arch = run["arch"]
    if spatial_dims == 3:
        if task != "segmentation":
            raise TrainingError("whole-volume classification is not supported: use unit 'slice' "
                                "or 2D images")
        if arch not in (None, "unet3d"):
            raise TrainingError(f"arch {arch!r} is 2D but the project's samples are whole volumes: "
                                "use arch 'unet3d' or a project with unit 'slice'")
        return "unet3d"
    if arch == "unet3d":
        raise TrainingError("arch 'unet3d' needs whole volumes (unit 'image'); these samples are 2D")
    from medlabeler.engine.models import DEFAULT_ARCH

    return arch or DEFAULT_ARCH[task]


def _model_kwargs(task: str, run: dict) -> dict[str, Any]:
    if task == "classification":
        return {"dropout": float(run["dropout"]), "stem": run["stem"]}
    return {"dropout": float(run["dropout"]), "features": tuple(int(f) for f in run["features"])}


def _factory(task: str, arch: str, in_channels: int, num_classes: int, run: dict):
    from medlabeler.engine.models import build_model

    kwargs = _model_kwargs(task, run)

    def model_factory(arch_name: str | None = None):
        return build_model(task, arch_name or arch, in_channels, num_classes, **kwargs)

    return model_factory


def _sha1(items: Iterable) -> str:
    return hashlib.sha1(json.dumps(list(items), default=str).encode()).hexdigest()


def _label_snapshot(project, datasets: Iterable) -> dict[str, Any]:
    rows = []
    for dataset in datasets:
        for sample_id in dataset.ids:
            label = project.label(sample_id)
            rows.append([sample_id, getattr(label, "version", None)])
    rows.sort()
    return {"count": len(rows), "ids_sha1": _sha1(rows)}


def _finite(metrics: dict) -> dict[str, float]:
    """Metrics for the store's JSON: NaN becomes None."""
    return {k: (float(v) if math.isfinite(float(v)) else None) for k, v in metrics.items()}


def _forward(gen, held: list):
    """Pass a fit() generator's events through, holding back its "done" event."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if event.kind == "done":
            held.append(event)
        else:
            yield event


def _save_version(project, *, method_label: str, state: dict, record: dict, metrics: dict,
                  parent: int | None, activate: bool):
    from medlabeler.engine.training.checkpoint import save_weights
    from medlabeler.engine.training.distributed import on_main

    def save():
        with tempfile.TemporaryDirectory(prefix=".train-", dir=project.root) as tmp:
            path = save_weights(Path(tmp) / "weights.safetensors", state, record)
            return project.add_model(method=method_label, weights_file=path, record=record,
                                     metrics=_finite(metrics), parent=parent, activate=activate)

    return on_main(save)  # under torchrun rank 0 alone writes; every rank gets the version


def _model_args_match(a: dict, b: dict, keys=("task", "arch", "in_channels", "features", "stem")) -> bool:
    return all(a.get(k) == b.get(k) for k in keys if k in a or k in b)


def _newest_pretrained(project):
    versions = [m for m in project.models() if m.method.startswith("pretrain:")]
    return versions[-1] if versions else None


def _apply_init(project, method, init, model_args: dict):
    """Load the init weights into `method`; returns (parent version, description)."""
    from medlabeler.engine.training.checkpoint import load_weights

    if init in (None, "", "none", "scratch"):
        return None, "random"
    if init == "pretrained":
        mv = _newest_pretrained(project)
        if mv is None:
            raise TrainingError("no pretrained encoder in this project yet: run pretraining first")
    else:
        try:
            mv = project.model(int(init))
        except (TypeError, ValueError):
            raise TrainingError(f"init must be None, 'pretrained' or a model version, not {init!r}") from None
    state, record = load_weights(mv.path)
    saved_args = record.get("model", {})
    if not _model_args_match(saved_args, model_args, ("arch", "in_channels", "features", "stem")):
        raise TrainingError(
            f"model v{mv.version} was trained with {saved_args.get('arch')} on "
            f"{saved_args.get('in_channels')} channel(s); this run uses {model_args.get('arch')} on "
            f"{model_args.get('in_channels')}: its weights do not fit")
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


# --- training ---------------------------------------------------------------------------------


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
    return lambda: time.monotonic() >= end


def train_project(project, *, method: str | None = None, init=None, epochs: int | None = None,
                  steps: int | None = None, budget_s: float | None = None, config: dict | None = None,
                  cancel=None, promote: bool = True, tolerance: float | None = None) -> Generator:
    """Train `method` (None: the recommended one, engine.recommended) on the project's labeled
    train split (plus unlabeled images for semi-supervised methods), validate on val, and store
    the best weights as a new CANDIDATE model version; with `promote` it becomes active only if
    engine.promotion says so (never a regression on the current validation labels).

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

    from medlabeler.engine.workflows.recommended import recommended

    task = project.task
    if not (init in (None, "", "none", "scratch", "pretrained") or str(init).isdigit()):
        raise TrainingError(f"init must be None, 'pretrained' or a model version, not {init!r}")
    rec = recommended(task.kind, spatial_dims=3 if task.unit == "image" and _has_volumes(project) else 2,
                      gpu=_gpu_wanted(config))
    method = method or rec.method
    config = _budget_config(config, rec.config if method == rec.method else
                            {k: v for k, v in rec.config.items() if k in ("steps",)}, epochs, steps)
    run, method_cfg = resolve_config(config, method, epochs=epochs, seed=getattr(task, "seed", 0))
    device = _device(run)
    preprocess = _preprocess(run)
    labels_read_at = _utc_now()  # labels saved after this are not in the run (the loop counts them as new)
    data = build_project_data(project, preprocess, unlabeled_splits=tuple(run["unlabeled_splits"]),
                              cache_mb=run["cache_mb"], seed=run["seed"])
    arch = _arch(task.kind, run, data.spatial_dims)
    num_classes = task.num_classes
    seed_everything(run["seed"])
    factory = _factory(task.kind, arch, data.in_channels, num_classes, run)
    learner = build_method(method, task=task.kind, model_factory=factory, num_classes=num_classes,
                           in_channels=data.in_channels, config=method_cfg)
    if getattr(learner, "kind", "train") != "train":
        raise TrainingError(f"{method!r} is a pretraining method: use pretrain_project")
    model_args = dict(learner.predictor().build_args)
    parent, init_text = _apply_init(project, learner, init, model_args)
    names = list(task.names)
    roi = preprocess.size if preprocess.resize == "crop" else None
    if roi is not None and data.spatial_dims == 3:
        roi = preprocess.volume_size

    def eval_fn(model, dataset):
        return evaluate_model(model, dataset, task=task.kind, device=device, names=names, roi_size=roi,
                              batch_size=run["batch_size"])

    yield Event("log", message=(
        f"training {method} ({arch}) from {init_text}: {len(data.labeled)} labeled, "
        f"{len(data.unlabeled)} unlabeled, {len(data.val)} validation images"
        + ("" if len(data.val) else "; no labeled validation images, so the last weights are kept")))
    held: list = []
    result = yield from _forward(fit(
        learner, FitConfig.from_mapping(run, device=device, names=names), labeled=data.labeled,
        unlabeled=data.unlabeled, val=data.val if len(data.val) else None, eval_fn=eval_fn, cancel=cancel,
        stop_when=_deadline(budget_s)), held)
    if result.cancelled:
        yield Event("done", step=result.steps, total_steps=result.total_steps, epoch=result.epochs,
                    message="cancelled: nothing saved, the previous model stays active")
        return result
    record = {
        "kind": "model", "method": method, "method_config": method_cfg, "task": task.kind, "names": names,
        "model": model_args, "preprocess": preprocess.to_dict(), "spatial_dims": data.spatial_dims,
        "config": {k: v for k, v in run.items() if k not in ("checkpoint_dir", "resume_from")},
        "init": init_text, "parent": parent, "n_labels": len(data.labeled),
        "labels": {**_label_snapshot(project, [data.labeled, data.val]), "train": len(data.labeled),
                   "val": len(data.val), "read_at": labels_read_at},
        "data": {"train_labeled": len(data.labeled), "unlabeled": len(data.unlabeled), "val": len(data.val),
                 "samples_sha1": _sha1(sorted(data.labeled.ids + data.unlabeled.ids + data.val.ids))},
        "metrics": _finite(result.metrics), "monitor": result.monitor,
        "run": {"steps": result.steps, "epochs": result.epochs, "seconds": round(result.seconds, 2),
                "images_per_second": round(result.images_per_second, 2), "best_step": result.best_step,
                "device": str(device), "batch_size": result.batch_size, "distributed": result.distributed},
    }
    import medlabeler

    record["medlabeler_version"] = medlabeler.__version__
    version = _save_version(project, method_label=method, state=learner.predictor().state_dict(),
                            record=record, metrics=result.metrics, parent=parent, activate=False)
    result.version, result.record = version.version, record
    done = held[-1] if held else Event("done")
    done.message = f"saved candidate v{version.version}"
    if promote:
        from medlabeler.engine.workflows.promotion import TOLERANCE, promote_or_keep

        yield Event("log", step=result.steps, total_steps=result.total_steps,
                    message=f"validating candidate v{version.version} against the active model")
        from medlabeler.engine.training.distributed import on_main

        # under torchrun rank 0 alone validates and decides (the rule is applied once)
        result.decision = on_main(lambda: promote_or_keep(
            project, version.version, device=device, tolerance=TOLERANCE if tolerance is None else tolerance))
        done.message = result.decision.message
    yield done
    return result


def _utc_now() -> str:
    """The store's timestamp format (label and model times compare as strings)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _has_volumes(project) -> bool:
    samples = project.samples()
    return bool(samples) and bool(samples[0].is_volume) and samples[0].slice_index is None


def _gpu_wanted(config: dict | None) -> bool:
    device = str((config or {}).get("device", DEFAULTS["device"]))
    if device == "cpu":
        return False
    import torch

    return bool(torch.cuda.is_available())


def _pretrain_images(project, run: dict, preprocess, pool: str = "all"):
    from medlabeler.engine.data.datasets import SampleTensors, UnlabeledDataset, input_kind

    tensors = SampleTensors(project, preprocess, run["cache_mb"])
    splits = tuple(run["pretrain_splits"])
    samples = [s for s in project.samples() if s.split in splits]
    if pool == "unlabeled":
        keep = {s.id for s in project.samples(labeled=False)}
        samples = [s for s in samples if s.id in keep]
    elif pool == "labeled":
        keep = {s.id for s in project.samples(labeled=True)}
        samples = [s for s in samples if s.id in keep]
    if not samples:
        raise TrainingError(f"no images to pretrain on (pool {pool!r}, splits {list(splits)})")
    in_channels, dims = input_kind(samples, tensors)
    return UnlabeledDataset(samples, tensors, preprocess.resize == "crop", run["seed"]), in_channels, dims


def pretrain_project(project, *, method: str = "simclr", epochs: int | None = None, config: dict | None = None,
                     cancel=None, stop_when=None) -> Generator:
    """Self-supervised pretraining on the project's images (labels unused): "simclr", "pcl",
    "gravis", or "curriculum" (stages over data pools with augmentation ramps, see
    ssl.curriculum). Stores the encoder as a model version with method "pretrain:<name>" (not
    activated: `train_project(init="pretrained")` picks it up). `stop_when()` True ends the run
    cleanly at the next step (a budget or a plateau; not for curricula). Returns a RunResult."""
    from medlabeler.engine.methods import build_method
    from medlabeler.engine.training.device import seed_everything
    from medlabeler.engine.training.events import Event
    from medlabeler.engine.training.loop import FitConfig, fit

    task = project.task
    run, method_cfg = resolve_config(config, method, epochs=epochs, seed=getattr(task, "seed", 0))
    device = _device(run)
    preprocess = _preprocess(run)
    images, in_channels, dims = _pretrain_images(project, run, preprocess)
    arch = _arch(task.kind, run, dims)
    factory = _factory(task.kind, arch, in_channels, task.num_classes, run)
    seed_everything(run["seed"])

    def make(name: str, cfg: dict):
        learner = build_method(name, task=task.kind, model_factory=factory, num_classes=task.num_classes,
                               in_channels=in_channels, config=cfg)
        if getattr(learner, "kind", "pretrain") != "pretrain":
            raise TrainingError(f"{name!r} is not a pretraining method: use train_project")
        return learner

    # pretraining draws unlabeled batches only, of the unlabeled batch size
    fit_config = FitConfig.from_mapping(run, batch_size=run["unlabeled_batch_size"], device=device)
    held: list = []
    if method == "curriculum":
        learner, result, stages = yield from _run_curriculum(project, run, preprocess, make, in_channels,
                                                             epochs, fit_config, cancel, held)
    else:
        learner = make(method, method_cfg)
        stages = [{"method": method, "config": method_cfg}]
        yield Event("log", message=f"pretraining {method} ({arch}) on {len(images)} images")
        result = yield from _forward(fit(learner, fit_config, unlabeled=images, cancel=cancel,
                                         stop_when=stop_when), held)
    if result.cancelled:
        yield Event("done", step=result.steps, total_steps=result.total_steps, epoch=result.epochs,
                    message="cancelled: nothing saved")
        return result
    model_args = dict(learner.predictor().build_args)
    metrics = {"loss": result.final_loss}
    import medlabeler

    record = {
        "kind": "encoder", "method": f"pretrain:{method}", "stages": stages, "task": task.kind,
        "names": list(task.names), "model": model_args, "preprocess": preprocess.to_dict(), "spatial_dims": dims,
        "config": {k: v for k, v in run.items() if k not in ("checkpoint_dir", "resume_from")},
        "n_labels": 0, "data": {"images": len(images), "splits": list(run["pretrain_splits"])},
        "metrics": _finite(metrics),
        "run": {"steps": result.steps, "epochs": result.epochs, "seconds": round(result.seconds, 2),
                "images_per_second": round(result.images_per_second, 2), "device": str(device),
                "distributed": result.distributed},
        "medlabeler_version": medlabeler.__version__,
    }
    version = _save_version(project, method_label=f"pretrain:{method}", state=learner.encoder_state(),
                            record=record, metrics=metrics, parent=None, activate=False)
    result.version, result.record, result.last_metrics = version.version, record, metrics
    done = held[-1] if held else Event("done")
    done.message = f"saved pretrained encoder v{version.version}"
    yield done
    return result


def _run_curriculum(project, run, preprocess, make, in_channels, epochs, fit_config, cancel, held):
    """Run the pretraining stages of a curriculum, each from the previous stage's encoder (each
    stage runs its own number of epochs, from its first step)."""
    from medlabeler.engine.data.datasets import FolderImages
    from medlabeler.engine.ssl.curriculum import Curriculum, CurriculumStage, default_curriculum
    from medlabeler.engine.training.events import Event, RunResult
    from medlabeler.engine.training.loop import fit
    from medlabeler.engine.methods import method_class

    if run["curriculum"]:
        curriculum = Curriculum(tuple(CurriculumStage(**stage) for stage in run["curriculum"]))
    else:
        curriculum = default_curriculum(run["curriculum_method"], run["generic_source"], finetune_method=None)
    kinds = {s.method: getattr(method_class(s.method), "kind", "train") for s in curriculum.stages}
    curriculum.validate(kinds)
    learner, previous, total = None, None, RunResult()
    stages = []
    for stage in curriculum.stages:
        if kinds[stage.method] != "pretrain":
            yield Event("log", message=f"stage {stage.name!r} ({stage.method}) is fine-tuning: run it with "
                                       "train_project(init='pretrained')")
            continue
        if stage.pool == "generic":
            images = FolderImages(stage.source, preprocess, in_channels)
        else:
            images = _pretrain_images(project, run, preprocess, stage.pool)[0]
        learner = make(stage.method, dict(stage.config))
        if previous is not None:
            learner.load_encoder_state(previous)
        max_epochs = min(stage.max_epochs, epochs) if epochs else stage.max_epochs
        setter = getattr(learner, "set_augment_strength", None)
        if callable(setter):
            setter(stage.augment_strength(0))
        losses: list[float] = []

        def on_epoch_end(epoch: int, loss: float, _stage=stage, _setter=setter, _losses=losses) -> bool:
            _losses.append(loss)
            if callable(_setter):
                _setter(_stage.augment_strength(epoch))
            return _stage.should_end(_losses)

        yield Event("log", message=f"curriculum stage {stage.name!r}: {stage.method} on {len(images)} images "
                                   f"({stage.pool}), up to {max_epochs} epochs")
        stage_config = replace(fit_config, epochs=max_epochs, steps=None, resume_from=None)
        result = yield from _forward(fit(learner, stage_config, unlabeled=images, cancel=cancel,
                                         on_epoch_end=on_epoch_end), held)
        total.steps += result.steps
        total.epochs += result.epochs
        total.seconds += result.seconds
        total.final_loss = result.final_loss
        total.images_per_second = result.images_per_second
        total.distributed = result.distributed
        stages.append({"name": stage.name, "method": stage.method, "pool": stage.pool, "epochs": result.epochs})
        if result.cancelled:
            total.cancelled = True
            break
        previous = learner.encoder_state()
    if learner is None:
        raise TrainingError("the curriculum has no pretraining stage")
    return learner, total, stages


# --- loading, evaluating, predicting ----------------------------------------------------------


def load_model(project, version: int | None = None, device=None):
    """(network in eval mode, record, ModelVersion) of `version` (default: the active model)."""
    from medlabeler.engine.models import build_model
    from medlabeler.engine.training.checkpoint import load_weights
    from medlabeler.engine.training.device import cap_threads, pick_device

    mv = project.model(version) if version is not None else project.active_model()
    if mv is None:
        raise ProjectError(f"{project.root}: no trained model yet; train one first")
    state, record = load_weights(mv.path)
    if record.get("kind") == "encoder":
        raise ProjectError(f"{project.root}: model v{mv.version} is a pretrained encoder ({mv.method}); it "
                           "cannot predict. Train a model from it with init 'pretrained'")
    args = dict(record["model"])
    if "features" in args:
        args["features"] = tuple(args["features"])
    model = build_model(**args)
    model.load_state_dict(state)
    device = device if device is not None and not isinstance(device, str) else pick_device(device)
    if device.type == "cpu":
        cap_threads(leave_one=True)  # predicting and scoring also leave the GUI a core
    return model.to(device).eval(), record, mv


def preprocess_from_record(record: dict):
    """The `Preprocess` a model version was trained with (predictions must use the same)."""
    from medlabeler.engine.data.datasets import Preprocess

    saved = dict(record.get("preprocess", {}))
    if isinstance(saved.get("window"), list):
        saved["window"] = tuple(saved["window"])
    if "percentiles" in saved:
        saved["percentiles"] = tuple(saved["percentiles"])
    return Preprocess(**saved)




def _roi(record: dict, preprocess) -> int | None:
    if preprocess.resize != "crop":
        return None
    return preprocess.volume_size if record.get("spatial_dims") == 3 else preprocess.size


def predict_samples(project, sample_ids: Iterable[int], version: int | None = None, *, mc_samples: int = 0,
                    batch_size: int = 8, device=None, seed: int | None = None, model_bundle=None
                    ) -> Iterator[tuple[int, np.ndarray]]:
    """(sample_id, probabilities) per sample, at the sample's original size: classification
    (C,), segmentation (C, *sample spatial shape). With `mc_samples` = T > 0, T MC-dropout passes:
    (T, C) / (T, C, *S). Large native-resolution inputs ("crop" mode) use a sliding window.
    `model_bundle` (from `load_model`) avoids reloading the weights between calls."""
    import torch

    from medlabeler.engine.data.datasets import SampleTensors
    from medlabeler.engine.inference.predict import mc_dropout_probs, predict_probs

    model, record, _mv = model_bundle or load_model(project, version, device)
    tensors = SampleTensors(project, preprocess_from_record(record), cache_mb=0)
    roi = _roi(record, tensors.preprocess)
    ids = list(sample_ids)
    step = 1 if roi is not None else max(1, batch_size)
    for start in range(0, len(ids), step):
        chunk = [project.sample(i) for i in ids[start:start + step]]
        x = torch.stack([tensors.image(s) for s in chunk])
        if mc_samples > 0:
            probs = mc_dropout_probs(model, x, mc_samples, seed=seed, batch_size=batch_size, roi_size=roi)
            probs = probs.transpose(0, 1)  # (N, T, C, ...)
        else:
            probs = predict_probs(model, x, batch_size=batch_size, roi_size=roi)
        for sample, p in zip(chunk, probs):
            if record["task"] == "segmentation":
                p = tensors.geometry(sample).to_original(p)
            yield sample.id, p.numpy().astype(np.float32)


def predict_with_features(project, sample_ids: Iterable[int], version: int | None = None, *, batch_size: int = 8,
                          device=None, model_bundle=None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(sample_id, probabilities at the sample's own size, pooled encoder features) per sample,
    from one forward pass (active-learning scoring). Native-resolution ("crop") models fall back
    to a sliding-window pass plus a feature pass."""
    import torch

    from medlabeler.engine.data.datasets import SampleTensors
    from medlabeler.engine.inference.predict import predict_features, predict_probs, predict_probs_and_features

    model, record, _mv = model_bundle or load_model(project, version, device)
    tensors = SampleTensors(project, preprocess_from_record(record), cache_mb=0)
    roi = _roi(record, tensors.preprocess)
    ids = list(sample_ids)
    step = 1 if roi is not None else max(1, batch_size)
    for start in range(0, len(ids), step):
        chunk = [project.sample(i) for i in ids[start:start + step]]
        x = torch.stack([tensors.image(s) for s in chunk])
        if roi is not None:
            probs = predict_probs(model, x, batch_size=batch_size, roi_size=roi)
            feats = predict_features(model, x, batch_size=batch_size)
        else:
            probs, feats = predict_probs_and_features(model, x, batch_size=batch_size)
        for sample, p, f in zip(chunk, probs, feats):
            if record["task"] == "segmentation":
                p = tensors.geometry(sample).to_original(p)
            yield sample.id, p.numpy().astype(np.float32), f.numpy().astype(np.float32)


def embed_samples(project, sample_ids: Iterable[int], version: int | None = None, *, batch_size: int = 16,
                  device=None, model_bundle=None) -> tuple[list[int], np.ndarray]:
    """Pooled encoder features (N, D) of samples (embeddings for k-center / core-set)."""
    import torch

    from medlabeler.engine.data.datasets import SampleTensors
    from medlabeler.engine.inference.predict import predict_features

    model, record, _mv = model_bundle or load_model(project, version, device)
    tensors = SampleTensors(project, preprocess_from_record(record), cache_mb=0)
    ids = list(sample_ids)
    feats = []
    for start in range(0, len(ids), batch_size):
        chunk = [project.sample(i) for i in ids[start:start + batch_size]]
        if tensors.preprocess.resize == "crop":
            feats += [predict_features(model, tensors.image(s)[None]) for s in chunk]
        else:
            feats.append(predict_features(model, torch.stack([tensors.image(s) for s in chunk]), batch_size=batch_size))
    dim = getattr(model, "feature_dim", 0)
    return ids, (torch.cat(feats).numpy() if feats else np.zeros((0, dim), np.float32))


def evaluate_project(project, split: str = "test", version: int | None = None, *, device=None,
                     batch_size: int = 8) -> dict[str, float]:
    """Metrics of a model version (default: active) on the labeled samples of `split`, at the
    samples' original resolution. Classification: auc, accuracy, balanced_accuracy,
    recall_<class>. Segmentation: dice (mean over labels), iou, dice_<label>, iou_<label>,
    hd95_<label> (in spacing units). Always "n" (samples evaluated)."""
    from medlabeler.engine.metrics import SegmentationScores, classification_metrics

    bundle = load_model(project, version, device)
    record = bundle[1]
    names = list(project.task.names)
    samples = project.samples(split=split, labeled=True)
    ids = [s.id for s in samples]
    if record["task"] == "classification":
        ys, probs = [], []
        for sample_id, p in predict_samples(project, ids, model_bundle=bundle, batch_size=batch_size):
            ys.append(int(project.load_label(sample_id)))
            probs.append(p)
        return classification_metrics(ys, np.stack(probs) if probs else np.zeros((0, len(names))), names)
    scores = SegmentationScores(names, with_hd95=True)
    by_id = {s.id: s for s in samples}
    for sample_id, p in predict_samples(project, ids, model_bundle=bundle, batch_size=batch_size):
        spacing = by_id[sample_id].spacing
        scores.add(p.argmax(0), np.asarray(project.load_label(sample_id)),
                   spacing if len(spacing) == p.ndim - 1 else None)
    return scores.result()
