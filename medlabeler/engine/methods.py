"""Registry of learning methods: built-ins plus plugins from the "medlabeler.methods" entry points.

A plugin package registers a `Method` subclass (see `medlabeler.engine.training.method`) in its
pyproject:

    [project.entry-points."medlabeler.methods"]
    my-method = "my_package.my_module:MyMethod"

The class needs `name`, `kind`, `tasks`, `DEFAULTS` and the classmethod `from_config(*, task,
model_factory, num_classes, in_channels, config)` (the base class provides one that builds a
single network). A built-in name cannot be replaced by a plugin.

Multi-stage recipes are in `PIPELINES`: each is a list of (method name, config) stages, each
stage starting from the previous stage's `encoder_state()` (via `load_encoder_state`). The
curricular SSL runner spec is in `medlabeler.engine.ssl.curriculum`.
"""

from __future__ import annotations

import importlib
import warnings
from importlib.metadata import entry_points
from typing import Any, Callable

ENTRY_POINT_GROUP = "medlabeler.methods"

_BUILTIN: dict[str, str] = {
    "simclr": "medlabeler.engine.ssl.simclr:SimCLR",
    "pcl": "medlabeler.engine.ssl.pcl:PCL",
    "gravis": "medlabeler.engine.ssl.gravis:GraVIS",
    "supervised": "medlabeler.engine.semi.supervised:Supervised",
    "mean-teacher": "medlabeler.engine.semi.mean_teacher:MeanTeacher",
    "fixmatch": "medlabeler.engine.semi.fixmatch:FixMatch",
    "cross-teaching": "medlabeler.engine.semi.cross_teaching:CrossTeaching",
    "srcl": "medlabeler.engine.semi.srcl:SRCL",
}

# SRCL mode (a): SimCLR pretraining, then Mean Teacher + relation consistency fine-tuning.
PIPELINES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "srcl-pretrain-finetune": [("simclr", {}), ("srcl", {"mode": "finetune"})],
    "simclr-finetune": [("simclr", {}), ("supervised", {})],
    "pcl-finetune": [("pcl", {}), ("supervised", {})],
    "gravis-finetune": [("gravis", {}), ("supervised", {})],
}


def _load(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _plugins() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _BUILTIN:
            warnings.warn(
                f"plugin method {ep.name!r} ({ep.value}) ignored: the name is built in", stacklevel=3
            )
            continue
        found[ep.name] = ep
    return found


def method_class(name: str):
    """The Method class registered under `name` (built-in or plugin)."""
    if name in _BUILTIN:
        return _load(_BUILTIN[name])
    plugins = _plugins()
    if name in plugins:
        return plugins[name].load()
    if name == "curriculum":
        raise ValueError(
            "'curriculum' is a runner over stages, not a single method: see "
            "medlabeler.engine.ssl.curriculum (Curriculum, CurriculumStage)"
        )
    raise ValueError(f"unknown method {name!r}; known: {list_methods()}")


def list_methods(kind: str | None = None, task: str | None = None) -> list[str]:
    """Names of all methods, optionally only "pretrain" or "train" ones, or those for a task."""
    names = list(_BUILTIN) + sorted(_plugins())
    if kind is None and task is None:
        return names
    out = []
    for name in names:
        if task is None and name in _BUILTIN:  # no import (of torch) to list built-ins by kind
            if _builtin_kind(name) == kind:
                out.append(name)
            continue
        cls = method_class(name)
        if kind is not None and getattr(cls, "kind", None) != kind:
            continue
        if task is not None and task not in getattr(cls, "tasks", ()):
            continue
        out.append(name)
    return out


def _builtin_kind(name: str) -> str:
    """Built-in SSL methods live in medlabeler.engine.ssl (kind "pretrain"), the rest train."""
    return "pretrain" if _BUILTIN[name].startswith("medlabeler.engine.ssl.") else "train"


def method_info(name: str) -> dict[str, Any]:
    """Kind, tasks, label use and config defaults of a method (for UIs and docs)."""
    cls = method_class(name)
    return {
        "name": name,
        "kind": cls.kind,
        "tasks": tuple(cls.tasks),
        "uses_labels": cls.uses_labels,
        "uses_unlabeled": cls.uses_unlabeled,
        "defaults": dict(cls.DEFAULTS),
        "doc": (cls.__doc__ or "").strip(),
    }


def build_method(
    name: str,
    *,
    task: str,
    model_factory: Callable[..., Any],
    num_classes: int,
    in_channels: int,
    config: dict[str, Any] | None = None,
):
    """Build method `name` for `task` with networks from `model_factory(arch=None)`.

    Unknown config keys and unsupported tasks raise ValueError.
    """
    cls = method_class(name)
    if task not in getattr(cls, "tasks", ()):
        raise ValueError(f"method {name!r} supports tasks {tuple(cls.tasks)}, not {task!r}")
    return cls.from_config(
        task=task,
        model_factory=model_factory,
        num_classes=num_classes,
        in_channels=in_channels,
        config=config,
    )


def pipeline_stages(name: str) -> list[tuple[str, dict[str, Any]]]:
    """Stages of a multi-stage recipe, or a single stage for a plain method name."""
    if name in PIPELINES:
        return [(m, dict(c)) for m, c in PIPELINES[name]]
    method_class(name)
    return [(name, {})]
