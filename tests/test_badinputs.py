"""Bad inputs, generated, through every command that reads user files.

Each case makes one hostile input (a data folder, a manifest, a run folder, an exported model, an
output path) and says what a careful tool does with it under each command: stop with exit status 2
and one line that names the file and the problem, or go on and report the file as skipped. Every
run asserts no traceback, nothing written outside the places the command was asked to write, and
the expected outcome. A property-based part (hypothesis) feeds random bytes and rows to the image and
manifest readers.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import cli_flags, make_folder
from transferlab.cli import main

FAST = cli_flags(epochs=1, lr=None)


def png_bomb(w: int, h: int) -> bytes:
    """A valid PNG header declaring w x h 1-bit pixels, with a tiny compressed body."""
    raw = b"".join(b"\x00" + b"\x00" * ((w + 7) // 8) for _ in range(h))

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def _jpeg(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@dataclass
class Outcome:
    """What a command must do: ``code`` 2 with ``says`` in its one-line error, or ``code`` 0 with
    ``says`` in its output (e.g. the skipped file's name and reason)."""

    code: int
    says: str | tuple[str, ...]


# -- data sets -------------------------------------------------------------------------------------


def empty_folder(t: Path) -> Path:
    (t / "d").mkdir()
    return t / "d"


def one_class_folder(t: Path) -> Path:
    make_folder(t / "d", classes=("only",), n=4)
    return t / "d" / "only"  # images directly inside: the user gave a class's folder


def one_class(t: Path) -> Path:
    make_folder(t / "d", classes=("only",), n=4)
    return t / "d"


def class_of_broken_files(t: Path) -> Path:
    d = make_folder(t / "d", n=4)
    shutil.rmtree(d / "real")
    (d / "real").mkdir()
    (d / "real" / "a.jpg").write_bytes(b"")
    (d / "real" / "b.jpg").write_text("not a jpeg")
    return d


def messy(t: Path) -> Path:
    d = make_folder(t / "d", n=8)
    data = _jpeg()
    (d / "fake" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "fake" / "zero.jpg").write_bytes(b"")
    (d / "real" / "text.jpg").write_text("hello")
    (d / "real" / "bomb.png").write_bytes(png_bomb(11000, 11000))
    os.symlink("loop.png", d / "real" / "loop.png")  # a link to itself
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).convert("CMYK").save(d / "fake" / "cmyk.jpg")
    frames = [Image.new("RGB", (40, 40), (i * 40, 0, 0)) for i in range(3)]
    frames[0].save(d / "fake" / "anim.gif", save_all=True, append_images=frames[1:])
    Image.fromarray((np.arange(1600).reshape(40, 40) * 40).astype(np.uint16)).save(d / "real" / "sixteen.png")
    return d


def non_utf8_names(t: Path) -> Path:
    d = make_folder(t / "d", n=6)
    raw = os.fsencode(str(d / "fake")) + b"/caf\xe9_\xff.png"  # Latin-1 bytes: not UTF-8
    shutil.copy(d / "fake" / "fake_00.png", raw)
    return d


def same_bytes_two_classes(t: Path) -> Path:
    d = make_folder(t / "d", n=6)
    shutil.copy(d / "fake" / "fake_00.png", d / "real" / "copy_of_fake.png")
    return d


def missing_path(t: Path) -> Path:
    return t / "nope"


def text_file_as_data(t: Path) -> Path:
    (t / "data.txt").write_text("hello")
    return t / "data.txt"


# -- manifests -------------------------------------------------------------------------------------


def _manifest(t: Path, text: str | bytes) -> Path:
    make_folder(t / "img", n=6)
    p = t / "m.csv"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def manifest_row_without_label(t: Path) -> Path:
    return _manifest(t, "path,label\nimg/fake/fake_00.png,fake\nimg/real/real_00.png,\n")


def manifest_without_columns(t: Path) -> Path:
    return _manifest(t, "file,class\nimg/fake/fake_00.png,fake\n")


def manifest_latin1(t: Path) -> Path:
    m = _manifest(t, b"")
    shutil.copy(t / "img" / "fake" / "fake_01.png", os.fsencode(str(t / "img" / "fake")) + b"/\xe9t\xe9.png")
    rows = [f"img/{c}/{c}_{i:02d}.png,{c}".encode() for c in ("fake", "real") for i in range(6)]
    m.write_bytes(b"path,label\n" + b"\n".join(rows) + b"\nimg/fake/\xe9t\xe9.png,fake\n")  # Latin-1, not UTF-8
    return m


def manifest_duplicate_rows(t: Path) -> Path:
    rows = [f"img/{c}/{c}_{i:02d}.png,{c}" for c in ("fake", "real") for i in range(6)]
    return _manifest(t, "path,label\n" + "\n".join(rows + rows[:3]) + "\n")


def manifest_conflicting_rows(t: Path) -> Path:
    rows = [f"img/{c}/{c}_{i:02d}.png,{c}" for c in ("fake", "real") for i in range(6)]
    return _manifest(t, "path,label\n" + "\n".join(rows + ["img/fake/fake_00.png,real"]) + "\n")


def manifest_outside_paths(t: Path) -> Path:
    make_folder(t / "img", n=6)
    (t / "sub").mkdir()
    rows = [f"../img/{c}/{c}_{i:02d}.png,{c}" for c in ("fake", "real") for i in range(3)]
    rows += [f"{t / 'img' / c / f'{c}_{i:02d}.png'},{c}" for c in ("fake", "real") for i in range(3, 6)]
    p = t / "sub" / "m.csv"
    p.write_text("path,label\n" + "\n".join(rows) + "\n")
    return p


# -- run folders and models ------------------------------------------------------------------------


def not_a_run(t: Path) -> Path:
    (t / "r").mkdir()
    (t / "r" / "notes.txt").write_text("x")
    return t / "r"


def _run_copy(t: Path, tiny_run: Path) -> Path:
    shutil.copytree(tiny_run, t / "r", ignore=shutil.ignore_patterns("export*", "eval_*"))
    return t / "r"


def checkpoint_three_classes(t: Path, tiny_run: Path) -> Path:
    import torch

    r = _run_copy(t, tiny_run)
    ck = torch.load(r / "best.pt", weights_only=True)
    torch.save({**ck, "classes": ["fake", "real", "other"], "threshold": None, "positive_class": None}, r / "best.pt")
    return r


def checkpoint_text_threshold(t: Path, tiny_run: Path) -> Path:
    import torch

    r = _run_copy(t, tiny_run)
    ck = torch.load(r / "best.pt", weights_only=True)
    torch.save({**ck, "threshold": "high"}, r / "best.pt")
    return r


def _export(t: Path, tiny_run: Path) -> Path:
    src = tiny_run / "export" / "model.onnx"
    if not src.is_file():
        from transferlab.deploy.export import export_run

        export_run(tiny_run, "onnx")
    (t / "m").mkdir()
    shutil.copy(src, t / "m" / "model.onnx")
    shutil.copy(str(src) + ".json", t / "m" / "model.onnx.json")
    return t / "m" / "model.onnx"


def _edit_contract(t: Path, tiny_run: Path, edit: Callable[[dict], None], resign: bool = False) -> Path:
    m = _export(t, tiny_run)
    c = json.loads(Path(str(m) + ".json").read_text())
    edit(c)
    if resign:  # a careful forger recomputes the checksum: the schema must still catch the value
        from transferlab.predict.contract import contract_checksum

        c["checksum"] = contract_checksum(c)
    Path(str(m) + ".json").write_text(json.dumps(c))
    return m


def onnx_random_bytes(t, tiny_run):
    m = _export(t, tiny_run)
    m.write_bytes(os.urandom(5000))
    return m


def onnx_of_another_model(t, tiny_run):
    m = _export(t, tiny_run)
    data = bytearray(m.read_bytes())
    data[-100] ^= 0xFF  # a different model file under the same contract
    m.write_bytes(bytes(data))
    return m


def contract_invalid_json(t, tiny_run):
    m = _export(t, tiny_run)
    Path(str(m) + ".json").write_text("{not json")
    return m


def contract_missing(t, tiny_run):
    m = _export(t, tiny_run)
    Path(str(m) + ".json").unlink()
    return m


CONTRACT_EDITS = {
    "version": (lambda c: c.update(contract_version=7), False, "contract version 7"),
    "format": (lambda c: c.update(format="caffe"), True, "field 'format'"),
    "input size": (lambda c: c["preprocess"].update(input_size=-3), True, "field 'preprocess.input_size'"),
    "swapped classes": (lambda c: c.update(classes=c["classes"][::-1]), False, "edited after export"),
    "threshold 2.0": (lambda c: c.update(threshold=2.0), True, "field 'threshold'"),
    "threshold 2.0, unsigned": (lambda c: c.update(threshold=2.0), False, "field 'threshold'"),
    "one class": (lambda c: c.update(classes=["fake"]), True, "field 'classes'"),
    "input size 64 (model takes 32)": (
        lambda c: c["preprocess"].update(input_size=64, resize_size=64),
        True,
        "contract says",
    ),
}


# -- the commands ----------------------------------------------------------------------------------


def _run(argv: list[str], capsys, cwd: Path) -> tuple[int, str, str]:
    before = sorted(p.name for p in cwd.iterdir())
    old = os.getcwd()
    os.chdir(cwd)
    try:
        code = main(argv)
    finally:
        os.chdir(old)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    after = sorted(p.name for p in cwd.iterdir())
    assert after == before, f"wrote outside the asked places: {sorted(set(after) - set(before))}"
    return code, out, err


def _check(outcome: Outcome, code: int, out: str, err: str, argv: list[str]) -> None:
    says = (outcome.says,) if isinstance(outcome.says, str) else outcome.says
    assert code == outcome.code, (argv, code, out[-2000:], err)
    text = err if code else out + err
    for s in says:
        assert s in text, (argv, s, text[-3000:])
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err


DATA_CASES = {  # case -> {command: outcome}
    "empty folder": (
        empty_folder,
        {"split": Outcome(2, "0 class(es)"), "train": Outcome(2, "0 class(es)"), "show": Outcome(2, "0 class(es)")},
    ),
    "one class": (one_class, {"split": Outcome(2, "1 class(es)"), "train": Outcome(2, "1 class(es)")}),
    "a class's folder": (
        one_class_folder,
        {
            "split": Outcome(2, "its 4 image(s) sit directly in it"),
            "train": Outcome(2, "give the folder above, which holds one folder per class"),
        },
    ),
    "a class of broken files": (
        class_of_broken_files,
        {
            "split": Outcome(2, ("has no readable images", "zero-byte")),
            "train": Outcome(2, ("has no readable images", "a.jpg (zero-byte file)")),
        },
    ),
    "messy folder": (
        messy,
        {
            "split": Outcome(
                0,
                (
                    "zero.jpg: zero-byte file",
                    "text.jpg: not an image",
                    "Mpx limit",
                    "loop.png: broken or looping symbolic link",
                ),
            ),
            "train": Outcome(
                0,
                (
                    "truncated.jpg: truncated",
                    "zero.jpg: zero-byte",
                    "bomb.png: 11000 x 11000 pixels",
                    "loop.png: broken or looping",
                ),
            ),
            "predict": Outcome(0, ("unreadable: zero-byte file", "unreadable: 11000 x 11000 pixels")),
        },
    ),
    "non-UTF-8 file names": (
        non_utf8_names,
        {"split": Outcome(0, "wrote"), "train": Outcome(0, "best epoch"), "predict": Outcome(0, "caf\\xe9_\\xff.png")},
    ),
    "same bytes in two classes": (same_bytes_two_classes, {"train": Outcome(0, "same bytes under two classes")}),
    "missing path": (
        missing_path,
        {
            "split": Outcome(2, "does not exist"),
            "train": Outcome(2, "does not exist"),
            "predict": Outcome(2, ("nothing predicted: ", "no such file")),
        },
    ),
    "text file as data": (text_file_as_data, {"train": Outcome(2, "not a CSV manifest")}),
    "manifest row without label": (manifest_row_without_label, {"train": Outcome(2, "line 3: label is empty")}),
    "manifest without columns": (manifest_without_columns, {"train": Outcome(2, "columns path,label")}),
    "Latin-1 manifest": (manifest_latin1, {"train": Outcome(0, "best epoch")}),
    "duplicate manifest rows": (manifest_duplicate_rows, {"train": Outcome(0, "3 duplicate row(s) ignored")}),
    "conflicting manifest rows": (manifest_conflicting_rows, {"train": Outcome(2, "is listed again as real")}),
    "absolute and ../ manifest paths": (manifest_outside_paths, {"train": Outcome(0, "best epoch")}),
}


def _argv(command: str, data: Path, t: Path, tiny_run: Path) -> list[str]:
    return {
        "split": ["split", str(data), "--out", str(t / "out")],
        "train": ["train", str(data), "--out", str(t / "out"), *FAST],
        "show": ["show", str(data), "--out", str(t / "out" / "p.png"), "--model", "scratch_cnn"],
        "predict": [
            "predict",
            str(tiny_run),
            str(data),
            "--csv",
            str(t / "out" / "p.csv"),
            "--json",
            str(t / "out" / "p.json"),
        ],
    }[command]


CASES = [(name, cmd) for name, (_, per) in DATA_CASES.items() for cmd in per]


@pytest.mark.parametrize("name, command", CASES, ids=[f"{c}-{n}" for n, c in CASES])
def test_bad_data_through_every_command(name, command, tmp_path, capsys, tiny_run):
    make, per = DATA_CASES[name]
    (tmp_path / "in").mkdir()
    data = make(tmp_path / "in")
    (tmp_path / "work").mkdir()
    argv = _argv(command, data, tmp_path, tiny_run)
    code, out, err = _run(argv, capsys, tmp_path / "work")
    _check(per[command], code, out, err, argv)
    if code == 2:  # a refused command leaves nothing behind
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    if command == "predict" and code == 0:  # whole CSV and JSON, one row per file, bytes of every name kept
        rows = (tmp_path / "out" / "p.csv").read_bytes().splitlines()
        listed = json.loads((tmp_path / "out" / "p.json").read_text())["predictions"]
        assert len(rows) == 1 + len(listed)
        if name.startswith("non-UTF-8"):
            assert any(b"caf\xe9_\xff.png" in r for r in rows)


MODEL_CASES = {
    "checkpoint with 3 classes": (checkpoint_three_classes, "model.head.weight' has shape"),
    "checkpoint threshold 'high'": (checkpoint_text_threshold, "field 'threshold'"),
    "random bytes as .onnx": (onnx_random_bytes, "sha256"),
    "another model's file": (onnx_of_another_model, "sha256"),
    "invalid JSON contract": (contract_invalid_json, "not a readable JSON contract"),
    "no contract": (contract_missing, "no preprocessing contract"),
    **{
        f"contract: {k}": (partial(_edit_contract, edit=e, resign=r), says)
        for k, (e, r, says) in CONTRACT_EDITS.items()
    },
}


# run folders go through every command that reads one; exported files through those that read exports
MODEL_RUNS = [
    (n, c)
    for n in MODEL_CASES
    for c in (("predict", "evaluate", "export", "serve") if n.startswith("checkpoint") else ("predict", "serve"))
]


@pytest.mark.parametrize("name, command", MODEL_RUNS, ids=[f"{c}-{n}" for n, c in MODEL_RUNS])
def test_bad_models_through_every_command(name, command, tmp_path, capsys, tiny_run):
    make, says = MODEL_CASES[name]
    (tmp_path / "in").mkdir()
    model = make(tmp_path / "in", tiny_run)
    (tmp_path / "work").mkdir()
    img = tmp_path / "img.png"
    Image.new("RGB", (40, 40)).save(img)
    if command == "serve":
        from transferlab.deploy.serve import create_app

        with pytest.raises(Exception) as e:
            create_app(model)
        assert says in str(e.value) and type(e.value).__name__ in ("ContractError", "CheckpointError")
        return
    argv = {
        "predict": ["predict", str(model), str(img)],
        "evaluate": ["evaluate", str(model)],
        "export": ["export", str(model), "--out", str(tmp_path / "exp")],
    }[command]
    code, out, err = _run(argv, capsys, tmp_path / "work")
    _check(Outcome(2, says), code, out, err, argv)


def test_predict_names_what_to_give_for_a_checkpoint_file_or_an_export_folder(tmp_path, capsys, tiny_run):
    img = tmp_path / "img.png"
    Image.new("RGB", (40, 40)).save(img)
    (tmp_path / "work").mkdir()
    run = _run_copy(tmp_path, tiny_run)
    folder = _export(tmp_path, tiny_run).parent
    for argv, says in [
        (["predict", str(run / "best.pt"), str(img)], ("a checkpoint in a run folder", f"predict {run} --checkpoint")),
        (["predict", str(folder), str(img)], ("no checkpoint best.pt but an exported model", "model.onnx IMAGES")),
    ]:
        code, out, err = _run(argv, capsys, tmp_path / "work")
        _check(Outcome(2, says), code, out, err, argv)


def test_predict_checks_its_outputs_before_predicting(tmp_path, capsys, tiny_run, monkeypatch):
    from transferlab.predict.predictor import Predictor

    monkeypatch.setattr(Predictor, "predict_paths", lambda *a, **k: pytest.fail("predicted before checking outputs"))
    img = tmp_path / "img.png"
    Image.new("RGB", (40, 40)).save(img)
    (tmp_path / "work").mkdir()
    (tmp_path / "file").write_text("x")
    base = ["predict", str(tiny_run), str(img)]
    for flags, says in [
        (["--csv", str(tmp_path / "work")], ("cannot write", "it is a folder, not a file")),
        (["--json", str(tmp_path / "file" / "p.json")], ("cannot write", "a file is in the way")),
        (["--csv", "p.out", "--json", "./p.out"], "--csv and --json name the same file"),
        (["--explain", str(tmp_path / "file")], ("cannot write", "a file is in the way")),
    ]:
        code, out, err = _run([*base, *flags], capsys, tmp_path / "work")
        _check(Outcome(2, says), code, out, err, [*base, *flags])


def test_run_folder_and_output_problems(tmp_path, capsys, tiny_folder, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    run = tmp_path / "run"
    argv = ["train", str(tiny_folder), "--out", str(run), *FAST]
    assert _run(argv, capsys, work)[0] == 0
    best = (run / "best.pt").read_bytes()
    code, out, err = _run(argv, capsys, work)  # the same --out again: refused, nothing lost
    _check(Outcome(2, ("holds a run already", "--overwrite", "--resume")), code, out, err, argv)
    assert (run / "best.pt").read_bytes() == best
    (run / "eval.json").write_text("{}")
    assert _run([*argv, "--overwrite"], capsys, work)[0] == 0
    assert not (run / "eval.json").exists()  # --overwrite cleared the old run's files
    (work / "x.txt").write_text("a file where a folder should be")
    for bad, says in [
        (["train", "--resume", str(tmp_path / "nowhere")], "not a run folder"),
        (["train", str(tiny_folder), "--out", str(work / "x.txt" / "run"), *FAST], "cannot write"),
        (["train", str(tiny_folder), "--out", str(tmp_path / "other"), *FAST, "--image-size", "8"], "smallest input"),
        (["train", str(tiny_folder), "--out", str(tiny_folder / "fake" / "run"), *FAST], "inside the data folder"),
        (["compare", str(tiny_folder), "--out", str(tiny_folder / "cmp")], "inside the data folder"),
        (["evaluate", str(run), str(tiny_folder), "--out", str(tiny_folder / "ev")], "inside the data folder"),
        (["crosseval", str(tiny_folder), str(run), "--out", str(tiny_folder / "x")], "inside the data folder"),
        (["export", str(run), "--out", str(work / "x.txt")], ("x.txt", "a file is in the way", "another output path")),
        (["predict", str(run), str(tiny_folder), "--csv", str(work)], ("it is a folder, not a file",)),
    ]:
        code, out, err = _run(bad, capsys, work)
        _check(Outcome(2, says), code, out, err, bad)
    # a full disk: one line naming the path, and no half-written file
    import transferlab.files as files

    real = files.os.replace

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full)
    argv = ["predict", str(run), str(tiny_folder), "--csv", str(tmp_path / "p.csv")]
    code, out, err = _run(argv, capsys, work)
    monkeypatch.setattr(files.os, "replace", real)
    _check(Outcome(2, ("p.csv", "no space left", "free some space")), code, out, err, argv)
    assert not list(tmp_path.glob("*p.csv*"))


# -- property-based fuzzing of the readers ---------------------------------------------------------

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_SEEDS = [_jpeg(1), png_bomb(64, 64)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=4000),
        st.tuples(st.sampled_from(_SEEDS), st.integers(0, 3000), st.binary(min_size=1, max_size=40)).map(
            lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]) :]
        ),
    )
)
def test_image_reader_never_raises_anything_but_image_read_error(data):
    from transferlab.data.images import ImageReadError, decode_bytes

    try:
        im = decode_bytes(data, "fuzz")
    except ImageReadError as e:
        assert e.reason and "\n" not in e.reason
    else:
        assert im.mode == "RGB" and im.width * im.height <= 64_000_000


_FUZZ_DIR = None


def _fuzz_dir() -> Path:
    global _FUZZ_DIR
    if _FUZZ_DIR is None:
        import tempfile

        _FUZZ_DIR = make_folder(Path(tempfile.mkdtemp()) / "img", n=3)
    return _FUZZ_DIR


_cell = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_row = st.one_of(
    st.lists(_cell, max_size=4),
    st.tuples(
        st.sampled_from(
            [f"img/{c}/{c}_{i:02d}.png" for c in ("fake", "real") for i in range(3)]
            + ["img/none.png", "/abs/none.png", "../x.png", ""]
        ),
        st.sampled_from(["fake", "real", "", " fake "]),
        st.sampled_from(["train", "val", "test", "", "bogus"]),
    ).map(list),
)


@settings(max_examples=150, deadline=None)
@example("path,label,split", [["img/fake/fake_00.png", "fake", "\n"]], "utf-8")  # a newline in a quoted field
@example("path,label,split", [["a\nb.png", "fake", "train"], ["a\nb.png", "real", "train"]], "utf-8")
@example("path,label,split", [["0", "0\n0"], ["img/fake/fake_00.png", "fake", "train"]], "utf-8")  # class, no image
@given(
    st.sampled_from(["path,label,split", "path,label", "label,path", "file,label", ""]),
    st.lists(_row, max_size=12),
    st.sampled_from(["utf-8", "latin-1"]),
)
def test_manifest_reader_never_raises_anything_but_data_error(header, rows, encoding):
    import csv

    from transferlab.data.index import DataError, read_manifest

    root = _fuzz_dir().parent
    buf = io.StringIO()
    w = csv.writer(buf)
    if header:
        buf.write(header + "\n")
    for r in rows:
        w.writerow(r)
    p = root / "fuzz.csv"
    p.write_bytes(buf.getvalue().encode(encoding, "replace"))
    try:
        index = read_manifest(p)
    except DataError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert len(index.classes) >= 2 and all(s.label < len(index.classes) for s in index.all_samples())


def test_a_class_folder_named_with_a_newline_is_named_on_one_line(tmp_path):
    from transferlab.data.index import DataError, load_index

    (tmp_path / "real").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "real" / "x.png")
    (tmp_path / "fa\nke").mkdir()  # empty: refused, and the message names it
    with pytest.raises(DataError, match=r"class folder '.*fa\\nke' has no readable images") as e:
        load_index(tmp_path)
    assert "\n" not in str(e.value)
