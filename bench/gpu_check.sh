#!/usr/bin/env bash
# ftui's GPU check from a bare machine, in one command from the repository root:
#
#   bash bench/gpu_check.sh [--out DIR] [--dry-run] [--sections tests,throughput,workbench,finetune]
#
# DIR defaults to $OUT. It finds a Python with torch (the virtual environment python3 runs in, as on
# the device tool's GPU machine; else ./.venv, made if need be), installs ftui into it with
# `pip install -e '.[dev]'` if ftui's dependencies are missing (offline from .whl/ when that folder
# is there, which bench/gpu_wheels.sh fills), then runs bench/gpu_check.py with the arguments given.
set -u
cd "$(dirname "$0")/.." || exit 2
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

py=python3
if ! "$py" -c 'import importlib.util as u, sys; sys.exit(sys.prefix == sys.base_prefix or not u.find_spec("torch"))' 2>/dev/null; then
    # --system-site-packages: a torch installed with the system's Python (and its CUDA build) stays in sight.
    [ -x .venv/bin/python ] || python3 -m venv --system-site-packages .venv || exit 2
    py=.venv/bin/python
fi

dependencies='import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))'
needed='torch torchvision safetensors numpy PIL rich tomlkit textual textual_plotext plotext pytest'
if ! "$py" -c "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, sys.argv[1:])))" $needed; then
    if [ -d .whl ]; then
        # Offline, from the wheels: ftui's dependencies, not the linters of .[dev], which the check does not
        # use. Where the editable install cannot be built, the dependencies alone: ftui runs from here.
        "$py" -m pip install -q --no-index --find-links .whl --no-build-isolation -e . ||
            "$py" -m pip install -q --no-index --find-links .whl $("$py" -c "$dependencies")
    else
        "$py" -m pip install -q -e '.[dev]'
    fi || echo "gpu_check.sh: installing ftui failed; the check goes on and its sections say what is missing" >&2
fi
echo "gpu_check.sh: running the check with $py" >&2
exec "$py" bench/gpu_check.py "$@"
