"""Two-process DDP training from the real CLI (torchrun, gloo on CPU) on a tiny real project."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medlabeler.engine.store import Project
from medlabeler.engine.training import distributed

from .test_pipeline_datasets import make_seg_project

CONFIG = {"cap_threads": False, "image_size": 32, "features": [8, 16, 32], "batch_size": 2,
          "unlabeled_batch_size": 2, "lr": 3e-3, "device": "cpu"}
REPO = Path(__file__).resolve().parents[2]


def torchrun(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "medlabeler", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    make_seg_project(root, n=4, depth=6, label_fraction=0.5).close()
    (root / "config.json").write_text(json.dumps(CONFIG))
    return root


def test_two_gloo_processes_train_one_model_version_on_different_samples(project_dir):
    project = project_dir / "project"
    with Project.open(project, readonly=True) as reader:  # e.g. an app watching the same folder
        assert reader.models() == []
        run = torchrun("train", str(project), "--method", "mean-teacher", "--epochs", "2",
                       "--config", str(project_dir / "config.json"))
        assert run.returncode == 0, run.stdout + run.stderr
        assert [m.version for m in reader.models()] == [1]  # sees the version another process wrote
    assert len(re.findall(r"^trained mean-teacher: model v1\b", run.stdout, re.M)) == 1  # rank 0 alone prints
    losses = [float(x) for x in re.findall(r"step \d+/\d+, loss ([-\w.]+)", run.stderr)]  # one per epoch
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    with Project.open(project, readonly=True) as store:
        models = store.models()
        assert [m.version for m in models] == [1] and store.active_model().version == 1
        summary = models[0].record["run"]["distributed"]
        labeled = {s.id for s in store.samples(split="train", labeled=True)}
        unlabeled = {s.id for s in store.samples(split="train", labeled=False)}
    assert summary["world_size"] == 2 and summary["backend"] == "gloo" and summary["weights_agree"]
    for name, pool in (("labeled", labeled), ("unlabeled", unlabeled)):
        rank0, rank1 = map(set, summary[name])
        assert rank0 and rank1 and not rank0 & rank1, (name, summary[name])
        assert rank0 | rank1 == pool  # every sample was drawn by one rank
    assert f"rank 1 drew {len(summary['labeled'][1])} labeled samples" in run.stderr


def test_only_rank_zero_needs_the_writer_lock(project_dir):
    """Rank 0 fails at once with the lock holder named when another writer has the project."""
    with Project.open(project_dir / "project"):
        run = torchrun("pretrain", str(project_dir / "project"), "--method", "simclr", "--epochs", "1",
                       "--config", str(project_dir / "config.json"))
    assert run.returncode != 0
    assert "project is open for writing in another medlabeler app or command (pid" in run.stderr


def test_outside_torchrun_everything_is_a_plain_run():
    assert not distributed.active() and distributed.world_size() == 1 and distributed.is_main()
    data = list(range(5))
    assert distributed.shard(data, seed=0) is data
    assert distributed.on_main(lambda: 7) == 7 and distributed.broadcast("x") == "x"
    assert distributed.mean(torch.tensor(2.5)) == 2.5
    assert distributed.run_summary([torch.zeros(1)]) is None


def test_two_processes_pretrain_one_encoder_on_different_images(project_dir):
    project = project_dir / "project"
    (project_dir / "pretrain.json").write_text(json.dumps({**CONFIG, "steps": 3}))
    run = torchrun("pretrain", str(project), "--method", "simclr", "--config", str(project_dir / "pretrain.json"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(re.findall(r"^pretrained simclr: model v\d+", run.stdout, re.M)) == 1
    with Project.open(project, readonly=True) as store:
        encoders = [m for m in store.models() if m.method == "pretrain:simclr"]
    assert len(encoders) == 1 and math.isfinite(encoders[0].metrics["loss"])
    summary = encoders[0].record["run"]["distributed"]
    rank0, rank1 = map(set, summary["unlabeled"])
    # 3 steps of 2 images from each rank's half of the 24 images (every split, labels unused)
    assert summary["weights_agree"] and len(rank0) == len(rank1) == 6 and not rank0 & rank1


def _two_ranks(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")
    distributed.prepare_device(torch.device("cpu"))
    calls = []

    def save():
        calls.append(rank)
        return f"v{rank + 1}"

    def events():
        yield f"scored on rank {rank}"
        return {"scored": 3}

    seen = []
    part = distributed.shard(list(range(5)), seed=1)
    result = {
        "part": list(part.indices), "saved": distributed.on_main(save), "calls": calls,
        "events": (run_to_end_list(distributed.on_main_events(events), seen), seen),
        "mean": distributed.mean(torch.tensor(float(rank))),
    }
    try:
        distributed.on_main(lambda: 1 / 0)
    except (ZeroDivisionError, RuntimeError) as exc:
        result["failure"] = f"{type(exc).__name__}: {exc}"
    (out / f"rank{rank}.json").write_text(json.dumps(result))


def run_to_end_list(gen, seen):
    while True:
        try:
            seen.append(next(gen))
        except StopIteration as stop:
            return stop.value


def test_rank_zero_alone_writes_and_every_rank_gets_the_result(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_two_ranks, args=(port, tmp_path), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["saved"] == r1["saved"] == "v1" and r0["calls"] == [0] and r1["calls"] == []
    assert r0["events"] == [{"scored": 3}, ["scored on rank 0"]] and r1["events"] == [{"scored": 3}, []]
    assert r0["mean"] == r1["mean"] == 0.5
    # 5 items over 2 ranks: 3 each, the sixth wraps around to one already given out
    assert len(r0["part"]) == len(r1["part"]) == 3 and set(r0["part"]) | set(r1["part"]) == set(range(5))
    assert r0["failure"].startswith("ZeroDivisionError") and r1["failure"].startswith("RuntimeError: rank 0 failed")


def test_two_processes_run_the_learning_loop_once(tmp_path):
    """`medlabeler learn` under torchrun: the candidate is trained by both ranks, rank 0 alone
    validates, promotes and scores, and prints the decision once; a time budget stops both ranks
    at the same step (rank 0's clock decides)."""
    make_seg_project(tmp_path, n=4, depth=6, label_fraction=0.5).close()
    project = tmp_path / "project"
    (tmp_path / "config.json").write_text(json.dumps({**CONFIG, "steps": 6}))
    run = torchrun("learn", str(project), "--budget-s", "60", "--config", str(tmp_path / "config.json"), timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(re.findall(r"^learn: promoted v\d+\b", run.stdout, re.M)) == 1, run.stdout  # v1 may be an encoder
    assert len(re.findall(r"^learn: ", run.stdout, re.M)) >= 2  # the decision and the summary, once each
    with Project.open(project, readonly=True) as store:
        assert store.active_model().version == 1
        assert store.active_model().record["run"]["distributed"]["weights_agree"]
        promotions = [e for e in store.audit_log() if e.get("action") == "promotion"]
    assert len(promotions) == 1
