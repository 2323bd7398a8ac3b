"""The run config of training and pretraining, and what it settles for a run.

`DEFAULTS` lists every key (the CLI's `--config`, the app's form, `config=` of `train_project` and
`pretrain_project`); `resolve_config` fills them in and hands the method's own keys to the method.
From the resolved config: the device, the preprocessing and the network a run builds, and the
recommended pipeline for a project. `forward_events` passes a fit's events on to the workflow.
"""

from __future__ import annotations

from typing import Any

from medlabeler.engine.errors import TrainingError

DEFAULTS: dict[str, Any] = {
    "image_size": 128,          # side of the square 2D model input, or of the training crops (resize "crop")
    "volume_size": 64,          # side of the cubic input (crops) for whole volumes (arch unet3d)
    "resize": "auto",           # "auto" (crop for segmentation, letterbox for classification) | "letterbox"
                                # | "stretch" | "crop" (native resolution: random crops, whole-image prediction)
    "max_side": 256,            # crop mode, 2D: a longer side above this is scaled down to it first
    "foreground_crops": 1 / 3,  # crop mode: share of training crops centred on a label (nnU-Net's oversampling)
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
    "encoder_lr_scale": 1.0,    # learning rate of a pretrained encoder (init "pretrained"), times lr
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


def preprocess_for(run: dict, task: str):
    """The `Preprocess` of a run for a `task` kind (image size, resize mode, intensity window)."""
    from medlabeler.engine.data.datasets import Preprocess

    return Preprocess.from_config(run, task)


def device_for(run: dict):
    """The run's device (under torchrun: this rank's GPU); with `cap_threads` a CPU run leaves the GUI a core."""
    from medlabeler.engine.training.device import cap_threads, pick_device
    from medlabeler.engine.training.distributed import prepare_device

    device = prepare_device(pick_device(run["device"]))
    if device.type == "cpu" and run["cap_threads"]:
        cap_threads(leave_one=True)
    return device


def arch_for(task: str, run: dict, spatial_dims: int) -> str:
    """The network architecture: the config's, checked against the samples' dimensions, or the task's default."""
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


def network_factory(task: str, arch: str, in_channels: int, num_classes: int, run: dict):
    """model_factory(arch_name=None) -> a new network of the run (methods build their students and teachers with it)."""
    from medlabeler.engine.models import build_model

    kwargs = _model_kwargs(task, run)

    def model_factory(arch_name: str | None = None):
        return build_model(task, arch_name or arch, in_channels, num_classes, **kwargs)

    return model_factory


# --- the recommendation for a project ---------------------------------------------------------


def recommendation(project, config: dict | None = None):
    """The recommended pipeline (engine.workflows.recommended) for this project's task, sample
    shape (2D or whole volumes) and device (`config["device"]`)."""
    from medlabeler.engine.workflows.recommended import recommended

    dims = 3 if project.task.unit == "image" and _has_volumes(project) else 2
    return recommended(project.task.kind, spatial_dims=dims, gpu=_gpu_wanted(config))


def _has_volumes(project) -> bool:
    samples = project.samples()
    return bool(samples) and bool(samples[0].is_volume) and samples[0].slice_index is None


def _gpu_wanted(config: dict | None) -> bool:
    device = str((config or {}).get("device", DEFAULTS["device"]))
    if device == "cpu":
        return False
    import torch

    return bool(torch.cuda.is_available())


# --- events -----------------------------------------------------------------------------------


def forward_events(gen, held: list):
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
