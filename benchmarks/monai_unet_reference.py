"""Full-label parity (issue 9, part 4): our supervised training at its defaults against a plain
MONAI U-Net script at native resolution, same split (the project's train / val / test slabs of
mni-tissue-seg), same steps, same batch size; both scored by the same Dice, here, at native size.

    python benchmarks/monai_unet_reference.py --steps 300 [--ours-config '{"image_size": 128}']

The MONAI side is what a MONAI user would write in an afternoon: z-scored slices padded to a
multiple of 16, monai.networks.nets.UNet (channels 16-128, 2 residual units), DiceCELoss, Adam
1e-3, random flips, the best of two validations. Ours: `train_project(method="supervised")` with
the run-config defaults (native resolution: random crops of `image_size`, whole-slice
prediction). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def dice_per_class(pred: np.ndarray, truth: np.ndarray, classes=(1, 2)) -> list[float]:
    """Dice of each class over all pixels of all test slices together."""
    out = []
    for c in classes:
        p, t = pred == c, truth == c
        denominator = p.sum() + t.sum()
        out.append(float(2 * (p & t).sum() / denominator) if denominator else float("nan"))
    return out


def split_slices(project) -> dict[str, list[int]]:
    return {split: sorted(s.slice_index for s in project.samples(split=split)) for split in ("train", "val", "test")}


def monai_reference(volume: np.ndarray, truth: np.ndarray, splits: dict, *, steps: int, batch: int, seed: int):
    """(test Dice per class, seconds) of the plain MONAI U-Net script."""
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    lo, hi = np.percentile(volume, (1, 99))
    image = (np.clip(volume, lo, hi) - volume.mean()) / (volume.std() + 1e-8)
    h, w = image.shape[1:]
    ph, pw = -h % 16, -w % 16
    pad = lambda a: np.pad(a, ((0, 0), (0, ph), (0, pw)))  # noqa: E731
    x_all, y_all = torch.from_numpy(pad(image)).float()[:, None], torch.from_numpy(pad(truth)).long()[:, None]
    net = UNet(spatial_dims=2, in_channels=1, out_channels=3, channels=(16, 32, 64, 128), strides=(2, 2, 2),
               num_res_units=2)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimiser = torch.optim.Adam(net.parameters(), 1e-3)
    train = np.array(splits["train"])

    def predict(indices):
        net.eval()
        with torch.no_grad():
            out = torch.cat([net(x_all[indices[i:i + 16]]).argmax(1) for i in range(0, len(indices), 16)])
        net.train()
        return out[:, :h, :w].numpy()

    best, best_state, started = -1.0, None, time.perf_counter()
    for step in range(1, steps + 1):
        pick = rng.choice(train, batch, replace=len(train) < batch)
        x, y = x_all[pick].clone(), y_all[pick].clone()
        flip = torch.rand(batch) < 0.5
        x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
        optimiser.zero_grad()
        loss_fn(net(x), y).backward()
        optimiser.step()
        if step % max(1, steps // 2) == 0 or step == steps:
            score = float(np.nanmean(dice_per_class(predict(splits["val"]), truth[splits["val"]])))
            if score > best:
                best, best_state = score, {k: v.clone() for k, v in net.state_dict().items()}
    seconds = time.perf_counter() - started
    net.load_state_dict(best_state)
    return dice_per_class(predict(splits["test"]), truth[splits["test"]]), seconds


def ours(project, truth: np.ndarray, splits: dict, *, steps: int, batch: int, config: dict):
    from medlabeler.engine.training import run_to_end
    from medlabeler.engine.workflows.predict import predict_samples
    from medlabeler.engine.workflows.train import train_project

    started = time.perf_counter()
    result = run_to_end(train_project(project, method="supervised", steps=steps,
                                      config={"batch_size": batch, **config}, promote=False))
    seconds = time.perf_counter() - started
    test = sorted(project.samples(split="test"), key=lambda s: s.slice_index)
    probs = dict(predict_samples(project, [s.id for s in test], result.version))
    pred = np.stack([probs[s.id].argmax(0) for s in test])
    return dice_per_class(pred, truth[[s.slice_index for s in test]]), seconds, result.record["preprocess"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ours-config", default="{}", help="JSON run-config overrides for our side (default: none)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from medlabeler.benchmarks import common
    from medlabeler.benchmarks.datasets import load_dataset, mni_truth
    from medlabeler.engine.io import read_image
    from medlabeler.engine.workflows import demo

    with tempfile.TemporaryDirectory() as tmp:
        data = load_dataset("mni-tissue-seg", Path(tmp))
        project = common.fresh_project(data, Path(tmp) / "project")
        common.reveal(project, data, project.samples())
        splits = split_slices(project)
        truth = mni_truth()
        volume = read_image(demo.mni_file("t1")).array.astype(np.float32)
        if volume.shape != truth.shape:
            raise SystemExit(f"MNI T1 {volume.shape} and tissue labels {truth.shape} differ")
        print(f"full labels: {len(splits['train'])} train, {len(splits['val'])} val, {len(splits['test'])} test slices "
              f"of {volume.shape[1]}x{volume.shape[2]} px; {args.steps} steps, batch {args.batch_size}", flush=True)
        ref, ref_s = monai_reference(volume, truth, splits, steps=args.steps, batch=args.batch_size, seed=args.seed)
        print(f"MONAI U-Net (native):  test Dice {np.mean(ref):.4f} (grey {ref[0]:.4f}, white {ref[1]:.4f}), {ref_s:.0f} s",
              flush=True)
        mine, mine_s, preprocess = ours(project, truth, splits, steps=args.steps, batch=args.batch_size,
                                        config=json.loads(args.ours_config))
        print(f"medlabeler supervised: test Dice {np.mean(mine):.4f} (grey {mine[0]:.4f}, white {mine[1]:.4f}), "
              f"{mine_s:.0f} s, input {preprocess.get('resize')} {preprocess.get('size')} px")
        print(f"ratio ours / MONAI: {np.mean(mine) / np.mean(ref):.3f} (target >= 0.98)")
        project.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
