"""Networks: output shapes, pooled features, encoder transfer, MC dropout, pad policy, registry."""

import pytest
import torch

from medlabeler.engine.models import (
    MODELS, ProjectionHead, build_classifier, build_model, build_segmenter, count_parameters,
    enable_mc_dropout, has_dropout,
)

SMALL = (8, 16, 32, 64)


@pytest.mark.parametrize("arch,in_channels", [("resnet18", 1), ("resnet18", 3), ("resnet34", 3)])
def test_classifier_shapes(arch, in_channels):
    model = build_model("classification", arch, in_channels, 4).eval()
    x = torch.randn(2, in_channels, 32, 32)
    assert model(x).shape == (2, 4)
    assert model.forward_features(x).shape == (2, model.feature_dim) == (2, 512)
    assert model.encoder.conv1.in_channels == in_channels
    assert model.build_args == {"task": "classification", "arch": arch, "in_channels": in_channels, "num_classes": 4}


def test_resnet50_small_stem_keeps_resolution():
    model = build_classifier("resnet50", 1, 2, stem="small").eval()
    assert model.feature_dim == 2048
    maps = model.encoder.feature_maps(torch.randn(1, 1, 16, 16))
    assert maps[-1].shape[-1] == 2  # 16 / 8: no stride-2 stem, no max pool
    assert model(torch.randn(1, 1, 16, 16)).shape == (1, 2)


@pytest.mark.parametrize("arch", ["unet", "unet-alt"])
@pytest.mark.parametrize("size", [(32, 32), (37, 50), (64, 48)])
def test_segmenter_any_size_gives_same_size_logits(arch, size):
    model = build_segmenter(arch, 1, 3, features=SMALL).eval()
    x = torch.randn(2, 1, *size)
    assert model(x).shape == (2, 3, *size)
    assert model.forward_features(x).shape == (2, 64) and model.feature_dim == 64
    assert model.multiple == 8


def test_padding_does_not_change_divisible_inputs():
    """An input already a multiple of 2**(levels-1) goes through untouched (no pad)."""
    model = build_segmenter("unet", 1, 2, features=SMALL).eval()
    x = torch.randn(1, 1, 40, 48)
    padded, size = model._pad(x)
    assert padded.shape == x.shape and size == (40, 48)
    x2 = torch.randn(1, 1, 41, 48)
    assert model._pad(x2)[0].shape[-2:] == (48, 48)


@pytest.mark.parametrize("task,arch,kw", [("classification", "resnet18", {}),
                                          ("segmentation", "unet-alt", {"features": SMALL})])
def test_forward_with_features_matches_the_two_calls(task, arch, kw):
    model = build_model(task, arch, 1, 2, **kw).eval()
    x = torch.randn(2, 1, 36, 36)
    logits, features = model.forward_with_features(x)
    assert torch.allclose(logits, model(x), atol=1e-6)
    assert torch.allclose(features, model.forward_features(x), atol=1e-6)


def test_unet_designs_differ():
    a = build_segmenter("unet", 1, 2, features=SMALL)
    b = build_segmenter("unet-alt", 1, 2, features=SMALL)
    assert type(a.encoder) is not type(b.encoder)
    assert set(a.state_dict()) != set(b.state_dict())


def test_unet3d_volume():
    model = build_model("segmentation", "unet3d", 1, 2, features=(4, 8, 16)).eval()
    x = torch.randn(1, 1, 10, 19, 16)
    assert model(x).shape == (1, 2, 10, 19, 16)
    assert model.forward_features(x).shape == (1, 16)


@pytest.mark.parametrize("task,arch,kw", [("classification", "resnet18", {}),
                                          ("segmentation", "unet", {"features": SMALL}),
                                          ("segmentation", "unet-alt", {"features": SMALL})])
def test_encoder_transfer_reproduces_features(task, arch, kw):
    """Pretrained encoder weights loaded into a fresh model give identical pooled features,
    whatever the number of classes of the new head."""
    source = build_model(task, arch, 1, 2, **kw).eval()
    target = build_model(task, arch, 1, 5, **kw).eval()
    x = torch.randn(2, 1, 32, 32)
    assert not torch.allclose(source.forward_features(x), target.forward_features(x))
    target.encoder.load_state_dict(source.encoder.state_dict())
    assert torch.allclose(source.forward_features(x), target.forward_features(x))
    assert all(k.startswith("encoder.") for k in source.state_dict() if k.startswith("encoder."))
    assert set(source.encoder.state_dict()) == {k[len("encoder."):] for k in source.state_dict()
                                               if k.startswith("encoder.")}


@pytest.mark.parametrize("task,arch,kw", [("classification", "resnet18", {}),
                                          ("segmentation", "unet", {"features": SMALL})])
def test_mc_dropout_samples_differ_but_eval_is_deterministic(task, arch, kw):
    model = build_model(task, arch, 1, 2, dropout=0.5, **kw)
    x = torch.randn(2, 1, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        enable_mc_dropout(model)
        assert not torch.equal(model(x), model(x))
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert has_dropout(model)


def test_mc_dropout_needs_dropout():
    with pytest.raises(ValueError, match="dropout"):
        enable_mc_dropout(build_classifier("resnet18", 1, 2, dropout=0.0))


def test_registry_and_errors():
    assert {"resnet18", "resnet34", "resnet50", "unet", "unet-alt", "unet3d"} <= set(MODELS)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("segmentation", "vnet", 1, 2)
    with pytest.raises(ValueError, match="is for segmentation"):
        build_model("classification", "unet", 1, 2)
    with pytest.raises(ValueError, match="at least 2"):
        build_segmenter("unet", 1, 1)
    assert build_model("segmentation", None, 1, 2, features=SMALL).design == "unet"


def test_count_parameters_and_projection_head():
    model = build_segmenter("unet", 1, 2, features=SMALL)
    total = count_parameters(model)
    assert total == sum(p.numel() for p in model.parameters()) > 0
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == total - count_parameters(model.encoder)
    head = ProjectionHead(64, out_dim=16)
    assert head(torch.randn(4, 64)).shape == (4, 16)


def test_models_never_download(monkeypatch):
    """weights=None always: building works with the network switched off."""
    import torch.hub

    def refuse(*_a, **_k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)  # offline: fail if a download is tried
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    build_classifier("resnet18", 1, 2)
