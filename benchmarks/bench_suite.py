"""The test suite's wall time against an older revision's, side by side in one sitting.

Checks out ``--base`` (default 55b5de2, the code before the architecture wave, whose suite took
357 s when it was current) into a temporary git worktree, then runs that suite the way its
Makefile did (``pytest -q``, one process) and this checkout's the way ``make test`` does
(``pytest -q -n auto``), alternating ``--pairs`` times. Both use this checkout's virtual
environment (the old code first on ``PYTHONPATH``) and a cold feature cache each. The machine
drifts during a day, so only the ratio within a pair means much.

    .venv/bin/python benchmarks/bench_suite.py [--base REV] [--pairs 1]

Writes benchmarks/results/suite.json.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import save

PY = str(ROOT / ".venv" / "bin" / "python")


def run_suite(repo: Path, args: list[str], pythonpath: str | None) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TRANSFERLAB_CACHE": cache}
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        t0 = time.perf_counter()
        out = subprocess.run([PY, "-m", "pytest", "-q", *args], cwd=repo, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    tail = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-500:]
    passed = re.search(r"(\d+) passed", tail)
    n = int(passed.group(1)) if passed else 0
    return {"seconds": wall, "returncode": out.returncode, "passed": n, "tail": tail}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="55b5de2")
    ap.add_argument("--pairs", type=int, default=1)
    a = ap.parse_args()
    shared = ROOT.parent / "shared"
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "repo"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), a.base], cwd=ROOT, check=True)
        (Path(tmp) / "shared").symlink_to(shared)  # the data tests find ../shared/data as in a clone
        rows = []
        try:
            for i in range(a.pairs):
                base = run_suite(old, [], str(old / "src"))
                head = run_suite(ROOT, ["-n", "auto"], None)
                rows.append({"base": base, "head": head, "ratio": head["seconds"] / base["seconds"]})
                print(
                    f"pair {i + 1}: {a.base} {base['seconds']:.0f} s ({base['passed']} passed), "
                    f"HEAD {head['seconds']:.0f} s ({head['passed']} passed): "
                    f"{head['seconds'] / base['seconds']:.2f}x ({1 - head['seconds'] / base['seconds']:.0%} lower)",
                    flush=True,
                )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
    print(f"wrote {save('suite', {'base': a.base, 'pairs': rows})}")


if __name__ == "__main__":
    main()
