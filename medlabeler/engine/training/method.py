"""The Method base class: the seam between a learning method and the training loop.

A method owns its networks (built by the models' `model_factory`), its augmentation and its
loss. The loop owns the optimiser, batches, device, AMP, checkpoints and events. Per step the
loop calls `training_step(batch, progress)`, back-propagates the returned loss, steps the
optimiser over `trainable_parameters()`, then calls `after_optimizer_step(step)`.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Iterator, Literal

import torch
from torch import Tensor, nn

TASKS: tuple[str, ...] = ("classification", "segmentation")


class Method(nn.Module):
    """Base class of every self- and semi-supervised method (see contracts.md, "The seam").

    Subclasses set the class attributes and implement `training_step` and `predictor`.
    `DEFAULTS` lists every config key the method accepts with its default, read from the
    keyword-only defaults of `__init__` (plus `FACTORY_DEFAULTS`, keys `from_config` consumes);
    the registry rejects unknown keys. `kind` is "pretrain" (SSL: the saved product is `encoder_state()`) or
    "train" (the saved product is `predictor()`).
    """

    name: ClassVar[str] = ""
    kind: ClassVar[Literal["pretrain", "train"]] = "train"
    tasks: ClassVar[tuple[str, ...]] = TASKS
    uses_labels: ClassVar[bool] = True
    uses_unlabeled: ClassVar[bool] = False
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    FACTORY_DEFAULTS: ClassVar[dict[str, Any]] = {}
    # FixMatch's mu, unlabeled:labeled batch-size ratio: recorded only; the loop's batches follow
    # the run config's `unlabeled_batch_size`
    unlabeled_ratio: float = 1.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "DEFAULTS" not in cls.__dict__:  # a plugin may still spell its DEFAULTS out
            cls.DEFAULTS = {**_init_defaults(cls), **cls.FACTORY_DEFAULTS}

    def __init__(self, task: str):
        super().__init__()
        if task not in self.tasks:
            raise ValueError(f"method {self.name!r} supports tasks {self.tasks}, not {task!r}")
        self.task: str = task

    # --- construction from a config dict (the registry's path) ----------------------------
    @classmethod
    def resolve_config(cls, config: dict[str, Any] | None) -> dict[str, Any]:
        """`DEFAULTS` updated with `config`; unknown keys raise ValueError naming the known ones."""
        config = dict(config or {})
        unknown = sorted(set(config) - set(cls.DEFAULTS))
        if unknown:
            raise ValueError(
                f"method {cls.name!r} does not know config keys {unknown}; known: {sorted(cls.DEFAULTS)}"
            )
        return {**cls.DEFAULTS, **config}

    def settings(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """The config this method runs with: `config` over `DEFAULTS`, where a key left None (a
        per-task default, chosen in `__init__`) takes the value the method settled on, when it
        keeps it as a plain attribute of the same name. What a saved model records, so that a
        change of a per-task default stays visible in its record."""
        out = {}
        for key, value in {**self.DEFAULTS, **(config or {})}.items():  # as built: no second check
            chosen = getattr(self, key, None) if value is None else value
            out[key] = chosen if isinstance(chosen, (bool, int, float, str, type(None))) else value
        return out

    @classmethod
    def from_config(
        cls, *, task: str, model_factory, num_classes: int, in_channels: int, config: dict[str, Any] | None
    ) -> "Method":
        """Build the method with one network from `model_factory()` (override for more)."""
        cfg = cls.resolve_config(config)
        return cls(model_factory(), task=task, num_classes=num_classes, **cfg)

    # --- what the loop calls -------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], progress: float) -> tuple[Tensor, dict[str, float]]:
        """One step: returns (scalar loss to back-propagate, logs of plain floats)."""
        raise NotImplementedError

    def after_optimizer_step(self, step: int) -> None:
        """Called after each optimiser step with the number of steps done (EMA updates etc.)."""

    def predictor(self) -> nn.Module:
        """The network used for evaluation and prediction."""
        raise NotImplementedError

    def encoder_state(self) -> dict[str, Tensor]:
        """Encoder weights to save (what SSL pretrains and fine-tuning reuses)."""
        return {k: v.detach().clone() for k, v in self.predictor().encoder.state_dict().items()}

    def load_encoder_state(self, state: dict[str, Tensor]) -> None:
        """Start from pretrained encoder weights (call before training; keeps copies in sync)."""
        self.predictor().encoder.load_state_dict(state)
        self._remember_pretrained(self.predictor().encoder)

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters `load_encoder_state` filled: fit gives them their own learning
        rate (`FitConfig.encoder_lr_scale`), so that the decoder, new, learns faster than them."""
        loaded = getattr(self, "_pretrained_ids", frozenset())
        return [p for p in self.trainable_parameters() if id(p) in loaded]

    def _remember_pretrained(self, *modules: nn.Module) -> None:
        # ids, not the modules: a module attribute would enter the state_dict a second time
        self._pretrained_ids = frozenset(id(p) for module in modules for p in module.parameters())

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters the optimiser should update (EMA teachers are excluded)."""
        return (p for p in self.parameters() if p.requires_grad)

    # --- helpers for subclasses ----------------------------------------------------------
    @staticmethod
    def _require(batch: dict[str, Tensor], *keys: str, method: str = "") -> None:
        from medlabeler.engine.errors import TrainingError

        for key in keys:
            value = batch.get(key)
            if value is None or value.shape[0] == 0:
                raise TrainingError(f"method {method!r} needs batch key {key!r} with at least one sample")

    @staticmethod
    def _generator(seed: int | None) -> torch.Generator | None:
        return None if seed is None else torch.Generator().manual_seed(int(seed))

    @staticmethod
    def _has(batch: dict[str, Tensor], key: str) -> bool:
        value = batch.get(key)
        return value is not None and value.shape[0] > 0


def full_precision(forward):
    """Decorator for loss `forward`s: run outside autocast on float32 inputs, so similarity
    matrices, softmaxes and logs are computed in full precision under AMP."""
    import functools

    @functools.wraps(forward)
    def wrapper(self, *args, **kwargs):
        device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        args = tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
        with torch.autocast(device_type=device, enabled=False):
            return forward(self, *args, **kwargs)

    return wrapper


def features_and_logits(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Pooled features (B, D) and logits of `model` on `x`.

    Uses `model.forward_with_features(x) -> (logits, features)` when the model offers it (one
    pass), else calls `forward_features` and `forward` (two passes).
    """
    both = getattr(model, "forward_with_features", None)
    if callable(both):
        logits, feats = both(x)
        return feats, logits
    return model.forward_features(x), model(x)


def to_float_logs(logs: dict[str, Any]) -> dict[str, float]:
    """Turn tensors/numbers into plain floats for the loop's events."""
    out: dict[str, float] = {}
    for key, value in logs.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().float().item()
        out[key] = float(value)
    return out


def _init_defaults(cls: type) -> dict[str, Any]:
    """Keyword-only defaults of ``cls.__init__``; ``**kwargs`` passed on inherit the parent's."""
    defaults: dict[str, Any] = {}
    for param in inspect.signature(cls.__init__).parameters.values():
        if param.kind is param.VAR_KEYWORD:
            parent = next(b for b in cls.__mro__[1:] if hasattr(b, "DEFAULTS"))
            defaults.update(parent.DEFAULTS)
        elif param.kind is param.KEYWORD_ONLY and param.default is not param.empty and param.name != "num_classes":
            defaults[param.name] = param.default
    return defaults
