"""Active-learning benchmark with a simulated clinician, run through the product's own loop.

For every seed and strategy: a fresh project whose val and test labels are revealed up front (val
picks the model, test is only reported) and whose train labels are hidden. Round 0 labels the same
seeded random `per_round` train samples for every strategy (trained once per seed, then the project
is copied per strategy). Each later round: score the unlabeled train pool with the active model
(`score_project`, MC dropout for BALD), rank (`select_for_project`, what `next_samples` calls, with
a per-seed, per-round seed), reveal the chosen samples' true labels (origin manual, author oracle),
train with the same step budget (`train_project`; from scratch, or from the previous round's model
with --warm-start), and evaluate on test (`evaluate_project`: Dice / AUC). Full supervision (every
train label, from scratch, as many steps as the last round's model had in all) is the reference
per seed.
Curves and the labels-to-95% table go through `engine.active.simulate.write_report`, as in the
active-learning benchmarks of Sener & Savarese (ICLR 2018) and Gal et al. (ICML 2017).
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np

from . import common
from .common import say



def _train_eval(project, data, config: dict, args, label: str, init=None) -> tuple[float, dict, dict]:
    from medlabeler.engine.workflows.train import train_project

    watch = common.Stopwatch()
    result = common.drive_quietly(train_project(project, method=args.method or "supervised", init=init,
                                                epochs=args.epochs, config=config), label, args.verbose)
    seconds = watch()
    # What the clinician gets: the active model after the promotion rule (engine.workflows.promotion), which
    # also scores the next round's queue.
    active = project.active_model().version
    metric, metrics = common.evaluate(project, active, data.metric)
    # Validation too: a choice between queue settings is made on it, never on test.
    val_metric, _ = common.evaluate(project, active, data.metric, split="val")
    return metric, metrics, {"train_s": seconds, "version": result.version, "val": val_metric,
                             "images_per_second": result.images_per_second}


def _choose(project, strategy: str, n: int, seed: int, rnd: int, mc_passes: int, verbose: bool):
    """Score (unless random) then rank; returns (selections, seconds spent scoring)."""
    from medlabeler.engine.active.strategies import select_for_project
    from medlabeler.engine.workflows.active_loop import score_project

    watch = common.Stopwatch()
    if strategy != "random":
        passes = mc_passes if strategy == "bald" else 0
        common.drive_quietly(score_project(project, mc_passes=passes), "score", verbose)
    scoring = watch()
    picks = select_for_project(project, strategy=strategy, n=n, seed=seed * 1000 + rnd)
    return picks, scoring


def run(args) -> int:
    from medlabeler.engine.active.simulate import Curve, reach_table, summarize, write_report
    from medlabeler.engine.errors import InputError

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common.set_threads(args.threads)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    _check_strategies(strategies)
    if args.mc_passes < 2 and "bald" in strategies:
        raise InputError(None, "the bald strategy needs --mc-passes >= 2")
    data = common_dataset(args, out)
    say(f"active-learning benchmark on {data.name} ({data.task}, test {data.metric}); "
        f"strategies {', '.join(strategies)}; {args.rounds} rounds of {args.per_round} labels; "
        f"seeds 0..{args.seeds - 1}")
    for note in data.notes:
        say(f"  note: {note}")
    work = out / "projects"
    curves: list[Curve] = []
    full: dict[int, float] = {}
    rows: list[dict] = []
    total = common.Stopwatch()
    for seed in range(args.seeds):
        config = common.run_config(data.task, args, seed=seed, steps=args.steps)
        base = common.fresh_project(data, work / f"seed{seed}" / "round0")
        revealed = common.reveal_eval_splits(base, data)
        pool = common.train_pool(base, data)
        rng = np.random.default_rng(seed)
        initial = [pool[i] for i in sorted(rng.choice(len(pool), size=min(args.per_round, len(pool)), replace=False))]
        initial = common.with_two_classes(initial, pool, data, seed)
        common.reveal(base, data, initial)
        metric0, _m, info = _train_eval(base, data, config, args, f"seed {seed} round 0")
        say(f"seed {seed}: {len(pool)} train samples in the pool, {revealed['val']} val / {revealed['test']} test "
            f"labels revealed; round 0 ({len(initial)} random labels): test {data.metric} {metric0:.4f} "
            f"(train {info['train_s']:.1f} s)")
        rows.append({"strategy": "(initial)", "seed": seed, "round": 0, "labels": len(initial), data.metric: metric0,
                     "val": info["val"], "train_s": info["train_s"], "score_s": 0.0, "chosen": _ids(initial)})
        base_root = Path(base.root)
        base.close()
        for strategy in strategies:
            project = common.copy_project(base_root, work / f"seed{seed}" / strategy)
            curve = Curve(strategy, seed, labels=[len(initial)], metrics=[metric0], chosen=[[s.id for s in initial]])
            try:
                for rnd in range(1, args.rounds + 1):
                    picks, score_s = _choose(project, strategy, args.per_round, seed, rnd, args.mc_passes, args.verbose)
                    if not picks:
                        break
                    chosen = [project.sample(p.sample) for p in picks]
                    common.reveal(project, data, chosen)
                    labels = len(project.samples(split="train", labeled=True))
                    init = project.active_model().version if args.warm_start else None
                    metric, _m, info = _train_eval(project, data, config, args, f"{strategy} round {rnd}", init)
                    curve.labels.append(labels)
                    curve.metrics.append(metric)
                    curve.chosen.append([s.id for s in chosen])
                    rows.append({"strategy": strategy, "seed": seed, "round": rnd, "labels": labels, data.metric: metric,
                                 "val": info["val"], "train_s": info["train_s"], "score_s": score_s, "chosen": _ids(chosen),
                                 "reasons": " | ".join(p.reason for p in picks)})
                    say(f"  seed {seed} {strategy:<8} round {rnd}: {labels:>4} labels  test {data.metric} {metric:.4f}"
                        f" (val {info['val']:.4f})  (score+rank {score_s:.1f} s, train {info['train_s']:.1f} s)")
            finally:
                project.close()
                if not args.keep_projects:
                    shutil.rmtree(project.root, ignore_errors=True)
            curves.append(curve)
        if not args.keep_projects:
            shutil.rmtree(base_root, ignore_errors=True)
        # full supervision: every train label, from scratch (see full_steps)
        project = common.fresh_project(data, work / f"seed{seed}" / "full")
        try:
            common.reveal_eval_splits(project, data)
            n_full = common.reveal(project, data, common.train_pool(project, data))
            full_config = common.run_config(data.task, args, seed=seed, steps=full_steps(args, data.task))
            full[seed], _m, info = _train_eval(project, data, full_config, args, f"seed {seed} full supervision")
        finally:
            project.close()
            if not args.keep_projects:
                shutil.rmtree(project.root, ignore_errors=True)
        rows.append({"strategy": "(full supervision)", "seed": seed, "round": -1, "labels": n_full,
                     data.metric: full[seed], "val": info["val"], "train_s": info["train_s"], "score_s": 0.0, "chosen": ""})
        say(f"seed {seed}: full supervision ({n_full} labels): test {data.metric} {full[seed]:.4f} "
            f"(train {info['train_s']:.1f} s); {total() / 60:.1f} min so far")

    full_mean, full_std = common.mean_std(full.values())
    paths = write_report(curves, out, full_metric=full_mean, fraction=args.fraction, metric_name=data.metric,
                         title=f"Active learning on {data.name} (simulated clinician)")
    _write_rows(out / "rounds.csv", rows, data.metric)
    table = _reach_rows(reach_table(curves, full_mean, args.fraction), curves, summarize(curves), args.per_round)
    for r in table:  # validation over the curve too, as the test column: the mean over label counts of the seeds' mean
        by_count: dict[int, list[float]] = {}
        for row in rows:
            if row["strategy"] in (r["strategy"], "(initial)"):
                by_count.setdefault(row["labels"], []).append(row["val"])
        r["val_curve_mean"] = float(np.mean([np.mean(v) for v in by_count.values()])) if by_count else math.nan
    text = _report_text(args, data, table, full_mean, full_std, n_full, total())
    (out / "results.md").write_text(text)
    say(text)
    say("wrote " + ", ".join(str(p) for p in [*paths.values(), out / "rounds.csv", out / "results.md"]))
    return 0


def full_steps(args, task: str) -> int:
    """Steps of the full-supervision reference: --full-steps, else the steps the last round's model
    had in all (rounds + 1 runs with --warm-start, one run without)."""
    if args.full_steps:
        return int(args.full_steps)
    steps = int(args.steps or common.DEFAULT_STEPS[task])
    return steps * (args.rounds + 1) if args.warm_start else steps


def data_protocol(args, task: str) -> str:
    config = common.run_config(task, args, seed=0, steps=args.steps)
    what = f"{args.epochs} epochs" if args.epochs else f"{config['steps']} steps"
    start = "from the previous round's model (--warm-start)" if args.warm_start else "from scratch"
    return (f"{args.method} {what} {start}, batch {config['batch_size']}, {config['image_size']} px; full supervision "
            f"{full_steps(args, task)} steps from scratch; BALD scored with {args.mc_passes} MC-dropout passes")


def common_dataset(args, out: Path):
    from .datasets import load_dataset

    return load_dataset(args.dataset, out / "data", patches=args.patches, classes=args.classes)


def _ids(samples) -> str:
    return " ".join(str(s.slice_index if s.slice_index is not None else s.id) for s in samples)


def _check_strategies(strategies: list[str]) -> None:
    from medlabeler.engine.active.strategies import SCORE_WORDS, available_strategies
    from medlabeler.engine.errors import InputError

    known = set(available_strategies()) | set(SCORE_WORDS)
    unknown = [s for s in strategies if s not in known]
    if unknown or not strategies:
        raise InputError(None, f"unknown strategies {unknown}; known: {', '.join(sorted(known))}")


def _write_rows(path: Path, rows: list[dict], metric: str) -> None:
    fields = ["strategy", "seed", "round", "labels", metric, "val", "train_s", "score_s", "chosen", "reasons"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def _reach_rows(reach: list[dict], curves, summary: dict, per_round: int) -> list[dict]:
    """reach_table rows plus the ratio to random, the final metric and the mean over the curve.

    `labels_censored`: the mean over every seed, a seed that never reached the target counted as
    the last label count + `per_round` (so a lower bound); the ratio to random uses it."""
    from medlabeler.engine.active.simulate import labels_to_reach

    censored = {}
    for r in reach:
        mine = [c for c in curves if c.strategy == r["strategy"]]
        needed = [labels_to_reach(c, r["target"]) for c in mine]
        censored[r["strategy"]] = float(np.mean([n if n is not None else max(c.labels) + per_round
                                                 for n, c in zip(needed, mine)])) if mine else math.nan
    random_labels = censored.get("random", math.nan)
    rows = []
    for r in reach:
        points = summary.get(r["strategy"], [])
        r = dict(r)
        r["labels_censored"] = censored[r["strategy"]]
        r["ratio_vs_random"] = (r["labels_censored"] / random_labels
                                if random_labels and math.isfinite(random_labels) else math.nan)
        r["final_mean"] = points[-1][1] if points else math.nan
        r["final_std"] = points[-1][2] if points else math.nan
        r["final_labels"] = points[-1][0] if points else 0
        r["curve_mean"] = float(np.mean([p[1] for p in points])) if points else math.nan
        rows.append(r)
    return rows


def _fmt(value: float, digits: int = 1) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _report_text(args, data, table: list[dict], full_mean: float, full_std: float, n_full: int, seconds: float) -> str:
    m = data.metric
    target = args.fraction * full_mean
    lines = [
        f"# Active learning on {data.name}: labels to reach {args.fraction:.0%} of full supervision",
        "",
        f"Full supervision ({n_full} train labels): test {m} {full_mean:.4f} ± {full_std:.4f} over {args.seeds} seeds; "
        f"target {args.fraction:.0%} = {target:.4f}. Budget: {args.rounds} rounds of {args.per_round} labels after "
        f"{args.per_round} random ones.",
        "",
        f"Training per round: {data_protocol(args, data.task)}.",
        "",
        f"| strategy | labels to target (seeds reaching: mean ± std) | seeds reaching | labels, all seeds "
        f"(lower bound) | ratio vs random | {m} at {table[0]['final_labels'] if table else 0} labels | "
        f"mean {m} over the curve | mean validation {m} over the curve |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['strategy']} | {_fmt(r['labels_mean'])} ± {_fmt(r['labels_std'])} | {r['seeds_reached']}/{r['seeds']} "
            f"| {_fmt(r['labels_censored'])} | {_fmt(r['ratio_vs_random'], 2)} "
            f"| {_fmt(r['final_mean'], 4)} ± {_fmt(r['final_std'], 4)} | {_fmt(r['curve_mean'], 4)} "
            f"| {_fmt(r['val_curve_mean'], 4)} |")
    lines += ["", "Labels to target: the first label count whose test metric reaches the target. \"All seeds\" "
              f"counts a seed that never reached it as the last count + {args.per_round} (a lower bound); the "
              "ratio to random uses that column.", "", f"Machine: {common.machine_text()}; wall time {seconds / 60:.1f} min.",
              "", "Command:", "", f"    {common.command_line(args)}", ""]
    return "\n".join(lines)
