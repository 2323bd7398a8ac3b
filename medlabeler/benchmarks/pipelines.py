"""Pipelines benchmark (S4MI's question on the user's data): with few labels, does SSL pretraining
and/or semi-supervised training beat plain supervised training?

For every seed: one fresh project whose val and test labels are all revealed (val picks the best
step, test is only reported). Label counts (`--labels 4,8,16,full`) are taken in ascending order,
each adding train labels to the previous ones (spread through the train split, non-empty slices
for segmentation), as a clinician labels more. Each pipeline is ``[ssl+]train``: "supervised",
"mean-teacher", "pcl+supervised" (pretrain the encoder with PCL, then train from it); "auto" is
the recommended pipeline (engine.workflows.recommended, run by `train_recommended` exactly as
`medlabeler train` without --method), "all" every method the registry offers for the task. One
pretraining per SSL method and seed serves every label count (pretraining sees no labels).
Reported: test metric mean ± std over seeds, its paired difference from supervised, the value of
each seed, per class, the validation metric and the wall time of every run.
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

from . import common
from .common import say

AUTO = "auto"
FULL = "full"
NO_HARM = 0.01  # a method may score at most this much below supervised (issue: do no harm)


def parse_label_counts(text) -> list:
    """"4,8,16,full" -> [4, 8, 16, "full"] (ascending, "full" last)."""
    from medlabeler.engine.errors import InputError

    counts: list = []
    for item in (t.strip().lower() for t in str(text).split(",")):
        if not item:
            continue
        if item in (FULL, "all"):
            counts.append(FULL)
        elif item.isdigit() and int(item) > 0:
            counts.append(int(item))
        else:
            raise InputError(None, f"--labels takes positive numbers and 'full', separated by commas, not {item!r}")
    if not counts:
        raise InputError(None, "no label counts given (--labels)")
    numbers = sorted({c for c in counts if c != FULL})
    return numbers + ([FULL] if FULL in counts else [])


def all_pipelines(task: str) -> str:
    """Every registered train method for `task`, every pretraining method + supervised, and auto."""
    from medlabeler.engine.methods import list_methods

    train, pretrain = list_methods("train", task=task), list_methods("pretrain", task=task)
    names = ["supervised"] + [m for m in train if m != "supervised"] + [f"{p}+supervised" for p in pretrain]
    return ",".join(names + [AUTO])


def parse_pipelines(text: str, task: str | None = None) -> list[tuple[str | None, str]]:
    """"pcl+supervised,mean-teacher,auto" -> [("pcl", "supervised"), (None, "mean-teacher"), (None,
    "auto")], checked against the method registry; "all" expands to `all_pipelines(task)`."""
    from medlabeler.engine.errors import InputError
    from medlabeler.engine.methods import list_methods

    if text.strip() == "all":
        text = all_pipelines(task or "segmentation")
    pretrain, train = set(list_methods("pretrain")) | {"curriculum"}, set(list_methods("train"))
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if item == AUTO:
            out.append((None, AUTO))
            continue
        ssl, _, method = item.rpartition("+")
        if (ssl and ssl not in pretrain) or method not in train:
            raise InputError(None, f"unknown pipeline {item!r}: write [pretrain+]train with pretrain in "
                                   f"{sorted(pretrain)} and train in {sorted(train)}, or 'auto' / 'all'")
        out.append((ssl or None, method))
    if not out:
        raise InputError(None, "no pipelines given (--methods)")
    return out


def pipeline_name(ssl: str | None, method: str) -> str:
    return f"{ssl}+{method}" if ssl else method


def auto_text(task: str) -> str:
    """What "auto" is on this machine's CPU budget: "auto (pcl+mean-teacher)"."""
    from medlabeler.engine.workflows.recommended import recommended

    rec = recommended(task)
    return f"{AUTO} ({pipeline_name(rec.pretrain, rec.method)})"


class _Runner:
    """Runs the pipelines of one seed's project, pretraining each SSL method once."""

    def __init__(self, project, data, args, seed: int):
        self.project, self.data, self.args, self.seed = project, data, args, seed
        self.encoders: dict[str, tuple[int, float]] = {}  # ssl -> (model version, seconds)

    def config(self, steps):
        return common.run_config(self.data.task, self.args, seed=self.seed, steps=steps)

    def encoder(self, ssl: str) -> tuple[int, float]:
        from medlabeler.engine.workflows.pretrain import pretrain_project

        if ssl not in self.encoders:
            config = self.config(self.args.pretrain_steps or common.DEFAULT_PRETRAIN_STEPS)
            config.pop("steps_per_epoch", None)
            watch = common.Stopwatch()
            result = common.drive_quietly(pretrain_project(self.project, method=ssl, epochs=self.args.epochs,
                                                           config=config), f"pretrain {ssl}", self.args.verbose)
            self.encoders[ssl] = (result.version, watch())
        return self.encoders[ssl]

    def run(self, ssl: str | None, method: str):
        """(RunResult, pretrain seconds) of one pipeline."""
        from medlabeler.engine.workflows.train import train_project

        if method == AUTO:
            return self._auto()
        init, pretrain_s = None, 0.0
        if ssl:
            init, pretrain_s = self.encoder(ssl)
        gen = train_project(self.project, method=method, init=init, epochs=self.args.epochs,
                            config=self.config(self.args.steps), promote=False)
        return common.drive_quietly(gen, pipeline_name(ssl, method), self.args.verbose), pretrain_s

    def _auto(self):
        """The recommended pipeline: `train_recommended` (as `medlabeler train` without --method);
        when it pretrains, the encoder comes from this runner, so it is pretrained once per seed
        like every other pipeline's."""
        from medlabeler.engine.workflows.recommended import recommended
        from medlabeler.engine.workflows.train import train_project, train_recommended

        rec = recommended(self.data.task)
        config = {**rec.config, **self.config(self.args.steps)}
        if not rec.pretrain:
            gen = train_recommended(self.project, config=config, promote=False)
            return common.drive_quietly(gen, AUTO, self.args.verbose), 0.0
        version, seconds = self.encoder(rec.pretrain)
        gen = train_project(self.project, method=rec.method, init=version, epochs=self.args.epochs,
                            config=config, promote=False)
        return common.drive_quietly(gen, AUTO, self.args.verbose), seconds


def run(args) -> int:
    from .datasets import load_dataset

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common.set_threads(args.threads)
    data = load_dataset(args.dataset, out / "data", patches=args.patches, classes=args.classes)
    pipelines = parse_pipelines(args.methods, data.task)
    counts = parse_label_counts(args.labels)
    names = [auto_text(data.task) if m == AUTO else pipeline_name(s, m) for s, m in pipelines]
    say(f"pipelines benchmark on {data.name} ({data.task}, test {data.metric}): labels {counts}, "
        f"seeds 0..{args.seeds - 1}; pipelines {', '.join(names)}")
    for note in data.notes:
        say(f"  note: {note}")
    rows: list[dict] = []
    total = common.Stopwatch()
    for seed in range(args.seeds):
        rows += _one_seed(args, data, pipelines, counts, seed)
        _write_csv(out / "pipelines.csv", rows)  # what is done so far survives an interrupted run
    text = markdown(args, data, pipelines, counts, rows, total())
    (out / "pipelines.md").write_text(text)
    say(text)
    say(f"wrote {out / 'pipelines.csv'}, {out / 'pipelines.md'}")
    return 0


def _one_seed(args, data, pipelines, counts, seed: int) -> list[dict]:
    root = Path(args.out) / "projects" / f"seed{seed}"
    project = common.fresh_project(data, root)
    rows = []
    try:
        common.reveal_eval_splits(project, data)
        pool = common.train_pool(project, data)
        runner, chosen = _Runner(project, data, args, seed), []
        for count in counts:
            grown = _grow(pool, chosen, count, seed, data)
            known = {s.id for s in chosen}
            common.reveal(project, data, [s for s in grown if s.id not in known])  # no repeated label versions
            chosen = grown
            say(f"seed {seed}: {len(chosen)} of {len(pool)} train samples labeled")
            for ssl, method in pipelines:
                rows.append(_measure(runner, data, ssl, method, count, len(chosen), seed))
    finally:
        project.close()
        if not args.keep_projects:
            shutil.rmtree(root, ignore_errors=True)
    return rows


def _grow(pool: list, chosen: list, count, seed: int, data) -> list:
    """`chosen` plus samples spread through the rest of the pool, up to `count` ("full": all)."""
    if count == FULL:
        return list(pool)
    taken = {s.id for s in chosen}
    rest = [s for s in pool if s.id not in taken]
    grown = chosen + common.spread_pick(rest, max(0, count - len(chosen)), seed, common.empty_mask(data))
    # the swap touches the last pick only: a new one, never a label already revealed
    return common.with_two_classes(grown, pool, data, seed) if len(grown) > len(chosen) else grown


def _measure(runner, data, ssl, method, count, n_labels: int, seed: int) -> dict:
    name = auto_text(data.task) if method == AUTO else pipeline_name(ssl, method)
    watch = common.Stopwatch()
    result, pretrain_s = runner.run(ssl, method)
    row = {"pipeline": name, "labels": str(count), "n_labels": n_labels, "seed": seed,
           "train_s": watch(), "pretrain_s": pretrain_s,
           "val_" + data.metric: float((result.best_metrics or {}).get(data.metric, math.nan))}
    row[data.metric], metrics = common.evaluate(runner.project, result.version, data.metric)
    row.update({k: v for k, v in metrics.items() if k.startswith(f"{data.metric}_")})
    say(f"  seed {seed} labels {count:<4} {name:<28} test {data.metric} {row[data.metric]:.4f}  "
        f"val {row['val_' + data.metric]:.4f}  ({row['train_s']:.0f} s)")
    return row


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for row in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def paired_delta(rows: list[dict], name: str, count, metric: str) -> tuple[float, float]:
    """Mean ± std over seeds of (pipeline - supervised) on the same seed and labels."""
    base = {r["seed"]: r[metric] for r in rows if r["pipeline"] == "supervised" and r["labels"] == str(count)}
    diffs = [r[metric] - base[r["seed"]] for r in rows
             if r["pipeline"] == name and r["labels"] == str(count) and r["seed"] in base]
    return common.mean_std(diffs)


def markdown(args, data, pipelines, counts, rows: list[dict], seconds: float) -> str:
    m = data.metric
    per_label = sorted({k for row in rows for k in row if k.startswith(f"{m}_")})
    names = list(dict.fromkeys(r["pipeline"] for r in rows))
    lines = [f"# Pipelines on {data.name}: {args.seeds} seeds, test {m}", ""]
    for count in counts:
        mine = [r for r in rows if r["labels"] == str(count)]
        if not mine:
            continue
        n = mine[0]["n_labels"]
        lines += [f"## {count} labels" + (f" ({n})" if count == FULL else ""), "",
                  f"| pipeline | test {m} (mean ± std) | Δ vs supervised | per seed | "
                  + "".join(f"{k} | " for k in per_label) + f"val {m} | pretrain s | train s |",
                  "|---|---|---|---|" + "---|" * len(per_label) + "---|---|---|"]
        for name in names:
            runs = sorted((r for r in mine if r["pipeline"] == name), key=lambda r: r["seed"])
            if not runs:
                continue
            mean, std = common.mean_std(r[m] for r in runs)
            dmean, dstd = paired_delta(rows, name, count, m)
            delta = "—" if name == "supervised" or math.isnan(dmean) else f"{dmean:+.4f} ± {dstd:.4f}"
            parts = [f"{common.mean_std(r.get(k) for r in runs)[0]:.4f}" for k in per_label]
            lines.append(f"| {name} | {mean:.4f} ± {std:.4f} | {delta} | "
                         + " / ".join(f"{r[m]:.3f}" for r in runs) + " | " + "".join(f"{p} | " for p in parts)
                         + f"{common.mean_std(r['val_' + m] for r in runs)[0]:.4f}"
                         + f" | {common.mean_std(r['pretrain_s'] for r in runs)[0]:.0f}"
                         + f" | {common.mean_std(r['train_s'] for r in runs)[0]:.0f} |")
        lines.append("")
    harmed = harmful(rows, m)
    compared = any(r["pipeline"] == "supervised" for r in rows)
    lines += ["Do no harm (every pipeline >= supervised - 0.01 at every label count, mean over seeds): "
              + ("no supervised run to compare with." if not compared else "all pass." if not harmed else "below: " + "; ".join(
                  f"{name} at {count} labels ({d:+.4f})" for name, count, d in harmed) + "."), "",
              "Test split never used for model selection (val picks the best validation step). Pretraining "
              "sees the images of every split (no labels), the product's default; one pretraining per SSL "
              "method and seed serves every pipeline and label count.", "",
              f"Machine: {common.machine_text()}; wall time {seconds / 60:.1f} min.", "", "Command:", "",
              f"    {common.command_line(args)}", ""]
    return "\n".join(lines)


def harmful(rows: list[dict], metric: str) -> list[tuple[str, str, float]]:
    """(pipeline, labels, mean paired delta) for every pipeline more than NO_HARM below supervised."""
    out = []
    for name in dict.fromkeys(r["pipeline"] for r in rows):
        if name == "supervised":
            continue
        for count in dict.fromkeys(r["labels"] for r in rows):
            delta, _ = paired_delta(rows, name, count, metric)
            if math.isfinite(delta) and delta < -NO_HARM:
                out.append((name, count, delta))
    return out
