"""Dice of each active-learning arm's final model on every slice it never trained on.

`medlabeler benchmark active-learning` reports test Dice, and on a one-scan dataset the test split
is one slab of the brain: a queue that labels the slices next to that slab looks better than it
is. This reads the projects a run kept (`--keep-projects`) and scores each arm's active model on
every training slice that holds brain and that the arm left unlabeled (neither the validation
slabs, which chose the models, nor the test slab): what a clinician would review next. Per-slice
Dice as `evaluate` computes it (engine.metrics), per label and the mean. Only for the built-in
slice datasets (mni-tissue-seg, mni-tissue3-seg):

    medlabeler benchmark active-learning --dataset mni-tissue-seg ... --keep-projects --out OUT
    python benchmarks/al_unseen_dice.py OUT [OUT2 ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path


def unseen_dice(root: Path, truth) -> dict[str, float]:
    from medlabeler.engine.metrics import SegmentationScores
    from medlabeler.engine.store.project import Project
    from medlabeler.engine.workflows.model_versions import load_model
    from medlabeler.engine.workflows.predict import predict_samples

    project = Project.open(root, readonly=True)
    try:
        trained = {s.id for s in project.samples(split="train", labeled=True)}
        ids = [s.id for s in project.samples(split="train")  # validation chose the models, test is test's
               if s.id not in trained and truth(s) is not None and truth(s).any()]
        bundle = load_model(project)
        scores = SegmentationScores(list(project.task.names), with_hd95=False)
        for sample_id, probs in predict_samples(project, ids, model_bundle=bundle, batch_size=8):
            scores.add(probs.argmax(0), truth(project.sample(sample_id)))
        return {"version": bundle[2].version, "slices": len(ids), **scores.result()}
    finally:
        project.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="--out folders of active-learning runs made with --keep-projects")
    parser.add_argument("--dataset", default="mni-tissue-seg", choices=["mni-tissue-seg", "mni-tissue3-seg"])
    args = parser.parse_args(argv)
    import tempfile

    from medlabeler.benchmarks.datasets import load_dataset

    data = load_dataset(args.dataset, Path(tempfile.mkdtemp(prefix="medlabeler-unseen-")))
    for run in args.runs:
        arms: dict[str, list[float]] = {}
        for root in sorted(Path(run, "projects").glob("seed*/*")):
            if root.name in ("round0", "full") or not (root / "project.sqlite").exists():
                continue
            got = unseen_dice(root, data.truth)
            labels = " ".join(f"{k[5:]} {v:.4f}" for k, v in got.items() if k.startswith("dice_"))
            print(f"{run} {root.parent.name} {root.name}: v{got['version']} on {got['slices']} unseen slices: "
                  f"dice {got['dice']:.4f} ({labels})", flush=True)
            arms.setdefault(root.name, []).append(got["dice"])
        for arm, values in arms.items():
            spread = f" ± {statistics.pstdev(values):.4f}" if len(values) > 1 else ""
            print(f"{run} {arm}: mean dice on unseen slices {statistics.mean(values):.4f}{spread} (± the standard "
                  f"deviation) over {len(values)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
