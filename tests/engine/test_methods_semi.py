"""Supervised and semi-supervised methods: schedules, short runs that learn, edge cases."""

import math

import pytest
import torch

from medlabeler.engine.errors import TrainingError
from medlabeler.engine.methods import build_method
from medlabeler.engine.semi.mean_teacher import ema_alpha, ema_update
from medlabeler.engine.semi.ramps import linear_rampup, sigmoid_rampup

from .test_methods_support import one_thread  # noqa: F401  (autouse fixture)
from .test_methods_support import TinyClassifier, blob_classes, factory, falls, sampler, square_masks, train


def build(name, task, **config):
    return build_method(
        name, task=task, model_factory=factory(task), num_classes=2, in_channels=1, config=config
    )


# ------------------------------------------------------------------ schedules
def test_ema_alpha_schedule():
    assert ema_alpha(0) == 0.0
    assert ema_alpha(1) == pytest.approx(0.5)
    assert ema_alpha(9) == pytest.approx(0.9)
    assert ema_alpha(99) == pytest.approx(0.99)
    assert ema_alpha(10_000) == pytest.approx(0.99)
    assert ema_alpha(10_000, max_alpha=0.999) == pytest.approx(0.999)


def test_ema_update_averages_parameters_and_statistics():
    torch.manual_seed(0)
    student, teacher = TinyClassifier(), TinyClassifier()
    student.train()(torch.randn(4, 1, 16, 16))  # move BatchNorm statistics
    before = [p.clone() for p in teacher.parameters()]
    before_buffers = [b.clone() for b in teacher.buffers()]
    ema_update(teacher, student, 0.75)
    for t, b, s in zip(teacher.parameters(), before, student.parameters()):
        assert torch.allclose(t, 0.75 * b + 0.25 * s)
    for t, b, s in zip(teacher.buffers(), before_buffers, student.buffers()):
        if t.is_floating_point():  # BatchNorm running mean / var
            assert torch.allclose(t, 0.75 * b + 0.25 * s)
        else:  # batch counter
            assert torch.equal(t, s)


def test_sigmoid_ramp_values():
    assert sigmoid_rampup(0.0, 0.3) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(0.15, 0.3) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(0.3, 0.3) == 1.0
    assert sigmoid_rampup(0.9, 0.3) == 1.0
    assert sigmoid_rampup(0.0, 0.0) == 1.0
    assert linear_rampup(0.15, 0.3) == pytest.approx(0.5)


# ------------------------------------------------------------------ short runs that learn
def held_out_accuracy(method, images, labels):
    net = method.predictor().eval()
    with torch.no_grad():
        return float((net(images).argmax(1) == labels).float().mean())


def held_out_dice(method, images, masks):
    net = method.predictor().eval()
    with torch.no_grad():
        pred = net(images).argmax(1)
    inter = ((pred == 1) & (masks == 1)).sum()
    return float(2 * inter / ((pred == 1).sum() + (masks == 1).sum()))


CLASSIFICATION = ["supervised", "mean-teacher", "fixmatch", "srcl"]
SEGMENTATION = ["supervised", "mean-teacher", "fixmatch", "cross-teaching", "srcl"]


def semi_config(name):
    # short runs: a quick ramp and a lower FixMatch threshold let the unlabeled terms act
    if name == "fixmatch":
        return {"threshold": 0.8}
    if name in ("mean-teacher", "srcl"):
        return {"ramp_fraction": 0.2}
    return {}


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_classification_methods_learn_blobs(name):
    torch.manual_seed(0)
    x, y = blob_classes(24, seed=1)
    u, _ = blob_classes(96, seed=2)
    test_x, test_y = blob_classes(128, seed=3)
    method = build(name, "classification", seed=0, **semi_config(name))
    sizes = {"x": 12} if name == "supervised" else {"x": 12, "u": 24}
    losses = train(method, sampler({"x": x, "y": y, "u": u}, sizes), steps=50)
    assert falls(losses)
    assert held_out_accuracy(method, test_x, test_y) > 0.75  # chance is 0.5


@pytest.mark.parametrize("name", SEGMENTATION)
def test_segmentation_methods_learn_squares(name):
    torch.manual_seed(0)
    x, y = square_masks(16, seed=1)
    u, _ = square_masks(64, seed=2)
    test_x, test_y = square_masks(64, seed=3)
    method = build(name, "segmentation", seed=0, **semi_config(name))
    sizes = {"x": 8} if name == "supervised" else {"x": 8, "u": 8}
    # the EMA teacher (SRCL's predictor) averages a trajectory that its contrastive term makes
    # longer, so give it a few more steps to settle
    losses = train(method, sampler({"x": x, "y": y, "u": u}, sizes), steps=60 if name == "srcl" else 40)
    assert falls(losses)
    assert held_out_dice(method, test_x, test_y) > 0.7  # all-foreground scores about 0.35


@pytest.mark.parametrize("name", SEGMENTATION)
def test_segmentation_methods_fade_the_class_balance_with_their_progress(name, monkeypatch):
    """Every labeled term gets the run's progress, so the class balance fades the same way in
    every method (supervised.balance_power)."""
    import medlabeler.engine.semi.supervised as supervised

    seen = []
    real = supervised.balance_power
    monkeypatch.setattr(supervised, "balance_power", lambda progress: seen.append(progress) or real(progress))
    x, y = square_masks(4, seed=1)
    method = build(name, "segmentation", seed=0, **semi_config(name))
    batch = {"x": x, "y": y} if name == "supervised" else {"x": x, "y": y, "u": x}
    method.training_step(batch, 0.7)
    assert seen and set(seen) == {0.7}


# ------------------------------------------------------------------ behaviour details
def test_mean_teacher_teacher_is_not_trained_and_follows_the_student():
    method = build("mean-teacher", "classification", seed=0)
    assert all(not p.requires_grad for p in method.teacher.parameters())
    trainable = {id(p) for p in method.trainable_parameters()}
    assert not trainable & {id(p) for p in method.teacher.parameters()}
    x, y = blob_classes(8)
    loss, logs = method.training_step({"x": x, "y": y, "u": x}, 0.0)
    loss.backward()
    assert all(p.grad is None for p in method.teacher.parameters())
    assert {"sup", "consistency", "relation", "ramp", "loss"} <= set(logs)
    with torch.no_grad():
        for p in method.student.parameters():
            p.add_(1.0)
    method.after_optimizer_step(0)  # alpha 0: teacher becomes the student
    for t, s in zip(method.teacher.parameters(), method.student.parameters()):
        assert torch.equal(t, s)
    assert method.predictor() is method.teacher


def test_mean_teacher_unsupervised_terms_wait_for_the_ramp():
    method = build("mean-teacher", "classification", seed=0, ramp_fraction=0.5)
    x, y = blob_classes(8)
    method.eval()
    _, early = method.training_step({"x": x, "y": y, "u": x}, 0.0)
    _, late = method.training_step({"x": x, "y": y, "u": x}, 0.9)
    assert early["ramp"] == pytest.approx(math.exp(-5)) and late["ramp"] == 1.0


def test_encoder_state_loads_into_student_and_teacher():
    donor = build("simclr", "classification", seed=0)
    state = donor.encoder_state()
    method = build("mean-teacher", "classification")
    method.load_encoder_state(state)
    for key, value in state.items():
        assert torch.equal(method.student.encoder.state_dict()[key], value)
        assert torch.equal(method.teacher.encoder.state_dict()[key], value)


@pytest.mark.parametrize("name", SEGMENTATION)
def test_the_parameters_a_pretrained_encoder_filled_are_the_trained_copy_of_it(name):
    """What fit gives the encoder's own learning rate: the loaded encoder's trainable parameters,
    all of them (an EMA teacher's copy is not trained), and nothing before a load."""
    donor = build("simclr", "segmentation", seed=0)
    method = build(name, "segmentation")
    assert method.pretrained_parameters() == []
    method.load_encoder_state(donor.encoder_state())
    loaded = method.pretrained_parameters()
    trainable = {id(p) for p in method.trainable_parameters()}
    encoders = [m.encoder for m in method.modules() if hasattr(m, "encoder") and isinstance(m.encoder, torch.nn.Module)]
    trained_encoder = [p for e in encoders for p in e.parameters() if id(p) in trainable]
    assert loaded and {id(p) for p in loaded} <= trainable
    assert {id(p) for p in loaded} <= {id(p) for p in trained_encoder}
    assert len(loaded) < len(trainable)  # the decoder keeps the base rate


def test_fixmatch_mask_rate_counts_only_confident_pixels():
    method = build("fixmatch", "segmentation", seed=0, threshold=0.99)
    x, y = square_masks(4)
    _, logs = method.training_step({"x": x, "y": y, "u": x}, 0.0)
    assert 0.0 <= logs["mask_rate"] < 0.5  # an untrained net is rarely 99 % sure
    method = build("fixmatch", "segmentation", seed=0, threshold=0.01)
    _, logs = method.training_step({"x": x, "y": y, "u": x}, 0.0)
    assert logs["mask_rate"] == 1.0
    assert build("fixmatch", "classification").unlabeled_ratio == 7


class Thresholder(torch.nn.Module):
    """A 'network' whose answer is the pixel's own intensity: class 1 where x > 1, sure of it."""

    def forward(self, x):
        return torch.cat([-(x - 1.0), x - 1.0], dim=1) * 50.0


class Recorder(torch.nn.Module):
    """An unlabeled loss that keeps what it was given."""

    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    def forward(self, logits, targets):
        self.seen.update(logits=logits, targets=targets)
        return logits.sum() * 0


def test_fixmatch_segmentation_cuts_and_mixes_strong_views_that_keep_their_pseudo_labels(monkeypatch):
    from medlabeler.engine.data import augment as A
    from medlabeler.engine.semi import fixmatch as F

    calls = []
    monkeypatch.setattr(F, "cutmix", lambda *a, **k: calls.append(k["p"]) or A.cutmix(*a, **k))
    method = build("fixmatch", "segmentation", seed=0)
    strong = method.strong_spec  # mild intensity and colour, no cutout: CutMix is the strong part
    assert method.cutmix_p == 1.0 and strong.brightness <= 0.1 and strong.saturation <= 0.1 and strong.grayscale_p == 0
    assert strong.cutout_p == 0
    classifier = build("fixmatch", "classification")
    assert classifier.cutmix_p == 0.0 and classifier.strong_spec.brightness == 0.3  # the paper's views
    assert (method.unlabeled_weight, classifier.unlabeled_weight) == (0.5, 1.0)  # per task, unless set
    assert build("fixmatch", "segmentation", unlabeled_weight=1.0).unlabeled_weight == 1.0
    with pytest.raises(ValueError, match="segmentation only"):
        build("fixmatch", "classification", cutmix_p=0.5)
    with pytest.raises(ValueError, match="segmentation only"):
        build("fixmatch", "classification", unlabeled_dice=True)
    assert build("fixmatch", "segmentation", unlabeled_dice=True).unlabeled_loss.dice
    seen = {}
    method.model = Thresholder()
    method.unlabeled_loss = Recorder(seen)
    x, _ = square_masks(8, size=32)
    x = torch.where(x > 1.0, 3.0, -1.0)  # two levels far apart: mild jitter keeps each on its side
    method.training_step({"u": x}, 0.0)
    strong_class = seen["logits"].argmax(1)
    passed = seen["targets"] != -1
    agreement = (strong_class[passed] == seen["targets"][passed]).float().mean()
    assert passed.float().mean() > 0.9 and agreement > 0.97  # pixels moved and mixed with their targets
    assert calls == [1.0]  # the strong views went through CutMix


def test_cross_teaching_uses_two_different_networks_and_only_segments():
    method = build("cross-teaching", "segmentation")
    assert type(method.net_a) is type(method.net_b)  # same test class,
    assert method.net_a.encoder[0].dilation != method.net_b.encoder[0].dilation  # different design
    assert method.predictor() is method.net_a
    with pytest.raises(ValueError, match="segmentation"):
        build("cross-teaching", "classification")


def test_srcl_modes():
    joint = build("srcl", "classification", seed=0)
    x, y = blob_classes(8)
    _, logs = joint.training_step({"x": x, "y": y, "u": x}, 0.5)
    assert {"contrastive", "consistency", "relation", "sup"} <= set(logs)
    finetune = build("srcl", "classification", seed=0, mode="finetune")
    _, logs = finetune.training_step({"x": x, "y": y, "u": x}, 0.5)
    assert "contrastive" not in logs and "relation" in logs
    with pytest.raises(ValueError, match="mode"):
        build("srcl", "classification", mode="both")


def test_methods_work_without_unlabeled_images_and_refuse_empty_batches():
    x, y = blob_classes(6)
    for name in ("mean-teacher", "fixmatch", "srcl"):
        loss, _ = build(name, "classification").training_step({"x": x, "y": y}, 0.5)
        assert torch.isfinite(loss)
    with pytest.raises(TrainingError):
        build("supervised", "classification").training_step({"u": x}, 0.5)
    with pytest.raises(TrainingError):
        build("mean-teacher", "classification").training_step({}, 0.5)
