"""The queue on a project: strategy picks from train, held-out splits kept in proportion."""

import numpy as np

from medlabeler.engine.workflows.active_loop import held_out_plan, next_samples
from medlabeler.engine.project.project_import import create_project
from tests.engine.io_fixtures import mni_volume, write_nifti


def _project(tmp_path):
    brain = mni_volume(step=3)  # a real MRI, 63 slices
    source = write_nifti(tmp_path / "brain.nii.gz", brain)
    project, _ = create_project(tmp_path / "proj", source, task="segmentation", names=["tissue"])
    return project, brain


def test_queue_asks_for_validation_and_test_labels_when_they_fall_behind(tmp_path):
    project, brain = _project(tmp_path)
    with project:
        for sample in project.samples(split="train")[:6]:
            project.save_label(sample.id, (project.load_pixels(sample) > 80).astype(np.uint8))
        plan = held_out_plan(project, 10)
        assert plan[:2] == ["val", "test"] and plan.count("train") >= 5
        queue = next_samples(project, strategy="random", n=10)
        splits = {s.id: s.split for s in project.samples()}
        assert [splits[p.sample] for p in queue] == plan
        requests = [p for p in queue if splits[p.sample] != "train"]
        assert [p.reason.split(":")[0] for p in requests[:2]] == ["validation label needed", "test label needed"]
        assert all(p.score is None and "held out" in p.reason for p in requests)  # a request, not an uncertainty
        assert len({p.sample for p in queue}) == 10


def test_queue_is_all_train_once_held_out_splits_have_their_share(tmp_path):
    project, _ = _project(tmp_path)
    with project:
        for split, count in (("train", 6), ("val", 3), ("test", 3)):
            for sample in project.samples(split=split)[:count]:
                project.save_label(sample.id, (project.load_pixels(sample) > 80).astype(np.uint8))
        assert set(held_out_plan(project, 4)) == {"train"}
        labeled = {s.id for s in project.samples(labeled=True)}
        assert not labeled & {p.sample for p in next_samples(project, strategy="random", n=4)}


def test_once_every_training_sample_is_labeled_the_queue_asks_for_the_held_out_ones(tmp_path):
    """A project of three images (one per split) offered only its training image: `n` went back
    and forth, and the test image was never asked for."""
    project, _ = _project(tmp_path)
    with project:
        for sample in project.samples(split="train"):
            project.save_label(sample.id, (project.load_pixels(sample) > 80).astype(np.uint8))
        open_held_out = len(project.samples(split="val")) + len(project.samples(split="test"))
        plan = held_out_plan(project, 100)
        assert len(plan) == open_held_out and set(plan) == {"val", "test"}


def test_scoring_embeds_labeled_samples_as_kcenter_starting_points(tmp_path):
    from medlabeler.engine.workflows.active_loop import score_project
    from medlabeler.engine.workflows.train import train_project
    from medlabeler.engine.training import run_to_end

    project, _ = _project(tmp_path)
    with project:
        for sample in project.samples(split="train")[:4]:
            project.save_label(sample.id, (project.load_pixels(sample) > 80).astype(np.uint8))
        config = {"image_size": 32, "features": [4, 8, 16, 32], "steps": 2, "batch_size": 2}
        version = run_to_end(train_project(project, method="supervised", config=config)).version
        result = run_to_end(score_project(project))
        ids, features = project.embeddings(version)
        labeled = {s.id for s in project.samples(labeled=True)}
        unlabeled_train = {s.id for s in project.samples(split="train", labeled=False)}
        assert result["scored"] == len(unlabeled_train) and set(project.scores(version)) == unlabeled_train
        assert set(int(i) for i in ids) == labeled | unlabeled_train and np.isfinite(features).all()
        queue = next_samples(project, n=12)  # hybrid, the app's and the CLI's default
        assert [p.sample for p in next_samples(project, n=12)] == [p.sample for p in queue]  # deterministic
        for n in (1, 2, 5):  # the app's `n`, the demo's 5 and the table's rows agree on the order
            assert [p.sample for p in next_samples(project, n=n)] == [p.sample for p in queue[:n]]
        picks = next_samples(project, strategy="kcenter", n=3, split="train")
        assert all("k-center" in p.reason or "far" in p.reason for p in picks)


def test_a_save_in_flight_ranks_as_labeled_as_it_will_once_stored(tmp_path):
    project, _ = _project(tmp_path)
    with project:
        for sample in project.samples(split="train")[:5]:
            project.save_label(sample.id, (project.load_pixels(sample) > 80).astype(np.uint8))
        before = [p.sample for p in next_samples(project, strategy="kcenter", n=8)]
        for first in before[:2]:  # a train pick, then a held-out request: both change the ranking
            assumed = [p.sample for p in next_samples(project, strategy="kcenter", n=8, assume_labeled=[first])]
            sample = project.sample(first)
            project.save_label(first, (project.load_pixels(sample) > 80).astype(np.uint8))
            assert [p.sample for p in next_samples(project, strategy="kcenter", n=8)] == assumed
            assert first not in assumed


def test_a_skipped_sample_comes_after_the_rest_of_the_queue_until_put_back(tmp_path, capsys):
    """A radiologist passed over a test-label request with `n`; after the next save the same slice
    was on top again, every time. A skipped sample now waits behind every other one, a held-out
    request moves to another sample of its split, and the store keeps it (the CLI's queue agrees)."""
    from medlabeler.cli import main
    from medlabeler.engine.store.project import Project
    from medlabeler.engine.workflows.active_loop import SKIPPED_REASONS, is_request, is_skipped, shown_score

    project, _ = _project(tmp_path)
    with project:
        for sample in project.samples(split="train")[:6]:
            project.save_label(sample.id, (project.load_pixels(sample) > 80).astype(np.uint8))
        before = next_samples(project, strategy="kcenter", n=100)
        splits = {s.id: s.split for s in project.samples()}
        request = next(p.sample for p in before if splits[p.sample] == "test")
        train_top = next(p.sample for p in before if splits[p.sample] == "train")
        project.skip(request)
        project.skip(train_top)
        assert project.status()["skipped"] == 2
        after = next_samples(project, strategy="kcenter", n=100)
        assert [p.sample for p in after[-2:]] == [request, train_top]  # behind the rest, the longest skipped first
        assert [p.reason for p in after[-2:]] == [SKIPPED_REASONS["test"], SKIPPED_REASONS["train"]]
        assert all(is_skipped(p) and not is_request(p) and shown_score(p, has_model=True) is None for p in after[-2:])
        # the strategy's picks keep their order; the test request keeps its place, for another test sample
        kept = [p for p in before if p.sample != train_top]
        assert [splits[p.sample] for p in after[:20]] == [splits[p.sample] for p in kept[:20]]
        assert [p.sample for p in after if splits[p.sample] == "train"][:-1] == [
            p.sample for p in kept if splits[p.sample] == "train"]
        assert [p.sample for p in after[:-2] if splits[p.sample] == "test"] == [
            p.sample for p in before if splits[p.sample] == "test" and p.sample != request]
        assert all(is_request(p) for p in after[:-2] if splits[p.sample] != "train")
        # the app's table lists every skipped sample after its rows; the first rows are the same
        assert [p.sample for p in next_samples(project, strategy="kcenter", n=3, every_skipped=True)] == [
            p.sample for p in after[:3]] + [request, train_top]
        assert next_samples(project, strategy="kcenter", n=100, split="test")[-1].sample == request
        project.skip(request)  # skipped again: behind the other skipped one now
        assert [p.sample for p in next_samples(project, strategy="kcenter", n=100)[-2:]] == [train_top, request]
        assert project.unskip([request, train_top, request]) == 2
        assert next_samples(project, strategy="kcenter", n=100) == before  # back in their places
        project.skip(train_top)
        project.save_label(train_top, (project.load_pixels(project.sample(train_top)) > 80).astype(np.uint8))
        assert train_top not in {p.sample for p in next_samples(project, strategy="kcenter", n=100)}
        project.skip(request)
    with Project.open(project.root, readonly=True) as again:  # kept in the store
        assert again.skipped_ids() == [train_top, request] and again.status()["skipped"] == 1  # one labeled since
    capsys.readouterr()
    assert main(["status", str(project.root)]) == 0
    assert "  1 sample skipped in the app (`n` on it unlabeled): the queue asks for it after the rest" in (
        capsys.readouterr().out)
    assert main(["queue", str(project.root), "--n", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].split()[1] == str(request) and lines[3].endswith(SKIPPED_REASONS["test"])
    assert lines[4] == "3 samples to label next (hybrid), then 1 sample skipped in the app (`n` on it unlabeled)"


def test_the_queue_after_a_skip_is_known_without_ranking_again(tmp_path):
    """The app's `n` on a sample left unlabeled opens the top of the queue the skip makes, from the
    ranking made ahead (`queue_after_skip`): the same as `next_samples` ranks after the skip, with a
    model's uncertainty (hybrid) and for a held-out request, whose place goes to the next sample of
    its split (the app had opened the row after it while the table showed that sample on top)."""
    from medlabeler.engine.training import run_to_end
    from medlabeler.engine.workflows.active_loop import is_request, queue_after_skip, score_project
    from medlabeler.engine.workflows.train import train_project

    project, _ = _project(tmp_path)
    with project:
        for sample in project.samples(split="train")[:4]:
            project.save_label(sample.id, (project.load_pixels(sample) > 80).astype(np.uint8))
        config = {"image_size": 32, "features": [4, 8, 16, 32], "steps": 2, "batch_size": 2}
        run_to_end(train_project(project, method="supervised", config=config))
        run_to_end(score_project(project))
        before = next_samples(project, n=50)  # hybrid, by the model's uncertainty
        request = next(p for p in before if is_request(p))
        pick = next(p for p in before if not is_request(p))
        assert before.index(request) < 5 and "entropy" in pick.reason
        for skipped in (request, pick):
            expected = queue_after_skip(before, skipped.sample)
            project.skip(skipped.sample)
            after = next_samples(project, n=50)
            assert after[:40] == expected[:40] and after[0].sample != skipped.sample
            if skipped is request:  # its place: the next sample of its split, asked for as such
                place = before.index(request)
                assert after[place].reason == request.reason and after[place].sample != request.sample
            before = after
        # a label taken back takes its skip with it: to be labeled again, it is not put last
        project.save_label(pick.sample, (project.load_pixels(project.sample(pick.sample)) > 80).astype(np.uint8))
        project.remove_label(pick.sample)
        assert project.skipped_ids() == [request.sample] and project.status()["skipped"] == 1
        assert [p.reason for p in next_samples(project, n=100) if p.sample == pick.sample] == [pick.reason]
        # a blank slice skipped (opened from the "all" view) is counted nowhere: the queue never lists it
        blank = min(project.blank_ids())
        project.skip(blank)
        assert project.status()["skipped"] == 1 and blank not in {p.sample for p in next_samples(project, n=100)}
