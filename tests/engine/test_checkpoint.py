"""Weights files: safetensors round trip with the JSON record, pickles refused, atomic writes."""

import json
import os
import pickle

import pytest
import torch

from medlabeler.engine.errors import InputError
from medlabeler.engine.models import build_segmenter
from medlabeler.engine.training import load_weights, save_weights
from medlabeler.engine.training import checkpoint as ckpt


def test_round_trip_keeps_tensors_and_record(tmp_path):
    model = build_segmenter("unet", 1, 3, features=(4, 8, 16))
    record = {"method": "supervised", "metrics": {"dice": 0.5}, "labels": {"count": 3}, "features": (4, 8, 16)}
    path = save_weights(tmp_path / "w.safetensors", model.state_dict(), record)
    state, loaded = load_weights(path)
    original = model.state_dict()
    assert set(state) == set(original)
    assert all(torch.equal(state[k], original[k]) and state[k].dtype == original[k].dtype for k in state)
    assert loaded == {**record, "features": [4, 8, 16]}
    sidecar = json.loads((tmp_path / "w.json").read_text())
    assert sidecar == loaded
    fresh = build_segmenter("unet", 1, 3, features=(4, 8, 16))
    fresh.load_state_dict(state)


def test_record_read_from_sidecar_when_metadata_lacks_it(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.ones(2)}, str(tmp_path / "plain.safetensors"))
    state, record = load_weights(tmp_path / "plain.safetensors")
    assert torch.equal(state["a"], torch.ones(2)) and record == {}
    (tmp_path / "plain.json").write_text('{"method": "x"}')
    assert load_weights(tmp_path / "plain.safetensors")[1] == {"method": "x"}


def test_shared_tensors_are_saved(tmp_path):
    """A method holding the same network twice (tied weights) still saves."""
    weight = torch.randn(3, 3)
    save_weights(tmp_path / "tied.safetensors", {"a.w": weight, "b.w": weight}, {})
    state, _ = load_weights(tmp_path / "tied.safetensors")
    assert torch.equal(state["a.w"], state["b.w"])


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickle_files_are_refused(tmp_path, writer):
    path = tmp_path / "weights.safetensors"
    if writer == "torch.save":
        torch.save({"w": torch.ones(2)}, path)
    else:
        path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    with pytest.raises(InputError, match="refuses to load pickles") as info:
        load_weights(path)
    assert str(path) in str(info.value)


def test_never_calls_torch_load(tmp_path, monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    path = save_weights(tmp_path / "w.safetensors", {"x": torch.zeros(3)}, {"k": 1})
    assert load_weights(path)[1] == {"k": 1}


def test_damaged_and_missing_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_weights(tmp_path / "absent.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"hello, not weights at all")
    with pytest.raises(InputError, match="not a safetensors"):
        load_weights(junk)
    good = save_weights(tmp_path / "good.safetensors", {"x": torch.arange(1000.0)}, {})
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(InputError, match=str(truncated.name)):
        load_weights(truncated)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = save_weights(tmp_path / "w.safetensors", {"x": torch.ones(4)}, {"v": 1})
    before = path.read_bytes()

    def fail_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(OSError, match="disk full"):
        save_weights(path, {"x": torch.zeros(4)}, {"v": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.json", "w.safetensors"]  # no temp files left


def test_atomic_write_fsyncs_before_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    ckpt.atomic_write_bytes(tmp_path / "f.bin", b"data")
    assert calls[:2] == ["fsync", "replace"] and (tmp_path / "f.bin").read_bytes() == b"data"


def test_resume_point_round_trip(tmp_path):
    model = build_segmenter("unet", 1, 2, features=(4, 8))
    path = ckpt.save_resume_point(tmp_path / "r.safetensors", model, step=7, epoch=2, seed=3, total_steps=20)
    fresh = build_segmenter("unet", 1, 2, features=(4, 8))
    record = ckpt.load_resume_point(path, fresh)
    assert record["step"] == 7 and record["seed"] == 3 and record["kind"] == "resume"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    plain = save_weights(tmp_path / "plain.safetensors", model.state_dict(), {"kind": "model"})
    with pytest.raises(InputError, match="not a resume point"):
        ckpt.load_resume_point(plain, fresh)
    with pytest.raises(InputError, match="does not match"):
        ckpt.load_resume_point(path, build_segmenter("unet", 1, 3, features=(4, 8)))
