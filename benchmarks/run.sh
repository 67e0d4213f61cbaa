#!/usr/bin/env bash
# Re-measure on this machine and rebuild docs/benchmarks.md, in one command:
#   bash benchmarks/run.sh [NAME]        # NAME: results file stem, default "cpu" (use e.g. "gpu-h100" on a GPU)
# 1. the default benchmark suite  -> benchmarks/results/NAME.json          (~10 min on 2 CPU cores)
# 2. issue 2's per-epoch script    -> benchmarks/results/NAME-epochs.json   (5 epochs, ~2-3 min)
# 3. the Inception feature pass, before and after -> benchmarks/results/NAME-inception.json (~3-5 min)
# 4. seconds per epoch by step kind (eager, fused, compiled, floor, limit, pythae when installed) and whole
#    5-epoch processes, genzoo's and pythae's (benchmarks/pythae_vae.py) -> benchmarks/results/NAME-steps.json (~20 min)
# 5. a tiny training process beside torch's import (the fast start) -> benchmarks/results/NAME-start.json (~2 min)
# 6. the report from every JSON in benchmarks/results/ -> docs/benchmarks.md
# Run it on a quiet machine: other processes on the same cores distort every timing.
set -euo pipefail
cd "$(dirname "$0")/.."

name="${1:-cpu}"
python="${PYTHON:-python}"
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then python=.venv/bin/python; fi
if [ -z "${GENZOO_DATA:-}" ] && [ -d ../shared/data ]; then export GENZOO_DATA="$(cd ../shared/data && pwd)"; fi
if [ -z "${TORCH_HOME:-}" ] && [ -d ../shared/fid ]; then export TORCH_HOME="$(cd ../shared/fid && pwd)"; fi

mkdir -p benchmarks/results
"$python" -m pytest benchmarks --benchmark-only --benchmark-json="benchmarks/results/$name.json" -q
"$python" benchmarks/epoch_time.py --epochs 5 --json "benchmarks/results/$name-epochs.json"
"$python" benchmarks/inception_speed.py --json "benchmarks/results/$name-inception.json"
"$python" benchmarks/step_kinds.py --processes 3 --json "benchmarks/results/$name-steps.json"
"$python" benchmarks/start_time.py --json "benchmarks/results/$name-start.json"
"$python" benchmarks/report.py benchmarks/results/*.json -o docs/benchmarks.md
