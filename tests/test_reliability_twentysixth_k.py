"""Files F4 of the twenty-fourth hostile pass, fixed by the twenty-sixth look: a CPU-time limit.

A soft CPU-time limit (``ulimit -t``, a batch scheduler's ``cput``) sends SIGXCPU so that a process can save its work
before the hard limit's SIGKILL. Its default action ended training at once with no word, exit 152, the steps since
the last checkpoint lost. genzoo now takes it as it takes SIGTERM: the step finishes, the checkpoint is written, the
``Interrupted:`` line gives the resume command, exit 152; SIGXCPU sent again each second past the soft limit is no
second request to stop at once. The test failed before its fix.
"""

from __future__ import annotations

import resource
import subprocess
import sys

from reliability_support import data_root, subprocess_env  # noqa: F401 - data_root is a fixture

from genzoo.checkpoint import load_checkpoint


def test_a_soft_cpu_time_limit_checkpoints_and_says_how_to_resume(data_root, tmp_path) -> None:  # noqa: F811
    """Before: exit 152 (killed by SIGXCPU), nothing on standard error."""
    run = tmp_path / "run"

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (12, 120))  # seconds of CPU: imports take a few

    done = subprocess.run(
        [sys.executable, "-m", "genzoo", "train", "vae", "--epochs", "200", "--train-limit", "2000", "--test-limit",
         "20", "--batch-size", "16", "--device", "cpu", "--data-root", str(data_root), "--out", str(run)],
        env=subprocess_env(), capture_output=True, text=True, timeout=300, preexec_fn=limited)
    assert done.returncode == 152, done.stderr[-4000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"Interrupted: checkpoint saved to {run / 'checkpoint.pt'}; resume with: genzoo resume {run}"), \
        done.stderr[-4000:]
    assert load_checkpoint(run / "checkpoint.pt")["position"]["global_step"] > 0
