"""`medlabeler demo`: make the demo project on first run, then open the app or run the loop headless.

The headless loop is the round a clinician does in the app: label a few slices, train the
recommended pipeline with its budget (what the app's loop and `medlabeler train` run; pretraining
first where it pretrains), evaluate on the test split, score the pool and show the next slices to
label: the first of them is what the app opens and the first line of `medlabeler queue`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

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


def run_headless_round(root: Path, *, labels: int = 8, steps: int | None = None, config: dict | None = None) -> int:
    """One round on the demo; `steps` shortens the recommended budget, `config` overrides run
    settings (tests use a tiny network)."""
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
        print(f"training the recommended pipeline: {rec.text() if steps is None else rec.method}"
              + ("" if steps is None else f" ({steps} steps)"))
        if rec.pretrain:
            pretrain = {**rec.pretrain_config, **(config or {}), **({} if steps is None else {"steps": steps})}
            drive(pretrain_project(project, method=rec.pretrain, config=pretrain), f"pretrain {rec.pretrain}")
        result = drive(train_project(project, init="pretrained" if rec.pretrain else None, steps=steps,
                                     config=config), f"train {rec.method}")
        if result.decision is not None:
            print(result.decision.headline())
        metrics = evaluate_project(project, split="test")
        drive(score_project(project), "score")
        picks = next_samples(project, strategy="hybrid", n=5)
        places = {s.id: where(s, project) for s in project.samples(ids=[pick.sample for pick in picks])}
    print(f"test Dice {metrics.get('dice', float('nan')):.3f} "
          + " ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k.startswith("dice_")))
    print("label next:")
    for pick in picks:
        print(f"  sample {pick.sample:<5} {places[pick.sample]:<10} {pick.reason}")
    version = getattr(result, "version", None)
    print(f"demo round done: model v{version}, test Dice {metrics.get('dice', float('nan')):.3f}, "
          f"{len(picks)} slices suggested; open it with: medlabeler app {root}")
    return 0
