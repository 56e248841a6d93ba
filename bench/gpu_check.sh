#!/usr/bin/env bash
# ftui's GPU check from a bare machine, in one command from the repository root:
#
#   bash bench/gpu_check.sh [--out DIR] [--dry-run] [--sections tests,throughput,workbench,finetune]
#
# DIR defaults to $OUT. It finds a Python with torch (the virtual environment python3 runs in, as on
# the device tool's GPU machine; else ./.venv, made if need be) and, if any of ftui's dependencies is
# missing or too old there, installs ftui with `pip install -e '.[dev]'`. Offline, where .whl/ holds
# wheels (bench/gpu_wheels.sh), it installs each missing dependency from them instead, and ftui runs
# from this checkout. Then it runs bench/gpu_check.py with the arguments given.
set -u
cd "$(dirname "$0")/.." || exit 2
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

py=python3
if ! "$py" -c 'import importlib.util as u, sys; sys.exit(sys.prefix == sys.base_prefix or not u.find_spec("torch"))' 2>/dev/null; then
    # --system-site-packages: a torch installed with the system's Python (and its CUDA build) stays in sight.
    [ -x .venv/bin/python ] || python3 -m venv --system-site-packages .venv || exit 2
    py=.venv/bin/python
fi

# pyproject.toml's dependencies, and pytest, that are not installed in a version they accept.
missing=$("$py" - <<'PY'
import importlib.metadata as metadata
import tomllib

wanted = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"] + ["pytest"]
try:
    from packaging.requirements import Requirement
except ImportError:  # nothing to compare versions with: ask for all of them
    print(" ".join(wanted))
    raise SystemExit
for text in wanted:
    requirement = Requirement(text)
    try:
        ok = requirement.specifier.contains(metadata.version(requirement.name), prereleases=True)
    except metadata.PackageNotFoundError:
        ok = False
    if not ok:
        print(text)
PY
)
if [ -n "$missing" ] && [ -d .whl ]; then
    for requirement in $missing; do
        "$py" -m pip install -q --no-index --find-links .whl "$requirement" ||
            echo "gpu_check.sh: could not install $requirement from .whl; the sections say what it breaks" >&2
    done
elif [ -n "$missing" ]; then
    "$py" -m pip install -q -e '.[dev]' ||
        echo "gpu_check.sh: installing ftui failed; the check goes on and its sections say what is missing" >&2
fi
echo "gpu_check.sh: running the check with $py" >&2
exec "$py" bench/gpu_check.py "$@"
