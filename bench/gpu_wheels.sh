#!/usr/bin/env bash
# The wheels bench/gpu_check.sh installs from on a GPU machine that reaches no package index (the
# device tool's H200, Python 3.12): ftui's dependencies with theirs, less those its image has (torch and
# torchvision in their CUDA builds, safetensors, numpy, pillow, peft). Run it once here, from anywhere;
# PYTHON picks the interpreter (default .venv/bin/python).
#
#   bash bench/gpu_wheels.sh        then: run(command="bash bench/gpu_check.sh", carry=[".whl"])
#
# They go to .whl/ (ignored by git: it travels only when named in carry), about 3 MB.
set -eu
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
deps=$("$python" -c '
import re, tomllib
image_has = {"torch", "torchvision", "safetensors", "numpy", "pillow", "peft"}
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(" ".join(d for d in deps if re.split("[<>=!~ ;\\[]", d)[0] not in image_has))')
"$python" -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform any -d .whl $deps
ls .whl
