"""The ``medlabeler`` command line: the same engine the app drives, without a display.

Every command ends with a one-line summary; errors name the file and the problem and exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path

from medlabeler.engine.training.progress import drive, torchrun_rank as _torchrun_rank


def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


class _Registered:
    """argparse choices read from a registry on first use (plugins add names through entry points)."""

    def __init__(self, names):
        self._read, self._names = names, None

    def _all(self) -> list[str]:
        if self._names is None:
            self._names = list(self._read())
        return self._names

    def __contains__(self, name) -> bool:
        return name in self._all()

    def __iter__(self):
        return iter(self._all())


def _method_names(kind: str) -> list[str]:
    from medlabeler.engine.methods import list_methods

    return list_methods(kind=kind) + (["curriculum"] if kind == "pretrain" else [])


def _train_method_help() -> str:
    from medlabeler.engine.workflows.recommended import describe, experimental_text

    marks = experimental_text()
    return (f"default: the recommended pipeline ({describe()}; docs/benchmarks.md)"
            + (f". {marks}" if marks else "")).replace("%", "%%")


def _pretrain_method_help() -> str:
    from medlabeler.engine.workflows.recommended import experimental_text

    return ("self-supervised method (default simclr)" + (f"; {experimental_text()}" if experimental_text() else "")
            ).replace("%", "%%")


def _strategy_names() -> list[str]:
    from medlabeler.engine.active.strategies import SCORE_WORDS, available_strategies

    return [*available_strategies(), *SCORE_WORDS]


def _open(path: str, *, readonly: bool = False):
    from medlabeler.engine.project.project_import import require_project
    from medlabeler.engine.store import Project

    # the other torchrun ranks read; rank 0 holds the writer lock and stores the result
    return Project.open(require_project(path), readonly=readonly or _torchrun_rank() > 0)


def _config(path: str | None) -> dict:
    if not path:
        return {}
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        from medlabeler.engine.errors import InputError

        raise InputError(path, f"cannot read config JSON: {exc}") from exc


def _metrics_text(metrics: dict) -> str:
    keys = [k for k in ("dice", "auc", "accuracy", "balanced_accuracy")
            if isinstance(metrics.get(k), (int, float)) and math.isfinite(metrics[k])]
    return ", ".join(f"{k} {metrics[k]:.3f}" for k in keys) or "no metrics"


def _print_json(value) -> None:
    """JSON any parser reads: a figure that could not be measured (NaN) is null, not NaN."""
    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalars
            v = v.item()
        return None if isinstance(v, float) and not math.isfinite(v) else v

    print(json.dumps(plain(value), indent=1, allow_nan=False))


def _model_figures(model, figure) -> str:
    """A model's validation figure (`promotion.version_figures`) and what it was measured on."""
    from medlabeler.engine.workflows.promotion import MEASURED_AT_DECISION, MEASURED_BY_RUN, labels_text

    if figure is None:
        return "no metrics"
    if figure.origin == MEASURED_BY_RUN:
        return "val " + _metrics_text(model.metrics)
    name = figure.name if figure.name.startswith("train ") else "val " + figure.name
    if figure.origin == MEASURED_AT_DECISION:
        return f"{name} {figure.value:.3f} (measured when it was decided)"
    return f"{name} {figure.value:.3f} (on the {labels_text(figure.n_val, figure.split)} of now)"


# --- commands ---------------------------------------------------------------------------------


def cmd_init(args) -> int:
    from medlabeler.engine.project.project_import import create_project, skipped_lines

    names = _names(args.classes) if args.task == "classification" else _names(args.labels)
    project, report = create_project(args.project, args.images, task=args.task, names=names, unit=args.unit, seed=args.seed)
    with project:
        for line in skipped_lines(report.errors):
            print(f"skipped {line}", file=sys.stderr)
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        status = project.status()
    print(f"created {args.project}: {report.summary()}; splits " + _splits_text(status))
    return 0


def _splits_text(status: dict) -> str:
    return ", ".join(f"{name} {part['samples']}" for name, part in status["per_split"].items())


def cmd_import_labels(args) -> int:
    from medlabeler.engine.project.project_import import import_labels, imported_text

    with _open(args.project) as project:
        report = import_labels(project, args.path)
    for error in report.errors:
        print(f"skipped {error}", file=sys.stderr)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(imported_text(report, args.path))
    return 0 if report.labeled else 1  # a script sees that nothing came in


def cmd_status(args) -> int:
    from medlabeler.engine.errors import error_text
    from medlabeler.engine.store.project import label_split_notes, per_class_text, skipped_text
    from medlabeler.engine.home import medlabeler_home
    from medlabeler.engine.store.unsaved import unsaved_labels
    from medlabeler.engine.workflows.model_versions import weights_problem
    from medlabeler.engine.workflows.promotion import version_figures

    with _open(args.project, readonly=True) as project:
        status = project.status()
        kind = project.task.kind
        active = project.active_model()
        figure = version_figures(project, [active]).get(active.version) if active is not None else None
        slabs = _slabs_per_scan(project) if project.task.slabs else ""
        unreadable = project.check_labeled_sources().unreadable
        kept = unsaved_labels(medlabeler_home(), project)
        damaged = project.check_labels()
    if args.json:
        _print_json({**status, "unreadable_labeled": [
            {"samples": ids, "problem": error_text(problem)} for ids, problem in unreadable],
            "damaged_labels": [str(problem) for problem in damaged]})
        return 0
    print(f"{status['samples']} samples, {status['labeled']} labeled")
    if slabs:
        print(f"  splits: {slabs} contiguous slabs of slices per scan (too few scans to split by scan; "
              "neighbouring slabs share anatomy)")
    for name, part in status["per_split"].items():
        print(f"  {name:<6} {part['samples']:>6} samples  {part['labeled']:>6} labeled")
    for line in per_class_text(kind, status["per_class"]):
        print(f"  {line}")
    for note in label_split_notes(kind, status):
        print(f"  {note}")
    skipped = skipped_text(status)
    if skipped:
        print(f"  {skipped}")
    print(f"active model: {f'v{active.version} ({active.method}, {_model_figures(active, figure)})' if active else 'none'}")
    unloadable = weights_problem(active) if active is not None else None
    if unloadable:
        print(f"  it cannot be loaded: {unloadable}; `medlabeler models PROJECT --activate V` makes another version "
              "active, and the next training run (or `learn`) starts from scratch")
    for ids, problem in unreadable:
        print(f"labeled {_ids_text(ids)}: {error_text(problem)}", file=sys.stderr)
    if unreadable:
        print("  a labeled image that no longer reads stops every training run: put the file back, or take "
              f"its label back with `medlabeler remove-label {args.project} ID ...`", file=sys.stderr)
    if kept:
        print(f"  {_count(len(kept), 'label')} whose save into the project failed (a full disk) "
              f"{'wait' if len(kept) > 1 else 'waits'} in {medlabeler_home() / 'unsaved'}: the app saves "
              f"{'them' if len(kept) > 1 else 'it'} when it opens the project ({_ids_text([k.sample_id for k in kept])})")
    for problem in damaged:
        print(f"error: {problem}", file=sys.stderr)
    if damaged:
        print(f"  {_count(len(damaged), 'label')} whose saved mask file is damaged or missing stop every training run and "
              "are left out of exports: restore an intact version (`medlabeler history PROJECT ID --restore V`) or "
              "take the label back (`medlabeler remove-label`)", file=sys.stderr)
    return 0


def _ids_text(ids: list[int]) -> str:
    from medlabeler.engine.store.records import samples_text

    return samples_text(ids, at_most=8)


def _slabs_per_scan(project) -> str:
    """'10', or '2-10' where a scan has fewer slices than the project's slab count."""
    groups: dict[tuple, set] = {}
    for sample in project.samples():
        groups.setdefault((sample.path, sample.series_uid), set()).add(sample.group)
    counts = sorted({len(g) for g in groups.values()})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def cmd_remove_label(args) -> int:
    with _open(args.project) as project:
        for sample_id in args.samples:
            version = project.remove_label(sample_id)
            print(f"sample {sample_id}: " + ("no label to remove" if version is None else
                                             f"label removed (version {version} stays in the history)"))
    return 0


def cmd_history(args) -> int:
    from medlabeler.engine.store.project import restored_text, version_text

    with _open(args.project, readonly=args.restore is None) as project:
        sample = project.sample(args.sample)
        if args.restore is not None:
            before = project.label(sample.id)
            if before is not None and before.version == args.restore:
                print(f"sample {sample.id}: version {args.restore} is its label already")
                return 0
            project.revert_label(sample.id, args.restore)
            print(restored_text(sample.id, args.restore, before))
            return 0
        versions = project.label_history(sample.id)
        print(f"sample {sample.id} ({project.task.kind}, {sample.split}): "
              + (f"{_count(len(versions), 'saved version')}" if versions else "never labeled"))
        for lv in reversed(versions):
            print(f"  {version_text(lv, project.task)}" + ("   <- its label now" if lv.is_current else ""))
        if versions and not any(lv.is_current for lv in versions):
            print("  (unlabeled now: its label was removed; --restore V brings a version back)")
    return 0


def cmd_relink(args) -> int:
    from medlabeler.engine.project.relink import relink_images

    with _open(args.project, readonly=args.dry_run) as project:  # a dry run reads beside an app that holds it
        report = relink_images(project, args.folder, dry_run=args.dry_run)
    for line in report.lines():
        print(line, file=sys.stderr)
    if not report.found and not report.missing:
        print("no image of the project is missing")
    else:
        print(report.summary(args.folder))
    return 0 if report.found or not report.missing else 1  # a script sees that nothing was found


def cmd_export(args) -> int:
    from medlabeler.engine.project.export import LEFT_OUT, ExportIncomplete, export_project, written_text

    from medlabeler.engine.errors import ProjectLockedError, ProjectReadOnlyError

    try:
        project = _open(args.project)  # writable: the export is recorded in the audit log
    except ProjectLockedError as exc:  # the app has it open: export what it has saved so far
        project = _open(args.project, readonly=True)
        print(f"note: the project is open in another app or command{f' ({exc.holder})' if exc.holder else ''}: exporting "
              "the labels saved there so far, read-only (this export is not recorded in the project's audit log)")
    except ProjectReadOnlyError as exc:  # an archive, a read-only share, a full disk: its labels still come out
        project = _open(args.project, readonly=True)
        print(f"note: {exc}\nexporting read-only (this export is not recorded in the project's audit log)")
    before = _files_under(Path(args.out))
    left_out = None
    with project:
        try:
            files = export_project(project, args.out, fmt=args.format, keep_names=args.keep_names,
                                   deidentify=args.deidentify)
        except ExportIncomplete as exc:  # the others are written: said, then the exit status says it
            files, left_out = exc.files, exc
    _say_seg_identity(args)
    written = {Path(f).resolve() for f in files}
    replaced, other = len(before & written), len(before - written)
    print(f"exported {written_text(files, args.format)} to {args.out}"
          + (f"; {replaced} of them replaced files of the same name there" if replaced else ""))
    if not args.keep_names and args.format in ("csv", "nifti", "png"):
        by = {"csv": "rows go by sample id",
              "nifti": "files are numbered volumes, and labels.json lists the sample ids in each",
              "png": "files are numbered images, and labels.json lists the sample id of each"}[args.format]
        back = " (`import-labels` reads the folder back into this project by them)" if args.format != "csv" else ""
        print(f"the images' file names are left out (they can name the patient): {by}{back}; --keep-names adds them")
    if other:
        print(f"note: {args.out} holds {_count(other, 'other file')}, not from this export (an earlier one, of labels "
              "since removed or of another format?): left as they are")
    if left_out is not None:
        for problem in left_out.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"error: {len(left_out.problems)} label{'s' * (len(left_out.problems) > 1)} {LEFT_OUT}: the saved "
              "file is damaged (see above: an earlier intact version can be restored with `medlabeler history`)",
              file=sys.stderr)
        return 1
    return 0


def _files_under(folder: Path) -> set[Path]:
    """The files an export could replace: those at the top of its folder, where every format writes."""
    return {p.resolve() for p in folder.iterdir() if p.is_file()} if folder.is_dir() else set()


def cmd_pretrain(args) -> int:
    from medlabeler.engine.workflows.pretrain import pretrain_project

    config = _config(args.config)
    with _open(args.project) as project:
        _warn_if_experimental(project.task.kind, args.method)
        result = drive(pretrain_project(project, method=args.method, epochs=args.epochs, config=config), f"pretrain {args.method}")
    print(f"pretrained {args.method}: {_result_text(result)}")
    return 0


def _version_number(text: str) -> int | None:
    """A model version as typed: 3 or v3 (as `medlabeler models` and the app show it)."""
    match = re.fullmatch(r"[vV]?(\d+)", str(text).strip())
    return int(match.group(1)) if match else None


def _version_arg(text: str) -> int:
    number = _version_number(text)
    if number is None:
        raise argparse.ArgumentTypeError(f"not a model version: {text!r} (give 3 or v3)")
    return number


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, not {value}")
    return value


def cmd_train(args) -> int:
    from medlabeler.engine.errors import InitMismatchError
    from medlabeler.engine.workflows.model_versions import weights_problem
    from medlabeler.engine.workflows.train import train_project, train_recommended

    config = _config(args.config)
    init = args.init
    if init and _version_number(init) is not None:  # "3" or "v3", as the app and `models` show it
        init = _version_number(init)
    with _open(args.project) as project:
        by_default = init is None
        if init in (None, "active"):  # as the app's Retrain and the learning loop: on from the active model
            active = project.active_model()
            unloadable = weights_problem(active) if active is not None else None
            init = active.version if active is not None and unloadable is None else None
            if unloadable:  # every run from it would fail: as the learning loop, start afresh
                print(f"the active model v{active.version} cannot be loaded: {unloadable}; training from scratch")
            elif active is not None:
                print(f"starting from the active model v{active.version} (--init scratch starts afresh)")
        elif init == "scratch":
            init = None

        def run(init):
            if args.method is None and init is None and args.epochs is None:  # the whole recommended pipeline
                gen = train_recommended(project, steps=args.steps, budget_s=args.budget_s, config=config)
            else:
                gen = train_project(project, method=args.method, init=init, epochs=args.epochs, steps=args.steps,
                                    budget_s=args.budget_s, config=config)
            return drive(gen, f"train {args.method or 'recommended'}")

        _warn_if_experimental(project.task.kind, args.method)
        try:
            result = run(init)
        except InitMismatchError as exc:
            if not by_default:
                raise
            print(f"{exc}; training from scratch instead")
            result = run(None)
    method = (result.record or {}).get("method", args.method) if result is not None else args.method
    print(f"trained {method}: {_result_text(result)}")
    decision = getattr(result, "decision", None)
    if decision is not None:
        print(decision.headline())
    return 0


def cmd_learn(args) -> int:
    from medlabeler.engine.workflows.learn_loop import learn

    with _open(args.project) as project:
        quiet = _torchrun_rank() != 0  # under torchrun rank 0 alone prints

        def show(event) -> None:
            if not quiet and event.kind in ("phase", "decision", "failed", "scored", "pretrained"):
                print(f"learn: {event.message}", file=sys.stderr if event.kind == "phase" else sys.stdout, flush=True)

        from medlabeler.engine.training.events import run_to_end

        rest = {"full_run_after_s": None} if args.no_full_run else {}
        summary = run_to_end(learn(project, new_labels=args.new_labels, budget_s=args.budget_s,
                                   config=_config(args.config) or None, until_idle=True, **rest), show)
    if _torchrun_rank() == 0:
        print(f"learn: {summary.text()}")
    return 0


def _warn_if_experimental(task_kind: str, method: str | None) -> None:
    from medlabeler.engine.workflows.recommended import experimental

    why = experimental(task_kind, method) if method else None
    if why:
        print(f"note: {method} is experimental for {task_kind} ({why}; docs/benchmarks.md)", file=sys.stderr)


def _result_text(result) -> str:
    if result is None:
        return "done"
    parts = []
    version = getattr(result, "version", None) or getattr(result, "model_version", None)
    if version is not None:
        parts.append(f"model v{version}")
    metrics = getattr(result, "metrics", None) or {}
    if metrics:
        best_step = getattr(result, "best_step", None)
        kept = f" (the weights of step {best_step} of {result.steps}: the best on validation)" \
            if best_step and getattr(result, "best_metrics", None) and best_step != result.steps else ""
        parts.append("val " + _metrics_text(metrics) + kept)
    for name, unit in (("images_per_second", "images/s"), ("seconds", "s")):
        value = getattr(result, name, None)
        if value:
            parts.append(f"{value:.1f} {unit}")
    if getattr(result, "cancelled", False):
        parts.append("cancelled")
    elif getattr(result, "stopped_by", ""):
        parts.append(f"stopped by the {result.stopped_by} at step {result.steps} of {result.planned_steps}")
    return ", ".join(parts) or "done"


def cmd_evaluate(args) -> int:
    from medlabeler.engine.workflows.evaluate import evaluate_project

    unreadable: list = []
    with _open(args.project, readonly=True) as project:
        metrics = evaluate_project(project, split=args.split, version=args.version, unreadable=unreadable)
        active = project.active_model()
        # the store notes every sample whose image failed to read (a whole scan's slices together)
        labeled = {s.id for s in project.samples(split=args.split, labeled=True)}
        left_out = sorted(project.unreadable_ids() & labeled)
    version = args.version if args.version is not None else active.version if active is not None else None
    for error in unreadable:  # measured without them, and said so: a figure on fewer samples than labeled
        print(f"left out {error}", file=sys.stderr)
    if unreadable:
        metrics["left_out"] = len(unreadable)
        ids = " ".join(str(sample_id) for sample_id in left_out)
        print(f"{args.split}: {_count(len(unreadable), 'labeled sample')} left out: their images no longer read "
              f"(put the files back, or take the labels back: medlabeler remove-label PROJECT {ids})", file=sys.stderr)
    if args.json:
        _print_json(metrics)
    elif not metrics.get("n"):
        print(f"{args.split}: no labeled {args.split} samples " + ("that still read " if unreadable else "")
              + "to measure the model on")
    else:
        split = {"val": "validation", "train": "training"}.get(args.split, args.split)
        which = f"v{version}" + (" (active)" if active is not None and version == active.version else "")
        print(f"{args.split}: {_metrics_text(metrics)} of {which} on {_count(int(metrics['n']), f'labeled {split} sample')}")
        if "dice" in metrics:  # a trial compared it with one Dice over a whole scan's voxels (0.763 against 0.905)
            print("  (dice: each label's Dice averaged over the samples that hold it, in the label or the "
                  f"prediction, then the mean over the labels that some {split} label holds: a slice that holds "
                  "little of a label weighs as much as one that holds much of it)")
        for line in _label_lines(metrics, split):
            print(line)
    return 0


def _label_lines(metrics: dict, split: str) -> list[str]:
    """Per label of a segmentation: its Dice and what it stands on. A label no reference holds
    scores 0 wherever the model finds it, and a reader of "dice 0.000" should know that."""
    lines = []
    names = [k[len("scored_"):] for k in metrics if k.startswith("scored_")]
    measurable = any(metrics[f"in_reference_{name}"] for name in names)  # else the headline counts the model's finds
    for name in names:
        scored, held = int(metrics[f"scored_{name}"]), int(metrics[f"in_reference_{name}"])
        dice = metrics[f"dice_{name}"]
        if held == 0 and scored == 0:
            lines.append(f"  {name}: in no {split} label and found by the model in none (left out of the mean dice)")
        elif held == 0:
            lines.append(f"  {name}: dice {dice:.3f}: no {split} label holds {name}, so this counts only the "
                         f"{_count(scored, 'sample')} where the model finds some ("
                         + ("left out of the mean dice; " if measurable else "")
                         + f"label {split} samples that show {name} to measure it)")
        else:
            extra = scored - held
            lines.append(f"  {name}: dice {dice:.3f} over {_count(scored, 'sample')} ({held} with {name} in the label"
                         + (f", {extra} where only the model finds it" if extra else "") + ")")
    return lines


def _say_seg_identity(args) -> None:
    """DICOM-SEG carries patient and study: say so (or that --deidentify removed them)."""
    if args.format != "dicom-seg":
        return
    from medlabeler.engine.project.dicom_seg import REQUIRES_IDENTIFIERS

    print("DICOM-SEG written without patient identifiers (--deidentify); UIDs kept so each SEG references "
          "its series" if args.deidentify else REQUIRES_IDENTIFIERS)


def cmd_predict(args) -> int:
    from medlabeler.engine.workflows.prediction_export import write_predictions

    ids = [int(i) for i in args.samples.split(",")] if args.samples else None
    unreadable: list = []
    with _open(args.project, readonly=True) as project:
        count = write_predictions(project, args.out, sample_ids=ids, keep_names=args.keep_names,
                                  fmt=args.format, deidentify=args.deidentify, unreadable=unreadable)
    for error in unreadable:
        print(f"skipped {error}", file=sys.stderr)
    _say_seg_identity(args)
    print(f"wrote predictions for {_count(count, 'sample')} to {args.out}"
          + (f"; {len(unreadable)} left out: their images no longer read" if unreadable else ""))
    return 0


def cmd_models(args) -> int:
    from medlabeler.engine.workflows.model_versions import remove_old_weights, removed_text
    from medlabeler.engine.workflows.promotion import activate_by_hand, decisions, version_figures

    with _open(args.project, readonly=args.activate is None and not args.remove_old) as project:
        if args.activate is not None:
            activate_by_hand(project, args.activate)
        if args.remove_old:
            removed, freed = remove_old_weights(project)
            print(f"removed {removed_text(removed, freed)}; their records stay" if removed
                  else "no old weights to remove", file=sys.stderr)
        models = project.models()
        active = project.active_model()
        log = decisions(project)  # read once: each version's newest decision and the figures come from it
        decided = {d.candidate: d for d in log}
        kept = {v: d.message for v, d in decided.items() if not d.promoted and not (active and v == active.version)}
        figures = version_figures(project, models, log)
    if args.json:
        rows = [{"version": m.version, "method": m.method, "metrics": m.metrics, "parent": m.parent,
                 "n_labels": m.n_labels, "active": bool(active and m.version == active.version),
                 "weights_removed": m.removed} for m in models]
        _print_json(rows)
        return 0
    for m in models:
        mark = "*" if active and m.version == active.version else " "
        print(f"{mark} v{m.version:<3} {m.method:<18} labels {m.n_labels or 0:<5} "
              f"{_model_figures(m, figures.get(m.version))}"
              + (f"  (not promoted: {kept[m.version]})" if m.version in kept else "")
              + (f"  [weights removed {m.removed[:10]}]" if m.removed else ""))
    print(f"{_count(len(models), 'model version')}; active: {f'v{active.version}' if active else 'none'}")
    return 0


def cmd_score(args) -> int:
    from medlabeler.engine.workflows.active_loop import score_project

    with _open(args.project) as project:
        result = drive(score_project(project, mc_passes=args.mc_passes), "score")
    print(f"scored {result['scored']} samples with model v{result['model_version']} ({result['samples_per_second']:.1f} samples/s)")
    return 0


def cmd_queue(args) -> int:
    from medlabeler.engine.active.strategies import FIRST_PICK_PREFIXES
    from medlabeler.engine.workflows.active_loop import is_skipped, next_samples, shown_score, where

    with _open(args.project, readonly=True) as project:
        # the skipped samples listed after the rows, for a reader; a script's JSON gets --n rows
        picks = next_samples(project, strategy=args.strategy, n=args.n, every_skipped=not args.json)
        places = {s.id: where(s, project) for s in project.samples(ids=[p.sample for p in picks])}
        has_model = project.active_model() is not None
    scores = [shown_score(p, has_model=has_model) for p in picks]  # uncertainties only (as the app)
    if args.json:
        _print_json([{"sample": p.sample, "score": score, "reason": p.reason} for p, score in zip(picks, scores)])
        return 0
    for p, value in zip(picks, scores):
        score = "" if value is None else f"score {value:.3f}"
        print(f"  sample {p.sample:<6} {places[p.sample]:<10} {score:<11}  {p.reason}")
    skipped = sum(1 for p in picks if is_skipped(p))
    print(f"{_count(len(picks) - skipped, 'sample')} to label next ({args.strategy})" + (
        f", then {_count(skipped, 'sample')} skipped in the app (`n` on {'them' if skipped > 1 else 'it'} unlabeled)"
        if skipped else ""))
    if has_model and any(p.reason.startswith(FIRST_PICK_PREFIXES[1]) for p in picks):  # "no uncertainty scores yet"
        print("the active model has not scored the unlabeled samples yet (`train` does not; the app and `learn` "
              "do): `medlabeler score PROJECT` ranks them by its uncertainty", file=sys.stderr)
    return 0


def cmd_benchmark(args) -> int:
    from medlabeler.benchmarks import run_benchmark

    return run_benchmark(args)


def cmd_demo(args) -> int:
    from medlabeler.engine.workflows.demo_loop import prepare_demo, run_headless_round

    from medlabeler.engine.home import medlabeler_home

    root = prepare_demo(Path(args.dir) if args.dir else medlabeler_home() / "demo", fresh=args.fresh)
    if args.headless:
        return run_headless_round(root, steps=args.steps)
    from medlabeler.ui.app import run_app

    run_app(str(root))
    return 0


def cmd_app(args) -> int:
    from medlabeler.ui.app import run_app

    run_app(args.project)
    return 0


def _command(sub, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose own --help opens with the line that `medlabeler --help` lists for it."""
    return sub.add_parser(name, help=help, description=help)


def build_parser() -> argparse.ArgumentParser:
    from medlabeler.engine.workflows.model_versions import KEEP_NEWEST, KEEP_ROLL_BACK  # (no torch)

    parser = argparse.ArgumentParser(prog="medlabeler", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)

    p = _command(sub, "init", help="create a project from a file or folder of images")
    p.add_argument("project", help="the project folder")
    p.add_argument("--images", required=True, help="file, folder of DICOM/NIfTI/images, or class_name/ folders")
    p.add_argument("--task", required=True, choices=["classification", "segmentation"])
    p.add_argument("--classes", help="comma-separated class names (classification)")
    p.add_argument("--labels", help="comma-separated label names (segmentation)")
    p.add_argument("--unit", choices=["image", "slice"], help="one sample per image/volume, or per slice")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val/test split")
    p.set_defaults(func=cmd_init)

    p = _command(sub, "import-labels", help="import masks (NIfTI/PNG named after the images), DICOM-SEGs of the project's series, or a CSV image,label")
    p.add_argument("project", help="the project folder")
    p.add_argument("path", help="a folder of masks named after the images (0 background, 1..N the labels in "
                                "the order init's --labels gave them), a DICOM-SEG file or folder, or a CSV "
                                "file of image,label rows (label: a class name), or an export's labels.csv "
                                "(rows by sample id)")
    p.set_defaults(func=cmd_import_labels)

    p = _command(sub, "remove-label", help="make samples unlabeled again (labels saved by mistake); "
                                            "their versions stay in the project's history")
    p.add_argument("project", help="the project folder")
    p.add_argument("samples", nargs="+", type=int, help="sample ids (as `medlabeler queue` and the app show them)")
    p.set_defaults(func=cmd_remove_label)

    p = _command(sub, "history", help="the saved versions of a sample's label, newest first; --restore V makes "
                                       "an earlier one its label again")
    p.add_argument("project", help="the project folder")
    p.add_argument("sample", type=int, help="a sample id (as `medlabeler queue` and the app show them)")
    p.add_argument("--restore", type=int, metavar="V", help="make version V the sample's label again (the newer "
                                                             "versions stay in the history)")
    p.set_defaults(func=cmd_history)

    p = _command(sub, "relink", help="find images moved or renamed since the import under a folder, and read "
                                      "them from there (same ids, labels and models)")
    p.add_argument("project", help="the project folder")
    p.add_argument("folder", help="where the images are now: each missing one is looked for by the end of its old "
                                  "path, its name, then its fingerprint (a renamed file), and taken only if its "
                                  "headers give the same size (and DICOM series)")
    p.add_argument("--dry-run", action="store_true", help="say what would be found, change nothing")
    p.set_defaults(func=cmd_relink)

    p = _command(sub, "status", help="counts of samples and labels")
    p.add_argument("project", help="the project folder")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = _command(sub, "export", help="export labels (de-identified file names unless --keep-names)")
    p.add_argument("project", help="the project folder")
    p.add_argument("--format", required=True, choices=["nifti", "png", "csv", "dicom-seg"],
                   help="segmentation masks as NIfTI, PNG (2D images and slices: the label numbers, as "
                        "import-labels reads them) or DICOM-SEG; classes as CSV")
    p.add_argument("--out", required=True)
    p.add_argument("--keep-names", action="store_true", help="name files after the source images (may identify patients)")
    p.add_argument("--deidentify", action="store_true", help="dicom-seg: leave out the patient identifiers the SEG would copy from its source")
    p.set_defaults(func=cmd_export)

    p = _command(sub, "pretrain", help="self-supervised pretraining on all images")
    p.add_argument("project", help="the project folder")
    p.add_argument("--method", default="simclr", choices=_Registered(lambda: _method_names("pretrain")),
                   help=_pretrain_method_help())
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--config", help="JSON file of method/training options")
    p.set_defaults(func=cmd_pretrain)

    p = _command(sub, "train", help="train on the labels (and unlabeled images for semi-supervised methods)")
    p.add_argument("project", help="the project folder")
    p.add_argument("--method", default=None, choices=_Registered(lambda: _method_names("train")),
                   help=_train_method_help())
    p.add_argument("--init", help="where training starts: 'active' (the active model, the default, as the app's "
                                  "Retrain and the learning loop; from scratch when there is none), 'scratch', "
                                  "'pretrained' (the newest pretrained encoder) or a model version")
    p.add_argument("--steps", type=_positive_int, default=None, help="optimizer steps (default: the recommended budget)")
    p.add_argument("--budget-s", type=float, default=None, help="stop cleanly after this many seconds")
    p.add_argument("--epochs", type=_positive_int, default=None, help="passes over the labeled set instead of --steps")
    p.add_argument("--config", help="JSON file of method/training options")
    p.set_defaults(func=cmd_train)

    p = _command(sub, "learn", help="the app's learning loop without a display: pretrain if recommended, "
                                     "train a candidate when labels arrived, promote it only if validation "
                                     "does not drop, re-score the pool; stops when idle or at --budget-s")
    p.add_argument("project", help="the project folder")
    p.add_argument("--budget-s", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--new-labels", type=_positive_int, default=3, help="labels that trigger a new candidate (default 3)")
    p.add_argument("--config", help="JSON file of training options for every run (overrides the recommended)")
    p.add_argument("--no-full-run", action="store_true",
                   help="stop after a round (a third of the steps), instead of giving the active model a "
                        "full-length run on the labels there are before stopping (the app does that after a minute "
                        "without a new label)")
    p.set_defaults(func=cmd_learn)

    p = _command(sub, "predict", help="write predictions of the active model")
    p.add_argument("project", help="the project folder")
    p.add_argument("--samples", help="comma-separated sample ids (default: all)")
    p.add_argument("--out", required=True)
    p.add_argument("--keep-names", action="store_true")
    p.add_argument("--format", default="nifti", choices=["nifti", "dicom-seg"], help="segmentation masks as NIfTI or DICOM-SEG")
    p.add_argument("--deidentify", action="store_true", help="dicom-seg: leave out the patient identifiers the SEG would copy from its source")
    p.set_defaults(func=cmd_predict)

    p = _command(sub, "evaluate", help="metrics of the active model on a split")
    p.add_argument("project", help="the project folder")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="the labels to measure on (default test)")
    p.add_argument("--version", type=_version_arg, default=None, metavar="V",
                   help="the model version to measure, 3 or v3 (default: the active one)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = _command(sub, "models", help="model versions; --activate V rolls back or forward")
    p.add_argument("project", help="the project folder")
    p.add_argument("--activate", type=_version_arg, default=None, metavar="V",
                   help="make model version V (3 or v3) the active one: a roll back or forward")
    p.add_argument("--remove-old", action="store_true",
                   help="free space: remove the weights of old versions, as the learning loop does after each "
                        f"round (kept: the active model, the {KEEP_NEWEST} newest, the {KEEP_ROLL_BACK} newest that "
                        "were active, the newest pretrained encoder); their records, metrics and decisions stay")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = _command(sub, "score", help="score unlabeled samples with the active model (every uncertainty measure: "
                                     "`queue --strategy` picks which ranks them)")
    p.add_argument("project", help="the project folder")
    p.add_argument("--mc-passes", type=int, default=0, help="MC dropout passes for BALD (0: off)")
    p.set_defaults(func=cmd_score)

    p = _command(sub, "queue", help="the samples to label next")
    p.add_argument("project", help="the project folder")
    p.add_argument("--n", type=_positive_int, default=10, help="how many samples to list (default 10)")
    p.add_argument("--strategy", default="hybrid", choices=_Registered(_strategy_names))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_queue)

    p = _command(sub, "benchmark", help="measure: active-learning curves, pipelines, training throughput")
    p.add_argument("name", choices=["active-learning", "pipelines", "throughput", "learning-loop", "sanity-ladder"])
    p.add_argument("--dataset", default="mni-tissue-seg", help="mni-tissue-seg, mni-tissue3-seg (three labels, one small), mni-tissue-vol (six whole scans), mni-tissue-cls or a labeled project folder")
    p.add_argument("--strategies", default="random,entropy,bald,kcenter,hybrid")
    p.add_argument("--methods", default="supervised,pcl+supervised,mean-teacher,auto",
                   help="pipelines: [pretrain+]train,...; 'auto' is the recommended pipeline, 'all' every method")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--per-round", type=int, default=4)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None, help="epochs per training run (default: a fixed --steps budget)")
    p.add_argument("--out", default="benchmark-out")
    p.add_argument("--labels", default="8", help="labeled train samples (pipelines: a list such as 4,8,16,full; throughput: a number)")
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default 40 segmentation, 60 classification)")
    p.add_argument("--full-steps", type=int, default=None, help="steps of the full-supervision reference (default: --steps; with --warm-start, --steps x (rounds + 1))")
    p.add_argument("--pretrain-steps", type=int, default=None, help="SSL pretraining steps (default 60)")
    p.add_argument("--image-size", type=int, default=None, help="model input side (default 64 segmentation, 32 classification)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--config", default=None, help="JSON object (or file) of extra training options")
    p.add_argument("--method", default="supervised", help="training method of the active-learning rounds")
    p.add_argument("--warm-start", action="store_true", help="each round starts from the previous round's model")
    p.add_argument("--warm-share", type=_share, default=None,
                   help="learning-loop: the share of --steps each round of the loop trains, the first model's too "
                        "(default: the app's loop's, 1/3)")
    p.add_argument("--seed", type=int, default=None,
                   help="learning-loop: the seed of its training runs and queue draws (default 0)")
    p.add_argument("--full-run-after-s", type=float, default=None,
                   help="learning-loop: after the last round the clinician rests this long and the loop gives the "
                        "active model a full-length run (default: the app's loop's, 60 s; a negative value: no rest)")
    p.add_argument("--mc-passes", type=int, default=4, help="MC-dropout passes when scoring for BALD")
    p.add_argument("--fraction", type=float, default=0.95, help="fraction of full supervision to reach")
    p.add_argument("--patches", type=int, default=900, help="patches of mni-tissue-cls")
    p.add_argument("--classes", type=int, default=3, choices=[2, 3], help="classes of mni-tissue-cls")
    p.add_argument("--repeats", type=int, default=2, help="throughput: repeats (best counts)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the engine's cap)")
    p.add_argument("--keep-projects", action="store_true", help="keep the projects each run made")
    p.add_argument("--verbose", action="store_true", help="print every epoch of every run")
    p.set_defaults(func=cmd_benchmark)

    p = _command(sub, "demo", help="create the demo project (a real brain MRI) and open it")
    p.add_argument("--dir", default=None, help="where the demo project is made (default: demo in $MEDLABELER_HOME, "
                                               "else ~/.medlabeler/demo, as the app's Open demo)")
    p.add_argument("--headless", action="store_true", help="run the same loop without a display")
    p.add_argument("--fresh", action="store_true", help="start the demo project again from scratch")
    p.add_argument("--steps", type=int, default=None,
                   help="headless: training steps (default: the recommended budget, as `medlabeler train`)")
    p.set_defaults(func=cmd_demo)

    p = _command(sub, "app", help="start the app (napari with the medlabeler widgets)")
    p.add_argument("project", nargs="?")
    p.set_defaults(func=cmd_app)
    return parser


def _version() -> str:
    from medlabeler import __version__

    return f"medlabeler {__version__}"


def _stdout_gone() -> bool:
    """Whether the broken pipe is standard output's (`| head` closed its end): the pipe's write end
    then polls as in error. Where poll is missing (Windows), taken to be."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return True


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from medlabeler.engine.errors import MedlabelerError

    if _torchrun_rank() > 0:  # one summary line per run, not one per process
        sys.stdout = open(os.devnull, "w")

    try:
        return args.func(args)
    except MedlabelerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError as exc:  # `medlabeler status P | head`: the reader has all it wanted
        if not _stdout_gone():
            print(f"error: {exc}", file=sys.stderr)  # another pipe than ours to the reader
            return 2
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 1
    except OSError as exc:  # a folder that cannot be written, a disk full: name the path, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
