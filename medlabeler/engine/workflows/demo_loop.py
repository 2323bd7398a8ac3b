"""`medlabeler demo`: make the demo project on first run, then open the app or run the loop headless.

The headless loop is the round a clinician does in the app: label a few slices, pretrain on all
slices (positional contrastive learning), train semi-supervised from the pretrained encoder,
evaluate on the test split, score the pool and show the next slices to label.
"""

from __future__ import annotations

import shutil
from pathlib import Path

# Small enough for a 2-core CPU in a few minutes; the app's Train widget lets users go bigger.
DEMO_CONFIG = {"image_size": 96, "batch_size": 8, "unlabeled_batch_size": 8, "steps_per_epoch": 25}


def open_or_create_demo(root: Path):
    """The demo project at ``root``, created from nilearn's MNI152 T1 the first time."""
    from medlabeler.engine.workflows.demo import create_demo_project
    from medlabeler.engine.store import Project

    if (root / "project.sqlite").exists():
        return Project.open(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    return create_demo_project(root)


def prepare_demo(root: Path, *, fresh: bool = False) -> Path:
    """Make sure the demo project exists at ``root`` (anew with ``fresh``); returns its folder."""
    if fresh and root.exists():
        shutil.rmtree(root)
    open_or_create_demo(root).close()
    return root


def run_headless_round(root: Path, *, labels: int = 8, epochs: int = 3) -> int:
    from medlabeler.engine.training.progress import drive
    from medlabeler.engine.workflows.active_loop import next_samples, score_project, where
    from medlabeler.engine.workflows.demo import label_like_a_clinician
    from medlabeler.engine.workflows.evaluate import evaluate_project
    from medlabeler.engine.workflows.pretrain import pretrain_project
    from medlabeler.engine.workflows.train import train_project

    with open_or_create_demo(root) as project:
        status = project.status()
        if project.task.slabs:
            print(f"one scan: train/val/test are {project.task.slabs} contiguous slabs of slices (neighbours share anatomy)")
        print(f"demo project {root}: {status['samples']} slices of a real brain MRI, {status['labeled']} labeled")
        if status["labeled"] < labels:
            ids = label_like_a_clinician(project, labels)
            ids += label_like_a_clinician(project, max(2, labels // 4), split="val")
            ids += label_like_a_clinician(project, max(2, labels // 4), split="test")
            print(f"labeled {len(ids)} slices (train, validation, test) with the reference tissue masks "
                  "(a stand-in for a clinician)")
        from medlabeler.engine.workflows.run_config import recommendation

        rec = recommendation(project)  # the same pipeline as the app's loop and `medlabeler train`
        if rec.pretrain:
            drive(pretrain_project(project, method=rec.pretrain, config={**rec.pretrain_config, **DEMO_CONFIG}),
                  f"pretrain {rec.pretrain}")
        result = drive(train_project(project, init="pretrained" if rec.pretrain else None, epochs=epochs,
                                     config=DEMO_CONFIG), f"train {rec.method}")
        if result.decision is not None:
            print(("promoted: " if result.decision.promoted else "kept: ") + result.decision.message)
        metrics = evaluate_project(project, split="test")
        drive(score_project(project), "score")
        picks = next_samples(project, strategy="hybrid", n=5)
        samples = {s.id: s for s in project.samples()}
    print(f"test Dice {metrics.get('dice', float('nan')):.3f} "
          + " ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k.startswith("dice_")))
    print("label next:")
    for pick in picks:
        print(f"  sample {pick.sample:<5} {where(samples[pick.sample]):<10} {pick.reason}")
    version = getattr(result, "version", None)
    print(f"demo round done: model v{version}, test Dice {metrics.get('dice', float('nan')):.3f}, "
          f"{len(picks)} slices suggested; open it with: medlabeler app {root}")
    return 0
