"""Bad input at the command line: one clear message, a non-zero exit, no traceback, nothing written.

Every case calls the real CLI in-process (``ftui.cli.main([...])``) from an
empty working folder and checks, for the person at the terminal:

- the exit code is not 0;
- the output names what is wrong (key/value, file or folder) and, where the
  message can, what to do;
- exactly one ``error:`` / ``failed:`` message, and no "Traceback" or
  "internal error" anywhere;
- nothing was written or overwritten: no run folder under ``--runs``, and every
  file under the test's folder (catalog, checkpoint, weights, images) is
  byte-identical afterwards.

Covered (counts in CASE_COUNTS below):

- catalog: TOML syntax, wrong types, out-of-range values, unknown keys, layer
  units and top-level tables, duplicate and unsafe names, empty catalogs,
  non-UTF-8 files, a missing catalog, a bad --epochs override, an unknown
  experiment name; through ``ftui run`` and ``ftui list``;
- checkpoint: truncated, random bytes, empty, lying header, another model's
  tensors, a .pth carrying pickled code, a folder, a missing file; through
  ``ftui inspect`` and ``ftui eval``;
- data: malformed image folders, unreadable images, a head whose class count
  does not match the dataset, full CIFAR-10 missing offline; through ``ftui run``;
- weights: pretrained weights missing offline, another model's weights,
  pickled code, missing or unreadable local files; through ``ftui run``;
- and one subprocess run of the installed ``ftui`` console script.

The network is never used: torchvision's and torch.hub's downloaders,
``urllib.request.urlopen`` and ``socket.connect`` all raise.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from ftui.cli import main
from tests.conftest import TINY

# --- the experiment every catalog starts from: valid, and tiny if it ever did start ---------

BASE = """\
# a small, valid experiment: if anything did start, it would be quick
[[experiment]]
name = "e"
model = "resnet18"
weights = "none"
dataset = "cifar10-sample"
input_size = 16
cifar_stem = true
epochs = 1
batch_size = 8
max_steps_per_epoch = 1
max_test_images = 16
device = "cpu"
"""
NAME_RULE = "use 1 to 64 letters, digits, '.', '_' or '-'"


def with_value(key: str, value: str) -> str:
    """BASE with key set to value (a TOML literal), replacing the key's line or adding one."""
    line = f"{key} = {value}"
    text, count = re.subn(rf"^{key} = .*$", lambda _m: line, BASE, flags=re.M)
    return text if count else BASE + line + "\n"


def named(name_literal: str) -> str:
    return BASE.replace('name = "e"', f"name = {name_literal}")


# --- catalog cases: ftui run NAME --catalog FILE --runs DIR, and ftui list --catalog FILE -----


class CatalogCase(NamedTuple):
    text: str | bytes
    fragments: list  # every item must appear; a tuple item means "one of these"
    run_name: str = "e"  # what the person would type after `ftui run`


SYNTAX_LINE = BASE.count("\n") + 1
LONG_NAME = "a" * 100

CATALOG_CASES = {
    "syntax-error": CatalogCase(BASE + "lr = = 0.1\n", [f"line {SYNTAX_LINE}, column 6", "Invalid value"]),
    "epochs-string": CatalogCase(with_value("epochs", '"3"'), ['epochs = "3"', "expected an integer, got a string"]),
    "batch-size-float": CatalogCase(
        with_value("batch_size", "1.5"), ["batch_size = 1.5", "expected an integer, got a float"]
    ),
    "lr-zero": CatalogCase(with_value("lr", "0"), ["lr = 0:", "allowed 0 < lr <= 10"]),
    "lr-negative": CatalogCase(with_value("lr", "-0.1"), ["lr = -0.1", "allowed 0 < lr <= 10"]),
    "epochs-zero": CatalogCase(with_value("epochs", "0"), ["epochs = 0", "allowed 1 <= epochs <= 10000"]),
    "batch-size-zero": CatalogCase(
        with_value("batch_size", "0"), ["batch_size = 0", "allowed 1 <= batch_size <= 65536"]
    ),
    "input-size-absurd": CatalogCase(
        with_value("input_size", "100000"), ["input_size = 100000", "allowed 8 <= input_size <= 1024"]
    ),
    "crop-padding-absurd": CatalogCase(
        with_value("crop_padding", "1000"), ["crop_padding = 1000", "allowed 0 <= crop_padding <= 64"]
    ),
    "unknown-key": CatalogCase(BASE + "epoch = 3\n", ["epoch = 3", "unknown setting", "did you mean 'epochs'?"]),
    "unknown-unit": CatalogCase(
        with_value("trainable", '["layr1", "fc"]'),
        ["'layr1' is not a layer unit of resnet18", "did you mean 'layer1'?", "its units: conv1, bn1, layer1, layer2"],
    ),
    "unknown-top-level-table": CatalogCase(
        "[defautls]\nlr = 0.1\n\n" + BASE, ["unknown top-level key 'defautls'", "did you mean 'defaults'?"]
    ),
    "duplicate-names": CatalogCase(
        BASE + "\n" + BASE, ['experiment "e" (entry 2)', 'name = "e"', "duplicate", "entry 1 already uses this name"]
    ),
    "empty-file": CatalogCase("", ["no experiments", "add at least one [[experiment]]"]),
    "only-comments": CatalogCase(
        "# my experiments\n# (none yet)\n", ["no experiments", "add at least one [[experiment]]"]
    ),
    "name-dotdot": CatalogCase(named('"../x"'), ['name = "../x"', "not a valid name", NAME_RULE], "../x"),
    "name-absolute": CatalogCase(named('"/abs"'), ['name = "/abs"', "not a valid name", NAME_RULE], "/abs"),
    "name-space": CatalogCase(named('"a b"'), ['name = "a b"', "not a valid name", NAME_RULE], "a b"),
    "name-dollar": CatalogCase(named('"x$y"'), ['name = "x$y"', "not a valid name", NAME_RULE], "x$y"),
    "name-100-chars": CatalogCase(
        named(f'"{LONG_NAME}"'), [f'name = "{LONG_NAME}"', "not a valid name", NAME_RULE], LONG_NAME
    ),
    # odd characters must reach the terminal as written, not as rich markup or a broken line
    "name-rich-markup": CatalogCase(named('"[red]x[/]"'), ['name = "[red]x[/]"', "not a valid name"], "[red]x[/]"),
    "name-newline": CatalogCase(named(r'"x\ny"'), [r'name = "x\ny"', "not a valid name"], "x\ny"),
    "not-utf8": CatalogCase(named('"\xe9"').encode("latin-1"), ["is not UTF-8 text", "byte 0xe9"]),
}


class RunOnlyCase(NamedTuple):
    argv: Callable[[Path], list[str]]  # given the catalog path (a valid one, written first)
    fragments: list
    catalog_name: str = "resnet18-fc"


# Bad input that only `ftui run` (or the catalog's absence) can show; the catalog itself is valid.
CATALOG_RUN_ONLY_CASES = {
    "unknown-experiment-name": RunOnlyCase(
        lambda cat: ["run", "resnet18-fx", "--catalog", str(cat), "--runs", str(cat.parent / "checkpoints")],
        ["No experiment named 'resnet18-fx'", "Did you mean 'resnet18-fc'?"],
    ),
    "epochs-override-zero": RunOnlyCase(
        lambda cat: [
            "run",
            "resnet18-fc",
            "--catalog",
            str(cat),
            "--runs",
            str(cat.parent / "checkpoints"),
            "--epochs",
            "0",
        ],
        ["command line: epochs = 0", "allowed 1 <= epochs <= 10000"],
    ),
    "missing-catalog-file": RunOnlyCase(
        lambda cat: [
            "run",
            "resnet18-fc",
            "--catalog",
            str(cat.with_name("nope.toml")),
            "--runs",
            str(cat.parent / "checkpoints"),
        ],
        ["Catalog file", "nope.toml", "does not exist"],
    ),
    "no-catalog-in-this-folder": RunOnlyCase(
        lambda cat: ["list"],  # run from a folder without experiments.toml
        ["No experiments.toml in", "--catalog PATH"],
        catalog_name="",
    ),
}

# --- checkpoint cases: ftui inspect PATH, ftui eval PATH --------------------------------------


class _RunsCode:
    """Unpickling this runs `touch MARKER`: what a .pth file that carries code does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


MARKER = "UNPICKLED-CODE-RAN"


def write_pickled_code(path: Path) -> Path:
    torch.save({"conv1.weight": torch.zeros(1), "payload": _RunsCode(path.parent / MARKER)}, path)
    return path


def _truncated(d: Path, real: Path, _other) -> Path:
    data = real.read_bytes()
    (p := d / "last.safetensors").write_bytes(data[: len(data) // 2])
    return p


def _random_bytes(d: Path, _real, _other) -> Path:
    (p := d / "best.safetensors").write_bytes(random.Random(0).randbytes(4096))
    return p


def _empty(d: Path, _real, _other) -> Path:
    (p := d / "last.safetensors").write_bytes(b"")
    return p


def _lying_header(d: Path, real: Path, _other) -> Path:
    """A valid file whose JSON header says a tensor's bytes run past the end of the file."""
    data = real.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])
    first = next(k for k in header if k != "__metadata__")
    header[first]["data_offsets"][1] += 10**6
    lying = json.dumps(header).encode()
    (p := d / "last.safetensors").write_bytes(struct.pack("<Q", len(lying)) + lying + data[8 + size :])
    return p


def _another_model(d: Path, real: Path, other: dict) -> Path:
    """resnet34's tensors under the real checkpoint's metadata (which says resnet18)."""
    with safe_open(real, "pt") as f:
        meta = f.metadata()
    save_file(other, p := d / "best.safetensors", metadata=meta)
    return p


def _pickled_code(d: Path, _real, _other) -> Path:
    return write_pickled_code(d / "model.pth")


def _directory(d: Path, real: Path, _other) -> Path:
    """The run folder instead of a checkpoint in it (an easy slip)."""
    (p := d / "tiny-20250101-120000").mkdir()
    shutil.copyfile(real, p / "last.safetensors")
    return p


def _missing(d: Path, _real, _other) -> Path:
    return d / "nope.safetensors"


CHECKPOINT_CASES = {
    "truncated": (_truncated, ["not a readable safetensors checkpoint", "truncated or corrupt"]),
    "random-bytes": (_random_bytes, ["not a readable safetensors checkpoint"]),
    "empty-file": (_empty, ["not a readable safetensors checkpoint"]),
    "lying-header": (_lying_header, ["not a readable safetensors checkpoint", "truncated or corrupt"]),
    "another-model": (_another_model, ["does not fit", "resnet18"]),
    "pickled-code-pth": (_pickled_code, ["not a readable safetensors checkpoint"]),
    # any wording that says what it is (the path itself contains "directory": match phrases)
    "directory": (_directory, [("is a folder", "is a directory", "not a file", "run folder")]),
    "missing-file": (_missing, ["does not exist"]),
}

# Known ftui bugs (reported, not fixed here): strict, so a fix turns them into a failure to remove the mark.
CHECKPOINT_XFAIL: dict = {}  # (case, command) -> reason, for a known bug; empty: none known

# --- data and weights cases: ftui run e --catalog FILE --runs DIR -------------------------------


def png(path: Path, color=(200, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6, 3), color, dtype=np.uint8)).save(path)


def _images(d: Path, *files: str) -> Path:
    root = d / "images"
    root.mkdir()
    for f in files:
        png(root / f)
    return root


def imagefolder(extra: str = "") -> str:
    return 'dataset = "imagefolder"\ndata_dir = "images"\n' + extra


def _data_empty_folder(d, _):
    root = _images(d)
    return imagefolder(), [str(root / "train"), "does not exist", "train/CLASS/* and test/CLASS/*"]


def _data_no_test_split(d, _):
    root = _images(d, "train/cat/0.png", "train/dog/0.png")
    return imagefolder(), [str(root / "test"), "does not exist", "train/CLASS/* and test/CLASS/*"]


def _data_no_class_folders(d, _):
    root = _images(d, "train/0.png", "test/0.png")
    return imagefolder(), [str(root / "train"), "has no class folders", "CLASS_NAME/"]


def _data_class_without_images(d, _):
    root = _images(d, "train/cat/0.png", "test/cat/0.png", "test/dog/0.png")
    (root / "train/dog").mkdir()
    (root / "train/dog/notes.txt").write_text("not an image\n")
    return imagefolder(), [str(root / "train/dog"), "has no images", "Add images or remove the folder"]


def _data_corrupt_png(d, _):
    root = _images(d, "train/cat/0.png", "train/dog/0.png", "test/cat/0.png", "test/dog/0.png")
    (root / "train/cat/1.png").write_bytes(random.Random(1).randbytes(300))
    return imagefolder(), [str(root / "train/cat/1.png"), "Cannot read image", "Replace or delete the file"]


def _data_unreadable_png(d, _):
    root = _images(d, "train/cat/0.png", "train/cat/1.png", "train/dog/0.png", "test/cat/0.png", "test/dog/0.png")
    (root / "train/cat/1.png").chmod(0)
    return imagefolder(), [str(root / "train/cat/1.png"), "Cannot read image", "Replace or delete the file"]


def _data_one_class(d, _):
    root = _images(d, "train/cat/0.png", "train/cat/1.png", "test/cat/0.png")
    return imagefolder(), [str(root / "train"), "one class folder (cat)", "needs at least two"]


def _data_test_classes_differ(d, _):
    _images(d, "train/cat/0.png", "train/dog/0.png", "test/cat/0.png", "test/wolf/0.png")
    return imagefolder(), ["missing from test/: dog", "not in train/: wolf", "Use the same classes in both"]


def _data_missing_folder(d, _):
    return imagefolder(), [str(d / "images"), "does not exist", "Set data_dir"]


def _data_cifar10_offline(d, _):
    cifar = torchvision.datasets.CIFAR10
    return 'dataset = "cifar10"\ndata_dir = "cifar"\n', [
        f"CIFAR-10 is not in {d / 'cifar'}",
        cifar.filename,
        cifar.url,
        'dataset = "cifar10-sample"',
    ]


_ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0
DATA_CASES = {
    "imagefolder-empty": _data_empty_folder,
    "imagefolder-train-but-no-test": _data_no_test_split,
    "imagefolder-images-without-class-folders": _data_no_class_folders,
    "imagefolder-class-without-images": _data_class_without_images,
    "imagefolder-corrupt-png": _data_corrupt_png,
    "imagefolder-unreadable-png": pytest.param(
        _data_unreadable_png, marks=pytest.mark.skipif(_ROOT_USER, reason="root reads files whatever their mode")
    ),
    "imagefolder-test-classes-differ": _data_test_classes_differ,
    "imagefolder-one-class": _data_one_class,
    "imagefolder-missing": _data_missing_folder,
    "cifar10-missing-offline": _data_cifar10_offline,
}


def _weights_pretrained_offline(d, _other):
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return 'weights = "DEFAULT"\n', [
        "resnet18-f37072fd.pth",
        str(folder),
        "https://download.pytorch.org/models/resnet18-f37072fd.pth",
        'weights = "none"',
    ]


def _weights_another_model(d, other):
    save_file(other, d / "resnet34.safetensors")
    return 'weights = "resnet34.safetensors"\n', ["resnet34.safetensors", "do not fit resnet18"]


def _weights_pickled_code(d, _other):
    write_pickled_code(d / "evil.pth")
    return 'weights = "evil.pth"\n', ["Refused to load", "evil.pth", "Convert it to .safetensors"]


def _weights_missing(d, _other):
    return 'weights = "nope.safetensors"\n', [str(d / "nope.safetensors"), "does not exist"]


def _weights_corrupt_safetensors(d, _other):
    (d / "broken.safetensors").write_bytes(random.Random(2).randbytes(2048))
    return 'weights = "broken.safetensors"\n', ["broken.safetensors", "not a readable weights file"]


def _weights_pth_not_a_state_dict(d, _other):
    torch.save([torch.zeros(3), torch.ones(3)], d / "list.pth")
    return 'weights = "list.pth"\n', ["list.pth", "does not hold a state dict"]


WEIGHTS_CASES = {
    "pretrained-missing-offline": _weights_pretrained_offline,
    "another-model-safetensors": _weights_another_model,
    "pth-with-pickled-code": _weights_pickled_code,
    "missing-local-file": _weights_missing,
    "corrupt-safetensors": _weights_corrupt_safetensors,
    "pth-not-a-state-dict": _weights_pth_not_a_state_dict,
}

# The number of bad inputs per category (each catalog input is tried with both `run` and `list`,
# each checkpoint with both `inspect` and `eval`), plus one console-script subprocess test.
CASE_COUNTS = {
    "catalog": len(CATALOG_CASES) + len(CATALOG_RUN_ONLY_CASES),
    "checkpoint": len(CHECKPOINT_CASES),
    "data": len(DATA_CASES),
    "weights": len(WEIGHTS_CASES),
}

# --- checks --------------------------------------------------------------------------------------


def _flat(text: str) -> str:
    # rich wraps long lines at the console width; compare with all whitespace removed.
    return re.sub(r"\s+", "", text)


def snapshot(root: Path) -> dict[str, str]:
    """Every file (with a hash of its bytes) and folder under root."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir():
            state[rel] = "<dir>"
            continue
        try:
            state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        except PermissionError:
            st = path.stat()
            state[rel] = f"<unreadable {st.st_size} {st.st_mtime_ns}>"
    return state


def cli(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()  # drop anything printed while the case was being set up
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def assert_refused(code: int, text: str, fragments, root: Path, before: dict, allowed_new_dirs=()) -> None:
    shown = f"exit code {code}; output:\n{text}"
    assert code != 0, shown
    assert "Traceback" not in text, shown
    assert "internal error" not in text, shown
    assert len(re.findall(r"^(?:error|failed):", text, flags=re.M)) == 1, f"expected one message; {shown}"
    for fragment in fragments:
        options = fragment if isinstance(fragment, tuple) else (fragment,)
        assert any(_flat(o) in _flat(text) for o in options), f"expected {fragment!r} in the output; {shown}"
    runs = root / "checkpoints"
    assert not runs.exists() or not any(runs.iterdir()), f"a run folder was written: {list(runs.iterdir())}"
    after = snapshot(root)
    changed = sorted(k for k in before if after.get(k) != before[k])
    added = sorted(k for k in after if k not in before and not (k in allowed_new_dirs and after[k] == "<dir>"))
    assert not changed, f"changed or removed: {changed}; {shown}"
    assert not added, f"written: {added}; {shown}"


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """An empty working folder, no network, a private torch hub cache, and signal handlers put back."""
    monkeypatch.chdir(tmp_path)

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network (blocked by the test)")

    def no_socket(*args, **kwargs):
        raise OSError("no network (socket.connect blocked by the test)")

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_socket)
    monkeypatch.delenv("FTUI_DATA_DIR", raising=False)
    old_hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    # `ftui run` installs its own SIGINT/SIGTERM/SIGHUP handlers in this process.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    torch.hub.set_dir(old_hub)


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory) -> Path:
    """last.safetensors of a real one-epoch tiny run."""
    from ftui.engine.catalog import experiment_from_dict
    from ftui.engine.train import train

    exp = experiment_from_dict({**TINY, "epochs": 1}, where="test")
    result = train(exp, runs_root=tmp_path_factory.mktemp("real-run"))
    assert result.status == "finished", result.reason
    return result.run_dir / "last.safetensors"


@pytest.fixture(scope="module")
def resnet34_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.contiguous() for k, v in torchvision.models.resnet34(weights=None).state_dict().items()}


# --- catalog -------------------------------------------------------------------------------------


def _catalog_argv(command: str, case: CatalogCase, catalog: Path) -> list[str]:
    if command == "run":
        return ["run", case.run_name, "--catalog", str(catalog), "--runs", str(catalog.parent / "checkpoints")]
    return ["list", "--catalog", str(catalog)]


@pytest.mark.parametrize("command", ["run", "list"])
@pytest.mark.parametrize("case", list(CATALOG_CASES.values()), ids=list(CATALOG_CASES))
def test_bad_catalog(case: CatalogCase, command, tmp_path, capsys):
    catalog = tmp_path / "experiments.toml"
    if isinstance(case.text, bytes):
        catalog.write_bytes(case.text)
    else:
        catalog.write_text(case.text, encoding="utf-8")
    before = snapshot(tmp_path)
    code, text = cli(_catalog_argv(command, case, catalog), capsys)
    assert_refused(code, text, [str(catalog), *case.fragments], tmp_path, before)


@pytest.mark.parametrize("case", list(CATALOG_RUN_ONLY_CASES.values()), ids=list(CATALOG_RUN_ONLY_CASES))
def test_bad_request_on_a_valid_catalog(case: RunOnlyCase, tmp_path, capsys):
    catalog = tmp_path / "experiments.toml"
    if case.catalog_name:
        catalog.write_text(BASE.replace('name = "e"', f'name = "{case.catalog_name}"'), encoding="utf-8")
    before = snapshot(tmp_path)
    code, text = cli(case.argv(catalog), capsys)
    assert_refused(code, text, case.fragments, tmp_path, before)


def test_console_script_shows_no_traceback_for_a_bad_catalog(tmp_path):
    script = Path(sys.executable).with_name("ftui")
    if not script.is_file():
        pytest.skip(f"no ftui console script next to {sys.executable}")
    catalog = tmp_path / "experiments.toml"
    catalog.write_text(BASE + "epoch = 3\nlr = -0.1\n", encoding="utf-8")
    before = snapshot(tmp_path)
    proc = subprocess.run(
        [str(script), "run", "e", "--catalog", str(catalog), "--runs", str(tmp_path / "checkpoints")],
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert proc.stderr.startswith("error:"), text
    # every problem of the file at once
    for fragment in (str(catalog), "epoch = 3", "did you mean 'epochs'?", "lr = -0.1", "0 < lr <= 10"):
        assert _flat(fragment) in _flat(text), text
    assert_refused(proc.returncode, text, [], tmp_path, before)


# --- checkpoints ---------------------------------------------------------------------------------


def _checkpoint_params():
    for case in CHECKPOINT_CASES:
        for command in ("inspect", "eval"):
            reason = CHECKPOINT_XFAIL.get((case, command))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(case, command, marks=marks, id=f"{case}-{command}")


@pytest.mark.parametrize("case, command", list(_checkpoint_params()))
def test_bad_checkpoint(case, command, real_checkpoint, resnet34_state, tmp_path, capsys):
    make, fragments = CHECKPOINT_CASES[case]
    path = make(tmp_path, real_checkpoint, resnet34_state)
    before = snapshot(tmp_path)
    argv = [command, str(path)] + (["--device", "cpu"] if command == "eval" else [])
    code, text = cli(argv, capsys)
    assert not (tmp_path / MARKER).exists(), "unpickling ran the file's code"
    assert_refused(code, text, [str(path), *fragments], tmp_path, before)


# --- data and weights ----------------------------------------------------------------------------


def write_catalog(extra: str, tmp_path: Path) -> Path:
    """experiments.toml: BASE with the case's settings (replacing BASE's lines for the same keys)."""
    keys = re.findall(r"^(\w+) = ", extra, flags=re.M)
    text = "".join(line for line in BASE.splitlines(keepends=True) if line.split(" = ")[0] not in keys)
    (catalog := tmp_path / "experiments.toml").write_text(text + extra, encoding="utf-8")
    return catalog


@pytest.mark.parametrize("make", list(DATA_CASES.values()), ids=list(DATA_CASES))
def test_bad_data(make, tmp_path, capsys):
    extra, fragments = make(tmp_path, None)
    catalog = write_catalog(extra, tmp_path)
    before = snapshot(tmp_path)
    code, text = cli(["run", "e", "--catalog", str(catalog), "--runs", str(tmp_path / "checkpoints")], capsys)
    assert_refused(code, text, fragments, tmp_path, before)


@pytest.mark.parametrize("make", list(WEIGHTS_CASES.values()), ids=list(WEIGHTS_CASES))
def test_bad_weights(make, resnet34_state, tmp_path, capsys):
    extra, fragments = make(tmp_path, resnet34_state)
    catalog = write_catalog(extra, tmp_path)
    before = snapshot(tmp_path)
    code, text = cli(["run", "e", "--catalog", str(catalog), "--runs", str(tmp_path / "checkpoints")], capsys)
    assert not (tmp_path / MARKER).exists(), "unpickling ran the file's code"
    # torch.hub may create its (empty) cache folder; a partial download must not appear in it.
    assert_refused(code, text, fragments, tmp_path, before, allowed_new_dirs=("hub", "hub/checkpoints"))
