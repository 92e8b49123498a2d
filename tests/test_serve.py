import io
import socket
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from transferlab.serve import create_app


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
    r = client.post("/predict?explain=true", files=[("files", ("a.jpg", _jpeg(1), "image/jpeg")),
                                                    ("files", ("b.png", png.getvalue(), "image/png"))])
    assert r.status_code == 200 and [x["filename"] for x in r.json()["results"]] == ["a.jpg", "b.png"]
    assert all(x["heatmap"].startswith("data:image/png;base64,") for x in r.json()["results"])


@pytest.mark.parametrize("name, data, status, words", [
    ("big.jpg", _jpeg(2, 400), 413, "larger than"),
    ("empty.jpg", b"", 400, "zero-byte"),
    ("notes.jpg", b"just some text, not a picture" * 10, 415, "not an image"),
    ("cut.jpg", _jpeg(3, 100)[:4000], 400, "truncated"),
])
def test_bad_uploads_get_a_clear_4xx_naming_the_file(client, name, data, status, words):
    r = client.post("/predict", files=[("files", (name, data, "image/jpeg"))])
    assert r.status_code == status, r.text
    assert name in r.json()["detail"] and words in r.json()["detail"]


def test_a_pdf_disguised_as_png_is_refused_by_content(client):
    r = client.post("/predict", files=[("files", ("x.png", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "image/png"))])
    assert r.status_code == 415


def test_serves_an_exported_onnx_model_without_heatmaps(tiny_run, tmp_path):
    from transferlab.export import export_run
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
    WebDriverWait(browser, 10).until(lambda d: d.execute_script(
        "const h = document.getElementById('heatmap'); return h.complete && h.naturalWidth > 0;"))
    assert browser.find_element("id", "error").text == ""
    browser.save_screenshot(str(tmp_path / "page.png"))
