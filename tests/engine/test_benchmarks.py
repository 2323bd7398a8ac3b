"""The benchmarks run the real product loop end to end on the MNI152 brain MRI (tiny settings)."""

import csv
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from medlabeler.benchmarks import common
from medlabeler.benchmarks.datasets import PATCH_CLASSES, build_tissue_patches, load_dataset, mni_truth
from medlabeler.benchmarks.pipelines import _grow, auto_text, harmful, paired_delta, parse_label_counts, parse_pipelines
from medlabeler.cli import main
from medlabeler.engine.errors import InputError
from medlabeler.engine.project.project_import import create_project
from medlabeler.engine.store import Project

TINY = ["--steps", "2", "--image-size", "32", "--config", json.dumps({"features": [4, 8, 16]})]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_active_learning_benchmark_runs_the_loop_and_writes_curves(tmp_path, capsys):
    out = tmp_path / "al"
    code = main(["benchmark", "active-learning", "--dataset", "mni-tissue-seg", "--strategies", "random,entropy",
                 "--rounds", "1", "--per-round", "2", "--seeds", "1", "--keep-projects", "--out", str(out), *TINY])
    assert code == 0
    printed = capsys.readouterr().out
    assert "medlabeler benchmark active-learning --dataset mni-tissue-seg --strategies random,entropy" in printed
    assert "| strategy | labels to target" in printed and "| random |" in printed and "| entropy |" in printed

    curves = _rows(out / "curves.csv")
    assert list(curves[0]) == ["strategy", "seed", "round", "labels", "dice"]
    assert [(r["strategy"], r["round"], r["labels"]) for r in curves] == [
        ("random", "0", "2"), ("random", "1", "4"), ("entropy", "0", "2"), ("entropy", "1", "4")]
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in curves)
    assert curves[0]["dice"] == curves[2]["dice"]  # round 0 is the same trained model for every strategy
    assert list(_rows(out / "summary.csv")[0]) == ["strategy", "labels", "dice_mean", "dice_std", "seeds"]
    reach = _rows(out / "reach.csv")
    assert [r["strategy"] for r in reach] == ["random", "entropy"] and "labels_mean" in reach[0]
    with Image.open(out / "curves.png") as png:
        assert png.size[0] > 300
    rounds = _rows(out / "rounds.csv")
    full = [r for r in rounds if r["strategy"] == "(full supervision)"]
    assert len(full) == 1 and int(full[0]["labels"]) == 151  # every train slice of the 10-slab split

    # the run's project: val/test revealed up front, train labels only what was chosen, by the oracle
    with Project.open(out / "projects" / "seed0" / "entropy", readonly=True) as project:
        status = project.status()["per_split"]
        assert status["val"]["labeled"] == status["val"]["samples"] > 0
        assert status["test"]["labeled"] == status["test"]["samples"] > 0
        assert status["train"]["labeled"] == 4
        truth = mni_truth()
        for sample in project.samples(split="train", labeled=True):
            label = project.label(sample.id)
            assert label.author == "oracle" and label.origin == "manual"
            assert np.array_equal(project.load_label(sample.id), truth[sample.slice_index])
        chosen = {s.id for s in project.samples(split="train", labeled=True)}
        first = {int(i) for i in rounds[0]["chosen"].split()}  # round 0 slice indices
        assert {project.sample(i).slice_index for i in chosen} >= first


def test_pipelines_benchmark_reports_each_pipeline_and_label_count(tmp_path, capsys):
    out = tmp_path / "pipes"
    code = main(["benchmark", "pipelines", "--dataset", "mni-tissue-seg", "--methods", "supervised,pcl+supervised,auto",
                 "--seeds", "1", "--labels", "3,2", "--pretrain-steps", "2", "--out", str(out), *TINY])
    assert code == 0
    printed = capsys.readouterr().out
    auto = auto_text("segmentation")
    assert "| supervised |" in printed and "| pcl+supervised |" in printed and f"| {auto} |" in printed
    assert "## 2 labels" in printed and "## 3 labels" in printed and "Do no harm" in printed
    rows = _rows(out / "pipelines.csv")
    assert [(r["pipeline"], r["labels"]) for r in rows] == [
        ("supervised", "2"), ("pcl+supervised", "2"), (auto, "2"),
        ("supervised", "3"), ("pcl+supervised", "3"), (auto, "3")]
    assert all(0.0 <= float(r["dice"]) <= 1.0 and 0.0 <= float(r["val_dice"]) <= 1.0 for r in rows)
    assert float(rows[0]["pretrain_s"]) == 0.0 and float(rows[1]["pretrain_s"]) > 0
    assert rows[1]["pretrain_s"] == rows[4]["pretrain_s"]  # one pretraining serves both label counts
    assert "pipelines on mni-tissue-seg" in (out / "pipelines.md").read_text().lower()


def test_label_counts_grow_nested_and_full_comes_last():
    assert parse_label_counts("16, full,4,8") == [4, 8, 16, "full"]
    with pytest.raises(InputError, match="--labels"):
        parse_label_counts("4,many")
    pool = [SimpleNamespace(id=i) for i in range(40)]
    data = SimpleNamespace(task="classification", truth=lambda s: s.id % 2)
    four = _grow(pool, [], 4, 0, data)
    eight = _grow(pool, four, 8, 0, data)
    assert len(four) == 4 and len(eight) == 8 and eight[:4] == four
    assert _grow(pool, eight, "full", 0, data) == pool


def test_harm_is_the_paired_difference_from_supervised():
    rows = [{"pipeline": p, "labels": "4", "seed": s, "dice": d} for p, s, d in [
        ("supervised", 0, 0.80), ("supervised", 1, 0.70), ("a", 0, 0.82), ("a", 1, 0.69), ("b", 0, 0.75), ("b", 1, 0.70)]]
    assert paired_delta(rows, "a", 4, "dice")[0] == pytest.approx(0.005)
    assert harmful(rows, "dice") == [("b", "4", pytest.approx(-0.025))]


def test_parse_pipelines_checks_the_method_names():
    assert parse_pipelines("supervised, pcl+mean-teacher") == [(None, "supervised"), ("pcl", "mean-teacher")]
    assert parse_pipelines("auto") == [(None, "auto")]
    everything = parse_pipelines("all", "segmentation")
    assert (None, "supervised") in everything and (None, "cross-teaching") in everything
    assert ("pcl", "supervised") in everything and everything[-1] == (None, "auto")
    assert (None, "cross-teaching") not in parse_pipelines("all", "classification")
    with pytest.raises(InputError, match="unknown pipeline 'pcl\\+nothing'"):
        parse_pipelines("pcl+nothing")
    with pytest.raises(InputError, match="unknown pipeline 'supervised\\+pcl'"):
        parse_pipelines("supervised+pcl")


def test_spread_pick_spreads_through_the_samples():
    picks = common.spread_pick(list(range(100)), 5, seed=3)
    assert len(picks) == 5 == len(set(picks))
    assert all(abs(p - t) <= 1 for p, t in zip(picks, [0, 25, 50, 74, 99]) if 0 < t < 99)
    assert common.spread_pick(list(range(100)), 4, seed=0, skip_empty=lambda s: s < 50)[0] >= 50


def test_tissue_patches_are_balanced_true_to_the_masks_and_import_as_isic(tmp_path):
    folder = tmp_path / "patches"
    manifest = build_tissue_patches(folder, n_patches=45, classes=3, slabs=5)
    names = PATCH_CLASSES[3]
    assert manifest["counts"] == {n: 15 for n in names}
    truth = mni_truth()
    for cls, name in enumerate(names):
        files = sorted((folder / name).glob("*.png"))
        assert len(files) == 15
        for f in files:
            with Image.open(f) as im:
                assert im.size == (32, 32) and im.mode == "L"
            _slab, z, y, x = (int(part[1:] if part[0] in "zyx" else part[4:]) for part in f.stem.split("_"))
            centre = truth[z, y - 4:y + 4, x - 4:x + 4]
            label = {0: 1, 1: 2, 2: 0}[cls]  # class order grey, white, other -> mask values 1, 2, 0
            assert (centre == label).mean() >= 0.75
    # the ISIC import path labels every patch with its folder's class
    project, report = create_project(tmp_path / "isic", folder, task="classification")
    with project:
        assert report.added == report.labeled == 45 and list(project.task.names) == sorted(names)
        for sample in project.samples():
            assert project.task.names[project.load_label(sample.id)] == sample.path.split("/")[-2]
    # a labeled project as --dataset: fresh projects over the same images, its labels are the oracle
    data = load_dataset(str(tmp_path / "isic"), tmp_path / "work")
    assert (data.task, data.metric) == ("classification", "auc")
    with data.make(tmp_path / "again") as project:
        assert project.status()["labeled"] == 0 and len(project.samples()) == 45
        assert all(project.task.names[data.truth(s)] == s.path.split("/")[-2] for s in project.samples())
    # the benchmark's own project: labels hidden, one slab never spans two splits
    data = load_dataset("mni-tissue-cls", tmp_path / "work", patches=30, classes=2)
    with data.make(tmp_path / "bench") as project:
        assert project.status()["labeled"] == 0
        splits_of_slab: dict[str, set] = {}
        for sample in project.samples():
            splits_of_slab.setdefault(sample.path.split("/")[-1][:6], set()).add(sample.split)
            assert data.truth(sample) == list(project.task.names).index(sample.path.split("/")[-2])
        assert all(len(s) == 1 for s in splits_of_slab.values()) and len(splits_of_slab) > 2
        assert {data.truth(s) for s in project.samples()} == {0, 1}


def test_tissue_volumes_are_six_scans_of_the_brain_split_by_scan_with_their_reference(tmp_path):
    """mni-tissue-vol: whole scans for the 3D path, held out by scan, each labeled by the reference
    cut where the scan lies in the brain."""
    import numpy as np

    data = load_dataset("mni-tissue-vol", tmp_path / "work")
    project = data.make(tmp_path / "project")
    try:
        samples = project.samples()
        assert len(samples) == 6 and all(s.is_volume and s.slice_index is None for s in samples)
        assert sorted(s.split for s in samples) == ["test", "train", "train", "train", "train", "val"]
        truth = mni_truth()
        total = sum(int((data.truth(s) > 0).sum()) for s in samples)
        assert total == int((truth > 0).sum())  # the six parts tile the brain, none lost or doubled
        for s in samples:
            label = data.truth(s)
            assert label.shape == tuple(s.shape)
            image = np.asarray(project.load_pixels(s))
            assert image[label > 0].mean() > 2 * max(1.0, image[label == 0].mean())  # tissue is brighter
    finally:
        project.close()


def test_unknown_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="unknown benchmark dataset"):
        load_dataset(str(tmp_path / "nothing-here"), tmp_path)


def test_throughput_benchmark_compares_our_loop_with_a_plain_loop(tmp_path, capsys):
    out = tmp_path / "speed"
    code = main(["benchmark", "throughput", "--labels", "2", "--repeats", "1", "--pretrain-steps", "7",
                 "--out", str(out), *TINY])
    assert code == 0
    printed = capsys.readouterr().out
    assert "ours / plain = " in printed and "pcl" in printed and "simclr" in printed
    rows = _rows(out / "throughput.csv")
    assert {(r["benchmark"], r["loop"]) for r in rows} == {
        ("train", "ours"), ("train", "plain"), ("train", "plain+augment"), ("pretrain", "simclr"), ("pretrain", "pcl")}
    assert all(float(r["images_per_second"]) > 0 for r in rows)


def test_a_draw_of_labels_for_a_classifier_holds_two_classes():
    """No run trains a classifier on one class now: a benchmark's random first labels must not be one."""
    from medlabeler.benchmarks.common import with_two_classes

    pool = [SimpleNamespace(id=i) for i in range(10)]
    truth = {i: int(i >= 8) for i in range(10)}  # classes 0 (ids 0-7) and 1 (ids 8, 9)
    data = SimpleNamespace(task="classification", truth=lambda s: truth[s.id])
    picked = with_two_classes(pool[:3], pool, data, seed=0)
    assert [s.id for s in picked[:2]] == [0, 1] and picked[2].id in (8, 9)
    assert with_two_classes([pool[0], pool[8]], pool, data, seed=0) == [pool[0], pool[8]]  # two already
    assert with_two_classes(pool[:3], pool, SimpleNamespace(task="segmentation"), seed=0) == pool[:3]
