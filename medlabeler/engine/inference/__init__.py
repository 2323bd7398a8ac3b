"""Prediction (batched, sliding window, MC dropout) and Grad-CAM saliency."""

from .predict import mc_dropout_probs, predict_features, predict_logits, predict_probs
from .saliency import default_cam_layer, grad_cam, saliency_fraction_inside

__all__ = ["default_cam_layer", "grad_cam", "mc_dropout_probs", "predict_features", "predict_logits",
           "predict_probs", "saliency_fraction_inside"]
