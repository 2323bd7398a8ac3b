"""Throughput benchmark: our training loop against a plain PyTorch loop, and pretraining speed.

Both loops train the same U-Net (`build_segmenter` with the same arguments and seed) with AdamW at
the same learning rate, batch size and image size, on the same preprocessed tensors (the
project's `SampleTensors`), with the supervised loss (0.5 CE + 0.5 soft Dice). Our run is one
epoch, so it validates only after the last timed step. Steady-state images/s is measured
over the same steps after a warm-up, from the time each step ends; the plain loop is run bare and
with the weak augmentation our supervised method applies. Runs alternate and each is repeated;
the best repeat counts (this machine is shared). Pretraining images/s of SimCLR and PCL come from
the same event timing and from the RunResult.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from . import common
from .common import say


def _timed_events(gen) -> tuple[list[float], object]:
    """Drive an engine generator; (end time of every "step" event, the RunResult)."""
    from medlabeler.engine.training.events import run_to_end

    times = []

    def stamp(event) -> None:
        if getattr(event, "kind", "") == "step":
            times.append(time.perf_counter())

    result = run_to_end(gen, stamp)
    return times, result


def steady_rate(times: list[float], warmup: int, batch: int) -> float:
    """Images/s between the end of step `warmup` and the end of the last step."""
    start = max(1, warmup)
    if len(times) <= start:
        return float("nan")
    return (len(times) - start) * batch / max(times[-1] - times[start - 1], 1e-9)


def plain_loop(images, masks, *, model_args: dict, steps: int, warmup: int, batch: int, lr: float,
               weight_decay: float, seed: int, augment_spec: str | None = None, device=None) -> float:
    """A plain PyTorch training loop (no events, no schedule, no clipping) on the same device as
    ours (synchronised per step on CUDA, as ours is by reading the loss); steady images/s."""
    import torch

    from medlabeler.engine.data.augment import augment, get_spec
    from medlabeler.engine.models import build_segmenter
    from medlabeler.engine.semi.supervised import supervised_loss

    torch.manual_seed(seed)
    device = torch.device(device or "cpu")
    model = build_segmenter(**model_args).to(device).train()
    images, masks = images.to(device), masks.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    spec = get_spec(augment_spec) if augment_spec else None
    times = []
    for _ in range(steps):
        index = torch.randint(len(images), (batch,), generator=generator).to(device)
        x, y = images[index], masks[index]
        if spec is not None:
            x, y = augment(x, spec, y, generator=generator)
        loss, _parts = supervised_loss(model(x), y, "segmentation")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter())
    return steady_rate(times, warmup, batch)


def run(args) -> int:
    import torch

    from medlabeler.engine.data.datasets import Preprocess, SampleTensors
    from medlabeler.engine.workflows.pretrain import pretrain_project
    from medlabeler.engine.workflows.run_config import resolve_config
    from medlabeler.engine.workflows.train import train_project

    from .datasets import load_dataset

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common.set_threads(args.threads)
    data = load_dataset(args.dataset, out / "data", patches=args.patches, classes=args.classes)
    if data.task != "segmentation":
        raise SystemExit("the throughput benchmark trains the U-Net: use a segmentation dataset")
    warmup, measured = 5, int(args.steps or 40)
    steps = warmup + measured
    root = out / "projects" / "throughput"
    project = common.fresh_project(data, root)
    rows = []
    try:
        pool = common.train_pool(project, data)
        labeled = common.spread_pick(pool, int(args.labels), 0, common.empty_mask(data))
        common.reveal(project, data, labeled)
        # val labels too (training without any crashes, see the report); one epoch, so the only
        # validation comes after the last timed step
        common.reveal(project, data, project.samples(split="val"))
        config = common.run_config(data.task, args, seed=0, steps=steps)
        config["steps_per_epoch"] = steps
        config.setdefault("resize", "letterbox")  # whole images of one size, as the plain loop stacks them
        run, _method_cfg = resolve_config(config, "supervised")
        batch = int(run["batch_size"])
        model_args = {"arch": "unet", "in_channels": 1, "num_classes": project.task.num_classes,
                      "features": tuple(run["features"]), "dropout": float(run["dropout"])}
        from medlabeler.engine.training.device import pick_device

        device = pick_device(run["device"])
        tensors = SampleTensors(project, Preprocess.from_config(run, data.task))
        images = torch.stack([tensors.image(s) for s in labeled])
        masks = torch.stack([tensors.mask(s, data.truth(s)) for s in labeled])
        say(f"throughput on {data.name}: {len(labeled)} labeled slices at {run['image_size']} px, batch {batch}, "
            f"U-Net {list(run['features'])} on {device.type}, {warmup} warm-up + {measured} timed steps, {args.repeats} repeats")
        best = {"ours": 0.0, "plain": 0.0, "plain+augment": 0.0}
        whole = 0.0
        for repeat in range(args.repeats):
            times, result = _timed_events(train_project(project, method="supervised", config=config))
            ours = steady_rate(times, warmup, batch)
            threads = torch.get_num_threads()
            whole = max(whole, result.images_per_second)
            plain = plain_loop(images, masks, model_args=model_args, steps=steps, warmup=warmup, batch=batch,
                               lr=run["lr"], weight_decay=run["weight_decay"], seed=0, device=device)
            plain_aug = plain_loop(images, masks, model_args=model_args, steps=steps, warmup=warmup, batch=batch,
                                   lr=run["lr"], weight_decay=run["weight_decay"], seed=0, augment_spec="weak",
                                   device=device)
            for name, value in (("ours", ours), ("plain", plain), ("plain+augment", plain_aug)):
                best[name] = max(best[name], value)
                rows.append({"benchmark": "train", "loop": name, "repeat": repeat, "images_per_second": value,
                             "threads": threads})
            say(f"  repeat {repeat}: ours {ours:.1f} images/s (whole run incl. first-pass preprocessing "
                f"{result.images_per_second:.1f}), plain {plain:.1f}, plain + weak augmentation {plain_aug:.1f} "
                f"({threads} torch thread(s))")
        pretrain = {}
        for method in ("simclr", "pcl"):
            p_config = common.run_config(data.task, args, seed=0, steps=args.pretrain_steps or common.DEFAULT_PRETRAIN_STEPS)
            p_config.pop("steps_per_epoch", None)
            p_batch = int(p_config["unlabeled_batch_size"])
            times, result = _timed_events(pretrain_project(project, method=method, config=p_config))
            pretrain[method] = (steady_rate(times, warmup, p_batch), result.images_per_second)
            rows.append({"benchmark": "pretrain", "loop": method, "repeat": 0, "images_per_second": pretrain[method][0],
                         "threads": torch.get_num_threads()})
    finally:
        project.close()
        if not args.keep_projects:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    with open(out / "throughput.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["benchmark", "loop", "repeat", "images_per_second", "threads"])
        w.writeheader()
        w.writerows({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    lines = [
        "# Training throughput (images/s, steady state, best of repeats)", "",
        "| loop | images/s | ours / this |", "|---|---|---|",
        f"| ours (train_project, supervised) | {best['ours']:.1f} | 1.00 |",
        f"| plain PyTorch loop | {best['plain']:.1f} | {best['ours'] / best['plain']:.2f} |",
        f"| plain loop + the same weak augmentation | {best['plain+augment']:.1f} | "
        f"{best['ours'] / best['plain+augment']:.2f} |", "",
        f"Ours over a whole run, including preprocessing every image on first use: {whole:.1f} images/s.", "",
        "Pretraining (images/s; each image gives two views): " + ", ".join(
            f"{m} {v[0]:.1f} steady ({v[1]:.1f} whole run)" for m, v in pretrain.items()), "",
        f"Machine: {common.machine_text()}.", "", "Command:", "", f"    {common.command_line(args)}", ""]
    text = "\n".join(lines)
    (out / "throughput.md").write_text(text)
    say(text)
    say(f"ours / plain = {best['ours'] / best['plain']:.2f}x (target >= 1.0x); "
        f"ours / plain+augment = {best['ours'] / best['plain+augment']:.2f}x")
    return 0
