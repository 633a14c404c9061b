#!/usr/bin/env bash
# The newcomer's path in the README ("Exercises, an autograder, ..."), timed: a fresh clone,
# a fresh venv, `pip install .`, then `minivae exercise list / start / check` on the stub.
# Usage: benchmarks/first_exercise.sh [REPO_OR_URL] [BRANCH]  -> one line of timings on stdout.
set -euo pipefail
repo=${1:-$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)}
branch=${2:-$(git -C "$repo" rev-parse --abbrev-ref HEAD 2>/dev/null || echo main)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/minivae" -b "$branch"
cd "$work/minivae"
unset PYTHONPATH
t0=$(date +%s.%N)
python3 -m venv .venv && . .venv/bin/activate
pip install -q . >/dev/null 2>&1
t1=$(date +%s.%N)
cd "$work"  # as a student would: outside the repository, so the installed package is used
minivae exercise list >/dev/null
minivae exercise start kl work/ >/dev/null
rc=0; minivae exercise check kl work/kl.py >check.out || rc=$?
t2=$(date +%s.%N)
minivae exercise check kl --solution >/dev/null
t3=$(date +%s.%N)
python3 - "$t0" "$t1" "$t2" "$t3" "$rc" <<'PY'
import json, os, platform, sys
t0, t1, t2, t3 = map(float, sys.argv[1:5])
print(json.dumps({"pip_install_s": round(t1 - t0, 1), "list_start_check_s": round(t2 - t1, 1),
                  "install_to_first_grade_s": round(t2 - t0, 1), "check_solution_s": round(t3 - t2, 1),
                  "stub_check_exit": int(sys.argv[5]), "cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0],
                  "python": platform.python_version()}))
PY
