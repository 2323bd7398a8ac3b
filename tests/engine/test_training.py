"""The training loop: it learns, cancels within one batch, stops on NaN, halves the batch on
out-of-memory, is reproducible on CPU, resumes, and follows the warmup + cosine schedule."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from medlabeler.engine.errors import TrainingError
from medlabeler.engine.models import build_model
from medlabeler.engine.training import CancelToken, Event, FitConfig, RunResult, fit, run_to_end, warmup_cosine
from medlabeler.engine.training.method import Method


class TinySupervised(Method):
    """Minimal method for loop tests: cross-entropy on the labeled batch."""

    name = "tiny-supervised"
    uses_labels, uses_unlabeled = True, False

    def __init__(self, model, task="classification", nan_at=None, oom_once_above=None):
        super().__init__(task)
        self.model = model
        self.calls = 0
        self.nan_at = nan_at
        self.oom_once_above = oom_once_above
        self.batch_sizes = []
        self.ema_steps = []

    def training_step(self, batch, progress):
        self.calls += 1
        self.batch_sizes.append(batch["x"].shape[0])
        if self.oom_once_above is not None and batch["x"].shape[0] > self.oom_once_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        loss = F.cross_entropy(self.model(batch["x"]), batch["y"])
        if self.nan_at is not None and self.calls >= self.nan_at:
            loss = loss * float("nan")
        return loss, {"ce": float(loss.detach())}

    def after_optimizer_step(self, step):
        self.ema_steps.append(step)

    def predictor(self):
        return self.model


class UnlabeledOnly(Method):
    name = "tiny-ssl"
    uses_labels, uses_unlabeled = False, True

    def __init__(self, model):
        super().__init__("classification")
        self.model = model
        self.seen_pos = []

    def training_step(self, batch, progress):
        assert set(batch) == {"u", "u_pos"}
        self.seen_pos.append(batch["u_pos"].clone())
        return self.model.forward_features(batch["u"]).pow(2).mean(), {}

    def predictor(self):
        return self.model


def quadrant_task(n, seed, size=16):
    """Class 1 images have a bright top-left quadrant; class 0 do not."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g)
    y = torch.arange(n) % 2
    x[y == 1, :, : size // 2, : size // 2] += 1.5
    return TensorDataset(x, y)


class SmallCNN(nn.Module):
    """A few-thousand-parameter classifier following the model seam (fast loop tests)."""

    def __init__(self, num_classes=2, width=8):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                     nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                     nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = width
        self.num_classes = num_classes
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x):
        return self.encoder(x)

    def forward(self, x):
        return self.head(self.encoder(x))


def events_of(gen):
    events = []
    result = run_to_end(gen, events.append)
    return events, result


def test_fit_learns_a_toy_task():
    torch.manual_seed(0)
    method = TinySupervised(SmallCNN())
    events, result = events_of(fit(method, FitConfig(epochs=6, batch_size=8, lr=1e-2, device="cpu", seed=0),
                                   labeled=quadrant_task(32, 1), val=quadrant_task(32, 2)))
    losses = [e.loss for e in events if e.kind == "step"]
    assert isinstance(result, RunResult) and result.steps == 24 == len(losses)
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4
    assert result.best_metrics["accuracy"] > 0.75 and result.best_metrics["auc"] > 0.8
    kinds = [e.kind for e in events]
    assert kinds[0] == "log" and kinds[-1] == "done" and kinds.count("epoch") == 6 == kinds.count("metric")
    assert all(isinstance(e, Event) for e in events)
    assert method.ema_steps == list(range(1, 25))
    step = next(e for e in events if e.kind == "step")
    assert step.total_steps == 24 and step.images_per_second > 0 and "ce" in step.metrics


def test_a_pretrained_encoder_learns_at_its_own_rate():
    """encoder_lr_scale 0 freezes what load_encoder_state filled; the head still learns."""
    torch.manual_seed(0)
    donor = SmallCNN()
    method = TinySupervised(SmallCNN())
    method.load_encoder_state(donor.encoder.state_dict())
    assert {id(p) for p in method.pretrained_parameters()} == {id(p) for p in method.model.encoder.parameters()}
    head = [p.detach().clone() for p in method.model.head.parameters()]
    config = FitConfig(steps=3, batch_size=8, lr=1e-2, encoder_lr_scale=0.0, device="cpu", seed=0)
    run_to_end(fit(method, config, labeled=quadrant_task(16, 1), pretrained=method.pretrained_parameters()))
    assert all(torch.equal(a, b) for a, b in zip(method.model.encoder.state_dict().values(),
                                                 donor.encoder.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(head, method.model.head.parameters()))


def test_fit_runs_the_real_resnet18():
    torch.manual_seed(0)
    model = build_model("classification", "resnet18", 1, 2, dropout=0.1)
    _, result = events_of(fit(TinySupervised(model), FitConfig(steps=2, batch_size=4, device="cpu"),
                              labeled=quadrant_task(8, 1, 32), val=quadrant_task(4, 2, 32)))
    assert result.steps == 2 and math.isfinite(result.final_loss) and "auc" in result.last_metrics
    assert not model.training  # the loop leaves the networks in eval mode


def test_unlabeled_method_gets_u_and_positions():
    x = torch.randn(10, 1, 16, 16)
    pos = torch.linspace(0.1, 1.0, 10)
    method = UnlabeledOnly(SmallCNN())
    _, result = events_of(fit(method, FitConfig(steps=3, batch_size=4, device="cpu"),
                              unlabeled=TensorDataset(x, pos)))
    assert result.steps == 3
    seen = torch.cat(method.seen_pos)
    assert seen.shape == (12,) and set(seen.tolist()) <= set(pos.tolist())
    # single-tensor datasets (2D images without positions) give NaN positions
    method = UnlabeledOnly(SmallCNN())
    run_to_end(fit(method, FitConfig(steps=1, batch_size=4, device="cpu"), unlabeled=TensorDataset(x)))
    assert torch.isnan(method.seen_pos[0]).all()


def test_cancel_stops_within_one_batch():
    cancel = CancelToken()
    steps_after_cancel = []
    cancelled_at = []

    def on_event(event):
        if event.kind == "step":
            if cancelled_at:
                steps_after_cancel.append(event.step)
            elif event.step == 3:
                cancel.cancel()
                cancelled_at.append(event.step)

    method = TinySupervised(SmallCNN())
    result = run_to_end(fit(method, FitConfig(epochs=10, batch_size=4, device="cpu"),
                            labeled=quadrant_task(64, 0), cancel=cancel), on_event)
    assert result.cancelled and len(steps_after_cancel) <= 1
    assert result.steps <= 4 and method.calls <= 4


def test_cancel_token_is_thread_safe_flag():
    token = CancelToken()
    assert not token.is_set()
    token.cancel()
    assert token.is_set() and token.cancelled
    token.reset()
    assert not token.is_set()


def test_nan_loss_raises_training_error_and_saves_nothing(tmp_path):
    method = TinySupervised(SmallCNN(), nan_at=3)
    events = []
    with pytest.raises(TrainingError, match=r"loss became nan at step 3.*previous model is kept"):
        run_to_end(fit(method, FitConfig(epochs=5, batch_size=4, device="cpu", checkpoint_dir=tmp_path),
                       labeled=quadrant_task(16, 0)), events.append)
    assert [e.step for e in events if e.kind == "step"] == [1, 2]
    assert list(tmp_path.iterdir()) == []


def test_out_of_memory_halves_batch_once_then_fails():
    method = TinySupervised(SmallCNN(), oom_once_above=4)
    events, result = events_of(fit(method, FitConfig(steps=3, batch_size=8, device="cpu"),
                                   labeled=quadrant_task(16, 0)))
    assert result.steps == 3 and result.batch_size == 4
    assert method.batch_sizes == [8, 4, 4, 4]
    assert any(e.kind == "log" and "halved to 4" in e.message for e in events)
    method = TinySupervised(SmallCNN(), oom_once_above=1)
    with pytest.raises(TrainingError, match="out of cpu memory even with batch size 4"):
        run_to_end(fit(method, FitConfig(steps=3, batch_size=8, device="cpu"), labeled=quadrant_task(16, 0)))


def test_missing_data_is_a_clear_error():
    with pytest.raises(TrainingError, match="needs labeled images"):
        run_to_end(fit(TinySupervised(SmallCNN()), FitConfig(steps=1, device="cpu"), labeled=None))
    with pytest.raises(TrainingError, match="needs unlabeled images"):
        run_to_end(fit(UnlabeledOnly(SmallCNN()), FitConfig(steps=1, device="cpu"),
                       unlabeled=TensorDataset(torch.zeros(0, 1, 8, 8))))


def _train_once(seed):
    torch.manual_seed(seed)
    model = build_model("segmentation", "unet", 1, 2, features=(8, 16, 32), dropout=0.2)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(8, 1, 32, 32, generator=g)
    y = (x[:, 0] > 0.5).long()

    class Seg(TinySupervised):
        pass

    method = Seg(model, task="segmentation")
    result = run_to_end(fit(method, FitConfig(steps=4, steps_per_epoch=2, batch_size=4, device="cpu", seed=seed),
                            labeled=TensorDataset(x, y), val=TensorDataset(x[:4], y[:4])))
    return model.state_dict(), result


def test_same_seed_gives_identical_weights_on_cpu():
    first, r1 = _train_once(3)
    second, r2 = _train_once(3)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert r1.best_metrics == r2.best_metrics
    third, _ = _train_once(4)
    assert any(not torch.equal(first[k], third[k]) for k in first if first[k].is_floating_point())


def test_best_validation_weights_are_restored():
    method = TinySupervised(SmallCNN())
    scores = iter([0.2, 0.9, 0.1])
    states = []

    def eval_fn(model, data):
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"auc": next(scores)}

    _, result = events_of(fit(method, FitConfig(epochs=3, batch_size=4, device="cpu"),
                              labeled=quadrant_task(8, 0), val=quadrant_task(4, 1), eval_fn=eval_fn))
    assert result.best_metrics == {"auc": 0.9} and result.last_metrics == {"auc": 0.1}
    assert result.best_step == 4 and result.metrics == {"auc": 0.9}
    final = method.model.state_dict()
    assert all(torch.equal(final[k], states[1][k]) for k in final)


def test_a_tie_on_the_monitored_metric_keeps_the_weights_with_the_better_accuracy():
    """On 7 validation images AUC reached 1.0 at step 12 and stayed; the weights of that first step
    (accuracy 0.43) were kept over later ones as well ranked by AUC and far more accurate."""
    method = TinySupervised(SmallCNN())
    scores = iter([{"auc": 1.0, "accuracy": 0.43}, {"auc": 1.0, "accuracy": 0.86}, {"auc": 0.9, "accuracy": 1.0}])
    _, result = events_of(fit(method, FitConfig(epochs=3, batch_size=4, device="cpu"),
                              labeled=quadrant_task(8, 0), val=quadrant_task(4, 1),
                              eval_fn=lambda model, data: next(scores)))
    assert result.best_metrics == {"auc": 1.0, "accuracy": 0.86} and result.best_step == 4


def test_resume_point_continues_the_run(tmp_path):
    torch.manual_seed(0)
    method = TinySupervised(SmallCNN())
    config = FitConfig(epochs=2, batch_size=4, device="cpu", checkpoint_dir=tmp_path, seed=1)
    events, result = events_of(fit(method, config, labeled=quadrant_task(16, 0)))
    checkpoints = [e for e in events if e.kind == "checkpoint"]
    assert len(checkpoints) == 2 and (tmp_path / "resume.safetensors").exists()
    # an "interrupted" run: a fresh method resumed from the last resume point of a 4-epoch run
    torch.manual_seed(0)
    first = TinySupervised(SmallCNN())
    run_to_end(fit(first, FitConfig(epochs=4, batch_size=4, device="cpu", checkpoint_dir=tmp_path, seed=1),
                   labeled=quadrant_task(16, 0), cancel=None), None)
    resumed = TinySupervised(SmallCNN())
    gen = fit(resumed, FitConfig(epochs=6, batch_size=4, device="cpu", seed=1,
                                 resume_from=tmp_path / "resume.safetensors"), labeled=quadrant_task(16, 0))
    events, result = events_of(gen)
    assert [e.step for e in events if e.kind == "step"][0] == 17 and result.steps == 24
    assert "resumed at step 16" in events[0].message
    with pytest.raises(TrainingError, match="saved by method"):
        other = UnlabeledOnly(SmallCNN())
        run_to_end(fit(other, FitConfig(steps=1, device="cpu", resume_from=tmp_path / "resume.safetensors"),
                       unlabeled=quadrant_task(4, 0)))


def test_early_stop_from_epoch_callback():
    seen = []

    def on_epoch_end(epoch, loss):
        seen.append((epoch, loss))
        return epoch == 2

    events, result = events_of(fit(TinySupervised(SmallCNN()), FitConfig(epochs=10, batch_size=4, device="cpu"),
                                   labeled=quadrant_task(8, 0), on_epoch_end=on_epoch_end))
    assert [e for e, _ in seen] == [1, 2] and result.steps == 4 and result.total_steps == 4
    assert all(math.isfinite(loss) for _, loss in seen)


def test_learning_rate_schedule_warmup_then_cosine():
    total, warm = 100, 10
    values = [warmup_cosine(s, total, warm) for s in range(total)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1.0)
    assert values[55] == pytest.approx(0.5, abs=0.02)
    assert all(a >= b for a, b in zip(values[10:], values[11:])) and values[-1] < 0.01
    method = TinySupervised(SmallCNN())
    events, _ = events_of(fit(method, FitConfig(steps=40, batch_size=4, lr=0.1, warmup_fraction=0.1, device="cpu"),
                              labeled=quadrant_task(8, 0)))
    lrs = [e.lr for e in events if e.kind == "step"]
    assert lrs[0] == pytest.approx(0.1 / 4) and max(lrs) == pytest.approx(0.1) and lrs[-1] < 0.01


def test_pick_device_and_cap_threads():
    from medlabeler.engine.training import amp_plan, cap_threads, pick_device

    before = torch.get_num_threads()
    try:
        threads = cap_threads(leave_one=True)
        assert threads >= 1 and torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert pick_device("cpu").type == "cpu"
    assert amp_plan(torch.device("cpu")).dtype is None
    if not torch.cuda.is_available():
        assert pick_device().type in ("cpu", "mps")
        with pytest.raises(ValueError, match="CUDA"):
            pick_device("cuda")
