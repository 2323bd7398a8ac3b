"""Predict with a model version: probabilities, encoder features and embeddings of samples.

Each answer is at the sample's own size (the model's input is letterboxed, stretched or cropped;
"crop" models run a sliding window). Pass `model_bundle` (from `model_versions.load_model`) to
predict many times without reloading the weights.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from medlabeler.engine.workflows.model_versions import load_model, preprocess_from_record


def predict_samples(project, sample_ids: Iterable[int], version: int | None = None, *, mc_samples: int = 0,
                    batch_size: int = 8, device=None, seed: int | None = None, model_bundle=None,
                    unreadable: list | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(sample_id, probabilities) per sample, at the sample's original size: classification
    (C,), segmentation (C, *sample spatial shape). With `mc_samples` = T > 0, T MC-dropout passes:
    (T, C) / (T, C, *S). Large native-resolution inputs ("crop" mode) use a sliding window.
    `model_bundle` (from `load_model`) avoids reloading the weights between calls. With a list as
    `unreadable`, a sample whose image no longer reads is passed over and its InputError put there
    (else it stops the predictions)."""
    from medlabeler.engine.inference.predict import mc_dropout_probs, predict_probs

    model, record, tensors = _open(project, version, device, model_bundle)
    roi = _roi(record, tensors.preprocess)
    for chunk, x in _chunks(project, tensors, sample_ids, batch_size, roi, unreadable):
        if mc_samples > 0:
            probs = mc_dropout_probs(model, x, mc_samples, seed=seed, batch_size=batch_size, roi_size=roi)
            probs = probs.transpose(0, 1)  # (N, T, C, ...)
        else:
            probs = predict_probs(model, x, batch_size=batch_size, roi_size=roi)
        for sample, p in zip(chunk, probs):
            yield sample.id, _at_sample_size(p, sample, record, tensors)


def predict_with_features(project, sample_ids: Iterable[int], version: int | None = None, *, batch_size: int = 8,
                          device=None, model_bundle=None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(sample_id, probabilities at the sample's own size, pooled encoder features) per sample,
    from one forward pass (active-learning scoring). Native-resolution ("crop") models fall back
    to a sliding-window pass plus a feature pass."""
    from medlabeler.engine.inference.predict import predict_features, predict_probs, predict_probs_and_features

    model, record, tensors = _open(project, version, device, model_bundle)
    roi = _roi(record, tensors.preprocess)
    for chunk, x in _chunks(project, tensors, sample_ids, batch_size, roi):
        if roi is not None:
            probs = predict_probs(model, x, batch_size=batch_size, roi_size=roi)
            feats = predict_features(model, x, batch_size=batch_size)
        else:
            probs, feats = predict_probs_and_features(model, x, batch_size=batch_size)
        for sample, p, f in zip(chunk, probs, feats):
            yield sample.id, _at_sample_size(p, sample, record, tensors), f.numpy().astype(np.float32)


def embed_samples(project, sample_ids: Iterable[int], version: int | None = None, *, batch_size: int = 16,
                  device=None, model_bundle=None, unreadable: list | None = None) -> tuple[list[int], np.ndarray]:
    """(ids, pooled encoder features (N, D)) of samples (embeddings for k-center / core-set). With a
    list as `unreadable`, a sample whose image no longer reads is left out (see `predict_samples`)."""
    import torch

    from medlabeler.engine.inference.predict import predict_features

    model, _record, tensors = _open(project, version, device, model_bundle)
    one_at_a_time = 1 if tensors.preprocess.resize == "crop" else None  # native sizes differ
    ids, feats = [], []
    for chunk, x in _chunks(project, tensors, sample_ids, batch_size, one_at_a_time, unreadable):
        feats.append(predict_features(model, x, batch_size=batch_size))
        ids += [s.id for s in chunk]
    dim = getattr(model, "feature_dim", 0)
    return ids, (torch.cat(feats).numpy() if feats else np.zeros((0, dim), np.float32))


def _open(project, version, device, model_bundle):
    """(network, record, the samples' model inputs as the version was trained) of a model version."""
    from medlabeler.engine.data.datasets import SampleTensors

    model, record, _mv = model_bundle or load_model(project, version, device)
    return model, record, SampleTensors(project, preprocess_from_record(record), cache_mb=0)


def _chunks(project, tensors, sample_ids: Iterable[int], batch_size: int, roi: int | None,
            unreadable: list | None = None):
    """(samples, their stacked model inputs) in chunks of up to `batch_size` consecutive samples
    of one input shape (native-resolution inputs differ between images); one sample at a time
    for sliding-window models (`roi`). See `predict_samples` for `unreadable`."""
    import torch

    from medlabeler.engine.errors import InputError

    limit = 1 if roi is not None else max(1, batch_size)
    chunk, images = [], []
    for sample_id in sample_ids:
        sample = project.sample(sample_id)
        try:
            image = tensors.image(sample)
        except InputError as exc:
            if unreadable is None:
                raise
            unreadable.append(exc)
            continue
        if images and (len(images) >= limit or image.shape != images[0].shape):
            yield chunk, torch.stack(images)
            chunk, images = [], []
        chunk.append(sample)
        images.append(image)
    if images:
        yield chunk, torch.stack(images)


def _at_sample_size(probs, sample, record: dict, tensors) -> np.ndarray:
    """A prediction as float32 numpy; segmentations back at the sample's own size."""
    if record["task"] == "segmentation":
        probs = tensors.geometry(sample).to_original(probs)
    return probs.numpy().astype(np.float32)


def _roi(record: dict, preprocess) -> int | None:
    """The sliding-window size of a model (native-resolution volumes); None: whole inputs."""
    return preprocess.window_size(3 if record.get("spatial_dims") == 3 else 2)
