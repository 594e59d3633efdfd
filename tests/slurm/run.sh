#!/usr/bin/env bash
# make test-slurm: start a throw-away single-node SLURM cluster, run the slurm tests against it, and stop
# every daemon again, whether the tests pass or not. Needs root (daemons, apt-get for the packages).
set -uo pipefail
cd "$(dirname "$0")/../.."
here=tests/slurm/cluster.sh
trap 'bash "$here" stop' EXIT
bash "$here" start || exit 1
eval "$(bash "$here" env)"
.venv/bin/python -m pytest -m slurm tests/test_slurm.py "$@"
