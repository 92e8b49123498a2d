"""Every registered backbone, random init: forward pass, head shape, what trains per mode."""

import pytest
import torch

from transferlab.config import load_config
from transferlab.models.registry import BackboneSpec, get_spec, names, register
from transferlab.models.transfer import TransferModel, create_model
from transferlab.models.weights import NoWeights
from transferlab.training.trainer import build_model

ALL = names()


def _input(name: str, batch: int = 2) -> torch.Tensor:
    size = max(get_spec(name).min_size, 64)
    return torch.randn(batch, 3, size, size)


def test_registry_has_what_the_issue_lists():
    need = {
        "scratch_cnn",
        "resnet18",
        "resnet34",
        "resnet50",
        "alexnet",
        "vgg11_bn",
        "squeezenet1_0",
        "densenet121",
        "inception_v3",
        "mobilenet_v3_large",
        "efficientnet_b0",
        "convnext_tiny",
        "efficientnet_lite0",
    }
    assert need <= set(ALL)


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="twice"):
        register(BackboneSpec("resnet18", lambda: None, NoWeights(), head="fc", cam_layer="x"))


def test_unknown_name_suggests():
    with pytest.raises(KeyError, match="resnet18"):
        get_spec("resnet181")


@pytest.mark.parametrize("name", ALL)
def test_forward_and_head_shape(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, pretrained=False).eval()
    with torch.no_grad():
        out = model(_input(name))
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()
    head = model.head if isinstance(model.head, torch.nn.Linear) else model.head[-1]
    assert head.out_features == 3 and head.in_features == model.feature_dim
    with torch.no_grad():
        feats = model.forward_features(_input(name))
    assert feats.shape == (2, model.feature_dim)
    assert model.cam_layer  # Grad-CAM target exists in the module tree
    assert dict(model.body.named_modules())[get_spec(name).cam_layer] is not None


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("mode", ["scratch", "features", "finetune"])
def test_trainable_parameters_per_mode(name, mode, monkeypatch):
    # pretrained weights are not the point here: make "pretrained" builds random init
    monkeypatch.setattr(get_spec(name).weights.__class__, "load_into", lambda self, net, n: None)
    model = build_model(load_config(None, {"model": name, "mode": mode}), num_classes=2)
    groups = model.param_groups()
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    head = {id(p) for p in model.head.parameters()}
    if mode == "features":
        assert head <= trainable
        assert not any(p.requires_grad for p in groups["body"])
        model.train()
        assert not model.body.training  # batch-norm statistics frozen too
        assert model.head.training
    else:
        assert trainable == {id(p) for p in model.parameters()}
    assert {id(p) for g in groups.values() for p in g} == {id(p) for p in model.parameters()}


def test_features_mode_keeps_batchnorm_statistics():
    model = create_model("resnet18", 2, pretrained=False)
    model.freeze_body(True)
    model.train()
    before = {k: v.clone() for k, v in model.body.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = model(torch.randn(4, 3, 64, 64) * 3 + 1).sum()
    loss.backward()
    opt.step()
    after = model.body.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_inception_trains_with_aux_logits():
    model = create_model("inception_v3", 2, pretrained=False)
    model.train()
    logits, aux = model(torch.randn(2, 3, 299, 299))
    assert logits.shape == aux.shape == (2, 2)
    assert get_spec("inception_v3").input_size == 299
    model.eval()
    assert model(torch.randn(1, 3, 80, 80)).shape == (1, 2)
    aux_params = {id(p) for p in model.body.AuxLogits.fc.parameters()}
    assert aux_params <= {id(p) for p in model.param_groups()["head"]}


def test_transfer_model_type():
    assert isinstance(create_model("scratch_cnn", 2, pretrained=False), TransferModel)


def test_finetune_with_frozen_batchnorm_trains_weights_not_statistics():
    model = create_model("resnet18", 2, pretrained=False)
    model.freeze_batchnorm(True)
    model.train()
    bn = model.body.bn1
    stats = bn.running_mean.clone()
    conv = model.body.conv1.weight.clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 3, 64, 64) * 3 + 1).sum().backward()
    opt.step()
    assert torch.equal(bn.running_mean, stats) and not bn.training
    assert not torch.equal(model.body.conv1.weight, conv)
    assert bn.weight.requires_grad
