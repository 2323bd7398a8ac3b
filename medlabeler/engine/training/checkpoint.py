"""Weights on disk: safetensors only (never pickle), with a JSON record, written atomically.

`save_weights` stores the record both in the safetensors metadata (key "medlabeler") and in a
`.json` sidecar next to the file, so a person can read it without Python. `load_weights` reads
the metadata first and falls back to the sidecar. A pickle / `torch.save` file is refused with a
clear error: unpickling can run arbitrary code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from medlabeler.engine.errors import InputError
from medlabeler.engine.store.files import fsync_dir

FORMAT = "medlabeler-weights/1"
RECORD_KEY = "medlabeler"


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name.removesuffix(".safetensors") + ".json")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to a temp file in the same folder, fsync it, rename over `path`, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _plain_state(state_dict: dict[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state entry {key!r} is a {type(value).__name__}, not a tensor")
        # clone: safetensors refuses tensors sharing memory (tied weights, modules held twice)
        out[key] = value.detach().to("cpu").contiguous().clone()
    return out


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor], record: dict | None = None) -> Path:
    """Save tensors + JSON `record` as safetensors at `path` (and `<stem>.json`), atomically."""
    from safetensors.torch import save

    path = Path(path)
    record = dict(record or {})
    text = json.dumps(record, sort_keys=True, default=_json_default)
    data = save(_plain_state(state_dict), metadata={"format": FORMAT, RECORD_KEY: text})
    atomic_write_bytes(path, data)
    atomic_write_bytes(sidecar_path(path), (json.dumps(json.loads(text), indent=1, sort_keys=True) + "\n").encode())
    return path


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"record value of type {type(value).__name__} is not JSON")


def _check_is_safetensors(path: Path) -> None:
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(9)
    except FileNotFoundError:
        raise InputError(path, "weights file not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot read weights file ({exc.strerror})") from None
    header_len = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
    if len(head) >= 9 and head[8:9] == b"{" and header_len + 8 <= size:
        return
    if head[:1] == b"\x80" or head[:4] == b"PK\x03\x04" or head[:2] in (b"(d", b"(l", b"}q", b"]q"):
        raise InputError(path, "is a pickle / torch.save file; medlabeler refuses to load pickles "
                               "(loading one can run arbitrary code). Convert the weights to safetensors.")
    raise InputError(path, "is not a safetensors weights file")


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Read a safetensors file -> (state_dict, record). Never unpickles anything."""
    from safetensors import safe_open

    path = Path(path)
    _check_is_safetensors(path)
    try:
        state = {}
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            metadata = handle.metadata() or {}
            for key in handle.keys():
                state[key] = handle.get_tensor(key)
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise InputError(path, f"damaged safetensors file ({exc})") from None
    record: dict = {}
    if RECORD_KEY in metadata:
        try:
            record = json.loads(metadata[RECORD_KEY])
        except json.JSONDecodeError:
            raise InputError(path, "the record in the safetensors metadata is not valid JSON") from None
    elif sidecar_path(path).exists():
        try:
            record = json.loads(sidecar_path(path).read_text())
        except json.JSONDecodeError:
            raise InputError(sidecar_path(path), "record sidecar is not valid JSON") from None
    return state, record


def save_resume_point(path: str | Path, module: torch.nn.Module, *, step: int, epoch: int, seed: int,
                      total_steps: int, extra: dict | None = None) -> Path:
    """An optimizer-free resume point: all weights of `module` (a Method: student, teacher, heads)
    plus the step, epoch and seed the run continues from."""
    record = {"kind": "resume", "step": int(step), "epoch": int(epoch), "seed": int(seed),
              "total_steps": int(total_steps), **(extra or {})}
    return save_weights(path, module.state_dict(), record)


def load_resume_point(path: str | Path, module: torch.nn.Module) -> dict:
    """Load a resume point into `module`; returns its record (step, epoch, seed, total_steps)."""
    state, record = load_weights(path)
    if record.get("kind") != "resume":
        raise InputError(path, "is not a resume point (saved by a training run's checkpoint_dir)")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(path, f"resume point does not match this method's networks: {exc}") from None
    return record
