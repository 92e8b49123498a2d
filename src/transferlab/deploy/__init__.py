"""Deploy layer: exporting a run as ONNX/TorchScript with a parity check (:mod:`.export`) and the
web page and JSON API (:mod:`.serve`, its page in ``page.html``)."""
