"""The recommended pipeline: one definition that `medlabeler train` (no --method), Retrain and
`benchmark pipelines --methods auto` run, and the experimental marks of methods that lost."""

import json

import pytest

from medlabeler.cli import build_parser, main
from medlabeler.engine.store import Project
from medlabeler.engine.workflows import recommended as rec_module
from medlabeler.engine.workflows.recommended import experimental, experimental_text, recommended

from .test_pipeline_datasets import make_seg_project

SEG = {"cap_threads": False, "image_size": 32, "features": [8, 16, 32], "batch_size": 4, "unlabeled_batch_size": 4,
       "dropout": 0.0}


def _cli_project(tmp_path):
    """A closed, fully labeled segmentation project and a tiny run-config file for the CLI."""
    project = make_seg_project(tmp_path, n=4, depth=6)
    root = project.root
    project.close()
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(SEG))
    return root, config


def test_the_recommendation_grows_on_a_gpu_and_says_what_it_does():
    cpu, gpu = recommended("segmentation"), recommended("segmentation", gpu=True)
    assert gpu.config["steps"] > cpu.config["steps"]
    assert cpu.pretrain is None or cpu.pretrain_config["steps"] > 0
    text = rec_module.describe()
    assert "segmentation:" in text and "classification:" in text and cpu.method in text
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "recommendedpipeline" in "".join(help_text.split()) and cpu.method in "".join(help_text.split())


def test_experimental_methods_are_marked_in_the_help_and_when_trained(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(rec_module.EXPERIMENTAL, "segmentation", {"mean-teacher": "0.02 below supervised at 4 labels"})
    assert experimental("segmentation", "mean-teacher") == "0.02 below supervised at 4 labels"
    assert experimental("classification", "mean-teacher") is None and experimental("segmentation", "supervised") is None
    assert "mean-teacher (segmentation: 0.02 below" in experimental_text()
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "experimental:mean-teacher(segmentation:0.02below" in "".join(help_text.split())  # argparse wraps
    root, config = _cli_project(tmp_path)
    assert main(["train", str(root), "--method", "mean-teacher", "--steps", "2", "--config", str(config)]) == 0
    assert "mean-teacher is experimental for segmentation (0.02 below" in capsys.readouterr().err


def test_train_without_a_method_runs_the_whole_recommended_pipeline(tmp_path, capsys):
    root, config = _cli_project(tmp_path)
    assert main(["train", str(root), "--steps", "4", "--config", str(config)]) == 0
    rec = recommended("segmentation")
    with Project.open(root, readonly=True) as project:
        models = project.models()
    if rec.pretrain:
        assert [m.method for m in models] == [f"pretrain:{rec.pretrain}", rec.method]
        from medlabeler.engine.training.checkpoint import load_weights

        _, record = load_weights(models[1].path)
        assert record["init"].startswith(f"encoder of v{models[0].version}")
    else:
        assert [m.method for m in models] == [rec.method]
    from medlabeler.engine.training.checkpoint import load_weights

    _, record = load_weights(models[-1].path)
    settings = record["method_settings"]  # per-task defaults recorded as they ran, not as None
    assert settings and all(value is not None for key, value in settings.items() if key != "seed")
    if rec.method == "fixmatch":
        assert (settings["unlabeled_weight"], settings["strong"], settings["cutmix_p"]) == (
            0.5, "strong-segmentation", 1.0)
    assert f"trained {rec.method}" in capsys.readouterr().out
    # a second run reuses the encoder instead of pretraining again
    assert main(["train", str(root), "--steps", "2", "--config", str(config)]) == 0
    with Project.open(root, readonly=True) as project:
        assert sum(m.method.startswith("pretrain:") for m in project.models()) == (1 if rec.pretrain else 0)


def test_train_starts_from_the_active_model_as_the_app_does_unless_told_otherwise(tmp_path, capsys):
    from medlabeler.engine.training.checkpoint import load_weights

    root, config = _cli_project(tmp_path)
    assert main(["train", str(root), "--method", "supervised", "--steps", "2", "--config", str(config)]) == 0
    assert "starting from the active model" not in capsys.readouterr().out  # none yet: from scratch
    with Project.open(root, readonly=True) as project:
        first = project.active_model().version
    assert main(["train", str(root), "--steps", "2", "--config", str(config)]) == 0
    assert f"starting from the active model v{first}" in capsys.readouterr().out
    assert main(["train", str(root), "--steps", "2", "--init", "scratch", "--config", str(config)]) == 0
    with Project.open(root, readonly=True) as project:
        second, third = (load_weights(m.path)[1] for m in project.models()[-2:])
    assert second["init"] == f"weights of v{first} (supervised)" and third["init"] == "random"
    # a network the active model's weights do not fit: said, and trained from scratch
    wider = tmp_path / "wider.json"
    wider.write_text(json.dumps({**json.loads(config.read_text()), "features": [8, 16, 32, 64]}))
    assert main(["train", str(root), "--steps", "2", "--config", str(wider)]) == 0
    out = capsys.readouterr().out
    assert "its weights do not fit; training from scratch instead" in out and "trained " in out
    # asked for by name, the same mismatch is an error, not a silent change of plan
    assert main(["train", str(root), "--steps", "2", "--init", str(first), "--config", str(wider)]) != 0
    assert "do not fit" in capsys.readouterr().err
