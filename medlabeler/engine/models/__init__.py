"""Networks: ResNet classifiers, U-Net segmenters, heads, and a registry by name.

Every network follows the model seam (contracts.md): `forward(x)` -> logits,
`forward_features(x)` -> pooled (B, D), attributes `encoder` (what SSL pretrains) and
`feature_dim`.
"""

from .classifier import Classifier, ResNetEncoder, build_classifier
from .common import ProjectionHead, count_parameters, enable_mc_dropout, has_dropout
from .encoder import Encoder
from .registry import DEFAULT_ARCH, MODELS, ModelSpec, build_model, register_model
from .unet import UNet, build_segmenter

__all__ = [
    "Classifier", "DEFAULT_ARCH", "Encoder", "MODELS", "ModelSpec", "ProjectionHead", "ResNetEncoder",
    "UNet", "build_classifier", "build_model", "build_segmenter", "count_parameters",
    "enable_mc_dropout", "has_dropout", "register_model",
]
