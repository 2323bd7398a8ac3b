"""The cross-pseudo-supervision plugin: its loss against a plain reference, and one real round."""

import math

import numpy as np
import pytest
import torch

from medlabeler.engine.methods import build_method, list_methods

_plugin = pytest.importorskip("medlabeler_cps.cps", reason="install the plugin: pip install -e plugins/medlabeler-cps")
CrossPseudoSupervision = _plugin.CrossPseudoSupervision
CrossPseudoSupervisionLoss = _plugin.CrossPseudoSupervisionLoss
cps_terms = _plugin.cps_terms

TINY = {"cap_threads": False, "image_size": 32, "features": [8, 16, 32], "batch_size": 2,
        "unlabeled_batch_size": 2, "steps": 3}


def reference_cps(logits_a: torch.Tensor, logits_b: torch.Tensor) -> float:
    """The CPS term written out pixel by pixel: -log softmax(a)[argmax b] + -log softmax(b)[argmax a]."""
    a, b = logits_a.double().numpy(), logits_b.double().numpy()
    total, count = 0.0, 0
    for index in np.ndindex(a.shape[0], *a.shape[2:]):
        n, pixel = index[0], index[1:]
        za = a[(n, slice(None), *pixel)]
        zb = b[(n, slice(None), *pixel)]
        log_pa = za - math.log(np.exp(za - za.max()).sum()) - za.max()
        log_pb = zb - math.log(np.exp(zb - zb.max()).sum()) - zb.max()
        total += -log_pa[int(np.argmax(zb))] - log_pb[int(np.argmax(za))]
        count += 1
    return total / count


@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (7, 3)])  # segmentation maps, classification logits
def test_loss_matches_the_plain_reference(shape):
    generator = torch.Generator().manual_seed(0)
    logits_a = torch.randn(*shape, generator=generator)
    logits_b = torch.randn(*shape, generator=generator)
    got = CrossPseudoSupervisionLoss()(logits_a, logits_b)
    assert got.item() == pytest.approx(reference_cps(logits_a, logits_b), rel=1e-5)


def test_each_network_is_pulled_towards_the_others_argmax_only():
    generator = torch.Generator().manual_seed(1)
    logits_a = torch.randn(4, 3, requires_grad=True, generator=generator)
    logits_b = torch.randn(4, 3, requires_grad=True, generator=generator)
    a_taught, _ = cps_terms(logits_a, logits_b)
    a_taught.backward()
    onehot_b = torch.nn.functional.one_hot(logits_b.argmax(1), 3).float()
    expected = (torch.softmax(logits_a, 1) - onehot_b) / 4  # d CE / d logits, averaged over 4 images
    torch.testing.assert_close(logits_a.grad, expected.detach())
    assert logits_b.grad is None  # the teacher's pseudo label carries no gradient


def factory(task):
    from medlabeler.engine.models import build_model

    def make(arch=None):
        if task == "segmentation":
            return build_model(task, arch or "unet", 1, 3, features=[8, 16, 32])
        return build_model(task, arch or "resnet18", 1, 3)

    return make


def test_registered_and_builds_two_different_networks_of_one_design():
    assert "cross-pseudo-supervision" in list_methods(kind="train")
    assert "cross-pseudo-supervision" in list_methods(task="segmentation")
    method = build_method("cross-pseudo-supervision", task="segmentation", model_factory=factory("segmentation"),
                          num_classes=3, in_channels=1, config={"seed": 0})
    assert isinstance(method, CrossPseudoSupervision)
    a, b = dict(method.net_a.named_parameters()), dict(method.net_b.named_parameters())
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    batch = {"x": torch.randn(2, 1, 32, 32), "y": torch.randint(0, 3, (2, 32, 32)), "u": torch.randn(2, 1, 32, 32)}
    loss, logs = method.training_step(batch, progress=1.0)
    assert math.isfinite(loss.item()) and logs["cps_weight"] == pytest.approx(1.5)


def test_a_classification_step_trains_both_networks():
    method = build_method("cross-pseudo-supervision", task="classification", model_factory=factory("classification"),
                          num_classes=3, in_channels=1, config={"seed": 0, "ramp_fraction": 0})
    batch = {"x": torch.randn(4, 1, 32, 32), "y": torch.tensor([0, 1, 2, 1]), "u": torch.randn(4, 1, 32, 32)}
    loss, logs = method.training_step(batch, progress=0.0)
    loss.backward()
    assert {"sup_a", "sup_b", "cps"} <= set(logs)
    assert all(p.grad is not None for p in (*method.net_a.parameters(), *method.net_b.parameters()) if p.requires_grad)


@pytest.fixture
def brain_project(tmp_path):
    """A slice project of the MNI152 brain MRI (every 4th voxel) with 4 labeled slices."""
    nibabel = pytest.importorskip("nibabel")
    from medlabeler.engine.workflows.demo import demo_truth, mni_file
    from medlabeler.engine.project.project_import import create_project

    image = nibabel.load(str(mni_file("t1")))
    data = np.asarray(image.dataobj, dtype=np.float32)[::4, ::4, ::4]
    nibabel.save(nibabel.Nifti1Image(data, image.affine @ np.diag([4, 4, 4, 1])), str(tmp_path / "brain.nii.gz"))
    truth = demo_truth()[::4, ::4, ::4]
    project, _ = create_project(tmp_path / "project", tmp_path / "brain.nii.gz", task="segmentation",
                                names=["grey_matter", "white_matter"])
    train = [s for s in project.samples(split="train") if truth[s.slice_index].any()]
    for sample in train[::max(1, len(train) // 4)][:4]:
        project.save_label(sample.id, truth[sample.slice_index])
    yield project
    project.close()


def test_one_round_on_a_real_project_through_the_cli(brain_project, tmp_path, capsys):
    import json

    from medlabeler.cli import main

    root = str(brain_project.root)
    brain_project.close()
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    assert main(["train", root, "--method", "cross-pseudo-supervision", "--config", str(tmp_path / "tiny.json")]) == 0
    assert "trained cross-pseudo-supervision: model v1" in capsys.readouterr().out
    assert main(["score", root]) == 0
    assert main(["queue", root, "--n", "3"]) == 0
    out = capsys.readouterr().out
    assert "3 samples to label next" in out
    from medlabeler.engine.store import Project

    with Project.open(root, readonly=True) as project:
        assert project.active_model().method == "cross-pseudo-supervision"
