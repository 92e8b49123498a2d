"""README's Python section runs as written (on a small generated folder)."""

import os
import re
from pathlib import Path

from conftest import make_folder

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_section_runs(tmp_path, monkeypatch):
    section = README.read_text().split("## Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "README has a Python section with code"
    make_folder(tmp_path / "data", n=8, size=48)
    from PIL import Image

    Image.new("RGB", (48, 48), (120, 30, 30)).save(tmp_path / "a.jpg")
    monkeypatch.chdir(tmp_path)
    env = {}
    for code in blocks:
        exec(compile(code, "README.md", "exec"), env)
    run, ev = env["run"], env["ev"]
    assert run.dir == Path("runs/run") and run.best_val_acc >= 0.5 and (tmp_path / "runs/run/best.pt").is_file()
    assert ev.n > 0 and 0 <= ev.balanced_accuracy <= 1 and set(ev.recall) == {"fake", "real"}
    assert [r["name"] for r in ev.robustness] == ["clean", "jpeg:75"]
    assert env["preds"][0].label in ("fake", "real")
    assert env["cmp"].best in {r.name for r in env["cmp"].runs} and "| run |" in env["cmp"].table()
    assert env["report"]["n"] == ev.n and os.path.isfile(tmp_path / "runs" / "api" / "report.html")
