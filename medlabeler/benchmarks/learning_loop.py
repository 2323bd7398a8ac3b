"""The simulated clinician with the learning loop running (`medlabeler benchmark learning-loop`).

On the demo scan (mni-tissue-seg) a simulated clinician labels `--per-round` slices at a time
(default 3), taken from the top of the queue, with the reference masks, for up to `--rounds`
rounds, while engine.workflows.learn_loop runs on a background thread exactly as in the app: it trains a
candidate after every 3 new labels, promotes it only if validation does not drop
(engine.workflows.promotion), and re-scores the pool. Validation and test labels are revealed up front
(validation chooses, test only reports).

After the last round the clinician rests: the loop, idle for `--full-run-after-s` (the app's 60 s),
gives the active model a full-length run on the same labels (its warm-started rounds train a third
of the steps), and the benchmark waits for that decision.

Printed: the curve (labels vs the ACTIVE model's test Dice after each round, and after the rest),
the wall time of each round, the time from a label save to a promoted model that includes it (p50,
max), the decision log, and a single manual Retrain from scratch with the final labels for
comparison.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np

from . import common
from .common import say


def _queue_top(project, n: int, seed: int) -> list[int]:
    from medlabeler.engine.workflows.active_loop import next_samples

    return [p.sample for p in next_samples(project, strategy="hybrid", n=n, split="train", seed=seed)]


def _wait(condition, timeout_s: float, error: list) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if error:
            raise RuntimeError(f"the learning loop failed: {error[0]!r}")
        if condition():
            return True
        time.sleep(0.05)
    return False


def run(args) -> int:
    from medlabeler.engine.workflows.learn_loop import FULL_RUN_AFTER_S, LoopControl, learn
    from medlabeler.engine.workflows.evaluate import evaluate_project
    from medlabeler.engine.workflows.train import train_project
    from medlabeler.engine.training.events import run_to_end

    from .datasets import load_dataset

    common.set_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.dataset, out / "data")
    if data.task != "segmentation":
        say("note: the learning-loop benchmark reports the task's metric; it was designed on mni-tissue-seg")
    project = common.fresh_project(data, out / "learning-loop-project")
    total = common.Stopwatch()
    seed = getattr(args, "seed", None) or 0
    config = common.run_config(data.task, args, seed=seed, steps=args.steps)
    revealed = common.reveal_eval_splits(project, data)
    say(f"learning loop on {data.name}: {len(project.samples())} samples, revealed {revealed['val']} validation "
        f"and {revealed['test']} test labels; {args.per_round} labels a round, up to {args.rounds} rounds; "
        f"run config {config}")

    loop_options = {} if args.warm_share is None else {"warm_share": args.warm_share}
    rest_s = getattr(args, "full_run_after_s", None)
    if rest_s is not None:
        loop_options["full_run_after_s"] = None if rest_s < 0 else rest_s  # negative: the clinician never rests
    control = LoopControl()
    decisions: list = []
    decided_at: list[float] = []
    idle = threading.Event()
    error: list = []

    def loop_thread() -> None:
        try:
            for event in learn(project, control=control, config=config, new_labels=args.per_round, poll_s=0.1,
                               **loop_options):
                if event.kind == "decision":
                    decisions.append(event.decision)
                    decided_at.append(time.monotonic())
                if event.kind == "phase":
                    (idle.set if event.phase == "idle" else idle.clear)()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            error.append(exc)

    thread = threading.Thread(target=loop_thread, name="learn-loop", daemon=True)
    thread.start()
    rows, latencies = [], []
    labeled: list[int] = []
    try:
        for rnd in range(1, args.rounds + 1):
            _wait(idle.is_set, 600, error)
            picks = [i for i in _queue_top(project, args.per_round + len(labeled), rnd + 1000 * seed)
                     if i not in labeled]
            picks = [i for i in picks if common.has_truth(data, project.sample(i))][: args.per_round]
            if not picks:
                say(f"round {rnd}: the queue is empty; stopping")
                break
            before = len(decisions)
            control.pause()  # the round's labels arrive together, as a clinician's three saves would
            idle.clear()
            saved_at = time.monotonic()
            common.reveal(project, data, [project.sample(i) for i in picks])
            labeled += picks
            control.resume()
            if not _wait(lambda: len(decisions) > before and idle.is_set(), 900, error):
                say(f"round {rnd}: no decision within 900 s; stopping")
                break
            round_s = time.monotonic() - saved_at
            decision = decisions[-1]
            if decision.promoted:
                latencies.append(decided_at[-1] - saved_at)
            active = project.active_model()
            control.pause()  # the test evaluation is the benchmark's, not the loop's time
            test = evaluate_project(project, "test")[data.metric] if active is not None else math.nan
            control.resume()
            rows.append({"round": rnd, "labels": len(labeled), "active": active.version if active else None,
                         "test": test, "round_s": round_s, "decision": decision.message})
            say(f"round {rnd:>2}: {len(labeled):>3} labels, active v{rows[-1]['active']}, test {data.metric} "
                f"{test:.4f}, round {round_s:.1f} s — {decision.message}")
        if rows and loop_options.get("full_run_after_s", FULL_RUN_AFTER_S) is not None:
            rest = _rest(project, data, config, decisions, idle, error, len(labeled), evaluate_project)
            if rest is not None:
                rows.append(rest)
                say(f"rest: {len(labeled):>3} labels, active v{rest['active']}, test {data.metric} "
                    f"{rest['test']:.4f}, {rest['round_s']:.1f} s — {rest['decision']}")
    finally:
        control.cancel()
        thread.join(120)
    if error:
        raise RuntimeError(f"the learning loop failed: {error[0]!r}")

    manual = run_to_end(train_project(project, config=config, promote=False))
    manual_test = evaluate_project(project, "test", manual.version)[data.metric]
    project.close()
    drops = [b["test"] - a["test"] for a, b in zip(rows, rows[1:])]
    text = _report(args, data, rows, latencies, drops, manual_test, total())
    (out / "learning-loop.md").write_text(text)
    say(text)
    say(f"wrote {out / 'learning-loop.md'}")
    return 0


def _rest(project, data, config, decisions, idle, error, labels: int, evaluate_project) -> dict | None:
    """The clinician stops labeling: wait for the loop's full run at rest and its decision (None:
    the loop has nothing left to do, its newest model being a full-length run already)."""
    from medlabeler.engine.workflows.learn_loop import short_run_newest
    from medlabeler.engine.workflows.run_config import recommendation

    if not short_run_newest(project, recommendation(project, config), config):
        return None
    before, started = len(decisions), time.monotonic()
    if not _wait(lambda: len(decisions) > before and idle.is_set(), 3600, error):
        say("rest: no decision within 3600 s")
        return None
    active = project.active_model()
    return {"round": "rest", "labels": labels, "active": active.version if active else None,
            "test": evaluate_project(project, "test")[data.metric] if active is not None else math.nan,
            "round_s": time.monotonic() - started, "decision": decisions[-1].message}


def _report(args, data, rows, latencies, drops, manual_test, seconds) -> str:
    lines = [f"# Learning loop with a simulated clinician ({data.name})", "",
             f"command: `{common.command_line(args)}`", f"machine: {common.machine_text()}", "",
             f"| round | labels | active | test {data.metric} | round wall s | decision |",
             "|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['round']} | {r['labels']} | v{r['active']} | {r['test']:.4f} | {r['round_s']:.1f} | "
                     f"{r['decision']} |")
    lines.append("")
    if latencies:
        lines.append(f"label save -> promoted model that includes it: p50 {np.median(latencies):.1f} s, "
                     f"max {max(latencies):.1f} s ({len(latencies)} promotions)")
    else:
        lines.append("label save -> promoted model: no promotion happened")
    if drops:
        lines.append(f"largest drop of the active test {data.metric} between rounds: {max(0.0, -min(drops)):.4f} "
                     f"(target <= 0.01)")
    if rows:
        rounds = [r for r in rows if r["round"] != "rest"]
        rested = (f" after the rest ({rounds[-1]['test']:.4f} after the last round)"
                  if rows[-1]["round"] == "rest" and rounds else "")
        lines.append(f"final active test {data.metric} {rows[-1]['test']:.4f}{rested} vs a single manual Retrain "
                     f"from scratch with the same {rows[-1]['labels']} labels {manual_test:.4f}")
    lines.append(f"total {seconds:.0f} s")
    return "\n".join(lines) + "\n"
