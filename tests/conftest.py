"""Shared fixtures: tiny synthetic image folders made with PIL, so unit tests run in seconds."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: the cores are shared out among the workers
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    _threads = str(max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1) // _workers))
    os.environ.setdefault("TRANSFERLAB_THREADS", _threads)
    os.environ.setdefault("OMP_NUM_THREADS", _threads)
    import torch

    torch.set_num_threads(int(os.environ["TRANSFERLAB_THREADS"]))

if "TRANSFERLAB_CACHE" not in os.environ:  # feature caches of the tests stay out of ~/.cache
    import atexit
    import shutil
    import tempfile

    os.environ["TRANSFERLAB_CACHE"] = tempfile.mkdtemp(prefix="transferlab-test-cache-")  # xdist workers inherit it
    atexit.register(shutil.rmtree, os.environ["TRANSFERLAB_CACHE"], True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow single-process trainings go first, so that under ``pytest -n`` the suite does not
    end with one worker busy on one of them and the other idle."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: the rest keep their order


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HYMENOPTERA = SHARED / "hymenoptera_data"
FACES = SHARED / "faces" / "ciplab_real_and_fake_face"


def _pattern(label: int, i: int, size: int = 40) -> np.ndarray:
    """Class 0: horizontal stripes, reddish; class 1: vertical stripes, bluish. Learnable fast."""
    rng = np.random.default_rng(1000 * label + i)
    yy, xx = np.mgrid[0:size, 0:size]
    period = 4 + (i % 3)
    stripes = ((yy if label == 0 else xx) // (period // 2)) % 2
    img = np.zeros((size, size, 3), np.float32)
    img[..., 0 if label == 0 else 2] = 150 + 100 * stripes
    img[..., 1] = 80
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_folder(root: Path, classes=("fake", "real"), n: int = 10, split_dirs=None, size: int = 40) -> Path:
    """``root/<class>/*.png`` (or ``root/<split>/<class>/``) with learnable patterns."""
    targets = [root / s for s in split_dirs] if split_dirs else [root]
    for t_i, t in enumerate(targets):
        for label, cls in enumerate(classes):
            (t / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(_pattern(label, i + 100 * t_i, size)).save(t / cls / f"{cls}_{i:02d}.png")
    return root


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    """Flat ImageFolder: 2 classes x 10 PNGs of 40 px."""
    return make_folder(tmp_path / "tiny")


@pytest.fixture
def presplit_folder(tmp_path) -> Path:
    """``training/val/test`` ImageFolder, 2 classes, 8 images per class and split."""
    return make_folder(tmp_path / "presplit", n=8, split_dirs=("train", "val", "test"))


def _exif_rotated_jpeg(path: Path) -> None:
    """A 40x20 (w x h) JPEG whose EXIF orientation (6 = rotate 90 CW) makes it 20x40 upright."""
    img = Image.fromarray(_pattern(0, 0, 40)[:20])
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(path, exif=exif.tobytes())


@pytest.fixture
def messy_folder(tmp_path) -> tuple[Path, dict[str, str]]:
    """Every awkward file a user's folder may hold. Returns (root, {bad file name: expected reason word}).

    Good files: grayscale, RGBA, CMYK, palette, 16-bit PNG, EXIF-rotated JPEG, a name with spaces
    and non-ASCII letters, plus plain PNGs. Bad: corrupt JPEG, zero-byte, text named .jpg,
    truncated JPEG.
    """
    root = make_folder(tmp_path / "messy", n=6)
    a, b = root / "fake", root / "real"
    base = _pattern(0, 50)
    Image.fromarray(base).convert("L").save(a / "gray.png")
    Image.fromarray(base).convert("RGBA").save(a / "rgba.png")
    Image.fromarray(base).convert("CMYK").save(a / "cmyk.jpg")
    Image.fromarray(base).convert("P", palette=Image.Palette.ADAPTIVE).save(a / "palette.png")
    Image.fromarray(base[..., 0].astype(np.uint16) * 257).save(b / "sixteen_bit.png")
    _exif_rotated_jpeg(b / "exif_rotated.jpg")
    Image.fromarray(_pattern(1, 51)).save(b / "ñandú photo été.png")
    buf = io.BytesIO()
    Image.fromarray(_pattern(1, 52)).save(buf, "JPEG")
    data = buf.getvalue()
    (b / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (a / "corrupt.jpg").write_bytes(data[:20] + b"\x00garbage" * 50)
    (a / "empty.jpg").write_bytes(b"")
    (b / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    bad = {"corrupt.jpg": "", "empty.jpg": "zero-byte", "notes.jpg": "not an image", "truncated.jpg": "truncated"}
    return root, bad


# Config overrides that train a tiny model in seconds on the 40 px fixtures.
FAST = {
    "model": "scratch_cnn",
    "mode": "scratch",
    "image_size": 32,
    "epochs": 2,
    "batch_size": 4,
    "num_workers": 0,
    "progress": False,
    "augment": "none",
    "lr": 0.01,
}


def cli_flags(**overrides) -> list[str]:
    """:data:`FAST` with ``overrides`` as command-line flags (``None`` leaves a flag out)."""
    flags: list[str] = []
    for key, value in {**FAST, **overrides}.items():
        name = key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(f"--{name}" if value else f"--no-{name}")
        elif value is not None:
            flags += [f"--{name}", str(value)]
    return flags


@pytest.fixture
def fast_overrides() -> dict:
    return dict(FAST)


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Selenium through the system chromedriver (no download).

    Skipped where the browser is not installed, except when TRANSFERLAB_REQUIRE_BROWSER is set
    (``.ci/run`` sets it after installing the packages): there a missing browser fails."""
    import os
    import shutil

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        chromium = None
    if not (chromium and driver):
        msg = "needs Debian's chromium and chromium-driver and selenium (apt-get install chromium chromium-driver)"
        if os.environ.get("TRANSFERLAB_REQUIRE_BROWSER"):
            pytest.fail(msg)
        pytest.skip(msg)
    opts = Options()
    opts.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,2000",
    ):
        opts.add_argument(flag)
    d = webdriver.Chrome(service=Service(driver), options=opts)
    d.set_page_load_timeout(60)
    yield d
    d.quit()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A trained two-class run folder (scratch_cnn, 32 px, real/fake) with a saved threshold."""
    from transferlab.config import load_config
    from transferlab.training.trainer import train

    tmp = tmp_path_factory.mktemp("tiny_run")
    data = make_folder(tmp / "data", n=12)
    train(
        load_config(
            None,
            {
                "model": "scratch_cnn",
                "mode": "scratch",
                "image_size": 32,
                "epochs": 3,
                "batch_size": 4,
                "num_workers": 0,
                "progress": False,
                "augment": "none",
                "lr": 0.01,
                "data": str(data),
                "out": str(tmp / "run"),
            },
        )
    )
    return tmp / "run"
