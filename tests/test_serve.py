import io
import socket
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from transferlab.deploy.serve import create_app


def _jpeg(seed: int = 0, size: int = 40) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(tiny_run):
    return TestClient(create_app(tiny_run, max_bytes=20_000))


def test_health_model_card_and_page(client, tiny_run):
    assert client.get("/health").json() == {"status": "ok", "backend": "pytorch", "classes": ["fake", "real"]}
    card = client.get("/model").json()
    assert card["backbone"] == "scratch_cnn" and card["classes"] == ["fake", "real"] and card["explanations"]
    assert card["training_data"]["counts"]["train"] and card["validation"]["accuracy"] is not None
    assert card["decision"]["positive_class"] == "fake" and card["decision"]["threshold"] is not None
    page = client.get("/").text
    assert 'id="file"' in page and 'id="verdict"' in page and "scratch_cnn" in page
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_predict_one_and_several_images(client):
    r = client.post("/predict", files=[("files", ("a.jpg", _jpeg(0), "image/jpeg"))])
    assert r.status_code == 200
    (x,) = r.json()["results"]
    assert x["filename"] == "a.jpg" and x["label"] in ("fake", "real") and x["heatmap"] is None
    assert abs(sum(x["probs"].values()) - 1) < 1e-5 and x["probability"] == x["probs"]["fake"]
    thr = r.json()["decision"]["threshold"]
    assert x["label"] == ("fake" if x["probs"]["fake"] >= thr else "real")  # the saved threshold decides
    png = io.BytesIO()
    Image.new("RGB", (50, 30), (200, 10, 10)).save(png, "PNG")
    r = client.post(
        "/predict?explain=true",
        files=[("files", ("a.jpg", _jpeg(1), "image/jpeg")), ("files", ("b.png", png.getvalue(), "image/png"))],
    )
    assert r.status_code == 200 and [x["filename"] for x in r.json()["results"]] == ["a.jpg", "b.png"]
    assert all(x["heatmap"].startswith("data:image/png;base64,") for x in r.json()["results"])


@pytest.mark.parametrize(
    "name, data, status, words",
    [
        ("big.jpg", _jpeg(2, 400), 413, "larger than"),
        ("empty.jpg", b"", 400, "zero-byte"),
        ("notes.jpg", b"just some text, not a picture" * 10, 415, "not an image"),
        ("cut.jpg", _jpeg(3, 100)[:4000], 400, "truncated"),
    ],
)
def test_bad_uploads_get_a_clear_4xx_naming_the_file(client, name, data, status, words):
    r = client.post("/predict", files=[("files", (name, data, "image/jpeg"))])
    assert r.status_code == status, r.text
    assert name in r.json()["detail"] and words in r.json()["detail"]


def test_a_pdf_disguised_as_png_is_refused_by_content(client):
    r = client.post("/predict", files=[("files", ("x.png", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "image/png"))])
    assert r.status_code == 415


def test_serves_an_exported_onnx_model_without_heatmaps(tiny_run, tmp_path):
    from transferlab.deploy.export import export_run

    export_run(tiny_run, "onnx", tmp_path / "e")
    c = TestClient(create_app(tmp_path / "e" / "model.onnx"))
    assert c.get("/model").json()["backend"] == "onnx"
    r = c.post("/predict?explain=true", files=[("files", ("a.jpg", _jpeg(0), "image/jpeg"))])
    assert r.status_code == 200 and r.json()["results"][0]["heatmap"] is None
    ref = TestClient(create_app(tiny_run)).post("/predict", files=[("files", ("a.jpg", _jpeg(0), "image/jpeg"))])
    # PIL's resize (contract) vs torchvision's (PyTorch): one grey level apart on a few pixels of noise
    assert abs(r.json()["results"][0]["probs"]["fake"] - ref.json()["results"][0]["probs"]["fake"]) < 1e-3


@pytest.fixture
def server(tiny_run):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(tiny_run), host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(10)


@pytest.mark.browser
def test_upload_in_a_real_browser_shows_the_verdict(server, browser, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    img = tmp_path / "face.jpg"
    img.write_bytes(_jpeg(5, 64))
    browser.get(server + "/")
    browser.find_element("id", "file").send_keys(str(img))
    WebDriverWait(browser, 30).until(lambda d: d.find_element("id", "verdict").text.strip())
    assert browser.find_element("id", "verdict").text in ("fake", "real")
    assert "P(fake)" in browser.find_element("id", "probability").text
    assert "threshold" in browser.find_element("id", "threshold").text
    WebDriverWait(browser, 10).until(
        lambda d: d.execute_script(
            "const h = document.getElementById('heatmap'); return h.complete && h.naturalWidth > 0;"
        )
    )
    assert browser.find_element("id", "error").text == ""
    browser.save_screenshot(str(tmp_path / "page.png"))


# -- reliability: limits, queue, concurrency ---------------------------------------------------------


def _bomb(w: int = 11000, h: int = 11000) -> bytes:
    from test_badinputs import png_bomb

    return png_bomb(w, h)


def _rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_pixel_bombs_are_refused_from_the_header_with_413(tiny_run):
    c = TestClient(create_app(tiny_run, max_bytes=200_000))
    before = _rss_mb()
    r = c.post("/predict", files=[("files", (f"bomb{i}.png", _bomb(), "image/png")) for i in range(4)])
    assert r.status_code == 413 and "bomb0.png" in r.json()["detail"] and "Mpx" in r.json()["detail"]
    assert _rss_mb() - before < 150  # 121 Mpx decoded would take ~350 MB each


def test_host_header_is_checked_and_torchscript_needs_trust(tiny_run, tmp_path):
    c = TestClient(create_app(tiny_run, allowed_hosts=["127.0.0.1", "localhost"]), base_url="http://localhost")
    assert c.get("/health").status_code == 200
    assert c.get("/health", headers={"host": "attacker.example"}).status_code == 400
    from transferlab.deploy.export import export_run
    from transferlab.predict.contract import ContractError

    export_run(tiny_run, "torchscript", tmp_path / "ts")
    with pytest.raises(ContractError, match="trust-torchscript"):
        create_app(tmp_path / "ts" / "model.torchscript.pt")
    ok = TestClient(create_app(tmp_path / "ts" / "model.torchscript.pt", trust_torchscript=True))
    assert ok.post("/predict", files=[("files", ("a.jpg", _jpeg(0), "image/jpeg"))]).status_code == 200


def test_a_full_queue_answers_503_and_health_stays_responsive(tiny_run, monkeypatch):
    import concurrent.futures

    app = create_app(tiny_run, workers=1, queue=1)
    gate = threading.Event()
    real = app.state.model.predictor.predict

    def slow(images):
        gate.wait(30)
        return real(images)

    monkeypatch.setattr(app.state.model.predictor, "predict", slow)
    with _serving(app) as url:
        import httpx

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(
                httpx.post, url + "/predict", files=[("files", ("a.jpg", _jpeg(0), "image/jpeg"))], timeout=60
            )
            time.sleep(1.0)  # the first request now holds the only slot
            t0 = time.perf_counter()
            assert httpx.get(url + "/health", timeout=10).status_code == 200
            health_s = time.perf_counter() - t0
            second = httpx.post(url + "/predict", files=[("files", ("b.jpg", _jpeg(1), "image/jpeg"))], timeout=60)
            gate.set()
            assert first.result().status_code == 200
    assert second.status_code == 503 and "busy" in second.json()["detail"] and second.headers["retry-after"] == "1"
    assert health_s < 5  # answered while a prediction was in progress, not after it


class _serving:
    """uvicorn in a background thread on a free loopback port."""

    def __init__(self, app):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.srv.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        for _ in range(200):
            if self.srv.started:
                break
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.srv.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    """A features-mode run (frozen body: Grad-CAM must turn autograd on without touching the model)."""
    from conftest import make_folder
    from transferlab.config import load_config
    from transferlab.training.trainer import train

    tmp = tmp_path_factory.mktemp("frozen_run")
    data = make_folder(tmp / "data", n=8)
    train(
        load_config(
            None,
            {
                "data": str(data),
                "out": str(tmp / "run"),
                "mode": "features",
                "recipe": "classic",
                "image_size": 32,
                "epochs": 1,
                "progress": False,
                "num_workers": 0,
            },
        )
    )
    return tmp / "run"


@pytest.mark.parametrize("run", ["tiny_run", "frozen_run"])
def test_parallel_explain_requests_each_get_their_own_answer(run, request):
    import concurrent.futures

    import httpx

    app = create_app(request.getfixturevalue(run), workers=4, queue=64)
    images = [_jpeg(10 + i, 48) for i in range(16)]

    def ask(i: int) -> dict:
        r = httpx.post(
            url + "/predict?explain=true", files=[("files", (f"{i}.jpg", images[i], "image/jpeg"))], timeout=120
        )
        assert r.status_code == 200, r.text
        return r.json()["results"][0]

    with _serving(app) as url:
        alone = [ask(i) for i in range(16)]
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            together = list(pool.map(ask, [i % 16 for i in range(96)]))
    assert len({a["heatmap"] for a in alone}) > 1  # different images, different maps
    for i, got in enumerate(together):
        want = alone[i % 16]
        assert got["filename"] == want["filename"] and got["label"] == want["label"]
        assert got["probs"] == pytest.approx(want["probs"], abs=1e-6)
        assert got["heatmap"] == want["heatmap"], f"request {i}: another request's heatmap"
