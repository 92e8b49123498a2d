"""``transferlab serve RUN``: a web page and a JSON API that check uploaded images.

- ``GET /``: a page to choose or drop an image and see the verdict, the probability, the
  decision threshold and (for a run folder) the Grad-CAM heatmap.
- ``POST /predict``: one or more images (multipart field ``files``); ``?explain=true`` adds
  heatmaps. ``GET /health``, ``GET /model`` (model card), OpenAPI schema at ``/openapi.json``.
- Limits: uploads above ``max_bytes`` get 413; empty, non-image (checked on the content, not the
  name or the declared type) and truncated files get 400/415 naming the file. Uploads are read
  into memory and never written anywhere by this code (Starlette spools large multipart parts
  to the system temporary folder). Binds to loopback unless told otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image

from .. import __version__
from ..data.images import ImageReadError, ImageTooLarge, decode_bytes, shrink
from ..predict.contract import ContractError, is_exported_model, read_contract
from ..predict.runtimes import load_exported
from ..rundir import RunFolder

__all__ = ["create_app", "run_server", "ALLOWED_FORMATS"]

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"})
MAX_FILES = 16


class _Model:
    """The loaded model (run folder via PyTorch, or an exported file), its card and Grad-CAM."""

    def __init__(self, source: str | Path, trust_torchscript: bool = False):
        self.source = Path(source)
        self.cam = None
        if is_exported_model(self.source) or self.source.is_file():
            if read_contract(self.source)["format"] == "torchscript" and not trust_torchscript:
                raise ContractError(
                    f"{self.source}: loading TorchScript runs code stored in the file, and a server "
                    "should not run code it was handed; serve the ONNX export, or pass "
                    "--trust-torchscript if you made this file yourself"
                )
            self.predictor = load_exported(self.source)
            c = self.predictor.contract
            self.card = {
                "source": str(self.source),
                "backend": c["format"],
                "backbone": c["backbone"],
                "classes": c["classes"],
                "preprocess": c["preprocess"],
            }
        else:
            from ..evaluation.explain import GradCAM
            from ..predict.predictor import Predictor

            self.predictor = Predictor.from_run(self.source, num_workers=0)
            self.cam = GradCAM(self.predictor)
            self.card = {"source": str(self.source), "backend": "pytorch", **_run_card(self.source)}
        self.card["decision"] = self.predictor.decision()
        self.card["explanations"] = self.cam is not None
        self.card["transferlab"] = __version__

    def heatmap(self, im: Image.Image, label: str) -> str | None:
        if self.cam is None:
            return None
        from ..evaluation.explain import overlay

        heat, seen, _ = self.cam.explain_image(im, target=self.predictor.classes.index(label))
        return _png_uri(overlay(seen, heat))


def _run_card(run: Path) -> dict:
    s, ev = RunFolder(run).read_summary(), RunFolder(run).read_eval()
    card = {
        "backbone": s.get("backbone"),
        "mode": s.get("mode"),
        "classes": s.get("data", {}).get("classes"),
        "training_data": {"source": s.get("data", {}).get("source"), "counts": s.get("data", {}).get("counts")},
        "validation": {
            "best_epoch": s.get("best_epoch"),
            "accuracy": s.get("best_val_acc"),
            "calibration": s.get("calibration"),
        },
        "preprocess": s.get("preprocess"),
    }
    if ev:
        card["evaluation"] = {
            "split": ev["split"],
            "n": ev["n"],
            "accuracy": ev["accuracy"],
            "roc_auc": (ev.get("binary") or {}).get("roc_auc"),
        }
    return card


def _png_uri(a: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class _Busy(Exception):
    """Every worker is busy and the queue is full."""


class _Pool:
    """Decoding and inference off the event loop: ``workers`` threads and at most ``queue`` requests
    waiting or running; one more gets 503 at once instead of piling up (and holding its upload)."""

    def __init__(self, workers: int, queue: int):
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="transferlab-serve")
        self.slots = threading.BoundedSemaphore(queue)

    async def run(self, fn, *args):
        if not self.slots.acquire(blocking=False):
            raise _Busy
        try:
            return await asyncio.wrap_future(self.executor.submit(fn, *args))
        finally:
            self.slots.release()


def create_app(
    source: str | Path,
    max_bytes: int = 10 * 2**20,
    workers: int = 2,
    queue: int = 16,
    allowed_hosts: list[str] | None = None,
    trust_torchscript: bool = False,
) -> FastAPI:
    """The FastAPI application for a run folder or an exported model file.

    ``workers`` threads decode and score uploads, with at most ``queue`` requests admitted at once
    (more get 503). ``allowed_hosts``: accepted Host headers (DNS-rebinding guard; None: any).
    ``trust_torchscript``: serve a TorchScript export (loading one runs code from the file)."""
    model = _Model(source, trust_torchscript)
    pool = _Pool(workers, queue)
    app = FastAPI(
        title="transferlab",
        version=__version__,
        description=f"Checks images with {model.card.get('backbone')} ({model.card['backend']}).",
    )
    app.state.model = model
    if allowed_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        # refuse a body that cannot be within the limits before it is read at all
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_bytes * MAX_FILES + 2**16:
            return JSONResponse(
                {
                    "detail": f"request of {int(length) / 2**20:.1f} MB is over the limit "
                    f"({MAX_FILES} files of {max_bytes / 2**20:.1f} MB)"
                },
                status_code=413,
            )
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return _page().replace("__CARD__", json.dumps(model.card)).replace("__MAX_MB__", f"{max_bytes / 2**20:g}")

    @app.get("/health")
    async def health() -> dict:  # on the event loop, never behind the workers
        return {"status": "ok", "backend": model.card["backend"], "classes": model.predictor.classes}

    @app.get("/model")
    async def card() -> dict:
        return model.card

    @app.post("/predict")
    async def predict(
        files: list[UploadFile] = File(..., description="one or more images"),
        explain: bool = Query(False, description="add a Grad-CAM heatmap (run folders only)"),
    ) -> dict:
        if len(files) > MAX_FILES:
            raise HTTPException(413, f"{len(files)} files in one request; at most {MAX_FILES}")
        uploads = []
        for f in files:
            name = f.filename or "upload"
            data = await f.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise HTTPException(413, f"{name}: larger than the {max_bytes / 2**20:g} MB limit")
            uploads.append((name, data))
        try:
            return await pool.run(_answer, model, uploads, explain)
        except _Busy:
            raise HTTPException(
                503,
                "busy: every worker is taken and the queue is full; try again shortly",
                headers={"Retry-After": "1"},
            ) from None
        except _UploadError as e:
            raise HTTPException(e.status, e.detail) from None

    return app


class _UploadError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def _decode(model: _Model, name: str, data: bytes) -> Image.Image:
    """One upload -> an RGB image already shrunk as the model's pipeline shrinks it (so a request
    never holds more than one full-size decoded image at a time)."""
    try:
        im = decode_bytes(data, name, ALLOWED_FORMATS)
    except ImageTooLarge as e:
        raise _UploadError(413, f"{name}: {e.reason}") from None
    except ImageReadError as e:
        code = 415 if "not an image" in e.reason or "not accepted" in e.reason else 400
        raise _UploadError(code, f"{name}: {e.reason}; send a JPEG, PNG, WebP, BMP, GIF or TIFF image") from None
    return shrink(im, model.predictor.preprocess.decode_size)


def _answer(model: _Model, uploads: list[tuple[str, bytes]], explain: bool) -> dict:
    images = [(name, _decode(model, name, data)) for name, data in uploads]
    preds = model.predictor.predict([im for _, im in images])
    d = model.predictor.decision()
    pos = d["positive_class"]
    results = [
        {
            "filename": name,
            "label": p.label,
            "probs": p.probs,
            "probability": p.probs[pos] if pos else max(p.probs.values()),
            "heatmap": model.heatmap(im, p.label) if explain else None,
        }
        for (name, im), p in zip(images, preds)
    ]
    return {"results": results, "decision": d}


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def run_server(
    source: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_bytes: int = 10 * 2**20,
    workers: int = 2,
    queue: int = 16,
    trust_torchscript: bool = False,
) -> None:
    import uvicorn

    if host not in LOOPBACK:
        print(f"warning: serving on {host}: anyone who can reach this machine can use the model", flush=True)
    # on loopback, only requests addressed to loopback names: a web page elsewhere cannot rebind a
    # DNS name to 127.0.0.1 and read the answers
    hosts = ["127.0.0.1", "localhost", "[::1]", "::1"] if host in LOOPBACK else None
    uvicorn.run(create_app(source, max_bytes, workers, queue, hosts, trust_torchscript), host=host, port=port)


def _page() -> str:
    """The upload page (``page.html`` beside this module); ``__CARD__`` and ``__MAX_MB__`` are filled in."""
    return (Path(__file__).parent / "page.html").read_text(encoding="utf-8")
