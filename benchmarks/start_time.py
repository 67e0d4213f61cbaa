"""Seconds a tiny training process takes, beside torch's own import and torch's optimiser import.

    python benchmarks/start_time.py                      # 7 interleaved rounds, medians
    python benchmarks/start_time.py --rounds 3 --json benchmarks/results/cpu-start.json

Issue 15's fast start: ``genzoo train vae --epochs 1 --train-limit 100 --test-limit 100``
is almost all overhead (start-up, plugins, data, the checks before a run, evaluation,
pictures), so its time over ``python -c "import torch"`` is what genzoo adds to torch.
A torch.optim optimiser imports ``torch._dynamo`` on its first use (torch wraps its methods
in ``torch._disable_dynamo``), about a second that every training process with a torch
optimiser pays, pythae's too; the second floor, ``import torch`` plus one ``Adam`` and one
step, shows it apart. Each round runs the three commands one after the other, so load from
other processes hits all alike; rounds alternate their order.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.options import at_least  # noqa: E402 - after the path is set

TORCH = [sys.executable, "-c", "import torch"]
OPTIMISER = [sys.executable, "-c", "import torch; p = torch.nn.Parameter(torch.zeros(1)); o = torch.optim.Adam([p]); "
             "p.sum().backward(); o.step()"]
TRAIN = ["train", "vae", "--epochs", "1", "--train-limit", "100", "--test-limit", "100", "--device", "cpu"]


def timed(command: list[str]) -> float:
    """Wall seconds of ``command``, run in the current folder (a ``./data`` there is found as genzoo finds it);
    a failure ends the benchmark with its output."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"start_time: {' '.join(command)} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def measure(rounds: int) -> dict[str, Any]:
    from benchmarks.common import genzoo_command

    seconds: dict[str, list[float]] = {"torch": [], "torch_optimiser": [], "genzoo_train": []}
    with tempfile.TemporaryDirectory(prefix="genzoo-start-") as folder:
        for i in range(rounds + 1):  # the first round warms the file cache; it is not kept
            commands = {"torch": TORCH, "torch_optimiser": OPTIMISER,
                        "genzoo_train": genzoo_command(*TRAIN, "--out", os.path.join(folder, f"run{i}"))}
            order = list(commands) if i % 2 else list(reversed(commands))
            for name in order:
                value = timed(commands[name])
                if i:
                    seconds[name].append(value)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    return {"seconds": seconds, "median_s": median,
            "over_torch_s": median["genzoo_train"] - median["torch"],
            "over_torch_optimiser_s": median["genzoo_train"] - median["torch_optimiser"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=at_least(1), default=7, help="timed rounds (at least 1), after one unkept")
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    import torch

    from benchmarks.common import environment, load_average

    before = load_average()
    result = measure(args.rounds)
    median = result["median_s"]
    loads = [before, load_average()]
    doc: dict[str, Any] = {"environment": {**environment(torch.device("cpu")), "mode": f"{args.rounds} rounds",
                                           "load_average_1min": loads},
           "datetime": datetime.now(timezone.utc).isoformat(), "command": "genzoo " + " ".join(TRAIN),
           "start": result}
    print(f"medians of {args.rounds} rounds: import torch {median['torch']:.2f} s; torch + Adam step "
          f"{median['torch_optimiser']:.2f} s; {doc['command']} {median['genzoo_train']:.2f} s "
          f"({result['over_torch_s']:.2f} s over torch's import, {result['over_torch_optimiser_s']:.2f} s over "
          f"torch and its optimiser's); 1-min load average {loads[0]} before, {loads[1]} after")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
