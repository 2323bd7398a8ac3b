"""The sanity ladder (issue 9): before tuning a self- or semi-supervised method, check that each of
its parts does what it should on real data. Each rung trains a few short runs on one project of
mni-tissue-seg (one seed, fixed labels) and compares them with supervised training at the same
steps, data and seed; a rung that fails is a bug to find, not a number to tune around.

1. Mean teacher with its unlabeled terms off scores like supervised, and the teacher it predicts
   with is no worse than its student on the labeled images.
2. FixMatch with a threshold no pixel passes scores like supervised; with the real threshold the
   share of pixels passing is logged per class, and the pseudo-labels' accuracy (against the
   reference) is measured per class here.
3. Fine-tuning from a pretrained encoder, and warm-starting from a model of fewer labels, is not
   below random init; every label is learned; the encoder's preprocessing, channels and
   normalisation layers match the fine-tuned network's.
4. A frozen pretrained encoder beats a random one on a k-NN probe (slice position from pooled
   features).
5. Cross teaching and SRCL are not below supervised.

"Not below" means within `tolerance` (default: twice the seed-to-seed spread of supervised
training, at least 0.02). `run_ladder` returns the rungs; the CLI prints them
(`medlabeler benchmark sanity-ladder`) and the tests run it small.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from . import common
from .common import say


@dataclass
class Rung:
    name: str
    passed: bool
    figures: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def figures_text(self) -> str:
        return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in self.figures.items())

    def text(self) -> str:
        return f"[{'pass' if self.passed else 'FAIL'}] {self.name}: {self.figures_text()}" + (f" ({self.note})" if self.note else "")


class _Bench:
    """One project with fixed labels; trains pipelines on it and scores them on the test split."""

    def __init__(self, root: Path, *, labels: int, steps: int, pretrain_steps: int, config: dict, seed: int):
        from .datasets import load_dataset

        self.data = load_dataset("mni-tissue-seg", root / "data")
        self.project = common.fresh_project(self.data, root / "project")
        common.reveal_eval_splits(self.project, self.data)
        self.pool = common.train_pool(self.project, self.data)
        self.chosen = common.spread_pick(self.pool, labels, seed, common.empty_mask(self.data))
        self.steps, self.pretrain_steps, self.seed = steps, pretrain_steps, seed
        self.args = SimpleNamespace(image_size=None, batch_size=None, epochs=None, config=json.dumps(config))
        # the warm-start rung's earlier model sees the first half of the labels, before the rest arrive
        self.reveal(self.chosen[: max(1, len(self.chosen) // 2)])
        self.early = self.train("supervised")
        self.reveal(self.chosen)

    def reveal(self, samples) -> None:
        common.reveal(self.project, self.data, samples)

    def config(self, seed_offset: int = 0, **method) -> dict:
        config = common.run_config("segmentation", self.args, seed=self.seed + seed_offset, steps=self.steps)
        return {**config, **({"method": method} if method else {})}

    def train(self, method: str, *, init=None, seed_offset: int = 0, on_step=None, **method_config):
        from medlabeler.engine.training.events import run_to_end
        from medlabeler.engine.workflows.train import train_project

        gen = train_project(self.project, method=method, init=init, config=self.config(seed_offset, **method_config),
                            promote=False)
        return run_to_end(gen, on_step)

    def pretrain(self, method: str = "pcl"):
        from medlabeler.engine.training.events import run_to_end
        from medlabeler.engine.workflows.pretrain import pretrain_project

        config = common.run_config("segmentation", self.args, seed=self.seed, steps=self.pretrain_steps)
        config.pop("steps_per_epoch", None)
        return run_to_end(pretrain_project(self.project, method=method, config=config))

    def dice(self, version: int, split: str = "test") -> tuple[float, dict[str, float]]:
        from medlabeler.engine.workflows.evaluate import evaluate_project

        metrics = evaluate_project(self.project, split=split, version=version)
        return float(metrics.get("dice", math.nan)), {k: float(v) for k, v in metrics.items() if k.startswith("dice_")}

    def close(self) -> None:
        self.project.close()


def run_ladder(root: Path, *, labels: int = 8, steps: int = 300, pretrain_steps: int = 300, config: dict | None = None,
               seed: int = 0, tolerance: float | None = None, rungs=(1, 2, 3, 4, 5), echo=say) -> list[Rung]:
    """The rungs asked for (numbers 1-5), each with its figures; `echo` gets each line as it ends."""
    bench = _Bench(Path(root), labels=labels, steps=steps, pretrain_steps=pretrain_steps, config=config or {},
                   seed=seed)
    out: list[Rung] = []
    try:
        sup = bench.train("supervised")
        sup_dice, sup_per = bench.dice(sup.version)
        other, _ = bench.dice(bench.train("supervised", seed_offset=1).version)
        spread = abs(sup_dice - other)
        tol = tolerance if tolerance is not None else max(0.02, 2 * spread)
        base = Rung("supervised (the reference)", all(v > 0.3 for v in sup_per.values()),
                    {"test_dice": sup_dice, "other_seed": other, "tolerance": tol, **sup_per},
                    "every label learned" if all(v > 0.3 for v in sup_per.values()) else "a label was not learned")
        out.append(base)
        echo(base.text())
        steps_of = {1: _mean_teacher_rung, 2: _fixmatch_rung, 3: _init_rung, 4: _probe_rung, 5: _other_methods_rung}
        for number in rungs:
            for rung in steps_of[number](bench, sup_dice, tol):
                out.append(rung)
                echo(rung.text())
    finally:
        bench.close()
    return out


def _not_below(name: str, dice: float, sup_dice: float, tol: float, per: dict, **extra) -> Rung:
    delta = dice - sup_dice
    learned = all(v > 0.3 for v in per.values())
    return Rung(name, delta >= -tol and learned, {"test_dice": dice, "delta": delta, **per, **extra},
                "" if learned else "a label was not learned")


def _mean_teacher_rung(bench, sup_dice, tol) -> list[Rung]:
    teacher = bench.train("mean-teacher", consistency_weight=0.0, relation_weight=0.0)
    student = bench.train("mean-teacher", consistency_weight=0.0, relation_weight=0.0, predict_with="student")
    dice, per = bench.dice(teacher.version)
    on_labels_t, _ = bench.dice(teacher.version, split="train")  # the train split's labeled images
    on_labels_s, _ = bench.dice(student.version, split="train")
    rungs = [_not_below("1a mean teacher, unlabeled terms off = supervised", dice, sup_dice, tol, per)]
    rungs.append(Rung("1b teacher no worse than student on the labeled images", on_labels_t >= on_labels_s - tol,
                      {"teacher_train_dice": on_labels_t, "student_train_dice": on_labels_s}))
    return rungs


def _fixmatch_rung(bench, sup_dice, tol) -> list[Rung]:
    shares: list[dict] = []
    none_pass = bench.train("fixmatch", threshold=1.0, on_step=_steps_into(shares))
    dice, per = bench.dice(none_pass.version)
    passed = max((s.get("mask_rate", 0.0) for s in shares), default=0.0)
    rungs = [_not_below("2a fixmatch at threshold 1 (only saturated pixels pass) = supervised", dice, sup_dice, tol,
                        per, max_pass_share=passed)]
    logged: list[dict] = []
    real = bench.train("fixmatch", on_step=_steps_into(logged))
    dice, per = bench.dice(real.version)
    last = logged[-max(1, len(logged) // 10):]
    mean = {k: float(np.mean([s[k] for s in last if k in s])) for k in last[-1] if k == "mask_rate" or k.startswith("pass_")}
    from medlabeler.engine.semi.fixmatch import FixMatch

    accuracy = _pseudo_label_accuracy(bench, real.version, threshold=FixMatch.THRESHOLD["segmentation"])
    has_logs = "mask_rate" in mean and all(f"pass_{c}" in mean for c in range(3))
    figures = {"test_dice": dice, "delta": dice - sup_dice, **{f"logged_{k}": v for k, v in mean.items()}, **accuracy}
    return rungs + [Rung("2b fixmatch at its threshold: pass shares logged per class, pseudo-label accuracy",
                         has_logs, figures)]


def _steps_into(logs: list):
    """An event callback that keeps the metrics of every training step."""
    return lambda event: logs.append(event.metrics or {}) if event.kind == "step" else None


def _pseudo_label_accuracy(bench, version: int, threshold: float) -> dict[str, float]:
    """Per class: the share of unlabeled train pixels the model pseudo-labels (weak view = the
    plain image) that the reference agrees with."""
    import torch

    from medlabeler.engine.semi.fixmatch import pseudo_label_accuracy, pseudo_labels
    from medlabeler.engine.workflows.predict import predict_samples

    labeled = {c.id for c in bench.chosen}
    unlabeled = [s for s in bench.pool if s.id not in labeled][::3]
    targets, refs = [], []
    for sample_id, probs in predict_samples(bench.project, [s.id for s in unlabeled], version):
        logits = torch.log(torch.as_tensor(probs).clamp_min(1e-8))[None]
        targets.append(pseudo_labels(logits, threshold)[0].reshape(-1))
        refs.append(torch.as_tensor(np.array(bench.data.truth(bench.project.sample(sample_id)))).reshape(-1))
    return pseudo_label_accuracy(torch.cat(targets), torch.cat(refs).long(), 3)


def _init_rung(bench, sup_dice, tol) -> list[Rung]:
    from medlabeler.engine.training.checkpoint import load_weights

    encoder = bench.pretrain("pcl")
    tuned = bench.train("supervised", init=encoder.version)
    dice, per = bench.dice(tuned.version)
    rungs = [_not_below("3a fine-tuned from a PCL encoder, not below random init", dice, sup_dice, tol, per)]
    _, enc_record = load_weights(bench.project.model(encoder.version).path)
    _, sup_record = load_weights(bench.project.model(tuned.version).path)
    same = {key: enc_record[key] == sup_record[key] for key in ("preprocess", "spatial_dims")}
    same["model"] = all(enc_record["model"].get(k) == sup_record["model"].get(k)
                        for k in ("arch", "in_channels", "features", "stem"))
    rungs.append(Rung("3b encoder and fine-tuned network: same preprocessing, channels and norm layers",
                      all(same.values()), {k: str(v) for k, v in same.items()}))
    # warm start: from a model of the first half of the labels (trained before the rest arrived)
    warm = bench.train("supervised", init=bench.early.version)
    dice, per = bench.dice(warm.version)
    rungs.append(_not_below("3c warm-started from a model of half the labels, not below random init", dice,
                            sup_dice, tol, per, early_model_dice=bench.dice(bench.early.version)[0]))
    return rungs


def _probe_rung(bench, sup_dice, tol) -> list[Rung]:
    encoder = next((m for m in reversed(bench.project.models()) if m.method.startswith("pretrain:")), None)
    if encoder is None:
        encoder = bench.project.model(bench.pretrain("pcl").version)
    pretrained, random = probe_scores(bench.project, encoder.version, seed=bench.seed)
    return [Rung("4 frozen PCL encoder beats a random one on a k-NN probe (slice position, R²)",
                 pretrained > random, {"pretrained_r2": pretrained, "random_r2": random})]


def probe_scores(project, encoder_version: int, *, seed: int = 0, neighbours: int = 5) -> tuple[float, float]:
    """k-NN regression R² of the slice position from pooled features of a frozen encoder (5-fold,
    every sample of the project), for the pretrained encoder and for the same network at random init."""
    import torch
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from medlabeler.engine.models import build_model
    from medlabeler.engine.training.checkpoint import load_weights
    from medlabeler.engine.workflows.predict import embed_samples

    state, record = load_weights(project.model(encoder_version).path)
    args = dict(record["model"])
    args["features"] = tuple(args["features"]) if "features" in args else None
    args = {k: v for k, v in args.items() if v is not None}
    samples = [s for s in project.samples() if s.slice_index is not None]
    position = np.array([s.slice_index for s in samples], float)
    scores = []
    for load in (True, False):
        torch.manual_seed(seed)
        model = build_model(**args)
        if load:
            model.encoder.load_state_dict(state)
        _, feats = embed_samples(project, [s.id for s in samples], model_bundle=(model.eval(), record, None))
        probe = make_pipeline(StandardScaler(), KNeighborsRegressor(neighbours))
        folds = KFold(5, shuffle=True, random_state=seed)
        scores.append(float(np.mean(cross_val_score(probe, feats, position, cv=folds, scoring="r2"))))
    return scores[0], scores[1]


def _other_methods_rung(bench, sup_dice, tol) -> list[Rung]:
    rungs = []
    for method in ("cross-teaching", "srcl"):
        result = bench.train(method)
        dice, per = bench.dice(result.version)
        rungs.append(_not_below(f"5 {method} at its defaults, not below supervised", dice, sup_dice, tol, per))
    return rungs


def run(args) -> int:
    config = common.extra_config(getattr(args, "config", None))
    if args.image_size:
        config["image_size"] = int(args.image_size)
    out = Path(args.out)
    say(f"sanity ladder on mni-tissue-seg: {args.labels} labels, {args.steps or 300} steps, seed 0")
    watch = common.Stopwatch()
    rungs = run_ladder(out / "ladder", labels=int(args.labels), steps=args.steps or 300,
                       pretrain_steps=args.pretrain_steps or 300, config=config)
    lines = ["| rung | result | figures |", "|---|---|---|"] + [
        f"| {r.name} | {'pass' if r.passed else '**fail**'} | " + r.text().split(": ", 1)[1] + " |" for r in rungs]
    text = "\n".join(["# Sanity ladder", ""] + lines + ["", f"Machine: {common.machine_text()}; wall time "
                      f"{watch() / 60:.1f} min.", "", "Command:", "", f"    {common.command_line(args)}", ""])
    out.mkdir(parents=True, exist_ok=True)
    (out / "ladder.md").write_text(text)
    say(text)
    return 0 if all(r.passed for r in rungs) else 1
