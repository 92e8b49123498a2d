"""Reading one image file into RGB, or saying precisely why it cannot be read.

Every image the tool touches goes through :func:`load_rgb`, so training, evaluation,
prediction and the demo agree on EXIF orientation and colour conversion.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "ImageReadError",
    "ImageTooLarge",
    "is_image_name",
    "load_rgb",
    "decode_bytes",
    "check_image",
    "to_rgb",
    "shrink",
    "resize_short_side",
    "to_uint8_tensor",
    "prepare",
    "load_uint8",
    "crop_grid",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

# A decompression bomb is refused from its header, before any pixel is decoded; 8k x 8k is
# plenty for this tool. (PIL's own guard only warns at its limit and fails at twice it.)
MAX_PIXELS = 64_000_000


class ImageReadError(OSError):
    """An image file that cannot be used; ``reason`` is short and human-readable."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class ImageTooLarge(ImageReadError):
    """An image whose header declares more than :data:`MAX_PIXELS` pixels (never decoded)."""


def _check_pixels(im: Image.Image, name) -> None:
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise ImageTooLarge(
            name,
            f"{w} x {h} pixels ({w * h / 1e6:.0f} Mpx) is over the {MAX_PIXELS / 1e6:.0f} Mpx "
            "limit; downscale the image",
        )


def is_image_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _nonempty_file(path: str | Path) -> Path:
    """``path`` as a Path, or :class:`ImageReadError` when it cannot be stat'ed or is empty."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as e:
        raise ImageReadError(p, f"cannot read file ({e.strerror})") from None
    if size == 0:
        raise ImageReadError(p, "zero-byte file")
    return p


def check_image(path: str | Path) -> None:
    """Cheap header check (no full decode). Raises :class:`ImageReadError`."""
    p = _nonempty_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: the size is checked right here
            with Image.open(p) as im:
                _check_pixels(im, p)
                im.verify()
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageTooLarge(
            p, f"over PIL's decompression-bomb limit (and the {MAX_PIXELS / 1e6:.0f} Mpx limit); downscale the image"
        ) from None
    except UnidentifiedImageError:
        raise ImageReadError(p, "not an image (unrecognised content)") from None
    except Exception as e:  # PIL raises many types for broken headers
        raise ImageReadError(p, _reason(e)) from None


def _reason(e: Exception) -> str:
    if "truncated" in str(e).lower():
        return "truncated image"
    return f"corrupt image ({type(e).__name__}: {e})"


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    16/32-bit greyscale is rescaled (PIL's own conversion clips it to white); alpha is
    composited onto white so transparent areas do not turn into arbitrary colours.
    """
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        im = Image.fromarray((a * 255.0 + 0.5).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return im if im.mode == "RGB" else im.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Decode ``path`` fully, apply EXIF orientation and return an RGB image.

    Raises :class:`ImageReadError` for zero-byte, non-image, corrupt or truncated files.
    """
    p = _nonempty_file(path)
    return _decode(p, p)


def decode_bytes(data: bytes, name: str = "upload", formats: frozenset[str] | None = None) -> Image.Image:
    """:func:`load_rgb` for bytes in memory (uploads): the same checks and conversions, never a
    file on disk. ``formats``: PIL format names accepted (checked on the content, not the name)."""
    if not data:
        raise ImageReadError(name, "zero-byte file")
    if formats is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(data)) as im:
                    kind = im.format
                    _check_pixels(im, name)
        except ImageReadError:
            raise
        except Image.DecompressionBombError:
            raise ImageTooLarge(
                name,
                f"over PIL's decompression-bomb limit (and the {MAX_PIXELS / 1e6:.0f} Mpx limit); downscale the image",
            ) from None
        except Exception:
            kind = None
        if kind not in formats:
            raise ImageReadError(
                name,
                "not an image (unrecognised content)"
                if kind is None
                else f"{kind} images are not accepted ({', '.join(sorted(formats))})",
            )
    return _decode(io.BytesIO(data), name)


def _decode(source, name) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Possibly corrupt EXIF data"
            with Image.open(source) as im:
                _check_pixels(im, name)  # from the header, before decoding
                im.load()
                im = ImageOps.exif_transpose(im) or im
                return to_rgb(im)
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageTooLarge(
            name, f"over PIL's decompression-bomb limit (and the {MAX_PIXELS / 1e6:.0f} Mpx limit); downscale the image"
        ) from None
    except UnidentifiedImageError:
        raise ImageReadError(name, "not an image (unrecognised content)") from None
    except Exception as e:  # decoder errors surface as OSError, ValueError, SyntaxError, ...
        raise ImageReadError(name, _reason(e)) from None


def shrink(im: Image.Image, short_side: int | None) -> Image.Image:
    """Downscale so the short side is at most ``short_side`` (antialiased); never upscales.

    Every pipeline (training, evaluation, prediction) applies this first, so decoded images can
    be cached small and all paths see identical pixels.
    """
    if not short_side or min(im.size) <= short_side:
        return im
    scale = short_side / min(im.size)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(size, Image.BILINEAR, reducing_gap=3.0)


_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def resize_short_side(im: Image.Image, size: int, interpolation: str = "bilinear") -> Image.Image:
    """Resize so the short side is ``size`` (antialiased when shrinking; the long side is
    truncated like torchvision's ``Resize``): the exported models' contract step that stands for
    the PyTorch pipeline's ``v2.Resize``. The two agree to one grey level on a few per cent of
    the pixels at most (``tests/test_transforms.py``); PIL here keeps deployment free of torch,
    torchvision there is 3x faster on the tensors the training pipeline caches."""
    w, h = im.size
    new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    return im if new == im.size else im.resize(new, _RESAMPLE[interpolation], reducing_gap=None)


def to_uint8_tensor(im: Image.Image) -> torch.Tensor:
    """RGB PIL image -> ``(3, H, W)`` uint8 tensor."""
    import torch  # this module stays importable without torch (the ONNX backend reads images too)

    return torch.from_numpy(np.array(im, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()


def prepare(im: Image.Image, short_side: int | None = None) -> torch.Tensor:
    """Any PIL image -> RGB, :func:`shrink`, ``(3, H, W)`` uint8 tensor: the one entry point to
    the tensor pipeline, for files and in-memory images alike."""
    return to_uint8_tensor(shrink(to_rgb(im), short_side))


def load_uint8(path: str | Path, short_side: int | None = None) -> torch.Tensor:
    """:func:`load_rgb` then :func:`prepare`."""
    return prepare(load_rgb(path), short_side)


def crop_grid(height: int, width: int, size: int, views: int) -> list[tuple[int, int]]:
    """Top-left corners ``(top, left)`` of ``views`` crops of ``size`` px in an image of ``height`` x
    ``width`` (already padded to at least ``size``): a square grid, evenly spaced from corner to
    corner. One view is the centre crop, rounded as torchvision's ``CenterCrop`` rounds. Shared by
    the PyTorch pipeline and the torch-free exported one, so both cut the same pixels."""
    if views == 1:
        return [(int(round((height - size) / 2.0)), int(round((width - size) / 2.0)))]
    g = round(views**0.5)
    tops = [round(i * (height - size) / (g - 1)) for i in range(g)]
    lefts = [round(i * (width - size) / (g - 1)) for i in range(g)]
    return [(t, le) for t in tops for le in lefts]
