"""The diverse-margin plugin: its picks, its registration, and one round on a real brain MRI."""

import numpy as np
import pytest

from medlabeler.engine.active.strategies import available_strategies, select

_plugin = pytest.importorskip("medlabeler_diverse_margin.strategy", reason="install the plugin: pip install -e plugins/medlabeler-diverse-margin")
diverse_margin = _plugin.diverse_margin

TINY = {"cap_threads": False, "image_size": 32, "features": [8, 16, 32], "batch_size": 4, "steps": 2}


def three_clusters(seed: int = 0):
    """30 samples in 3 tight clusters; cluster 0 is the most uncertain throughout."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3) * 5.0
    embeddings, scores, cluster_of = {}, {}, {}
    for i in range(30):
        c = i % 3
        embeddings[i] = centres[c] + rng.normal(0, 0.1, 3)
        scores[i] = {"margin": [0.9, 0.6, 0.5][c] + rng.uniform(0, 0.05)}
        cluster_of[i] = c
    return embeddings, scores, cluster_of


def test_a_batch_spreads_over_clusters_where_margin_alone_does_not():
    embeddings, scores, cluster_of = three_clusters()
    picks = diverse_margin(candidates=list(range(30)), scores=scores, embeddings=embeddings, labeled=[], n=3, batch=3)
    assert sorted(cluster_of[p.sample] for p in picks) == [0, 1, 2]
    assert cluster_of[picks[0].sample] == 0  # the most uncertain cluster comes first
    plain = select("margin", candidates=list(range(30)), scores=scores, embeddings=None, labeled=[], n=3,
                   dedup_threshold=None)
    assert {cluster_of[p.sample] for p in plain} == {0}
    assert all("diverse margin" in p.reason for p in picks)


def test_it_is_registered_through_the_entry_point():
    assert "diverse-margin" in available_strategies()
    embeddings, scores, _ = three_clusters(1)
    batch = select("diverse-margin", candidates=list(range(30)), scores=scores, embeddings=embeddings,
                   labeled=[0], n=4)
    assert len({p.sample for p in batch}) == 4 and 0 not in {p.sample for p in batch}


def test_without_scores_it_starts_cold():
    embeddings, _, _ = three_clusters()
    picks = diverse_margin(candidates=list(range(30)), scores={}, embeddings=embeddings, labeled=[], n=2, batch=2)
    assert len(picks) == 2 and picks[0].reason.startswith("no margin scores yet")


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


def test_one_round_on_a_real_project(brain_project, capsys):
    from medlabeler.cli import main
    from medlabeler.engine.workflows.active_loop import next_samples, score_project
    from medlabeler.engine.workflows.train import train_project
    from medlabeler.engine.training import run_to_end

    run_to_end(train_project(brain_project, method="supervised", config=TINY))
    assert run_to_end(score_project(brain_project))["scored"] > 4
    picks = next_samples(brain_project, strategy="diverse-margin", n=4, split="train")
    labeled = {s.id for s in brain_project.samples(labeled=True)}
    assert len(picks) == 4 and not labeled & {p.sample for p in picks}
    assert all("diverse margin" in p.reason for p in picks)
    root = brain_project.root
    brain_project.close()
    assert main(["queue", str(root), "--strategy", "diverse-margin", "--n", "3"]) == 0
    assert "3 samples to label next (diverse-margin)" in capsys.readouterr().out
