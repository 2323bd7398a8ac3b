"""The CUDA path of the training loop (skipped without CUDA; benchmarks/gpu_check.sh runs them):
AMP autocast, and a real out-of-memory from the CUDA allocator with the batch back-off."""

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from medlabeler.engine.models import build_model
from medlabeler.engine.training import FitConfig, fit, run_to_end
from medlabeler.engine.training.device import amp_plan

from .test_training import TinySupervised

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def seg_data(n, side, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, side, side, generator=g)
    return TensorDataset(x, (x[:, 0] > 0.5).long())


def _logs(gen):
    events = []
    result = run_to_end(gen, events.append)
    return [e.message for e in events if e.kind == "log"], result


@needs_cuda
def test_cuda_training_uses_autocast_and_learns():
    model = build_model("segmentation", "unet", 1, 2, features=(8, 16, 32))
    method = TinySupervised(model, task="segmentation")
    logs, result = _logs(fit(method, FitConfig(steps=30, batch_size=8, device="cuda", lr=3e-3),
                             labeled=seg_data(32, 64)))
    dtype = str(amp_plan(torch.device("cuda")).dtype).removeprefix("torch.")
    assert f"with {dtype} autocast" in logs[0]
    assert math.isfinite(result.final_loss) and next(model.parameters()).device.type == "cuda"


@needs_cuda
def test_cuda_out_of_memory_halves_the_batch_and_finishes():
    """A real allocator OOM: the process is capped between the memory of batch 8 and of batch 16."""
    def peak(batch):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        model = build_model("segmentation", "unet", 1, 2, features=(16, 32, 64))
        config = FitConfig(steps=1, batch_size=batch, device="cuda", amp=False)
        run_to_end(fit(TinySupervised(model, task="segmentation"), config, labeled=seg_data(32, 256)))
        return torch.cuda.max_memory_allocated()

    small, large = peak(8), peak(16)
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction((small + large) / 2 / total)
    try:
        model = build_model("segmentation", "unet", 1, 2, features=(16, 32, 64))
        config = FitConfig(steps=3, batch_size=16, device="cuda", amp=False)
        logs, result = _logs(fit(TinySupervised(model, task="segmentation"), config, labeled=seg_data(32, 256)))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert any("out of cuda memory: batch size halved to 8" in m for m in logs), logs
    assert result.steps == 3 and result.batch_size == 8
