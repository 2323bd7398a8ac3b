"""The learning loop: trains after 3 new labels and promotes; pause holds a run, cancel keeps the active model."""

import numpy as np
import pytest

from medlabeler.engine.workflows.learn_loop import LoopControl, labels_since_model, learn
from medlabeler.engine.training import run_to_end

from .test_pipeline_datasets import make_seg_project

TINY = {"cap_threads": False, "image_size": 32, "features": [8, 16, 32], "batch_size": 4, "unlabeled_batch_size": 4,
        "lr": 3e-3, "steps": 30}


def _label(project, sample) -> None:
    project.save_label(sample.id, (project.load_pixels(sample) > 140).astype(np.uint8))


@pytest.fixture()
def project(tmp_path):
    project = make_seg_project(tmp_path, n=4, depth=6, label_fraction=0.0)
    train = project.samples(split="train")
    for sample in train[:3] + project.samples(split="val"):
        _label(project, sample)
    yield project
    project.close()


def test_the_loop_trains_after_three_new_labels_and_promotes(project, monkeypatch):
    from medlabeler.engine.workflows import learn_loop

    monkeypatch.setattr(learn_loop, "WARM_START_MIN_STEPS", 5)  # the tiny runs: a third of 30 shows
    control = LoopControl()
    gen = learn(project, control=control, config=TINY, poll_s=0.01)
    kinds, decisions, scored, labeled_more = [], [], [], False
    for event in gen:
        kinds.append(event.kind)
        if event.kind == "decision":
            decisions.append(event.decision)
        if event.kind == "scored":
            scored.append(event.done)
        if event.kind == "phase" and event.phase == "idle":
            if not labeled_more:
                assert len(decisions) == 1 and labels_since_model(project) == 0
                for sample in project.samples(split="train", labeled=False)[:2]:
                    _label(project, sample)
                assert labels_since_model(project) == 2  # fewer than 3: the loop keeps waiting
                labeled_more, waiting = True, 0
            elif len(decisions) == 1:
                waiting += 1
                if waiting == 3:
                    assert event.labels_since_model == 2
                    _label(project, project.samples(split="train", labeled=False)[0])  # the third
                assert waiting < 50, "the third label did not start a candidate"
            else:
                control.cancel()
    first, second = decisions
    assert first.promoted and second.promoted and second.active == first.candidate
    assert project.active_model().version == second.candidate
    assert project.model(second.candidate).parent == first.candidate  # warm-started from the active model
    assert project.model(second.candidate).n_labels == 6
    # every round trains a third of the budget, the first from scratch too (a full run waits for a rest)
    assert project.model(first.candidate).record["run"]["steps"] == 10
    assert project.model(second.candidate).record["run"]["steps"] == 10
    # the pool was re-scored with each promoted model, in chunks the queue could use at once
    assert scored and set(project.scores(second.candidate)) == {s.id for s in project.samples(split="train", labeled=False)}
    assert kinds[-1] == "phase"


def test_pause_holds_a_run_and_cancel_keeps_the_active_model(project):
    run_to_end(learn(project, config=TINY, until_idle=True, score=False))
    active = project.active_model()
    assert active is not None
    for sample in project.samples(split="train", labeled=False)[:3]:
        _label(project, sample)
    control = LoopControl()
    gen = learn(project, control=control, config={**TINY, "steps": 500}, poll_s=0.01)
    steps, paused_events = [], 0
    for event in gen:
        if event.kind == "train" and event.run_event.kind == "step":
            steps.append(event.run_event.step)
            if event.run_event.step == 3:
                control.pause()
        if event.kind == "phase" and event.phase == "paused":
            paused_events += 1
            if paused_events == 5:
                control.cancel()
    assert steps[-1] == 3 and paused_events >= 5  # nothing advanced while paused
    trained = [m for m in project.models() if not m.method.startswith("pretrain:")]
    assert project.active_model() == active and len(trained) == 1


def test_until_idle_stops_when_nothing_is_left_and_a_failed_run_keeps_the_model(project):
    summary = run_to_end(learn(project, config=TINY, until_idle=True, score=False))
    assert len(summary.decisions) == 1 and summary.decisions[0].promoted
    idle = []  # nothing left to do: the last words say why (they were only "learning stopped")
    run_to_end(learn(project, config=TINY, until_idle=True, score=False), idle.append)
    assert idle[-1].message == "learning stopped (nothing to do until 3 more labels arrive)"
    active = project.active_model()
    for sample in project.samples(split="train", labeled=False)[:3]:
        _label(project, sample)
    events = []
    summary = run_to_end(learn(project, config={**TINY, "lr": -1.0}, until_idle=True, score=False), events.append)
    assert summary.failures and not summary.decisions
    assert any(e.kind == "failed" and "active model stays" in e.message for e in events)
    assert project.active_model() == active


def test_labels_saved_while_a_candidate_trains_start_the_next_one(project):
    control = LoopControl()
    decisions, saved = [], False
    for event in learn(project, control=control, config=TINY, poll_s=0.01, score=False):
        if event.kind == "train" and event.run_event.kind == "step" and not saved:
            for sample in project.samples(split="train", labeled=False)[:3]:
                _label(project, sample)  # the run already read its labels: these are new
            saved = True
        if event.kind == "decision":
            decisions.append(event.decision)
            if len(decisions) == 1:
                assert labels_since_model(project) == 3
            else:
                control.cancel()
        if event.kind == "phase" and event.phase == "idle":
            control.cancel()
    assert len(decisions) == 2 and project.model(decisions[1].candidate).n_labels == 6


def test_one_pass_scoring_matches_the_two_pass_probabilities_and_embeddings(project):
    from medlabeler.engine.workflows.model_versions import load_model
    from medlabeler.engine.workflows.predict import embed_samples, predict_samples, predict_with_features

    run_to_end(learn(project, config=TINY, until_idle=True, score=False))
    bundle = load_model(project)
    ids = [s.id for s in project.samples()[:5]]
    one = list(predict_with_features(project, ids, model_bundle=bundle, batch_size=2))
    probs = dict(predict_samples(project, ids, model_bundle=bundle, batch_size=2))
    _, feats = embed_samples(project, ids, model_bundle=bundle, batch_size=2)
    for (sid, p, f), f2 in zip(one, feats):
        assert p.shape == probs[sid].shape and np.allclose(p, probs[sid], atol=1e-5)
        assert np.allclose(f, f2, atol=1e-5)


def test_when_the_recommendation_pretrains_the_loop_pretrains_first_then_fine_tunes(project, monkeypatch):
    from medlabeler.engine.workflows import learn_loop
    from medlabeler.engine.workflows.recommended import Recommendation

    pretraining = Recommendation(method="supervised", pretrain="simclr", init="pretrained",
                                 pretrain_config={"steps": 4, "steps_per_epoch": 2})
    monkeypatch.setattr(learn_loop, "recommendation", lambda project, config=None: pretraining)
    events = []
    summary = run_to_end(learn(project, config=TINY, until_idle=True, score=False), events.append)
    encoder = project.model(summary.pretrained[0])
    assert encoder.method == "pretrain:simclr" and encoder.record["run"]["steps"] == 4
    assert any(e.kind == "pretrain" and e.run_event.kind == "step" for e in events)
    first = project.model(summary.decisions[0].candidate)
    assert summary.decisions[0].promoted and first.parent == encoder.version and "pretrain:simclr" in first.record["init"]
    assert first.record["run"]["steps"] == 30  # fine-tuning an encoder is no warm start: the whole budget
    # an encoder exists now: the loop does not pretrain again
    summary = run_to_end(learn(project, config=TINY, until_idle=True, score=False))
    assert summary.pretrained == []


def test_each_round_removes_old_weights_and_the_loop_goes_on_from_the_active_model(project, monkeypatch):
    from medlabeler.engine.workflows import learn_loop, model_versions

    monkeypatch.setattr(learn_loop, "remove_old_weights", lambda p: model_versions.remove_old_weights(p, 1, 1))
    first = run_to_end(learn(project, config=TINY, until_idle=True, score=False))
    assert first.removed == [] and first.decisions[0].promoted
    for sample in project.samples(split="train", labeled=False)[:3]:
        _label(project, sample)
    second = run_to_end(learn(project, config=TINY, until_idle=True, score=False))
    v1, v2 = project.models()
    assert second.decisions[0].promoted and v2.active and v2.parent == 1, "warm-started from v1 before it went"
    assert second.removed == [1] and v1.removed is not None and not v1.path.exists() and v2.path.is_file()
    assert "removed the weights of v1" in second.text()


def test_the_loop_reports_whole_percents_as_a_progress_bar_shows_them():
    """The loop's text and the Train tab's bar (Qt: value * 100 // maximum) agree at every step."""
    from medlabeler.engine.workflows.learn_loop import percent

    for total in (7, 100, 300):
        for step in range(total + 1):
            assert percent(step / total) == f"{step * 100 // total}%"


def test_a_loop_that_finds_the_pool_unscored_scores_it_before_waiting(project):
    """The queue fell back to random picks with a model active: scores were only made after a
    promotion, and a pass stopped at once when labels were already waiting for the next candidate."""
    from medlabeler.engine.active.scoring import to_score

    run_to_end(learn(project, config=TINY, until_idle=True, score=False))  # a model, no scores
    assert to_score(project, split="train")
    control = LoopControl()
    phases = []
    for event in learn(project, control=control, config=TINY, poll_s=0.01):
        phases.append(event.phase)
        if event.phase == "idle":
            control.cancel()
    assert "scoring" in phases and phases.index("scoring") < phases.index("idle")
    assert set(to_score(project, split="train")) <= project.blank_ids()


def test_labels_waiting_when_scoring_starts_do_not_stop_it(project, monkeypatch):
    from medlabeler.engine.active.scoring import to_score
    from medlabeler.engine.workflows import learn_loop

    run_to_end(learn(project, config=TINY, until_idle=True, score=False))
    for sample in project.samples(split="train", labeled=False)[:3]:
        _label(project, sample)  # the next candidate is due
    clock = iter(range(0, 10_000, 3))
    monkeypatch.setattr(learn_loop.time, "monotonic", lambda: float(next(clock)))  # a check every chunk
    events = list(learn_loop._rescore(project, LoopControl(), new_labels=3))
    assert not any("scoring stops here" in (e.message or "") for e in events)
    assert set(to_score(project, split="train")) <= project.blank_ids()


def test_a_candidate_that_becomes_due_while_scoring_stops_the_pass(project, monkeypatch):
    """One label waits when the pass starts (no candidate due); two more arrive while it runs."""
    from medlabeler.engine.workflows import learn_loop

    run_to_end(learn(project, config=TINY, until_idle=True, score=False))
    clock = iter(range(0, 10_000, 3))
    monkeypatch.setattr(learn_loop.time, "monotonic", lambda: float(next(clock)))  # a check every chunk
    counts = iter([1, 1] + [3] * 1000)  # read for the start message, for the start, then at each check
    monkeypatch.setattr(learn_loop, "labels_since_model", lambda p: next(counts))
    events = list(learn_loop._rescore(project, LoopControl(), new_labels=3))
    assert any("scoring stops here" in (e.message or "") for e in events)


def test_a_run_in_progress_says_about_how_long_is_left():
    """The status showed "43%" and a clinician could not tell when the model would come."""
    from medlabeler.engine.workflows.learn_loop import _TimeLeft

    now = [100.0]
    timer = _TimeLeft(clock=lambda: now[0])
    assert timer.text(0.10) == ""  # the rate counts from the first report
    now[0] += 3
    assert timer.text(0.20) == ""  # too early to say
    now[0] += 57  # 60 s for 0.40 of the run: 0.50 left takes 75 s
    assert timer.text(0.50) == ", ~1 min left"
    now[0] += 60  # 120 s for 0.80: 0.10 left takes 15 s
    assert timer.text(0.90) == ", <1 min left"
    timer.restart()  # after a pause: the paused minutes are not part of the rate
    now[0] += 600
    assert timer.text(0.90) == ""
    now[0] += 10
    assert timer.text(0.91) == ""  # 0.01 done: too little to say
    now[0] += 290
    assert timer.text(0.95) == ", ~5 min left"  # 300 s for 0.05: 0.05 left takes 300 s


def test_the_loop_names_the_steps_of_the_run_it_trains(project):
    events = []
    run_to_end(learn(project, config=TINY, until_idle=True, score=False), events.append)
    started = next(e.message for e in events if e.kind == "phase" and e.phase == "training")
    assert started == "training a candidate from scratch with 3 training labels (9 new), 30 steps"  # new in any split
    progress = [e.message for e in events if e.kind == "train" and e.run_event.kind == "step"]
    assert progress[-1] == "training: 100% of 30 steps (from scratch, 3 training labels)"


def test_first_picks_show_no_score_until_the_active_model_scored_the_pool(project, capsys):
    """After a promotion, before the pool's scores were written, the queue read "no uncertainty
    scores yet: far from labeled samples" beside a score of 0.686 (a k-center distance)."""
    import json

    from medlabeler.cli import main

    run_to_end(learn(project, config=TINY, until_idle=True, score=False))
    assert project.active_model() is not None and not project.scores(project.active_model().version)
    assert main(["queue", str(project.root), "--n", "3", "--json"]) == 0
    picks = json.loads(capsys.readouterr().out)
    first = [p for p in picks if p["reason"].startswith("no uncertainty scores yet: ")]
    assert first and all(p["score"] is None for p in first), picks


def test_a_warm_start_trains_a_third_of_the_steps_but_not_too_few():
    from medlabeler.engine.workflows.learn_loop import _warm_steps

    assert _warm_steps({"steps": 300}, 1 / 3) == {"steps": 100}  # the app on a CPU
    assert _warm_steps({"steps": 1500}, 1 / 3)["steps"] == 500  # on a GPU
    assert _warm_steps({"steps": 150}, 1 / 3)["steps"] == 100  # 50 would be too few
    assert _warm_steps({"steps": 60}, 1 / 3)["steps"] == 60  # a short run stays whole
    assert _warm_steps({"steps": None, "epochs": 5}, 1 / 3) == {"steps": None, "epochs": 5}


@pytest.fixture()
def short_rounds(monkeypatch):
    """The tiny runs' warm rounds a third of their 30 steps: 10."""
    from medlabeler.engine.workflows import learn_loop

    monkeypatch.setattr(learn_loop, "WARM_START_MIN_STEPS", 5)


def _label_more(project, n: int = 3) -> None:
    for sample in project.samples(split="train", labeled=False)[:n]:
        _label(project, sample)


def test_a_loop_at_rest_gives_a_short_round_a_full_run_once(project, short_rounds):
    """Warm rounds train a third of the steps to keep up with a clinician; when nobody labels for
    a while, the active model gets a full-length run on the same labels, once."""
    run_to_end(learn(project, config=TINY, until_idle=True, score=False, full_run_after_s=None))
    _label_more(project)
    events = []
    summary = run_to_end(learn(project, config=TINY, until_idle=True, score=False), events.append)
    warm, full = (project.model(d.candidate) for d in summary.decisions)
    assert warm.record["run"]["steps"] == 10 and full.record["run"]["steps"] == 30
    first = summary.decisions[0]
    assert full.parent == (warm.version if first.promoted else first.active)  # from the active model
    assert full.n_labels == warm.n_labels
    # no new label: promoted only if it validates at least as well (no tolerance)
    assert summary.decisions[0].tolerance == 0.005 and summary.decisions[1].tolerance == 0.0
    said = [e.message for e in events if e.kind == "phase" and e.phase == "training"]
    assert said[-1] == (f"a full run of 30 steps from v{full.parent} on the same labels (6 training labels; "
                        "new labels stop it)")
    progress = [e.message for e in events if e.kind == "train" and e.run_event.kind == "step"]
    assert progress[-1] == f"full run: 100% of 30 steps (from v{full.parent}, 6 training labels)"
    # done once: the newest model is a full run now, so an idle loop has nothing left to do
    assert run_to_end(learn(project, config=TINY, until_idle=True, score=False)).decisions == []


def test_a_full_run_with_a_label_saved_since_says_so_and_gets_the_usual_tolerance(project, short_rounds):
    """Fewer new labels than start a candidate: the full run at rest trains on them too. It had said
    "on the same labels" and been held to no tolerance (a new user's trial)."""
    run_to_end(learn(project, config=TINY, until_idle=True, score=False, full_run_after_s=None))
    _label_more(project, 1)
    events = []
    summary = run_to_end(learn(project, config=TINY, until_idle=True, score=False), events.append)
    (full,) = summary.decisions
    said = [e.message for e in events if e.kind == "phase" and e.phase == "training"]
    assert said[-1].startswith(f"a full run of 30 steps from v{full.active} with 1 label new since v{full.active} (")
    assert full.tolerance == 0.005


def test_a_run_its_time_budget_cut_short_still_gets_a_full_run(project, short_rounds):
    """`learn --budget-s 120` cut a full run at step 99 of 300 and promoted it; the next loop took
    it for a full run (its config said 300 steps) and never gave these labels one (a trial)."""
    from medlabeler.engine.workflows.learn_loop import short_run_newest
    from medlabeler.engine.workflows.run_config import recommendation
    from medlabeler.engine.workflows.train import train_project

    rec = recommendation(project, TINY)
    run_to_end(train_project(project, config=TINY))  # whole: 30 steps
    assert not short_run_newest(project, rec, TINY)
    run_to_end(train_project(project, init=project.active_model().version, config=TINY, budget_s=1e-9))
    run = project.models()[-1].record["run"]
    assert run["stopped_by"] == "time budget" and run["steps"] < 30
    assert short_run_newest(project, rec, TINY)
    events = []  # and the loop says so
    run_to_end(learn(project, config=TINY, until_idle=True, score=False, run_budget_s=1e-9), events.append)
    said = [e.message for e in events if e.kind == "phase"]
    assert any(m.startswith("the time budget stopped the run at step 1 of 30") for m in said), said


def test_a_new_label_starts_the_rest_again(project, short_rounds):
    control, clock = LoopControl(), [0.0]
    run_to_end(learn(project, config=TINY, until_idle=True, score=False, full_run_after_s=None))
    _label_more(project)
    decisions, idle, full_run_at = [], 0, None
    for event in learn(project, control=control, config=TINY, poll_s=0.01, score=False,
                       full_run_after_s=60, clock=lambda: clock[0]):
        if event.kind == "decision":
            decisions.append(event.decision)
        if event.kind == "phase" and event.message.startswith("a full run of"):
            full_run_at = clock[0]
        if event.kind == "phase" and event.phase == "idle":
            idle += 1
            clock[0] += 20  # three idle checks: 60 s without a label
            if idle == 3:
                _label(project, project.samples(split="train", labeled=False)[0])  # at 40 s: the rest starts again
            if idle == 8:
                control.cancel()
    assert len(decisions) == 2 and full_run_at == 120  # 60 s after the label, not after 60 s idle
    assert project.model(decisions[1].candidate).record["run"]["steps"] == 30
    assert project.model(decisions[1].candidate).n_labels == 7


@pytest.mark.parametrize("what", ["labels", "retrain"])
def test_new_labels_or_a_retrain_stop_a_full_run_and_the_next_candidate_trains(project, short_rounds, monkeypatch,
                                                                               what):
    from medlabeler.engine.workflows import learn_loop

    run_to_end(learn(project, config=TINY, until_idle=True, score=False, full_run_after_s=None))
    _label_more(project)
    run_to_end(learn(project, config=TINY, until_idle=True, score=False, full_run_after_s=None))
    active = project.active_model()
    clock = iter(range(10_000_000))
    monkeypatch.setattr(learn_loop.time, "monotonic", lambda: float(next(clock)))  # a label check every few steps
    control, events, asked = LoopControl(), [], False
    for event in learn(project, control=control, config=TINY, poll_s=0.01, score=False, full_run_after_s=0):
        events.append(event)
        if event.kind == "train" and event.run_event.kind == "step" and not asked:
            _label_more(project) if what == "labels" else control.request_retrain()
            asked = True
        if event.kind == "decision":
            control.cancel()
    said = [e.message for e in events if e.kind == "phase"]
    assert any(m.startswith("a full run of 30 steps") for m in said)
    why = "new labels arrived" if what == "labels" else "a retrain was asked for"
    assert f"{why}: the full run stops (the active model stays) and the next candidate trains" in said
    decisions = [e.decision for e in events if e.kind == "decision"]
    assert len(decisions) == 1  # the full run was discarded, not validated
    candidate = project.model(decisions[0].candidate)
    assert candidate.parent == active.version and candidate.record["run"]["steps"] == 10
    assert candidate.n_labels == (9 if what == "labels" else 6)
    steps = [e.run_event.step for e in events if e.kind == "train" and e.run_event.kind == "step"]
    assert steps.index(1, 1) < 5, "the full run went on after the labels"


def test_no_full_run_while_a_failed_candidate_waits_for_a_label(project, short_rounds):
    """A candidate whose run failed is retried after the next label; a full run meanwhile would
    hold that label back until as many again arrived."""
    run_to_end(learn(project, config=TINY, until_idle=True, score=False, full_run_after_s=None))
    _label_more(project)
    run_to_end(learn(project, config=TINY, until_idle=True, score=False, full_run_after_s=None))
    _label_more(project)
    summary = run_to_end(learn(project, config={**TINY, "lr": -1.0}, until_idle=True, score=False))
    assert len(summary.failures) == 1 and not summary.decisions  # the candidate failed; no full run beside it


def test_a_classifier_waits_for_labels_of_two_classes_before_its_first_model(tmp_path):
    """A first model trained on one label predicted that class at 100% everywhere, was promoted with
    "val auc 0.000", and every queue row read "entropy 0.000, among the most uncertain"."""
    from medlabeler.engine.errors import TrainingError
    from medlabeler.engine.io import scan_sources
    from medlabeler.engine.store import Project
    from medlabeler.engine.workflows.train import train_project

    from .test_pipeline_datasets import fixed_groups, write_pngs

    classes = write_pngs(tmp_path / "images", 24)
    infos, _ = scan_sources(tmp_path / "images")
    project = Project.create(tmp_path / "project", task="classification", names=["normal", "lesion"], seed=0)
    project.add_sources(fixed_groups(infos))
    with project:
        for sample in project.samples(split="val"):
            project.save_label(sample.id, classes[str(sample.path)])
        train = project.samples(split="train")
        normal = [s for s in train if classes[str(s.path)] == 0]
        for sample in normal[:3]:
            project.save_label(sample.id, 0)
        events = []
        summary = run_to_end(learn(project, config=TINY, until_idle=True, score=False), on_event=events.append)
        assert not summary.decisions and project.active_model() is None
        assert events[-1].message == ("learning stopped (nothing to do: training labels of two classes are needed "
                                      "(so far only normal))")
        # a Retrain asked for meanwhile is answered, not dropped
        control = LoopControl()
        control.request_retrain()
        answered = []
        for event in learn(project, control=control, config=TINY, score=False, poll_s=0.01):
            answered.append(event)
            if event.kind == "phase" and event.phase == "idle":
                control.cancel()
        assert answered[0].message == "Retrain: no candidate: training labels of two classes are needed (so far only normal)"
        with pytest.raises(TrainingError, match="two classes are needed"):  # `medlabeler train` and the Train tab
            run_to_end(train_project(project, method="supervised", config=TINY))
        project.save_label(next(s for s in train if classes[str(s.path)] == 1).id, 1)
        summary = run_to_end(learn(project, config=TINY, until_idle=True, score=False))
        assert len(summary.decisions) == 1 and summary.decisions[0].promoted


def test_an_active_model_whose_weights_are_gone_is_replaced_not_trained_from_round_after_round(project, capsys):
    """The active model's weights file deleted (or torn): every round failed ("weights file not
    found"), `status` still called it active, and no message named a way out."""
    from medlabeler.cli import main

    run_to_end(learn(project, config=TINY, until_idle=True, score=False))
    gone = project.active_model()
    gone.path.unlink()
    assert main(["status", str(project.root)]) == 0
    out = capsys.readouterr().out
    assert f"it cannot be loaded: its weights file {gone.path.name} is missing" in out and "--activate V" in out
    for sample in project.samples(split="train", labeled=False)[:3]:
        _label(project, sample)
    events = []
    summary = run_to_end(learn(project, config=TINY, until_idle=True, score=False), events.append)
    assert not summary.failures and summary.decisions[0].promoted
    assert any(f"active v{gone.version} cannot be loaded" in e.message and "from scratch instead" in e.message
               for e in events)
    assert summary.decisions[0].message.startswith(f"promoted v{gone.version + 1} (val dice ")
    assert f"active v{gone.version} cannot be loaded" in summary.decisions[0].message
    assert project.active_model().version == gone.version + 1 and project.active_model().parent is None


def test_an_active_model_of_another_network_is_not_warm_started_from_round_after_round(project):
    """A trial: the active model came from a run of narrower features; after reopening with the
    defaults every round failed ("model v8 was trained with unet on 1 channel(s); this run uses unet
    on 1: its weights do not fit", the difference unsaid) and the loop trained nothing again."""
    run_to_end(learn(project, config=TINY, until_idle=True, score=False))
    narrow = project.active_model()
    for sample in project.samples(split="train", labeled=False)[:3]:
        _label(project, sample)
    events = []
    wider = {**TINY, "features": [8, 16, 32, 64]}
    summary = run_to_end(learn(project, config=wider, until_idle=True, score=False), events.append)
    assert not summary.failures and summary.decisions  # a candidate, decided on as any other
    said = [e.message for e in events if "another network" in e.message]
    assert said and said[0].startswith(f"model v{narrow.version} is another network than this run's (features "
                                       "[8, 16, 32] against [8, 16, 32, 64])")
    assert said[0].endswith("training a candidate from scratch instead")
    assert project.model(summary.decisions[0].candidate).parent is None
