"""Stage features: every registered backbone pools every stage; standardisation; ensembles; zoom."""

import pytest
import torch

from transferlab.models.registry import get_spec, names
from transferlab.models.stages import StageFeatures, Standardize, ZoomBody, feature_blocks, pool_stats
from transferlab.models.transfer import create_model


def _input(name: str, batch: int = 2) -> torch.Tensor:
    size = max(get_spec(name).min_size, 64)
    return torch.randn(batch, 3, size, size)


@pytest.mark.parametrize("name", names())
def test_stage_features_for_every_backbone(name):
    torch.manual_seed(0)
    model = create_model(name, 3, pretrained=False, features="stages").eval()
    assert isinstance(model.body, StageFeatures)
    x = _input(name)
    with torch.no_grad():
        maps = model.body.maps(x)
        feats = model.forward_features(x)
    assert len(maps) >= 3  # shallow, middle and deep stages, not only the last
    assert [m.shape[0] for m in maps] == [2] * len(maps)
    assert model.feature_dim == 2 * sum(m.shape[1] for m in maps) == feats.shape[1]
    assert model.feature_blocks == tuple(2 * m.shape[1] for m in maps)  # one block per stage, in column order
    assert torch.isfinite(feats).all()
    # the first maps are shallower (larger) than the final one: early traces are kept
    assert maps[0].shape[-1] > maps[-1].shape[-1]
    logits, cam = model.forward_with_cam(x)
    assert logits.shape == (2, 3) and cam.shape == maps[-1].shape


def test_pool_stats_is_mean_and_std_per_channel():
    a = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    b = torch.randn(2, 7, 1, 1)  # a 1x1 map: std 0, not NaN
    out = pool_stats([a, b])
    assert out.shape == (2, 2 * 3 + 2 * 7)
    assert torch.allclose(out[:, :3], a.mean((2, 3)))
    assert torch.allclose(out[:, 3:6], a.std((2, 3), correction=0), atol=1e-4)
    assert torch.allclose(out[:, 6:13], b.flatten(1)) and (out[:, 13:] < 1e-5).all()


def test_standardize_fits_mean_and_scale_inside_the_model():
    torch.manual_seed(0)
    x = torch.randn(50, 4) * torch.tensor([1.0, 10.0, 0.1, 0.0]) + 5
    norm = Standardize(4)
    assert not norm.fitted and torch.equal(norm(x), x)  # identity until fitted
    norm.fit(x)
    z = norm(x)
    assert norm.fitted
    assert torch.allclose(z[:, :3].mean(0), torch.zeros(3), atol=1e-4)
    assert torch.allclose(z[:, :3].std(0, unbiased=False), torch.ones(3), atol=1e-4)
    assert torch.allclose(z[:, 3], torch.zeros(50))  # a constant feature: centred, scale 1
    model = create_model("scratch_cnn", 2, pretrained=False)
    assert "feature_norm.mean" in model.state_dict() and "feature_norm.scale" in model.state_dict()


def test_crop_views_average_features_before_the_head():
    torch.manual_seed(0)
    model = create_model("scratch_cnn", 2, pretrained=False, features="stages").eval()
    x = torch.randn(3, 4, 3, 32, 32)  # 3 images, 4 crop views each
    with torch.no_grad():
        per_view = model.body(x.flatten(0, 1)).view(3, 4, -1)
        expected = model.forward_head(per_view.mean(1))
        assert torch.allclose(model(x), expected, atol=1e-5)
        assert not torch.allclose(model(x), model(x[:, 0]))  # every view counts


def test_ensemble_concatenates_member_features():
    model = create_model("efficientnet_lite0+efficientnet_lite1", 2, pretrained=False, features="stages").eval()
    a = create_model("efficientnet_lite0", 2, pretrained=False, features="stages")
    b = create_model("efficientnet_lite1", 2, pretrained=False, features="stages")
    assert model.feature_dim == a.feature_dim + b.feature_dim
    spec = get_spec("efficientnet_lite0+efficientnet_lite1")
    assert spec.input_size == 240 and spec.mean == (0.5, 0.5, 0.5)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 2)
    with pytest.raises(KeyError, match="normalise"):
        get_spec("efficientnet_lite0+resnet18")
    with pytest.raises(KeyError, match="two or more different"):
        get_spec("efficientnet_lite0+efficientnet_lite0")


def test_pool_stats_adds_each_channels_spatial_max_and_min_stage_by_stage():
    a = torch.randn(2, 3, 4, 5)
    b = torch.randn(2, 7, 2, 2)
    out = pool_stats([a, b], ("mean", "std", "max", "min"))
    assert out.shape == (2, 4 * (3 + 7))
    assert torch.equal(out[:, :6], pool_stats([a])) and torch.equal(out[:, 12:26], pool_stats([b]))
    assert torch.equal(out[:, 6:9], a.amax((2, 3))) and torch.equal(out[:, 9:12], a.amin((2, 3)))
    assert torch.equal(out[:, 26:33], b.amax((2, 3))) and torch.equal(out[:, 33:], b.amin((2, 3)))
    # the order asked is the columns' order
    assert torch.equal(pool_stats([a], ("max", "mean")), torch.cat([a.amax((2, 3)), a.mean((2, 3))], 1))


def test_a_pool_widens_every_stage_block_and_keeps_the_cam_and_the_default_columns():
    torch.manual_seed(0)
    base = create_model("efficientnet_lite0", 2, pretrained=False, features="stages", zoom=2).eval()
    torch.manual_seed(0)
    more = create_model("efficientnet_lite0", 2, pretrained=False, features="stages", zoom=2, pool="mean,std,max,min")
    more.eval()
    assert more.pool == "mean,std,max,min" and base.pool == "mean,std"
    assert more.feature_blocks == tuple(2 * w for w in base.feature_blocks) and more.feature_dim == 2 * base.feature_dim
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        wide, narrow = more.forward_features(x), base.forward_features(x)
        logits, cam = more.forward_with_cam(x)
    assert wide.shape == (2, more.feature_dim) and torch.isfinite(wide).all()
    # each stage's block starts with the default's mean and std of that stage
    starts = [sum(more.feature_blocks[:i]) for i in range(len(more.feature_blocks))]
    ends = [sum(base.feature_blocks[:i]) for i in range(len(base.feature_blocks) + 1)]
    for i, w in enumerate(base.feature_blocks):
        assert torch.allclose(wide[:, starts[i] : starts[i] + w], narrow[:, ends[i] : ends[i + 1]], atol=1e-5)
    assert logits.shape == (2, 2) and cam.dim() == 4
    for bad, words in [("mean,mode", "unknown 'mode'"), ("max,max", "named twice"), ("", "unknown ''")]:
        with pytest.raises(ValueError, match=words):
            create_model("efficientnet_lite0", 2, pretrained=False, features="stages", pool=bad)
    with pytest.raises(ValueError, match="statistics of stage features"):
        create_model("efficientnet_lite0", 2, pretrained=False, pool="mean,std,max")


def test_feature_blocks_follow_views_and_members_and_leave_the_body_untouched():
    lite0 = create_model("efficientnet_lite0", 2, pretrained=False, features="stages")
    stages = lite0.feature_blocks
    assert len(stages) == 9 and stages[-1] == 2 * 1280 and sum(stages) == lite0.feature_dim
    zoom = create_model("efficientnet_lite0", 2, pretrained=False, features="stages", zoom=2, centre=0.6)
    assert zoom.feature_blocks == stages * 2  # the whole view's stages, then the centre's
    both = create_model("efficientnet_lite0+efficientnet_lite1", 2, pretrained=False, features="stages")
    lite1 = create_model("efficientnet_lite1", 2, pretrained=False, features="stages")
    assert both.feature_blocks == stages + lite1.feature_blocks
    last = create_model("efficientnet_lite0", 2, pretrained=False)
    assert last.feature_blocks == (last.feature_dim,)
    # measured in eval mode: a training model keeps its mode and its batch-norm statistics
    zoom.train()
    before = {k: v.clone() for k, v in zoom.state_dict().items()}
    assert feature_blocks(zoom.body, 128) == stages * 2
    assert zoom.training and all(torch.equal(v, zoom.state_dict()[k]) for k, v in before.items())


def test_zoom_sees_the_whole_image_shrunk_and_its_centre_at_full_scale():
    torch.manual_seed(0)
    model = create_model("scratch_cnn", 2, pretrained=False, features="stages", zoom=2).eval()
    plain = create_model("scratch_cnn", 2, pretrained=False, features="stages").eval()
    plain.body.load_state_dict(model.body.body.state_dict())
    assert isinstance(model.body, ZoomBody) and model.feature_dim == 2 * plain.feature_dim
    x = torch.randn(3, 3, 64, 66)  # not square: the centre is cut from each side
    views = model.body.views(x)
    assert views.shape == (6, 3, 32, 33)
    assert torch.allclose(views[:3], torch.nn.functional.avg_pool2d(x, 2))
    assert torch.equal(views[3:], x[..., 16:48, 16:49])
    with torch.no_grad():
        whole, centre = plain.body(views[:3]), plain.body(views[3:])
        assert torch.allclose(model.body(x), torch.cat([whole, centre], 1), atol=1e-5)
        crops = x.unsqueeze(1).expand(3, 4, 3, 64, 66)  # crop views: each crop is zoomed, then averaged
        assert torch.allclose(model(crops), model(x), atol=1e-5)
    with pytest.raises(ValueError, match="features='stages'"):
        create_model("scratch_cnn", 2, pretrained=False, features="last", zoom=2)


def test_a_centre_fraction_is_cut_from_the_middle_and_resized_to_the_view():
    x = torch.randn(3, 3, 64, 66)
    body = create_model("scratch_cnn", 2, pretrained=False, features="stages").body
    views = ZoomBody(body, 2, centre=0.6).views(x)  # sides 38 and 40 (64 * 0.6 and 66 * 0.6, rounded)
    assert views.shape == (6, 3, 32, 33)
    assert torch.allclose(views[:3], torch.nn.functional.avg_pool2d(x, 2))
    centre = torch.nn.functional.interpolate(x[..., 13:51, 13:53], size=(32, 33), mode="bilinear", align_corners=False)
    assert torch.allclose(views[3:], centre)
    assert not torch.allclose(views[3:], ZoomBody(body, 2).views(x)[3:])  # not the centre half
    assert torch.equal(ZoomBody(body, 2, centre=0.5).views(x), ZoomBody(body, 2).views(x))  # 1 / zoom: no resampling
    odd = create_model("scratch_cnn", 2, pretrained=False, features="stages", zoom=2, centre=0.5).body
    y = torch.randn(1, 3, 67, 67)  # 67 * 0.5 rounds to 34, but 1 / zoom is the plain middle 33 px
    assert torch.equal(odd.views(y)[1:], y[..., 17:50, 17:50])
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="fraction in"):
            ZoomBody(body, 2, centre=bad)


def test_face_parts_are_cut_at_fixed_places_at_the_inputs_own_pixels():
    torch.manual_seed(0)
    model = create_model("scratch_cnn", 2, pretrained=False, features="stages", zoom=2, parts="face").eval()
    plain = create_model("scratch_cnn", 2, pretrained=False, features="stages", zoom=2).eval()
    plain.body.load_state_dict(model.body.state_dict())
    assert model.parts == "face" and model.feature_blocks == plain.feature_blocks * 3  # 2 views + 4 parts
    # the logistic head fits the views' columns and the parts' apart: the views' head is the plain model's
    assert model.head_blocks == (plain.feature_blocks, plain.feature_blocks * 2) and plain.head_blocks == (
        plain.feature_blocks,
    )
    x = torch.randn(2, 3, 128, 128)
    parts = model.body.part_views(x)  # squares of 36 px (128 * 0.28125), centred on the template's points
    assert parts.shape == (8, 3, 36, 36)
    assert torch.equal(parts[:2], x[..., 41:77, 26:62])  # left eye: centre (43.8, 59.1)
    assert torch.equal(parts[2:4], x[..., 41:77, 66:102].flip(-1))  # right eye, mirrored
    assert torch.equal(parts[4:6], x[..., 64:100, 46:82])  # nose
    assert torch.equal(parts[6:], x[..., 87:123, 46:82])  # mouth: its centre (64.2, 105.5) less 18 px
    with torch.no_grad():
        each = plain.body.body(parts).unflatten(0, (4, 2)).transpose(0, 1).flatten(1)
        assert torch.allclose(model.body(x), torch.cat([plain.body(x), each], 1), atol=1e-5)
        assert torch.allclose(model.body.forward_with_cam(x)[0], model.body(x), atol=1e-5)
    odd = model.body.part_views(torch.randn(1, 3, 40, 90))  # not square: the short side sizes the parts
    assert odd.shape == (4, 3, 11, 11)
    with pytest.raises(ValueError, match="use zoom 2"):
        create_model("scratch_cnn", 2, pretrained=False, features="stages", parts="face")
    with pytest.raises(ValueError, match="parts must be one of face"):
        ZoomBody(plain.body.body, 2, parts="hands")
    assert create_model("scratch_cnn", 2, pretrained=False, features="stages", zoom=2, parts="none").parts is None


def test_zoom_is_a_stage_feature_setting_and_scales_the_input():
    from transferlab.config import ConfigError, TrainConfig

    with pytest.raises(ConfigError, match="--features stages"):
        TrainConfig(data="d", features="last", zoom=2).validate()
    with pytest.raises(ConfigError, match="zoom must be 1 or more"):
        TrainConfig(data="d", zoom=0).validate()
    with pytest.raises(ConfigError, match="add --zoom 2"):
        TrainConfig(data="d", zoom=1, centre=0.6).validate()
    with pytest.raises(ConfigError, match=r"in \(0, 1\): got 1.2"):
        TrainConfig(data="d", centre=1.2).validate()
    with pytest.raises(ConfigError, match="parts=face cuts .* add --zoom 2$"):
        TrainConfig(data="d", zoom=1, parts="face").validate()
    with pytest.raises(ConfigError, match="add --zoom 2 --features stages$"):  # the classic recipe's features
        TrainConfig(data="d", zoom=1, features="last", parts="face").validate()
    with pytest.raises(ConfigError, match="parts must be face or none, got 'eyes'"):
        TrainConfig(data="d", parts="eyes").validate()
    spec = get_spec("efficientnet_lite0")
    assert spec.preprocess(zoom=2).input_size == 448 and spec.preprocess(112, zoom=2).input_size == 224
