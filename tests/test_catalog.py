"""The catalog: the shipped experiments.toml, every class of mistake in one, and appending to it."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tomllib
from pathlib import Path

import pytest

from ftui.engine.catalog import experiment_from_dict, load_catalog, save_experiment
from ftui.errors import CatalogError

SHIPPED = Path(__file__).resolve().parent.parent / "experiments.toml"
RESNET18_UNITS = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")
TABLE_1 = [80.9, 68.2, 88.4, 89.3, 89.8, 89.0, 92.7, 92.5, 89.3, 90.9, 93.7, 94.1, 96.3, 90.5, 95.1, 98.4]
NOT_TABLE_1 = (
    "quickstart",
    "resnet18-scratch",
    "resnet18-scratch-imagenet-stem",
    "vit_b_16-lora-224",
    "resnet18-lora",
    "vgg16-lora-224",
)

# A valid catalog with one entry named "e"; the cases below append keys to that entry.
VALID = '[defaults]\nweights = "none"\ntrainable = "all"\n\n[[experiment]]\nname = "e"\n'
ENTRY = 'experiment "e" (entry 1)'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "experiments.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    return str(info.value)


# --- the shipped catalog -------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return load_catalog(SHIPPED)


def test_shipped_catalog_loads(shipped):
    assert len(shipped.experiments) == 37  # 22, and the report in miniature's 15 (tests/test_study.py)
    assert {"quickstart", "resnet18-scratch", "resnet18-scratch-imagenet-stem"} <= set(shipped.names)
    table_1 = [e for e in shipped.experiments if e.name not in NOT_TABLE_1 and not e.name.startswith("mini-")]
    assert [e.reference_acc for e in table_1] == TABLE_1


def test_shipped_lora_rows(shipped):
    vit = shipped.get("vit_b_16-lora-224")
    assert vit.trainable == ("heads",) and vit.lora == tuple(f"encoder_layer_{i}" for i in range(12))
    assert vit.reference_acc is None and "97%" in vit.description
    resnet = shipped.get("resnet18-lora")
    assert resnet.cifar_stem and resnet.trainable == ("conv1", "fc")
    assert resnet.lora == ("layer1", "layer2", "layer3", "layer4")
    vgg = shipped.get("vgg16-lora-224")
    assert vgg.trainable == () and vgg.lora[-1] == "classifier" and vgg.reference_acc is None


def test_shipped_per_unit_learning_rates(shipped):
    exp = shipped.get("resnet18-fft-lr")
    assert exp.lr == 5e-3
    assert exp.unit_lr == {"conv1": 7e-3, "fc": 1e-2}
    assert exp.lr_for("conv1") == 7e-3 and exp.lr_for("layer2") == 5e-3
    assert exp.trainable == ("conv1", "layer1", "layer2", "layer3", "layer4", "fc")


def test_shipped_all_resolves_to_the_model_units(shipped):
    assert shipped.get("resnet18-fft").trainable == RESNET18_UNITS
    assert shipped.get("vgg16-fft").trainable == ("block1", "block2", "block3", "block4", "block5", "classifier")
    assert shipped.get("vit_b_16-fft-224").trainable[-1] == "heads"
    # a list is stored in unit order, whatever order the file uses
    assert shipped.get("resnet18-layer1").trainable == ("conv1", "layer1", "fc")


def test_shipped_quickstart_runs_offline(shipped):
    quick = shipped.get("quickstart")
    assert quick.dataset == "cifar10-sample" and quick.weights == "none"
    assert quick.device == "auto" and quick.trainable == RESNET18_UNITS


def test_get_unknown_name_suggests(shipped):
    with pytest.raises(
        CatalogError, match=r"No experiment named 'resnet18-ft' in .*experiments.toml\. Did you mean 'resnet18-fft'\?"
    ):
        shipped.get("resnet18-ft")


# --- broken catalogs ---------------------------------------------------------------------

BROKEN = {
    "syntax": ('[[experiment]]\nname = "e"\nlr = = 1\n', ["line 3, column 6", "Invalid value"]),
    "syntax-at-end": ("[[experiment]]\nname = [1\n", ["end of file", "nclosed array"]),
    "epochs-string": (VALID + 'epochs = "ten"\n', [ENTRY, 'epochs = "ten"', "an integer", "a string"]),
    "batch-size-float": (VALID + "batch_size = 64.0\n", ["batch_size = 64.0", "an integer", "a float"]),
    "lr-bool": (VALID + "lr = true\n", ["lr = true", "a number", "a boolean"]),
    "flip-int": (VALID + "flip = 1\n", ["flip = 1", "true or false", "an integer"]),
    "lr-zero": (VALID + "lr = 0\n", ["lr = 0", "0 < lr <= 10"]),
    "lr-negative": (VALID + "lr = -1\n", ["lr = -1", "0 < lr <= 10"]),
    "epochs-zero": (VALID + "epochs = 0\n", ["epochs = 0", "1 <= epochs <= 10000"]),
    "batch-size-zero": (VALID + "batch_size = 0\n", ["batch_size = 0", "1 <= batch_size <= 65536"]),
    "input-size-huge": (VALID + "input_size = 100000\n", ["input_size = 100000", "8 <= input_size <= 1024"]),
    "momentum-one": (VALID + "momentum = 1.0\n", ["momentum = 1.0", "0 <= momentum < 1"]),
    "nan": (VALID + "weight_decay = nan\n", ["weight_decay = nan", "finite"]),
    "unit-lr-zero": (VALID + "unit_lr = { fc = 0 }\n", ["unit_lr", "fc = 0", "0 < lr <= 10"]),
    "warmup-too-long": (VALID + "epochs = 2\nwarmup_epochs = 2\n", ["warmup_epochs = 2", "less than epochs (2)"]),
    "reference-acc": (VALID + "reference_acc = 101\n", ["reference_acc = 101", "0 <= reference_acc <= 100"]),
    "unknown-key": (VALID + "epoch = 5\n", [ENTRY, "epoch = 5", "did you mean 'epochs'?"]),
    "unknown-key-in-defaults": (
        "[defaults]\nbatchsize = 3\n" + VALID.removeprefix("[defaults]\n"),
        ["[defaults]", "batchsize = 3", "did you mean 'batch_size'?"],
    ),
    "unknown-top-level": (
        '[defautls]\nlr = 0.1\n\n[[experiment]]\nname = "e"\n',
        ["'defautls'", "did you mean 'defaults'?"],
    ),
    "top-level-setting": ('epochs = 3\n[[experiment]]\nname = "e"\n', ["'epochs'", "under [defaults]"]),
    "single-bracket-experiment": ('[experiment]\nname = "e"\n', ["[[experiment]] (double brackets)"]),
    "unknown-unit": (
        VALID + 'trainable = ["layr1", "fc"]\n',
        ["'layr1'", "did you mean 'layer1'?", ", ".join(RESNET18_UNITS)],
    ),
    "no-unit-trains": (VALID + "trainable = []\n", ["trainable = []", "no layer unit would train"]),
    "unknown-unit-lr": (
        VALID + "unit_lr = { fcc = 0.1 }\n",
        ["unit_lr = { fcc = 0.1 }", "'fcc'", "did you mean 'fc'?"],
    ),
    "unknown-model": (VALID + 'model = "resnet81"\n', ['model = "resnet81"', "did you mean 'resnet18'"]),
    "unknown-weights": (VALID + 'weights = "IMAGENET1K"\n', ['weights = "IMAGENET1K"', "IMAGENET1K_V1", "DEFAULT"]),
    "weights-case": (VALID + 'weights = "default"\n', ['weights = "default"', "did you mean 'DEFAULT'?"]),
    "cifar-stem-on-vgg": (
        VALID + 'model = "vgg16"\ncifar_stem = true\n',
        ["cifar_stem = true", "ResNet-style", "vgg16"],
    ),
    "vit-small-input": (
        VALID + 'model = "vit_b_16"\ninput_size = 32\n',
        ["input_size = 32", "224x224", "set input_size = 224"],
    ),
    "unknown-dataset": (
        VALID + 'dataset = "cifar100"\n',
        ['dataset = "cifar100"', "cifar10-sample", "did you mean 'cifar10'?"],
    ),
    "unknown-optimizer": (VALID + 'optimizer = "adamW2"\n', ['optimizer = "adamW2"', "did you mean 'adamw'?"]),
    "unknown-scheduler": (VALID + 'scheduler = "cosin"\n', ['scheduler = "cosin"', "did you mean 'cosine'?"]),
    "unknown-normalize": (VALID + 'normalize = "imagenette"\n', ['normalize = "imagenette"', "imagenet"]),
    "unknown-frozen-bn": (VALID + 'frozen_bn = "frozen"\n', ['frozen_bn = "frozen"', "update, freeze"]),
    "unknown-precision": (VALID + 'precision = "fp16"\n', ['precision = "fp16"', "allowed: auto, bf16, float32"]),
    "unknown-device": (VALID + 'device = "gpu"\n', ['device = "gpu"', "cuda:N"]),
    "device-index": (VALID + 'device = "cuda:x"\n', ['device = "cuda:x"', "cuda:N"]),
    "duplicate-names": (VALID + '\n[[experiment]]\nname = "e"\n', ['experiment "e" (entry 2)', "duplicate", "entry 1"]),
    "empty-catalog": ("[defaults]\nlr = 0.1\n", ["no experiments"]),
    "missing-name": (
        '[defaults]\ntrainable = "all"\n[[experiment]]\nlr = 0.1\n',
        ["experiment entry 1", "name: missing"],
    ),
    "name-in-defaults": (
        '[defaults]\nname = "d"\ntrainable = "all"\n[[experiment]]\nname = "e"\n',
        ["[defaults]", 'name = "d"'],
    ),
    "name-dotdot": (VALID.replace('"e"', '"../x"'), ['name = "../x"', "not a valid name"]),
    "name-absolute": (VALID.replace('"e"', '"/etc/x"'), ['name = "/etc/x"', "not a valid name"]),
    "name-space": (VALID.replace('"e"', '"a b"'), ['name = "a b"', "not a valid name"]),
    "name-empty": (VALID.replace('"e"', '""'), ['name = ""', "not a valid name"]),
    "name-not-string": (VALID.replace('"e"', "5"), ["name = 5", "a string"]),
    "imagefolder-without-data-dir": (VALID + 'dataset = "imagefolder"\n', ['data_dir = ""', "imagefolder"]),
}


@pytest.mark.parametrize("text, expected", list(BROKEN.values()), ids=list(BROKEN))
def test_broken_catalog_is_explained(tmp_path, text, expected):
    path = write(tmp_path, text)
    message = error_of(path)
    assert str(path) in message
    for part in expected:
        assert part.lower() in message.lower(), f"{part!r} not in:\n{message}"


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.toml"
    assert error_of(path) == f"Catalog file {path} does not exist."


def test_every_problem_in_the_file_is_reported(tmp_path):
    path = write(
        tmp_path,
        (
            '[defaults]\ntrainable = "all"\nlr = 0\n'
            '[[experiment]]\nname = "a"\nepochs = "ten"\noptimiser = "sgd"\n'
            '[[experiment]]\nname = "b"\nmodel = "vgg16"\ncifar_stem = true\n'
            '[[experiment]]\nname = "a"\nbatch_size = 0\n'
        ),
    )
    lines = error_of(path).splitlines()
    expected = [
        "[defaults]: lr = 0",
        'experiment "a" (entry 1): epochs = "ten"',
        'experiment "a" (entry 1): optimiser = "sgd"',
        'experiment "b" (entry 2): cifar_stem = true',
        'experiment "a" (entry 3): batch_size = 0',
        'experiment "a" (entry 3): name = "a": duplicate',
    ]
    assert len(lines) == len(expected)
    for line, part in zip(lines, expected, strict=True):
        assert line.startswith(f"{path}: ") and part in line
    # the bad default is reported once, not once per entry that inherits it
    assert sum("lr = 0" in line for line in lines) == 1


def test_problem_from_an_inherited_value_says_so(tmp_path):
    path = write(tmp_path, '[defaults]\ntrainable = ["layer4", "fc"]\n[[experiment]]\nname = "v"\nmodel = "vgg16"\n')
    assert "'layer4' is not a layer unit of vgg16" in error_of(path)
    assert "(inherited from [defaults])" in error_of(path)


def test_paths_resolve_against_the_catalog_folder(tmp_path, monkeypatch):
    path = write(tmp_path, VALID + 'weights = "init/w.pth"\ndataset = "imagefolder"\ndata_dir = "../images"\n')
    monkeypatch.chdir(Path(__file__).parent)
    exp = load_catalog(path).get("e")
    assert exp.weights == str(tmp_path / "init" / "w.pth")  # not checked for existence here
    assert exp.data_dir == str(tmp_path.parent / "images")


def test_list_trainable_is_deduplicated_in_unit_order(tmp_path):
    exp = load_catalog(write(tmp_path, VALID + 'trainable = ["fc", "layer4", "fc"]\n')).get("e")
    assert exp.trainable == ("layer4", "fc")


# --- experiment_from_dict: stored experiment JSON --------------------------------------------


def test_stored_json_revalidates_to_the_same_experiment(shipped):
    exp = shipped.get("resnet18-fft-lr")
    assert experiment_from_dict(json.loads(json.dumps(exp.to_dict())), "run.json") == exp
    scratch = dataclasses.replace(shipped.get("quickstart"), reference_acc=None)
    assert experiment_from_dict(json.loads(json.dumps(scratch.to_dict())), "run.json") == scratch


def test_stored_json_problems_are_prefixed(shipped):
    data = shipped.get("resnet18-fft").to_dict() | {"lr": 0, "trainable": ["layr4"]}
    with pytest.raises(CatalogError) as info:
        experiment_from_dict(data, "runs/x/experiment.json")
    lines = str(info.value).splitlines()
    assert len(lines) == 2 and all(line.startswith("runs/x/experiment.json: ") for line in lines)


# --- save_experiment ---------------------------------------------------------------------------


@pytest.fixture
def copy(tmp_path):
    path = tmp_path / "experiments.toml"
    shutil.copyfile(SHIPPED, path)
    return path


def new_entry(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))["experiment"][-1]


def test_save_appends_only_what_differs(copy):
    base = load_catalog(copy).get("resnet18-fft")
    exp = dataclasses.replace(
        base, name="mine", description="", reference_acc=None, lr=0.02, trainable=("layer4", "fc"), unit_lr={"fc": 0.05}
    )
    original = copy.read_text(encoding="utf-8")
    os.chmod(copy, 0o640)
    save_experiment(copy, exp)
    text = copy.read_text(encoding="utf-8")
    assert text.startswith(original)
    assert all(line in text.splitlines() for line in original.splitlines() if line.lstrip().startswith("#"))
    assert new_entry(copy) == {
        "name": "mine",
        "description": "",
        "trainable": ["layer4", "fc"],
        "lr": 0.02,
        "unit_lr": {"fc": 0.05},
    }
    assert load_catalog(copy).get("mine") == exp
    assert os.stat(copy).st_mode & 0o777 == 0o640


def test_save_round_trips_a_different_model_and_local_weights(copy, tmp_path):
    vgg = load_catalog(copy).get("vgg16-fft")
    exp = dataclasses.replace(vgg, name="vgg-local", weights=str(tmp_path / "w.safetensors"), epochs=5, nesterov=True)
    save_experiment(copy, exp)
    assert load_catalog(copy).get("vgg-local") == exp
    written = new_entry(copy)
    assert written["model"] == "vgg16" and written["cifar_stem"] is False and "trainable" not in written


def test_a_catalog_saved_on_windows_loads_and_keeps_its_bom_and_crlf(copy):
    # Notepad's "UTF-8 with BOM" and CRLF line endings: it must load, and a saved entry must not change the rest.
    original = b"\xef\xbb\xbf" + copy.read_bytes().replace(b"\n", b"\r\n")
    copy.write_bytes(original)
    catalog = load_catalog(copy)
    assert catalog.names[0] == "quickstart"
    save_experiment(copy, dataclasses.replace(catalog.get("resnet18-fft"), name="mine", reference_acc=None, lr=0.02))
    saved = copy.read_bytes()
    assert saved.startswith(original) and saved.count(b"\n") == saved.count(b"\r\n")
    assert load_catalog(copy).get("mine").lr == 0.02


def test_an_entry_that_does_not_say_trains_every_unit(tmp_path):
    path = write(tmp_path, '[[experiment]]\nname = "a"\n')
    assert load_catalog(path).get("a").trainable == RESNET18_UNITS


def test_save_writes_all_when_every_unit_trains(tmp_path):
    path = write(tmp_path, '# my catalog\n[defaults]\ntrainable = ["fc"]\n[[experiment]]\nname = "a"\n')
    exp = dataclasses.replace(load_catalog(path).get("a"), name="b", trainable=RESNET18_UNITS)
    save_experiment(path, exp)
    assert new_entry(path)["trainable"] == "all"
    assert load_catalog(path).get("b") == exp


@pytest.mark.parametrize(
    "change, message",
    [
        ({"name": "quickstart"}, "already has an experiment named 'quickstart'"),
        ({"name": "../escape"}, 'name = "../escape"'),
        ({"lr": 0.0}, "0 < lr <= 10"),
        ({"trainable": ("layr4",)}, "did you mean 'layer4'?"),
    ],
    ids=["duplicate", "bad-name", "bad-lr", "bad-unit"],
)
def test_save_refuses_and_leaves_the_file_untouched(copy, change, message):
    before = copy.read_bytes()
    exp = dataclasses.replace(load_catalog(copy).get("resnet18-fft"), **({"name": "fresh"} | change))
    with pytest.raises(CatalogError, match=message):
        save_experiment(copy, exp)
    assert copy.read_bytes() == before
    assert os.listdir(copy.parent) == ["experiments.toml"]


def test_save_failing_midway_leaves_the_file_untouched(copy, monkeypatch):
    before = copy.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)  # the atomic writer's rename
    exp = dataclasses.replace(load_catalog(copy).get("resnet18-fft"), name="fresh")
    with pytest.raises(CatalogError, match=r"Cannot write .*disk full"):
        save_experiment(copy, exp)
    assert copy.read_bytes() == before
    assert os.listdir(copy.parent) == ["experiments.toml"]
