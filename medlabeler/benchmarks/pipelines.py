"""Pipelines benchmark (S4MI's question on the user's data): with few labels, does SSL pretraining
and/or semi-supervised training beat plain supervised training?

For every seed: a fresh project with `--labels` train samples labeled, spread through the train
split (non-empty slices for segmentation), and every val and test label revealed (val picks the
model, test is only reported). Each pipeline is ``[ssl+]train``: "supervised", "mean-teacher",
"pcl+supervised" (pretrain the encoder with PCL, then train with init "pretrained"), ... The
test metric (Dice / AUC) is reported as mean ± std over seeds, with the pretraining throughput
(images/s, from the RunResult) of this machine.
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

from . import common
from .common import say


def parse_pipelines(text: str) -> list[tuple[str | None, str]]:
    """"pcl+supervised,mean-teacher" -> [("pcl", "supervised"), (None, "mean-teacher")], checked
    against the method registry."""
    from medlabeler.engine.errors import InputError
    from medlabeler.engine.methods import list_methods

    pretrain, train = set(list_methods("pretrain")) | {"curriculum"}, set(list_methods("train"))
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        ssl, _, method = item.rpartition("+")
        if (ssl and ssl not in pretrain) or method not in train:
            raise InputError(None, f"unknown pipeline {item!r}: write [pretrain+]train with pretrain in "
                                   f"{sorted(pretrain)} and train in {sorted(train)}")
        out.append((ssl or None, method))
    if not out:
        raise InputError(None, "no pipelines given (--methods)")
    return out


def pipeline_name(ssl: str | None, method: str) -> str:
    return f"{ssl}+{method}" if ssl else method


def run(args) -> int:
    from medlabeler.engine.workflows.pretrain import pretrain_project
    from medlabeler.engine.workflows.train import train_project

    from .datasets import load_dataset

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common.set_threads(args.threads)
    pipelines = parse_pipelines(args.methods)
    data = load_dataset(args.dataset, out / "data", patches=args.patches, classes=args.classes)
    say(f"pipelines benchmark on {data.name} ({data.task}, test {data.metric}): {args.labels} labeled train "
        f"samples, seeds 0..{args.seeds - 1}; pipelines {', '.join(pipeline_name(*p) for p in pipelines)}")
    for note in data.notes:
        say(f"  note: {note}")
    rows: list[dict] = []
    total = common.Stopwatch()
    for seed in range(args.seeds):
        root = out / "projects" / f"seed{seed}"
        project = common.fresh_project(data, root)
        try:
            common.reveal_eval_splits(project, data)
            pool = common.train_pool(project, data)
            chosen = common.spread_pick(pool, args.labels, seed, common.empty_mask(data))
            common.reveal(project, data, chosen)
            say(f"seed {seed}: {len(chosen)} of {len(pool)} train samples labeled "
                f"({', '.join(str(s.slice_index if s.slice_index is not None else s.id) for s in chosen)})")
            pretrained: dict[str, dict] = {}
            for ssl, method in pipelines:
                name = pipeline_name(ssl, method)
                row = {"pipeline": name, "seed": seed, "labels": len(chosen), "pretrain_s": 0.0,
                       "pretrain_images_per_second": math.nan}
                if ssl:
                    newest = [m for m in project.models() if m.method.startswith("pretrain:")]
                    if not (newest and newest[-1].method == f"pretrain:{ssl}"):
                        config = common.run_config(data.task, args, seed=seed, steps=args.pretrain_steps or common.DEFAULT_PRETRAIN_STEPS)
                        config.pop("steps_per_epoch", None)
                        watch = common.Stopwatch()
                        result = common.drive_quietly(pretrain_project(project, method=ssl, epochs=args.epochs, config=config),
                                                      f"pretrain {ssl}", args.verbose)
                        pretrained[ssl] = {"pretrain_s": watch(),
                                           "pretrain_images_per_second": result.images_per_second}
                    row.update(pretrained[ssl])
                config = common.run_config(data.task, args, seed=seed, steps=args.steps)
                watch = common.Stopwatch()
                result = common.drive_quietly(train_project(project, method=method, init="pretrained" if ssl else None,
                                                            epochs=args.epochs, config=config), name, args.verbose)
                row["train_s"] = watch()
                row["train_images_per_second"] = result.images_per_second
                row[data.metric], metrics = common.evaluate(project, result.version, data.metric)
                row.update({k: v for k, v in metrics.items() if k.startswith(f"{data.metric}_")})
                rows.append(row)
                say(f"  seed {seed} {name:<20} test {data.metric} {row[data.metric]:.4f}  (train {row['train_s']:.1f} s"
                    + (f", pretrain {row['pretrain_images_per_second']:.1f} images/s" if ssl else "") + ")")
        finally:
            project.close()
            if not args.keep_projects:
                shutil.rmtree(root, ignore_errors=True)
    _write_csv(out / "pipelines.csv", rows)
    text = _markdown(args, data, pipelines, rows, total())
    (out / "pipelines.md").write_text(text)
    say(text)
    say(f"wrote {out / 'pipelines.csv'}, {out / 'pipelines.md'}")
    return 0


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for row in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def _markdown(args, data, pipelines, rows: list[dict], seconds: float) -> str:
    m = data.metric
    per_label = sorted({k for row in rows for k in row if k.startswith(f"{m}_")})
    lines = [f"# Pipelines on {data.name}: {args.labels} labeled train samples, {args.seeds} seeds", "",
             f"| pipeline | test {m} (mean ± std) | " + " | ".join(per_label) + " | pretrain images/s | train s |",
             "|---|---|" + "---|" * len(per_label) + "---|---|"]
    for ssl, method in pipelines:
        name = pipeline_name(ssl, method)
        mine = [r for r in rows if r["pipeline"] == name]
        mean, std = common.mean_std(r[m] for r in mine)
        parts = [f"{common.mean_std(r.get(k) for r in mine)[0]:.4f}" for k in per_label]
        ips = common.mean_std(r["pretrain_images_per_second"] for r in mine)[0]
        train_s = common.mean_std(r["train_s"] for r in mine)[0]
        lines.append(f"| {name} | {mean:.4f} ± {std:.4f} | " + " | ".join(parts)
                     + f" | {'—' if math.isnan(ips) else f'{ips:.1f}'} | {train_s:.1f} |")
    lines += ["", "Test split never used for model selection (val picks the best validation step). "
              "Pretraining sees the images of every split (no labels), the product's default; one pretraining "
              "per SSL method and seed serves every pipeline that starts from it.", "",
              f"Machine: {common.machine_text()}; wall time {seconds / 60:.1f} min.", "", "Command:", "",
              f"    {common.command_line(args)}", ""]
    return "\n".join(lines)
