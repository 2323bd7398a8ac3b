"""Self-supervised pretraining of an encoder on a project's images: `pretrain_project`.

No labels are used. The encoder is stored as a model version with method "pretrain:<name>" (not
activated); `train_project(init="pretrained")` starts from it. A "curriculum" runs stages over
data pools with augmentation ramps (engine.ssl.curriculum), each from the previous encoder.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Generator

from medlabeler.engine.errors import TrainingError
from medlabeler.engine.workflows.model_versions import finite_metrics, save_version
from medlabeler.engine.workflows.run_config import (arch_for, device_for, forward_events, network_factory,
                                                    preprocess_for, resolve_config)


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
    device = device_for(run)
    preprocess = preprocess_for(run, task.kind)
    images, in_channels, dims = _pretrain_images(project, run, preprocess)
    preprocess = images.tensors.preprocess  # grey images among colour ones get three channels
    arch = arch_for(task.kind, run, dims)
    factory = network_factory(task.kind, arch, in_channels, task.num_classes, run)
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
        result = yield from forward_events(fit(learner, fit_config, unlabeled=images, cancel=cancel,
                                               stop_when=stop_when), held)
    if result.cancelled:
        yield Event("done", step=result.steps, total_steps=result.total_steps, epoch=result.epochs,
                    message="cancelled: nothing saved")
        return result
    metrics = {"loss": result.final_loss}
    record = _encoder_record(project, method=method, stages=stages, model_args=dict(learner.predictor().build_args),
                             preprocess=preprocess, dims=dims, run=run, n_images=len(images), metrics=metrics,
                             result=result, device=device)
    version = save_version(project, method_label=f"pretrain:{method}", state=learner.encoder_state(),
                           record=record, metrics=metrics, parent=None, activate=False)
    result.version, result.record, result.last_metrics = version.version, record, metrics
    done = held[-1] if held else Event("done")
    done.message = f"saved pretrained encoder v{version.version}"
    yield done
    return result


def _encoder_record(project, *, method, stages, model_args, preprocess, dims, run, n_images, metrics, result,
                    device) -> dict:
    """What a pretrained encoder's model version records of its run."""
    import medlabeler

    task = project.task
    return {
        "kind": "encoder", "method": f"pretrain:{method}", "stages": stages, "task": task.kind,
        "names": list(task.names), "model": model_args, "preprocess": preprocess.to_dict(), "spatial_dims": dims,
        "config": {k: v for k, v in run.items() if k not in ("checkpoint_dir", "resume_from")},
        "n_labels": 0, "data": {"images": n_images, "splits": list(run["pretrain_splits"])},
        "metrics": finite_metrics(metrics),
        "run": {"steps": result.steps, "epochs": result.epochs, "seconds": round(result.seconds, 2),
                "images_per_second": round(result.images_per_second, 2), "device": str(device),
                "distributed": result.distributed},
        "medlabeler_version": medlabeler.__version__,
    }


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
        result = yield from forward_events(fit(learner, stage_config, unlabeled=images, cancel=cancel,
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


def _pretrain_images(project, run: dict, preprocess, pool: str = "all"):
    """(dataset of the images of `pool` in the pretraining splits, input channels, spatial dims)."""
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
