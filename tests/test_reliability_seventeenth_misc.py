"""Found by the sixteenth look (fifteenth hostile pass): the benchmarks' ``genzoo`` children importing from the
current folder (F12), a ``metrics.jsonl`` trained past what genzoo reads back (F11), a malformed ``--device cuda:x``
(F7, a GPU simulated) and Triton's kernel cache taken unchecked by ``--compile`` (F15). Each test failed before its
fix (docs/reliability.md, "Found by the sixteenth look")."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import tempfile
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
    subprocess_env,
)

import genzoo
from genzoo import GenzooError, hookimpl
from genzoo.compile_cache import COMPILE_CACHE_ENV, private_compile_cache
from genzoo.files import MAX_JSON_BYTES
from genzoo.run_folder import METRICS, append_metrics

#: Where Triton keeps its kernels (``genzoo.compile_cache.TRITON_CACHE_ENV``).
TRITON_CACHE_ENV = "TRITON_CACHE_DIR"

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu"]

# -- F12: the benchmarks run genzoo without the current folder on the module path ----------------------------------

#: Modules a ``genzoo`` child imports (or looks for) first; each planted copy says so in a file and fails.
PLANTED = ("rich", "click", "torch", "numpy", "genzoo")


def plant(folder: Path) -> Path:
    """Python modules in ``folder`` that leave a mark in ``folder/ran`` when imported; the mark's path."""
    mark = folder / "ran"
    code = f"open({str(mark)!r}, 'a').write(__name__ + '\\n')\nraise ImportError('planted')\n"
    for name in PLANTED:
        if name == "genzoo":
            (folder / name).mkdir()
            (folder / name / "__init__.py").write_text(code)
        else:
            (folder / f"{name}.py").write_text(code)
    return mark


def test_the_benchmarks_genzoo_command_imports_nothing_from_the_current_folder(tmp_path: Path) -> None:
    from benchmarks.common import genzoo_command

    mark = plant(tmp_path)
    done = subprocess.run(genzoo_command("list"), cwd=tmp_path, capture_output=True, text=True,
                          env=subprocess_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "vae" in done.stdout and not mark.exists()


def test_the_leaderboard_runs_genzoo_without_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    """F12: ``leaderboard.py``'s children ran as ``python -m genzoo``: a ``rich.py`` where it was run from ran."""
    from test_leaderboard import load_script

    script = load_script()
    mark = plant(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    script.genzoo("list")  # a failed child would end in SystemExit
    assert not mark.exists(), mark.read_text()
    assert "vae" in capfd.readouterr().out  # the child's own output


def test_step_kinds_whole_processes_run_genzoo_without_the_current_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same for ``benchmarks/step_kinds.py``'s whole ``genzoo train`` processes (not run here: minutes each)."""
    from benchmarks import common, step_kinds

    commands: list[list[str]] = []

    def run(command: list[str], **_: Any) -> None:
        """A finished run's last metric line where the process was told to write its run."""
        commands.append(command)
        out = Path(command[command.index("--out") + 1])
        out.mkdir()
        (out / "metrics.jsonl").write_text('{"epoch": 5, "test_nelbo": 107.8}\n')

    monkeypatch.setattr(step_kinds.subprocess, "run", run)
    processes = step_kinds.whole_processes(1, pythae=False)
    assert len(commands) == 5
    assert processes["default"]["test_nelbo"] == [107.8]  # each run's final test -ELBO, read from its run
    for command in commands:
        assert command[:3] == common.genzoo_command() and command[3:5] == ["train", "vae"], command


# -- F11: a run's metric lines must fit in what genzoo reads back --------------------------------------------------

#: Many long statistic names: a metric line of about 600 kB, so about 110 epochs fill the 64 MiB genzoo reads.
NAMES = tuple(f"kl_of_latent_dimension_{i:03d}_" + "x" * 1000 for i in range(300))


class ManyStatsVAE(VAE):
    """Reports the KL of each latent dimension, many times over, as metrics of their own (the hostile pass's)."""

    loss_names = ("nelbo", "bce", "kl", *NAMES)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        stats = super().loss(x)
        post = self.posterior(x)
        kl = 0.5 * (post.mu ** 2 + post.logvar.exp() - 1 - post.logvar)
        for i, name in enumerate(NAMES):
            stats[name] = kl[:, i % kl.shape[1]]
        return stats


@hookimpl
def register_models(register: Any) -> None:
    register("manystats-vae", ManyStatsVAE)


@pytest.fixture
def many_stats(genzoo_register: Any) -> None:
    genzoo_register(types.SimpleNamespace(register_models=register_models), "seventeenth-misc",
                    "test-seventeenth-misc")


@pytest.mark.usefixtures("many_stats")
@pytest.mark.parametrize("command", [["train"], ["train", "--nproc", "2"], ["compare", "vae"]])
def test_a_run_whose_metric_lines_could_outgrow_what_genzoo_reads_is_refused_before_any_folder(
        command: list[str], data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """F11: 120 epochs of lines of ~600 kB trained to the end (exit 0); then eval, resume, export and sample called
    the 74 MB ``metrics.jsonl`` damaged. Refused before training, with the epochs that fit."""
    out = tmp_path / "out"
    extra = ["--fid-samples", "0"] if command[0] == "compare" else []
    code, _, err = run_main([*command, "manystats-vae", "--data-root", str(data_root), "--epochs", "120",
                             "--batch-size", "2", "--train-limit", "2", "--test-limit", "1", "--device", "cpu",
                             "--latent", "2", *extra, "--out", str(out)], capsys)
    keys = ["epoch", "step", "run", "train_seconds", "train_images_per_s", "eval_seconds",
            *(f"{split}_{name}" for split in ("train", "test") for name in ManyStatsVAE.loss_names)]
    line = 1 + sum(len(json.dumps(key)) + len(": , ") + (len(json.dumps("0" * 32)) if key == "run" else
                   len("-1.2345678901234567e-308")) for key in keys)  # run: the run_id naming the run
    assert_one_line_error(code, err, f"120 epochs of ManyStatsVAE, {len(keys)} values an epoch, could write a metrics.jsonl of "
                          f"up to {120 * line:,} bytes, more than the {MAX_JSON_BYTES:,} genzoo reads back: give "
                          f"--epochs {MAX_JSON_BYTES // line:,} or fewer")
    assert not out.exists()


def test_the_bound_of_a_metric_line_holds_for_the_longest_values(tmp_path: Path) -> None:
    """A value at its longest JSON (a negative subnormal float of 17 digits) takes the bound's room exactly."""
    from genzoo.run_folder import metric_line_bytes

    record = {"epoch": 1, "step": 10**18, "train_images_per_s": None, "train_loss": -1.2345678901234567e-308,
              "test_a_long_name_\u00e9": -2.2250738585072014e-308}
    append_metrics(tmp_path, record)
    assert (tmp_path / METRICS).stat().st_size <= metric_line_bytes(record)
    assert metric_line_bytes(["train_loss"]) == len('{"train_loss": -1.2345678901234567e-308}\n')


def test_a_line_that_would_take_metrics_past_what_genzoo_reads_is_not_written(tmp_path: Path) -> None:
    """What the bound before training did not foresee (statistics a model reports only later): the line that would
    make ``metrics.jsonl`` unreadable is refused, and the file stays as every reader takes it."""
    record = {"epoch": 1, "step": 1, "train_loss": 0.5}
    append_metrics(tmp_path, record)
    path = tmp_path / METRICS
    with path.open("r+b") as f:  # a file one short line from the limit, without writing 64 MiB
        f.seek(MAX_JSON_BYTES - 40)
        f.write(b"\n")
    with pytest.raises(GenzooError) as info:
        append_metrics(tmp_path, {**record, "epoch": 2, "step": 2})
    assert str(info.value).startswith(f"cannot append to {path}: its line of 43 bytes would take the file past "
                                      f"{MAX_JSON_BYTES:,} bytes, more than genzoo reads back, so nothing was written")
    assert path.stat().st_size == MAX_JSON_BYTES - 39


# -- F7: the form of a CUDA device is checked on every machine --------------------------------------------------------

@pytest.fixture
def a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with one CUDA GPU, as ``select_device`` asks it (simulated: what the hostile pass did)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize("gpu", [True, False])
@pytest.mark.parametrize("device", ["cuda:x", "cuda:", "cuda:0x", "cuda:1:2", "cuda:01", "cuda:-1", "cuda: 1",
                                    "cuda:\u0663", "cuda:10000000000"])
def test_a_malformed_cuda_device_is_one_line_on_any_machine(gpu: bool, device: str, data_root: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """F7: with a GPU, ``--device cuda:x`` was torch's ``RuntimeError: Invalid device string`` traceback."""
    if gpu:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    out = tmp_path / "out"
    code, _, err = run_main(["train", "vae", "--data-root", str(data_root), *TINY[:-2], "--device", device,
                             "--out", str(out)], capsys)
    assert_one_line_error(code, err, f"unknown device {device!r}; use auto, cpu or cuda (cuda:N for the GPU of "
                                     "index N)")
    assert not out.exists()
    with pytest.raises(GenzooError, match="^unknown device"):
        genzoo.load_model(tmp_path, device=device)


@pytest.mark.usefixtures("a_gpu")
@pytest.mark.parametrize("device", ["cuda:1", "cuda:200"])
@pytest.mark.parametrize("nproc", [[], ["--nproc", "2"]])
def test_a_gpu_the_machine_lacks_is_one_line_before_any_folder(device: str, nproc: list[str], data_root: Path,
                                                                tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """``cuda:200`` was taken (torch wraps it to ``cuda:-56``) and failed later inside torch; ``--nproc``'s launcher
    started its ranks first."""
    out = tmp_path / "out"
    code, _, err = run_main(["train", "vae", "--data-root", str(data_root), *TINY[:-2], "--device", device, *nproc,
                             "--out", str(out)], capsys)
    assert_one_line_error(code, err, f"--device {device}: this machine has 1 CUDA GPU (cuda:0); give one of those, "
                                     "or cuda")
    assert not out.exists()


@pytest.mark.usefixtures("a_gpu")
def test_a_well_formed_cuda_device_is_still_taken() -> None:
    from genzoo.building import select_device

    assert [select_device(name) for name in ("cuda", "cuda:0")] == [torch.device("cuda"), torch.device("cuda:0")]


# -- F15: Triton's kernel cache is checked as inductor's is ------------------------------------------------------------

@pytest.fixture
def own_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """genzoo's cache and torch's temporary folder in tmp_path; neither compile cache variable set."""
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(COMPILE_CACHE_ENV, raising=False)
    monkeypatch.delenv(TRITON_CACHE_ENV, raising=False)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path


@pytest.mark.parametrize("value", [None, ""])
def test_unset_triton_cache_is_kept_in_inductors_checked_folder(value: str | None, own_env: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, Triton took ``~/.triton/cache`` (``$TRITON_HOME``), unchecked; empty, the current folder."""
    from torch._inductor.runtime.cache_dir_utils import triton_cache_dir

    if value is not None:
        monkeypatch.setenv(TRITON_CACHE_ENV, value)
    path = private_compile_cache()
    assert os.environ[TRITON_CACHE_ENV] == str(path / "triton")
    assert triton_cache_dir(0) == str(path / "triton")  # where torch looks for and keeps Triton's kernels


@pytest.mark.parametrize("kind", ["open-folder", "open-file", "link-inside", "others-parent"])
def test_a_triton_cache_others_could_plant_kernels_in_is_refused(kind: str, own_env: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """F15: ``TRITON_CACHE_DIR`` a folder another user can write: torch loads the kernels cached there on CUDA."""
    folder = own_env / "triton"
    (folder / "ab").mkdir(parents=True, mode=0o700)
    folder.chmod(0o700)
    kernel = folder / "ab" / "kernel.cubin"
    kernel.write_bytes(b"\0")
    if kind == "open-folder":
        folder.chmod(0o777)
        needle = "can be written by others (mode 777)"
    elif kind == "open-file":
        kernel.chmod(0o666)
        needle = f"holds {kernel}, which others can write (mode 666)"
    elif kind == "link-inside":
        kernel.unlink()
        kernel.symlink_to(own_env / "elsewhere")
        needle = f"holds a link, {kernel}"
    else:
        shared = own_env / "shared"
        shared.mkdir()
        shared.chmod(0o777)  # no sticky bit: anyone could rename the cache away and put theirs
        folder = shared / "triton"
        needle = f"is in {shared}, which others can write (mode 777)"
    monkeypatch.setenv(TRITON_CACHE_ENV, str(folder))
    with pytest.raises(GenzooError) as info:
        private_compile_cache()
    assert str(info.value).startswith(f"--compile: Triton's kernel cache {TRITON_CACHE_ENV}={folder} {needle}; "), \
        str(info.value)
    assert str(info.value).endswith(f"point {TRITON_CACHE_ENV} at a new folder only you can write, or unset it for "
                                    "one in inductor's cache")


def test_a_private_triton_cache_is_taken_with_its_links_resolved(own_env: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (own_env / "real").mkdir(mode=0o700)
    (own_env / "link").symlink_to(own_env / "real")
    monkeypatch.setenv(TRITON_CACHE_ENV, str(own_env / "link"))
    private_compile_cache()
    assert os.environ[TRITON_CACHE_ENV] == str(own_env / "real")
    assert private_compile_cache() and os.environ[TRITON_CACHE_ENV] == str(own_env / "real")  # and again


def test_compile_with_an_open_triton_cache_is_one_line_and_no_folder(own_env: Path, data_root: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (own_env / "open").mkdir()
    (own_env / "open").chmod(0o777)
    monkeypatch.setenv(TRITON_CACHE_ENV, str(own_env / "open"))
    out = own_env / "run"
    code, _, err = run_main(["train", "vae", "--compile", "--data-root", str(data_root), *TINY, "--out", str(out)],
                            capsys)
    assert_one_line_error(code, err, f"--compile: Triton's kernel cache {TRITON_CACHE_ENV}={own_env / 'open'} can be "
                                     "written by others (mode 777)")
    assert not out.exists()
    assert not (own_env / "tmp" / f"torchinductor_{getpass.getuser()}" / "triton").exists()
