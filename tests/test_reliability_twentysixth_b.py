"""Found by the twenty-third hostile pass on files and commands (F2), fixed by the twenty-sixth look: a model too
large for the machine's memory.

``genzoo train vae --latent 10000000`` (48 GB of weights on a 24 GB machine) filled memory for minutes while torch
initialised the weights, until the kernel's out-of-memory killer ended it, exit 137 and no word. The weights are now
counted on torch's meta device before the model is built, and a model whose weights (and the copy genzoo's guard of
plugin calls holds) need more memory than the machine has free is one line, before any run folder. An allocator's
failure elsewhere (a checkpoint read, a copy of the weights; twenty-fourth hostile pass, files F2, F3 and M2) is one
line too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reliability_support import assert_one_line_error, data_root, run_main  # noqa: F401 - data_root is a fixture

from genzoo import hookimpl
from genzoo.memory import available_bytes, shown_bytes, weights_bytes
from genzoo.model import Model, ModelConfig

HUGE = ["--latent", "10000000"]


@pytest.mark.parametrize("command", [["train", "vae"], ["compare", "vae", "ae"]])
def test_a_model_too_large_for_memory_is_one_line_before_any_folder(data_root, tmp_path, capsys, command) -> None:  # noqa: F811
    """Before: minutes of filling memory, then exit 137 (killed by the kernel) with no word."""
    out = tmp_path / "out"
    code, _, err = run_main([*command, *HUGE, "--epochs", "1", "--device", "cpu", "--data-root", str(data_root),
                             "--out", str(out)], capsys)
    line = assert_one_line_error(code, err, "model 'vae' from plugin 'vae'", "GB of weights, and genzoo holds a "
                                 "second copy of them while it checks the model's calls", "of memory this machine has "
                                 "free")
    # 784*400 + 2*(400*10**7) + 10**7*400 + 400*784 weights and their biases, float32; twice that
    assert "has 48.1 GB of weights" in line and ": 96.2 GB, more than the" in line
    assert not out.exists()


def test_the_free_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683584 kB\nMemFree:  100 kB\nMemAvailable:   2000 kB\nSwapTotal: 0 kB\n"
                       "SwapFree:        48 kB\n")
    assert available_bytes(meminfo) == 2048 * 1024
    meminfo.write_text("MemTotal: 24683584 kB\n")  # no MemAvailable (a kernel older than 3.14)
    assert available_bytes(meminfo) is None
    assert available_bytes(tmp_path / "missing") is None


def test_weights_are_counted_without_memory_and_without_drawing() -> None:
    state = torch.get_rng_state()
    counted = weights_bytes(lambda: torch.nn.Sequential(torch.nn.Linear(10**6, 10**5), torch.nn.BatchNorm1d(10**5)))
    assert counted == 4 * (10**11 + 10**5 + 4 * 10**5) + 8  # weights, bias, BatchNorm's 4 vectors, its int64 count
    assert torch.equal(torch.get_rng_state(), state)
    assert shown_bytes(counted) == "400.0 GB"


class ReadsAValue(Model):
    """A model whose ``__init__`` reads a value of a tensor it made: it cannot be built on the meta device."""

    Config = ModelConfig

    def __init__(self, config: ModelConfig, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.scale = float(torch.ones(1).item())
        self.net = torch.nn.Linear(784, 2)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": self.net(x.flatten(1)).pow(2).mean(1) * self.scale}


class ReadsAValuePlugin:
    @hookimpl
    def register_models(self, register):  # type: ignore[no-untyped-def]
        register("reads-a-value26", ReadsAValue)


def test_a_model_that_cannot_be_counted_on_the_meta_device_is_built_as_before(genzoo_register) -> None:
    from genzoo import get_model

    assert weights_bytes(lambda: ReadsAValue(ModelConfig(), (1, 28, 28))) is None
    genzoo_register(ReadsAValuePlugin(), "reads-a-value26")
    model = get_model("reads-a-value26")
    assert model.scale == 1.0 and model.net.weight.device.type == "cpu"


def test_a_model_that_fits_once_but_not_twice_is_refused_before_it_is_built(data_root, tmp_path, capsys,  # noqa: F811
                                                                           monkeypatch) -> None:
    """Files F2 of the twenty-fourth pass. Before: a model whose weights fit in the free memory once but not twice
    built, then the guard's copy of its weights failed: a 48-line ``can't allocate memory`` traceback (the kernel's
    OOM killer, exit 137, where memory is overcommitted)."""
    from genzoo import memory

    weights = 4 * (784 * 400 + 400 + 2 * (400 * 2 + 2) + 2 * 400 + 400 + 400 * 784 + 784)  # the VAE at latent 2
    monkeypatch.setattr(memory, "available_bytes", lambda: int(1.5 * weights))
    code, _, err = run_main(["train", "vae", "--latent", "2", "--epochs", "1", "--device", "cpu", "--data-root",
                             str(data_root), "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, "and genzoo holds a second copy of them while it checks the model's calls")
    assert not (tmp_path / "out").exists()


def test_an_allocators_failure_in_genzoos_own_code_is_one_line(data_root, tmp_path, capsys, monkeypatch) -> None:  # noqa: F811
    """Files F2 and F3 of the twenty-fourth pass: the guard's copy of the weights, or a checkpoint's read, failing
    to allocate. Before: a 40- to 121-line traceback ending ``RuntimeError: [enforce fail at alloc_cpu.cpp:127]
    ... DefaultCPUAllocator: can't allocate memory: you tried to allocate 160000000 bytes``."""
    from genzoo import sampler

    def no_memory(name: str, tensor: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 160000000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(sampler, "_copy", no_memory)
    code, _, err = run_main(["train", "vae", "--latent", "2", "--epochs", "1", "--device", "cpu", "--data-root",
                             str(data_root), "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, "out of memory (you tried to allocate 160000000 bytes): this machine (or this "
                                     "process's limit) has not enough free memory for it")


def test_a_checkpoint_the_machine_cannot_hold_is_not_called_damaged(data_root, tmp_path, capsys, monkeypatch) -> None:  # noqa: F811
    """Files M2 of the twenty-fourth pass. Before: ``Error: RUN/checkpoint.pt is truncated or not a checkpoint
    (RuntimeError)``: advice to delete the run's only record of its training."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--latent", "2", "--epochs", "1", "--train-limit", "64", "--test-limit",
                             "20", "--batch-size", "16", "--device", "cpu", "--data-root", str(data_root), "--out",
                             str(run)], capsys)
    assert code == 0, err

    def no_memory(*args: object, **kwargs: object) -> None:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 48000000 bytes.")

    monkeypatch.setattr(torch, "load", no_memory)
    code, _, err = run_main(["eval", str(run), "--test-limit", "20", "--fid-samples", "0"], capsys)
    line = assert_one_line_error(code, err, f"{run / 'checkpoint.pt'}: out of memory (you tried to allocate "
                                            "48000000 bytes)")
    assert "truncated" not in line


def test_memory_running_out_in_the_rebuild_check_is_said_as_memory(genzoo_register, data_root, tmp_path, capsys,  # noqa: F811
                                                                   monkeypatch) -> None:
    """Files M1 of the twenty-fourth pass. Before: ``Error: a second ConvVAE cannot be built from the config the
    first was built with (RuntimeError: ... can't allocate memory ...) ...; ConvVAE.__init__ must leave the config
    it is given as it is``: the built-in model blamed for the machine's memory."""
    from genzoo_plugins.vae.model import VAE

    built = [0]

    class SecondFails(VAE):
        def __init__(self, *args: object) -> None:
            built[0] += 1
            if built[0] == 3:  # the real build, then the meta count comes first; the third is the check's twin
                raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 33554432 bytes.")
            super().__init__(*args)  # type: ignore[arg-type]

    class Plugin:
        @hookimpl
        def register_models(self, register):  # type: ignore[no-untyped-def]
            register("secondfails26", SecondFails)

    genzoo_register(Plugin(), "secondfails26")
    code, _, err = run_main(["train", "secondfails26", "--latent", "2", "--epochs", "1", "--device", "cpu",
                             "--data-root", str(data_root), "--out", str(tmp_path / "out")], capsys)
    line = assert_one_line_error(code, err, "a second SecondFails, which genzoo builds to check that a load gives the "
                                            "same model: out of memory (you tried to allocate 33554432 bytes)")
    assert "__init__ must leave" not in line
