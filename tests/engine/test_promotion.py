"""Promotion, never regression: a worse run is stored as a candidate and never replaces the active model."""

import pytest

from medlabeler.engine.workflows import promotion
from medlabeler.engine.workflows.evaluate import evaluate_project
from medlabeler.engine.workflows.train import train_project
from medlabeler.engine.training import CancelToken, run_to_end

from .test_pipeline_datasets import make_seg_project

SEG = {"cap_threads": False, "image_size": 32, "features": [8, 16, 32], "batch_size": 4, "unlabeled_batch_size": 4,
       "lr": 3e-3}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = make_seg_project(tmp_path_factory.mktemp("promo"), n=4, depth=6)
    yield project
    project.close()


def test_a_one_step_run_after_a_good_one_is_kept_not_promoted(project):
    good = run_to_end(train_project(project, method="supervised", steps=40, config=SEG))
    assert good.decision.promoted and project.active_model().version == good.version
    good_val = evaluate_project(project, "val")["dice"]
    assert good_val > 0.6

    events = []
    bad = run_to_end(train_project(project, method="supervised", steps=1, config={**SEG, "lr": 1e-5}), events.append)
    decision = bad.decision
    assert not decision.promoted and decision.candidate == bad.version and decision.active == good.version
    assert decision.metric == "dice" and decision.candidate_value < decision.active_value - promotion.TOLERANCE
    assert decision.active_value == pytest.approx(good_val)  # the active model was re-evaluated
    assert f"v{bad.version} not better" in decision.message and f"active v{good.version}" in decision.message
    assert events[-1].kind == "done" and events[-1].message == decision.message
    # stored as a candidate, the good model stays active, and the decision is in the log
    assert project.active_model().version == good.version
    assert not project.model(bad.version).active
    assert promotion.last_decision(project, bad.version).promoted is False

    # activated by hand it becomes active, and that is logged too
    promotion.activate_by_hand(project, bad.version)
    assert project.active_model().version == bad.version
    assert promotion.last_decision(project, bad.version).message.startswith(f"v{bad.version} activated by hand")
    project.activate(good.version)


def test_a_version_is_shown_with_its_own_figure_else_the_one_measured_at_its_decision():
    from types import SimpleNamespace as Model

    from medlabeler.engine.workflows.promotion import MEASURED_AT_DECISION, MEASURED_BY_RUN, VersionFigure

    decided = promotion.Decision(candidate=3, promoted=False, message="", metric="dice", candidate_value=0.71)
    undefined = promotion.Decision(candidate=4, promoted=False, message="", metric="dice", candidate_value=float("nan"))
    models = [Model(version=2, metrics={"dice": 0.8, "auc": 0.9}), Model(version=3, metrics={}),
              Model(version=4, metrics={}), Model(version=5, metrics={"dice": None, "auc": float("nan"), "accuracy": 0.6}),
              Model(version=6, metrics={"dice": float("nan")})]
    # no decision measured on the labels as they are now (no val_state): the project is not read
    figures = promotion.version_figures(None, models, [decided, undefined])
    assert figures == {2: VersionFigure("dice", 0.8, MEASURED_BY_RUN), 3: VersionFigure("dice", 0.71, MEASURED_AT_DECISION),
                       5: VersionFigure("accuracy", 0.6, MEASURED_BY_RUN)}


def test_a_figure_of_now_comes_from_the_labels_promotion_compares_on_now(monkeypatch):
    """Decisions made on the training labels (validation held one class only) must not give the
    figures once promotion compares on validation labels again, though their labels are unchanged."""
    from types import SimpleNamespace as Model

    monkeypatch.setattr(promotion, "comparison_split", lambda project: "val")
    monkeypatch.setattr(promotion, "validation_state", lambda project, split="val": {"val": "V", "train": "T"}[split])
    on_val = promotion.Decision(candidate=2, promoted=True, message="", metric="balanced_accuracy",
                                candidate_value=0.8, n_val=3, val_state="V", split="val")
    on_train = promotion.Decision(candidate=2, promoted=True, message="", metric="auc", candidate_value=0.5,
                                  n_val=5, val_state="T", split="train")
    figures = promotion.version_figures(object(), [Model(version=2, metrics={})], [on_val, on_train])
    assert figures == {2: promotion.VersionFigure("balanced_accuracy", 0.8, promotion.MEASURED_NOW, 3, "val")}


def test_two_values_that_differ_are_never_printed_alike():
    assert promotion.figures_apart(0.9054, 0.9051) == ("0.9054", "0.9051")
    assert promotion.figures_apart(0.91, 0.905) == ("0.910", "0.905")
    assert promotion.figures_apart(0.5, 0.5) == ("0.500", "0.500")


def test_an_equal_model_within_the_tolerance_is_promoted(project, capsys):
    active = project.active_model()
    decision = promotion.decide(project, active.version)
    assert decision.promoted  # the active model itself
    # a second copy of the same weights: same metric, promoted (>= active - tolerance)
    from medlabeler.engine.workflows.model_versions import save_version
    from medlabeler.engine.training.checkpoint import load_weights

    state, record = load_weights(active.path)
    copy = save_version(project, method_label="supervised", state=state, record=record, metrics={},
                        parent=active.version, activate=False)
    decision = promotion.promote_or_keep(project, copy.version)
    assert decision.promoted and decision.candidate_value == pytest.approx(decision.active_value)
    assert f"promoted v{copy.version}: {decision.candidate_value:.3f} = " in decision.message
    assert project.active_model().version == copy.version
    assert decision.measured() == ("dice", pytest.approx(decision.candidate_value))
    # a version with no validation figure of its own shows the one measured when it was decided
    from medlabeler.cli import main

    capsys.readouterr()
    assert main(["models", str(project.root)]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith(f"* v{copy.version} "))
    now = f"val dice {decision.candidate_value:.3f} (on the {decision.n_val} validation labels of now)"
    assert now in line
    assert main(["status", str(project.root)]) == 0
    assert f"active model: v{copy.version} (supervised, {now})" in capsys.readouterr().out

    # activated by hand (rolled back, then forward again), it keeps the figure promotion measured:
    # a hand activation measures nothing, and the table had shown "—" for it after one
    figures = promotion.version_figures(project, project.models())
    assert figures[copy.version] == promotion.VersionFigure("dice", decision.candidate_value, promotion.MEASURED_NOW,
                                                            decision.n_val, "val")
    assert figures[active.version].origin == promotion.MEASURED_NOW  # as compared, not its run's own of then
    assert figures[active.version].value == pytest.approx(decision.active_value)
    promotion.activate_by_hand(project, active.version)
    promotion.activate_by_hand(project, copy.version)
    assert promotion.version_figures(project, project.models()) == figures
    # once the validation labels change, each version shows its own run's figure again, or the one of then
    sample = project.samples(split="val", labeled=True)[0]
    mask = project.load_label(sample.id)
    project.save_label(sample.id, 1 - mask)
    later = promotion.version_figures(project, project.models())
    assert later[copy.version].origin == promotion.MEASURED_AT_DECISION
    assert later[active.version].origin == promotion.MEASURED_BY_RUN
    project.save_label(sample.id, mask)
    project.activate(active.version)


def test_the_tolerance_does_not_stack_down_a_chain_of_candidates(project, monkeypatch):
    """Each candidate within the tolerance of the last would walk the active model down; the best
    value reached on the same validation labels is the bar, until the user activates one by hand."""
    from medlabeler.engine.training.checkpoint import load_weights
    from medlabeler.engine.workflows.model_versions import save_version

    start = project.active_model()
    state, record = load_weights(start.path)
    copies = [save_version(project, method_label="supervised", state=state, record=record, metrics={},
                           parent=start.version, activate=False).version for _ in range(4)]
    values = {start.version: 0.900, copies[0]: 0.897, copies[1]: 0.894, copies[2]: 0.899, copies[3]: 0.891}
    n_val = len(project.samples(split="val", labeled=True))
    monkeypatch.setattr(promotion, "validation_metric",
                        lambda project, version, device=None, metric=None, split="val": ("dice", values[version], n_val))

    first = promotion.promote_or_keep(project, copies[0])
    assert first.promoted and "within 0.005 of 0.900" in first.message and first.best_value == 0.900
    second = promotion.promote_or_keep(project, copies[1])  # within 0.005 of v(copy 0), not of the best
    assert not second.promoted and project.active_model().version == copies[0]
    assert second.best_value == 0.900 and "vs the best 0.900 on these validation labels" in second.message
    # a stricter tolerance for the active model (a full run at rest: 0) keeps the usual bar to the best
    strict = promotion.decide(project, copies[2], tolerance=0.0)
    assert strict.promoted and strict.message.startswith(f"promoted v{copies[2]}: 0.899 > 0.897")
    assert promotion.promote_or_keep(project, copies[2]).promoted  # 0.899 > 0.897
    # other validation labels: nothing measured on them yet
    assert promotion.best_value(project, "another state", "dice") is None
    # the user goes back by hand: the bar starts again from the model they chose
    promotion.activate_by_hand(project, copies[1])
    after = promotion.promote_or_keep(project, copies[3])
    assert after.promoted and after.best_value == 0.894
    promotion.activate_by_hand(project, start.version)


def test_without_validation_labels_promotion_waits_and_says_why(tmp_path):
    import numpy as np

    project = make_seg_project(tmp_path, n=4, depth=6, label_fraction=0.0)
    try:
        for sample in project.samples(split="train"):
            project.save_label(sample.id, (project.load_pixels(sample) > 140).astype(np.uint8))
        assert not project.samples(split="val", labeled=True)
        first = run_to_end(train_project(project, method="supervised", steps=2, config=SEG))
        assert first.decision.promoted and "first model" in first.decision.message  # nothing to regress from
        second = run_to_end(train_project(project, method="supervised", steps=2, config=SEG))
        assert not second.decision.promoted and second.decision.waiting
        assert "no validation labels" in second.decision.message and "queue asks" in second.decision.message
        assert second.decision.headline() == second.decision.message  # "kept: v2 kept, …" said it twice
        assert first.decision.headline().startswith(f"promoted v{first.version}: ")
        assert project.active_model().version == first.version
    finally:
        project.close()


def test_a_time_budget_ends_the_run_cleanly_and_it_is_still_a_candidate(project):
    before = project.active_model().version
    result = run_to_end(train_project(project, method="supervised", steps=100000, budget_s=2.0, config=SEG))
    assert not result.cancelled and result.version is not None and result.steps < 100000
    assert result.stopped_by == "time budget" and result.planned_steps == 100000
    assert result.decision is not None and project.model(result.version).record["run"]["steps"] == result.steps
    if not result.decision.promoted:
        assert project.active_model().version == before


def test_cancel_mid_run_keeps_the_active_model(project):
    active = project.active_model()
    n_models = len(project.models())
    cancel = CancelToken()

    def on_event(event):
        if event.kind == "step" and event.step == 3:
            cancel.cancel()

    result = run_to_end(train_project(project, method="supervised", steps=50, config=SEG, cancel=cancel), on_event)
    assert result.cancelled and result.version is None and result.decision is None
    assert project.active_model() == active and len(project.models()) == n_models


def test_cli_train_prints_promoted_or_kept_and_learn_runs_the_loop(tmp_path, capsys):
    import json

    from medlabeler.cli import main

    project = make_seg_project(tmp_path, n=4, depth=6)
    root = project.root
    project.close()
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(SEG))
    assert main(["train", str(root), "--method", "supervised", "--steps", "40", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "trained supervised" in out and "\npromoted v1" in out and "promoted: promoted" not in out
    config.write_text(json.dumps({**SEG, "lr": 1e-5}))
    # from scratch (the default warm start from v1 would make it as good as v1 after one step)
    assert main(["train", str(root), "--method", "supervised", "--steps", "1", "--init", "scratch",
                 "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "kept: v2 not better" in out and "active v1" in out
    # no new labels, and no full run at rest asked for: the loop trains nothing, and says so (this had
    # passed on a failure: learn's default network did not fit v1's, and the failed run was no candidate)
    config.write_text(json.dumps(SEG))
    assert main(["learn", str(root), "--budget-s", "30", "--no-full-run", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "learn: 0 candidates, 0 promoted" in out and "failed" not in out


def test_a_project_with_no_validation_samples_compares_on_the_training_labels(tmp_path):
    """One scan in a whole-volume project: nothing can be held out, so waiting for validation labels
    would keep every later model out; the candidate is compared on the training labels instead."""
    import numpy as np

    from medlabeler.engine.project.project_import import create_project

    from .test_pipeline_datasets import write_volumes

    write_volumes(tmp_path / "images", n=1, depth=8)
    project, report = create_project(tmp_path / "project", tmp_path / "images", task="segmentation",
                                     names=["lesion"], unit="image")
    try:
        assert any("no validation samples" in w and "training labels" in w for w in report.warnings)
        (scan,) = project.samples()
        assert scan.split == "train" and promotion.comparison_split(project) == "train"
        project.save_label(scan.id, (project.load_pixels(scan) > 140).astype(np.uint8))
        config = {"cap_threads": False, "features": [4, 8, 16], "batch_size": 2, "lr": 3e-3, "volume_size": 16}
        first = run_to_end(train_project(project, method="supervised", steps=40, config=config))
        assert first.decision.promoted and "no validation samples" in first.decision.message
        good = promotion.validation_metric(project, first.version, split="train")[1]
        assert first.decision.candidate_value == pytest.approx(good) and first.decision.n_val == 1  # measured too

        bad = run_to_end(train_project(project, method="supervised", steps=1, config={**config, "lr": 1e-6}))
        decision = bad.decision
        assert decision.split == "train" and not decision.waiting and decision.n_val == 1
        assert decision.active_value == pytest.approx(good) and decision.candidate_value < good - promotion.TOLERANCE
        assert not decision.promoted and project.active_model().version == first.version
        assert "train dice on 1 training label" in decision.message and "no validation samples" in decision.message
        assert decision.measured()[0] == "train dice"  # shown as a training figure, never as validation

        # the same run again (same seed, from random weights: the same model) equals the active one
        again = run_to_end(train_project(project, method="supervised", steps=40, config=config))
        assert again.decision.split == "train" and again.decision.candidate_value == pytest.approx(good)
        assert again.decision.promoted and project.active_model().version == again.version
    finally:
        project.close()


def test_validation_labels_of_one_class_judge_neither_steps_nor_models(tmp_path):
    """Four patients' X-rays, validation all "normal": any model that says "normal" everywhere
    scored balanced accuracy 1.000 there, training kept its first step, and promotion would keep
    the model that never finds a lesion. Now training keeps its last weights, and promotion
    compares on the training labels, saying why."""
    from .test_pipeline_datasets import make_cls_project

    project = make_cls_project(tmp_path, n=24)
    try:
        for sample in project.samples(split="val", labeled=True):
            project.save_label(sample.id, 0)  # one class only
        assert promotion.comparison_split(project) == "train"
        from medlabeler.engine.project.project_import import one_class_validation_warnings

        (warning,) = one_class_validation_warnings(project)  # what `init` of such class folders says
        assert warning.startswith("the validation labels hold one class only (normal)")
        config = {"cap_threads": False, "image_size": 32, "batch_size": 8, "lr": 3e-3, "eval_every": 1,
                  "steps_per_epoch": 2}
        events = []
        first = run_to_end(train_project(project, method="supervised", steps=6, config=config), events.append)
        assert first.best_step is None, "no step was chosen on validation: the last weights stay"
        assert any("validation labels hold one class only" in (e.message or "") for e in events)
        second = run_to_end(train_project(project, method="supervised", steps=6, config=config))
        assert second.decision.split == "train"
        assert "the validation labels hold one class only (normal)" in second.decision.message
    finally:
        project.close()


def test_evaluate_names_the_version_it_measured_and_takes_it_as_shown(project, capsys):
    """`evaluate` printed no version (a new user had activated an older one by hand), and refused
    `--version v2` as `models` and the app write it."""
    from medlabeler.cli import main

    if project.active_model() is None:  # run alone, or first
        run_to_end(train_project(project, method="supervised", steps=2, config=SEG))
    version = project.active_model().version
    n_val = len(project.samples(split="val", labeled=True))
    capsys.readouterr()
    assert main(["evaluate", str(project.root), "--split", "val"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f" of v{version} (active) on {n_val} labeled validation sample" in lines[0]
    assert lines[1].startswith("  (dice: each label's Dice averaged over the samples that hold it")
    assert main(["evaluate", str(project.root), "--split", "val", "--version", f"v{version}"]) == 0
    assert f" of v{version} (active) on " in capsys.readouterr().out


def test_a_model_that_cannot_be_written_on_a_full_disk_says_where_and_the_active_one_stays(project, monkeypatch):
    """`train` on a full disk ran every step, then ended in "error: [Errno 28] No space left on
    device", naming no project or disk."""
    import errno

    from medlabeler.engine.errors import ProjectError
    from medlabeler.engine.training import checkpoint
    import torch

    from medlabeler.engine.workflows.model_versions import save_version

    active, versions = project.active_model(), len(project.models())

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", full)
    with pytest.raises(ProjectError, match=f"{project.root}: the trained model could not be saved in the project: "
                                           "No space left on device"):
        save_version(project, method_label="supervised", state={"w": torch.zeros(2)}, record={}, metrics={},
                     parent=None, activate=True)
    assert project.active_model() == active and len(project.models()) == versions
    assert [p.name for p in project.root.iterdir() if p.name.startswith(".train-")] == []


def test_figures_logged_before_the_headline_changed_set_no_bar(tmp_path):
    """A decision logged when segmentation's Dice still counted a label no reference held (1.000)
    is measured otherwise: its figure must not be the best a candidate has to come near."""
    from medlabeler.engine.workflows import promotion
    from medlabeler.engine.workflows.model_versions import label_fingerprint

    project = make_seg_project(tmp_path, n=3, depth=4)
    with project:
        val = [s.id for s in project.samples(split="val", labeled=True)]
        assert val, "the fixture labels validation samples"
        old_state = label_fingerprint(project, val)  # what a decision of before recorded
        now = promotion.validation_state(project)
        assert now != old_state and now.startswith(old_state)
        project.audit(promotion.AUDIT_ACTION, candidate=2, promoted=True, metric="dice", candidate_value=0.93,
                      active=1, active_value=0.90, val_state=old_state)
        assert promotion.best_value(project, now, "dice") is None
        project.audit(promotion.AUDIT_ACTION, candidate=3, promoted=False, metric="dice", candidate_value=0.85,
                      active=2, active_value=0.86, val_state=now)
        assert promotion.best_value(project, now, "dice") == 0.86
