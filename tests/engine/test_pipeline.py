"""The pipeline on real projects: train, pretrain -> fine-tune, evaluate, predict, cancel, NaN."""

import math

import numpy as np
import pytest
import torch

from medlabeler.engine.errors import ProjectError, TrainingError
from medlabeler.engine.training import CancelToken, load_weights, run_to_end
from medlabeler.engine.training.method import Method
from medlabeler.engine.workflows.evaluate import evaluate_project
from medlabeler.engine.workflows.model_versions import load_model
from medlabeler.engine.workflows.predict import predict_samples
from medlabeler.engine.workflows.pretrain import pretrain_project
from medlabeler.engine.workflows.run_config import DEFAULTS, resolve_config
from medlabeler.engine.workflows.train import train_project

from .test_pipeline_datasets import make_cls_project, make_seg_project

SEG = {"cap_threads": False, "image_size": 32, "features": [8, 16, 32], "batch_size": 4, "unlabeled_batch_size": 4, "lr": 3e-3}
CLS = {"cap_threads": False, "image_size": 32, "batch_size": 4, "unlabeled_batch_size": 4, "steps_per_epoch": 2, "lr": 1e-3}


@pytest.fixture(scope="module")
def seg_project(tmp_path_factory):
    project = make_seg_project(tmp_path_factory.mktemp("seg"), n=4, depth=6)
    yield project
    project.close()


def test_train_segmentation_stores_an_active_version_with_its_record(seg_project):
    events = []
    result = run_to_end(train_project(seg_project, method="supervised", epochs=8, config=SEG), events.append)
    assert result.version is not None and not result.cancelled
    mv = seg_project.active_model()
    assert mv.version == result.version and mv.method == "supervised" and mv.parent is None
    record = mv.record
    train_labeled = len(seg_project.samples(split="train", labeled=True))
    assert record["labels"]["count"] == train_labeled + len(seg_project.samples(split="val", labeled=True))
    assert len(record["labels"]["ids_sha1"]) == 40 and record["n_labels"] == train_labeled == mv.n_labels
    assert record["model"]["arch"] == "unet" and record["model"]["features"] == [8, 16, 32]
    assert record["config"]["image_size"] == 32 and record["preprocess"]["size"] == 32
    # segmentation trains at native resolution by default (random crops of image_size)
    assert record["preprocess"]["resize"] == "crop" and record["preprocess"]["max_side"] == 256
    assert "dice" in record["metrics"] and mv.metrics["dice"] == record["metrics"]["dice"]
    assert events[-1].kind == "done" and f"v{mv.version}" in events[-1].message
    assert [e.kind for e in events].count("done") == 1
    # the weights file is safetensors carrying the same record
    state, saved = load_weights(mv.path)
    assert saved["method"] == "supervised" and any(k.startswith("encoder.") for k in state)
    # it learned the bright square: validation and test Dice well above an empty or full guess
    assert result.metrics["dice"] > 0.6
    test = evaluate_project(seg_project, split="test")
    assert {"dice", "iou", "dice_lesion", "iou_lesion", "hd95_lesion", "n"} <= set(test)
    assert test["n"] == len(seg_project.samples(split="test", labeled=True)) and test["dice"] > 0.6
    assert math.isfinite(test["hd95_lesion"])


def test_predict_samples_maps_back_to_original_size(seg_project):
    samples = seg_project.samples()[:3]
    out = dict(predict_samples(seg_project, [s.id for s in samples], batch_size=2))
    for s in samples:
        assert out[s.id].shape == (2, *s.shape) and out[s.id].dtype == np.float32
        assert np.allclose(out[s.id].sum(0), 1, atol=1e-4)
    mc = dict(predict_samples(seg_project, [samples[0].id], mc_samples=3, seed=0))
    assert mc[samples[0].id].shape == (3, 2, *samples[0].shape)


def test_pretrain_then_finetune_from_the_encoder(seg_project):
    before = {m.version for m in seg_project.models()}
    active = seg_project.active_model()
    result = run_to_end(pretrain_project(seg_project, method="simclr", epochs=1,
                                         config={**SEG, "steps_per_epoch": 2}))
    pre = seg_project.model(result.version)
    assert pre.method == "pretrain:simclr" and pre.version not in before
    assert seg_project.active_model() == active  # an encoder never becomes the active predictor
    encoder_state, record = load_weights(pre.path)
    assert record["kind"] == "encoder" and not any(k.startswith("encoder.") for k in encoder_state)
    with pytest.raises(ProjectError, match="pretrained encoder"):
        load_model(seg_project, pre.version)

    seen = {}
    import medlabeler.engine.methods as methods

    real_build = methods.build_method

    def spy(*args, **kw):
        method = real_build(*args, **kw)
        original = method.load_encoder_state

        def load(state):
            seen["state"] = {k: v.clone() for k, v in state.items()}
            original(state)
            seen["after"] = {k: v.clone() for k, v in method.predictor().encoder.state_dict().items()}

        method.load_encoder_state = load
        return method

    methods.build_method = spy
    try:
        result = run_to_end(train_project(seg_project, method="supervised", init="pretrained", epochs=1,
                                          config={**SEG, "steps_per_epoch": 1}))
    finally:
        methods.build_method = real_build
    assert all(torch.equal(seen["after"][k], encoder_state[k]) for k in encoder_state)
    tuned = seg_project.model(result.version)
    assert tuned.parent == pre.version and "pretrain:simclr" in tuned.record["init"]


def test_cancel_keeps_the_previous_model(seg_project):
    before = seg_project.models()
    active = seg_project.active_model()
    cancel = CancelToken()
    steps = []

    def on_event(event):
        if event.kind == "step":
            steps.append(event.step)
            cancel.cancel()

    result = run_to_end(train_project(seg_project, epochs=5, config=SEG, cancel=cancel), on_event)
    assert result.cancelled and result.version is None and steps == [1]
    assert seg_project.models() == before and seg_project.active_model() == active


class NaNMethod(Method):
    name = "nan"
    uses_labels = True

    def __init__(self, model, task):
        super().__init__(task)
        self.model = model

    def training_step(self, batch, progress):
        return self.model(batch["x"]).mean() * float("nan"), {}

    def predictor(self):
        return self.model


def test_nan_loss_saves_nothing(seg_project, monkeypatch):
    import medlabeler.engine.methods as methods

    monkeypatch.setattr(methods, "build_method",
                        lambda name, *, task, model_factory, **kw: NaNMethod(model_factory(), task))
    before = seg_project.models()
    files = sorted(p.name for p in (seg_project.root / "models").iterdir())
    with pytest.raises(TrainingError, match="loss became nan"):
        run_to_end(train_project(seg_project, epochs=1, config=SEG))
    assert seg_project.models() == before
    assert sorted(p.name for p in (seg_project.root / "models").iterdir()) == files
    assert not list(seg_project.root.glob(".train-*"))


def test_classification_pipeline(tmp_path):
    project = make_cls_project(tmp_path, n=24)
    result = run_to_end(train_project(project, method="supervised", epochs=2, config=CLS))
    mv = project.active_model()
    assert mv.version == result.version and mv.record["model"]["arch"] == "resnet18"
    assert mv.record["preprocess"]["resize"] == "letterbox"  # classification sees whole images
    metrics = evaluate_project(project, split="test")
    assert {"auc", "accuracy", "balanced_accuracy", "recall_normal", "recall_lesion", "n"} <= set(metrics)
    ids = [s.id for s in project.samples(split="test")]
    probs = dict(predict_samples(project, ids))
    assert all(p.shape == (2,) and abs(float(p.sum()) - 1) < 1e-4 for p in probs.values())
    with pytest.raises(TrainingError, match="init must be"):
        run_to_end(train_project(project, init="yesterday", epochs=1, config=CLS))
    project.close()


def test_grey_photos_among_colour_ones_train_and_predict_with_three_channels(tmp_path):
    """One grey PNG in a folder of colour photos stopped all training ("the project mixes grey and
    colour images"), and the app's loop waited for ever without a word."""
    from PIL import Image

    from medlabeler.engine.io import scan_sources
    from medlabeler.engine.store import Project
    from tests.engine.test_pipeline_datasets import fixed_groups, write_pngs

    classes = write_pngs(tmp_path / "images", 16, rgb=True)
    grey = tmp_path / "images" / "img00.png"
    Image.fromarray(np.asarray(Image.open(grey))[..., 0]).save(grey)  # one grey photo, class 0
    infos, _ = scan_sources(tmp_path / "images")
    project = Project.create(tmp_path / "project", task="classification", names=["normal", "lesion"], seed=0)
    project.add_sources(fixed_groups(infos))
    for sample in project.samples():
        project.save_label(sample.id, classes[str(sample.path)])
    run_to_end(train_project(project, method="supervised", steps=2, config=CLS))
    record = project.active_model().record
    assert record["preprocess"]["grey_as_rgb"] is True
    grey_id = next(s.id for s in project.samples() if s.path == str(grey.resolve()))
    ((_, probs),) = predict_samples(project, [grey_id])
    assert probs.shape == (2,)
    # decided on the whole project: a grey image in the test split alone still gets three channels
    from medlabeler.engine.data.datasets import Preprocess, SampleTensors, input_kind

    tensors = SampleTensors(project, Preprocess())
    assert input_kind([s for s in project.samples() if s.id != grey_id], tensors) == (3, 2)
    assert tensors.preprocess.grey_as_rgb and tensors.image(project.sample(grey_id)).shape[0] == 3
    project.close()


def test_no_labels_is_a_clear_error(tmp_path):
    project = make_seg_project(tmp_path, n=2, depth=3, label_fraction=0.0)
    assert project.status()["labeled"] == 0
    with pytest.raises(TrainingError, match="none are labeled"):
        run_to_end(train_project(project, epochs=1, config=SEG))
    with pytest.raises(TrainingError, match="no pretrained encoder"):
        run_to_end(train_project(project, init="pretrained", epochs=1, config=SEG))
    with pytest.raises(ProjectError, match="no trained model"):
        evaluate_project(project)
    project.close()


def test_config_resolution():
    run, method_cfg = resolve_config({"image_size": 64, "augment": "strong"}, "supervised", epochs=3, seed=7)
    assert run["image_size"] == 64 and run["epochs"] == 3 and run["seed"] == 7
    assert method_cfg == {"augment": "strong", "seed": 7}
    assert set(DEFAULTS) <= set(run)
    with pytest.raises(ValueError, match="unknown config keys.*'imagesize'"):
        resolve_config({"imagesize": 64}, "supervised")


class PlainSupervised(Method):
    """Cross-entropy without augmentation (the methods' augmentations are 2D only)."""

    name = "plain"
    uses_labels = True

    def __init__(self, model, task):
        super().__init__(task)
        self.model = model

    def training_step(self, batch, progress):
        loss = torch.nn.functional.cross_entropy(self.model(batch["x"]), batch["y"])
        return loss, {}

    def predictor(self):
        return self.model


def test_whole_volumes_train_a_3d_unet(tmp_path, monkeypatch):
    import medlabeler.engine.methods as methods
    from medlabeler.engine.io import scan_sources
    from medlabeler.engine.store import Project

    from .test_pipeline_datasets import fixed_groups, write_volumes

    write_volumes(tmp_path / "images", n=4, depth=8, shape=(20, 24))
    infos, _ = scan_sources(tmp_path / "images")
    project = Project.create(tmp_path / "project", task="segmentation", names=["lesion"], unit="image")
    project.add_sources(fixed_groups(infos))
    for sample in project.samples():
        project.save_label(sample.id, (project.load_pixels(sample) > 140).astype(np.uint8))
    monkeypatch.setattr(methods, "build_method",
                        lambda name, *, task, model_factory, **kw: PlainSupervised(model_factory(), task))
    config = {"cap_threads": False, "volume_size": 16, "features": [4, 8], "batch_size": 2, "steps": 2}
    result = run_to_end(train_project(project, epochs=1, config=config))
    mv = project.model(result.version)
    assert mv.record["model"]["arch"] == "unet3d" and mv.record["spatial_dims"] == 3
    # the recommended run trains on native-resolution patches and predicts with a sliding window
    assert mv.record["preprocess"]["resize"] == "crop" and mv.record["preprocess"]["volume_size"] == 16
    sample = project.samples()[0]
    (sid, probs), = predict_samples(project, [sample.id])
    assert probs.shape == (2, 8, 20, 24)
    assert "dice_lesion" in evaluate_project(project, split="test")
    with pytest.raises(TrainingError, match="whole volumes"):
        run_to_end(train_project(project, epochs=1, config={**config, "arch": "unet"}))
    project.close()


def test_curriculum_pretraining_runs_its_stages(seg_project, tmp_path):
    from .test_pipeline_datasets import write_pngs

    write_pngs(tmp_path / "generic", n=6, shape=(40, 40), rgb=True)  # colour: converted to grey
    stages = [
        {"name": "generic", "method": "simclr", "pool": "generic", "source": str(tmp_path / "generic"),
         "max_epochs": 1},
        {"name": "project", "method": "simclr", "pool": "all", "max_epochs": 3, "patience": 1,
         "min_rel_improvement": 10.0},  # "plateaus" after 2 epochs: the stage ends early
        {"name": "finetune", "method": "supervised", "pool": "labeled", "max_epochs": 1},
    ]
    events = []
    result = run_to_end(pretrain_project(seg_project, method="curriculum",
                                         config={**SEG, "steps_per_epoch": 1, "curriculum": stages}), events.append)
    mv = seg_project.model(result.version)
    assert mv.method == "pretrain:curriculum" and mv.record["kind"] == "encoder"
    assert [(s["name"], s["epochs"]) for s in mv.record["stages"]] == [("generic", 1), ("project", 2)]
    messages = " ".join(e.message for e in events if e.kind == "log")
    assert "stage 'finetune'" in messages and "train_project(init='pretrained')" in messages
    assert "stopped after epoch 2" in messages


def test_training_without_validation_labels_keeps_the_last_weights(tmp_path):
    """A clinician's first labels are often all in the train split: training still completes."""
    from medlabeler.engine.workflows.train import train_project
    from medlabeler.engine.project.project_import import create_project
    from medlabeler.engine.training import run_to_end
    from tests.engine.io_fixtures import mni_volume, write_nifti

    brain = mni_volume(step=6)
    project, _ = create_project(tmp_path / "p", write_nifti(tmp_path / "b.nii.gz", brain), task="segmentation",
                                names=["tissue"])
    with project:
        for sample in project.samples(split="train")[:3]:
            project.save_label(sample.id, (project.load_pixels(sample) > 80).astype("uint8"))
        config = {"image_size": 32, "features": [4, 8, 16, 32], "steps": 3, "batch_size": 2}
        result = run_to_end(train_project(project, method="supervised", config=config))
        assert result.version is not None and project.active_model().version == result.version


def test_predict_command_writes_masks_in_the_source_geometry(tmp_path, capsys):
    """`medlabeler predict` after `train`: a NIfTI of the predicted slices, readable back."""
    from medlabeler.cli import main
    from medlabeler.engine.io import read_image
    from medlabeler.engine.workflows.train import train_project
    from medlabeler.engine.project.project_import import create_project
    from medlabeler.engine.training import run_to_end
    from tests.engine.io_fixtures import mni_volume, write_nifti

    brain = mni_volume(step=6)
    source = write_nifti(tmp_path / "b.nii.gz", brain, spacing=(6.0, 6.0, 6.0))
    project, _ = create_project(tmp_path / "p", source, task="segmentation", names=["tissue"])
    with project:
        for sample in project.samples(split="train")[:4]:
            project.save_label(sample.id, (project.load_pixels(sample) > 80).astype("uint8"))
        config = {"image_size": 32, "features": [4, 8, 16, 32], "steps": 2, "batch_size": 2}
        run_to_end(train_project(project, method="supervised", config=config))
        ids = [s.id for s in project.samples()[5:8]]
        slices = [(s.id, s.slice_index, s.split) for s in project.samples()[5:8]]
    assert main(["predict", str(tmp_path / "p"), "--samples", ",".join(map(str, ids)), "--out", str(tmp_path / "o")]) == 0
    assert "wrote predictions for 3 samples" in capsys.readouterr().out
    predicted = read_image(tmp_path / "o" / "volume_0001_prediction.nii.gz")
    assert predicted.array.shape == brain.shape and predicted.spacing == (6.0, 6.0, 6.0)
    assert not predicted.array[:5].any() and not predicted.array[8:].any()
    import json  # the file's samples, for a reader of de-identified names

    about = json.loads((tmp_path / "o" / "model.json").read_text())
    assert about["volumes"] == [{"file": "volume_0001_prediction.nii.gz",
                                 "samples": [{"sample": i, "slice": k, "split": s} for i, k, s in slices]}]


def test_predict_keeps_two_scans_of_one_name_apart(tmp_path, capsys):
    """`predict --keep-names` named both patients' `ct.nii.gz` predictions ct_prediction.nii.gz:
    the second was written over the first, and model.json listed one file twice."""
    import json

    from medlabeler.cli import main
    from medlabeler.engine.io import read_image
    from medlabeler.engine.project.project_import import create_project
    from medlabeler.engine.training import run_to_end
    from medlabeler.engine.workflows.train import train_project
    from tests.engine.io_fixtures import mni_volume, write_nifti

    brain = mni_volume(step=8)
    for patient, volume in (("p1", brain), ("p2", brain[:, ::-1].copy())):
        write_nifti(tmp_path / "scans" / patient / "ct.nii.gz", volume, spacing=(8.0, 8.0, 8.0))
    project, _ = create_project(tmp_path / "p", tmp_path / "scans", task="segmentation", names=["tissue"])
    with project:
        for sample in project.samples(split="train")[:4]:
            project.save_label(sample.id, (project.load_pixels(sample) > 80).astype("uint8"))
        run_to_end(train_project(project, method="supervised",
                                 config={"image_size": 32, "features": [4, 8], "steps": 1, "batch_size": 2}))
        first = {s.path: s for s in project.samples()}  # one sample of each scan
    ids = ",".join(str(s.id) for s in first.values())
    assert main(["predict", str(tmp_path / "p"), "--samples", ids, "--out", str(tmp_path / "o"), "--keep-names"]) == 0
    files = json.loads((tmp_path / "o" / "model.json").read_text())["volumes"]
    assert sorted(entry["file"] for entry in files) == ["ct_0002_prediction.nii.gz", "ct_prediction.nii.gz"]
    for entry in files:
        assert read_image(tmp_path / "o" / entry["file"]).array.shape == brain.shape


def test_whole_volumes_train_with_the_built_in_semi_supervised_method(tmp_path):
    """arch unet3d on (D, H, W) volumes: mean teacher's augmentation handles 5D batches."""
    from medlabeler.engine.workflows.evaluate import evaluate_project
    from medlabeler.engine.workflows.train import train_project
    from medlabeler.engine.project.project_import import create_project
    from medlabeler.engine.training import run_to_end
    from tests.engine.io_fixtures import mni_volume, write_nifti

    brain = mni_volume(step=6)
    for i in range(10):  # splits hash the paths: ten scans leave the train split unlabeled ones
        write_nifti(tmp_path / "images" / f"scan{i}.nii.gz", np.roll(brain, i, axis=2))
    project, _ = create_project(tmp_path / "p", tmp_path / "images", task="segmentation", names=["tissue"],
                                unit="image")
    with project:
        labeled = project.samples(split="train")[:1] + project.samples(split="val") + project.samples(split="test")
        for sample in labeled:
            project.save_label(sample.id, (project.load_pixels(sample) > 80).astype(np.uint8))
        config = {"arch": "unet3d", "volume_size": 32, "features": [4, 8, 16, 32], "steps": 2, "batch_size": 2}
        result = run_to_end(train_project(project, method="mean-teacher", config=config))
        assert result.version is not None and result.record["spatial_dims"] == 3
        assert 0.0 <= evaluate_project(project, split="test")["dice"] <= 1.0


def test_a_deleted_source_stops_training_with_its_name_and_keeps_the_active_model(tmp_path):
    from pathlib import Path

    from medlabeler.engine.errors import MedlabelerError
    from medlabeler.engine.workflows.train import train_project
    from medlabeler.engine.project.project_import import create_project
    from medlabeler.engine.store import Project
    from medlabeler.engine.training import run_to_end
    from tests.engine.io_fixtures import mni_volume, write_nifti

    brain = mni_volume(step=6)
    for i in range(2):
        write_nifti(tmp_path / "images" / f"scan{i}.nii.gz", np.roll(brain, i, axis=1))
    project, _ = create_project(tmp_path / "p", tmp_path / "images", task="segmentation", names=["tissue"])
    config = {"image_size": 32, "features": [4, 8, 16, 32], "steps": 2, "batch_size": 2, "cache_mb": 0}
    with project:
        labeled = project.samples(split="train")[:6]
        for sample in labeled:
            project.save_label(sample.id, (project.load_pixels(sample) > 80).astype(np.uint8))
        before = run_to_end(train_project(project, method="supervised", config=config)).version
    deleted = Path(labeled[0].path)
    deleted.unlink()
    with Project.open(tmp_path / "p") as project:  # a new session: nothing of the scan in memory
        with pytest.raises(MedlabelerError, match=deleted.name) as caught:
            run_to_end(train_project(project, method="supervised", config=config))
        assert "is labeled: put the file back, or take its label back" in str(caught.value)
        assert project.active_model().version == before and len(project.models()) == 1


def test_an_unlabeled_image_damaged_after_the_import_is_passed_over_not_fatal(tmp_path, capsys):
    """One unlabeled PNG cut short after `init` stopped every semi-supervised run; it is left out of
    the run (and its sample id logged, not its path), as a labeled one still stops it by name."""
    from pathlib import Path

    project = make_cls_project(tmp_path, n=24)
    unlabeled = [s for s in project.samples(split="train")][:8]
    for sample in unlabeled:
        project.remove_label(sample.id)
    assert all(project.label(s.id) is None for s in unlabeled)
    damaged = Path(unlabeled[0].path)
    damaged.write_bytes(damaged.read_bytes()[:60])
    result = run_to_end(train_project(project, method="mean-teacher", steps=3,
                                      config={**CLS, "unlabeled_batch_size": 8}))
    assert project.active_model().version == result.version
    root = project.root
    project.close()
    # scoring the pool and writing predictions pass over it too (they stopped at it)
    from medlabeler.cli import main

    assert main(["score", str(root)]) == 0
    assert main(["predict", str(root), "--out", str(tmp_path / "pred")]) == 0
    out, err = capsys.readouterr()
    assert "wrote predictions for 23 samples" in out and "1 left out" in out and damaged.name in err
    from medlabeler.engine.store import Project

    with Project.open(root, readonly=True) as reopened:
        scored = reopened.scores()
    assert unlabeled[0].id not in scored and {s.id for s in unlabeled[1:]} <= set(scored)


def test_evaluate_leaves_out_a_labeled_image_that_no_longer_reads_and_says_which(tmp_path, capsys):
    """`medlabeler evaluate` stopped at the first labeled image cut short after the import, with no
    figure and no way out named, where `predict` passed over it."""
    import json
    from pathlib import Path

    from medlabeler.cli import main

    project = make_cls_project(tmp_path, n=24)
    run_to_end(train_project(project, method="supervised", steps=2, config=CLS))
    tested = project.samples(split="test", labeled=True)
    assert len(tested) >= 2
    root = project.root
    project.close()
    assert main(["evaluate", str(root), "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    damaged = Path(tested[0].path)
    damaged.write_bytes(damaged.read_bytes()[:60])
    assert main(["evaluate", str(root), "--json"]) == 0
    out, err = capsys.readouterr()
    metrics = json.loads(out)
    assert metrics["n"] == whole["n"] - 1 and metrics["left_out"] == 1
    assert f"left out {damaged}" in err and f"medlabeler remove-label PROJECT {tested[0].id})" in err


def test_the_command_line_says_why_a_run_or_the_loop_stopped_and_what_ranks_the_queue(tmp_path, capsys):
    """A new user's `train --budget-s 60` printed "step 20/20" as if the run had ended at its length,
    then "promoted: promoted v1"; `learn --budget-s 60` said "learning stopped" without why; and the
    queue after `train` ranked nothing by uncertainty without saying that `score` was missing."""
    import json

    from medlabeler.cli import main

    project = make_cls_project(tmp_path, n=24)
    for sample in project.samples(split="train")[:8]:
        project.remove_label(sample.id)
    root = project.root
    project.close()
    (tmp_path / "small.json").write_text(json.dumps(CLS))
    assert main(["train", str(root), "--method", "supervised", "--steps", "8", "--budget-s", "0",
                 "--config", str(tmp_path / "small.json")]) == 0
    out, err = capsys.readouterr()
    assert "stopped by the time budget at step 1 of 8" in out, out
    assert "promoted v1: the first model" in out and "promoted: promoted" not in out
    assert "validating candidate v1 (no active model yet)" in err
    assert main(["queue", str(root)]) == 0
    assert "`medlabeler score PROJECT` ranks them" in capsys.readouterr().err
    assert main(["score", str(root)]) == 0
    capsys.readouterr()
    assert main(["queue", str(root)]) == 0
    assert "medlabeler score" not in capsys.readouterr().err
    assert main(["learn", str(root), "--budget-s", "0"]) == 0
    out, err = capsys.readouterr()
    assert "learning stopped (its time budget of 0 s ran out)" in err and "0 candidates, 0 promoted" in out


def test_the_loop_names_the_labeled_sample_whose_image_stopped_its_run(tmp_path):
    """The store notes it as the run reads it: the app lists it first among the labeled, where a
    right-click takes its label back."""
    from pathlib import Path

    from medlabeler.engine.workflows.learn_loop import learn

    project = make_cls_project(tmp_path, n=24)
    damaged = project.samples(split="train", labeled=True)[-1]
    Path(damaged.path).write_bytes(Path(damaged.path).read_bytes()[:60])
    events = []
    with project:
        summary = run_to_end(learn(project, config={**CLS, "steps": 2}, until_idle=True, score=False,
                                   full_run_after_s=None), events.append)
        assert damaged.id in project.unreadable_ids()
    failed = [e for e in events if e.kind == "failed"]
    assert summary.failures and failed
    assert failed[0].message.startswith(f"training failed, the active model stays: {Path(damaged.path).name}: ")
