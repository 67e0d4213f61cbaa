"""Found by the twenty-second look (nineteenth hostile pass, F1-F3): tensors read from files that hold no data.

A weights-only load reads a ``meta`` tensor (a shape without data), a sparse or a nested one anywhere a tensor may
stand, and a tensor anywhere a plain value is expected. F1: a checkpoint whose numpy key or Python state is a meta
or sparse tensor of the right dtype and shape; F2: Inception weights holding a meta tensor; F3: a checkpoint whose
``version`` is a two-element, meta or 0-d tensor. Each reached a comparison or ``.item()`` on it: a traceback
(F3's ``tensor(1)`` was taken as version 1). Now every reader of tensors from files asks
``checks.data_problem`` first, and the checkpoint's header fields are checked by type. The sweep beside them:
optimiser settings and state without data or quantized, and numpy or Python stream states no run saves (all
zero, a NaN or infinite cached Gaussian), which resumed. Each test failed before its fix (docs/reliability.md,
"Found by the twenty-second look").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from reliability_support import (  # noqa: F401 - data_root, one_thread and steered are fixtures
    SteeredVAE,
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
    snapshot,
    steered,
)

from genzoo.checkpoint import FILENAME, check_optimizer_state, load_checkpoint, save_checkpoint
from genzoo.checks import all_finite, data_problem
from genzoo.errors import GenzooError
from genzoo.evaluation import weights

TINY = ["--batch-size", "20", "--device", "cpu", "--latent", "2", "--hidden", "16"]
EVAL = ["--test-limit", "20", "--iwae-k", "2", "--device", "cpu"]
META = "a meta tensor (shape without data)"


def edited(run: Path, change: Callable[[dict[str, Any]], Any]) -> Path:
    """``run`` with its checkpoint loaded weights-only, changed by ``change`` and saved again, as the report did."""
    state = load_checkpoint(run)
    change(state)
    save_checkpoint(run / FILENAME, state)
    return run


@pytest.fixture
def finished(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, _, err = run_main(["train", "vae", "--epochs", "1", *TINY, "--data-root", str(data_root),
                             "--out", str(tmp_path / "run")], capsys)
    assert code == 0, err
    return tmp_path / "run"


@pytest.fixture
def interrupted(steered: Any, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A two-epoch run stopped by a real SIGINT at step 3: a mid-epoch checkpoint with every RNG state."""
    SteeredVAE.steps, SteeredVAE.interrupt_at = 0, 3
    code, _, err = run_main(["train", "steered-vae", "--epochs", "2", *TINY, "--data-root", str(data_root),
                             "--out", str(tmp_path / "run")], capsys)
    SteeredVAE.interrupt_at = None
    assert code == 130, err
    return tmp_path / "run"


# -- the shared checks -------------------------------------------------------------------------------------


def test_data_problem_names_every_tensor_without_plain_data_and_takes_plain_ones() -> None:
    plain = torch.arange(6.0)
    assert data_problem(plain) is None and data_problem(plain.view(2, 3).t()) is None  # strides of its own
    assert data_problem(torch.empty(3, device="meta")) == META
    assert data_problem(plain.to_sparse()) == "a torch.sparse_coo tensor, not a plain (strided) one"
    assert data_problem(plain.view(2, 3).to_sparse_csr()) == "a torch.sparse_csr tensor, not a plain (strided) one"
    assert data_problem(plain.to_sparse(), torch.sparse_coo) is None  # a model's own sparse buffer
    nested = torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])
    assert data_problem(nested) == "a nested tensor, not a plain one"


def test_all_finite_says_false_for_a_meta_tensor_and_checks_sparse_and_nested_ones() -> None:
    """Before: ``Tensor.item() cannot be called on meta tensors``; a nested tensor was a dispatcher traceback."""
    assert all_finite(torch.empty(3, device="meta")) is False
    assert all_finite(torch.empty(3, dtype=torch.int64, device="meta")) is False
    nan = torch.tensor([1.0, float("nan")])
    assert all_finite(nan.to_sparse()) is False and all_finite(torch.ones(2).to_sparse()) is True
    assert all_finite(torch.nested.nested_tensor([torch.ones(2), nan])) is False
    assert all_finite(torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])) is True


# -- F1: numpy's key or Python's state without data ---------------------------------------------------------


def _rng(stream: str, field: str, make: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[dict[str, Any]], None]:
    def change(state: dict[str, Any]) -> None:
        state["rng"][stream][field] = make(state["rng"][stream][field])
    return change


RNG_EDITS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "numpy key meta": (_rng("numpy", "key", lambda k: torch.empty_like(k, device="meta")),
                       f"numpy's key is {META}, not 624 int64 words below 2**32"),
    "Python state meta": (_rng("python", "state", lambda s: torch.empty_like(s, device="meta")),
                          f"Python's state is {META}, not 625 int64 words below 2**32"),
    "numpy key sparse": (_rng("numpy", "key", lambda k: k.to_sparse()),
                         "numpy's key is a torch.sparse_coo tensor, not a plain (strided) one, not 624 int64 words"),
    "Python state sparse": (_rng("python", "state", lambda s: s.to_sparse()),
                            "Python's state is a torch.sparse_coo tensor"),
    "a GPU's state meta": (lambda state: state["rng"].__setitem__("cuda", [torch.empty(16, dtype=torch.uint8,
                                                                                       device="meta")]),
                           "has no usable RNG states (not plain byte tensors)"),
}


@pytest.mark.parametrize("name", list(RNG_EDITS))
def test_f1_an_rng_state_without_data_is_one_line_and_nothing_changes(name: str, interrupted: Path, data_root: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``Tensor.item() cannot be called on meta tensors`` (meta) or 136 lines ending ``Could not run
    'aten::ge.Scalar' ... 'SparseCPU' backend`` (sparse) from ``seeding._words``; a GPU's meta state resumed on
    the CPU (exit 0) and would fail in ``torch.cuda.set_rng_state_all`` on a GPU."""
    change, needle = RNG_EDITS[name]
    edited(interrupted, change)
    before = snapshot(interrupted)
    code, _, err = run_main(["resume", str(interrupted), "--data-root", str(data_root)], capsys)
    assert_one_line_error(code, err, f"{interrupted / FILENAME} has no usable RNG states", needle)
    assert snapshot(interrupted) == before


DEGENERATE_EDITS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "numpy key all zero": (_rng("numpy", "key", torch.zeros_like),
                           "numpy's key is the all-zero state of MT19937, which draws zeros for ever"),
    "Python state all zero": (_rng("python", "state", lambda s: torch.cat([torch.zeros(624, dtype=torch.int64),
                                                                          torch.tensor([624])])),
                              "Python's state is the all-zero state of MT19937"),
    "numpy gauss inf": (lambda state: state["rng"]["numpy"].update(has_gauss=1, gauss=float("inf")),
                        "numpy's has_gauss and gauss are 1 and inf, not 0 or 1 and a finite float"),
    "Python gauss_next nan": (_rng("python", "gauss_next", lambda _: float("nan")),
                              "Python's gauss_next is nan, not a finite float or None"),
}


@pytest.mark.parametrize("name", list(DEGENERATE_EDITS))
def test_sweep_an_rng_state_no_run_saves_is_refused_not_resumed(name: str, interrupted: Path, data_root: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Found beside F1 (the report's ``rng_variants.py``). Before: each resumed, exit 0, its numpy or Python draws
    all zeros, or its next Gaussian draw infinite or NaN: a run no uninterrupted run could be."""
    change, needle = DEGENERATE_EDITS[name]
    edited(interrupted, change)
    before = snapshot(interrupted)
    code, _, err = run_main(["resume", str(interrupted), "--data-root", str(data_root)], capsys)
    assert_one_line_error(code, err, f"{interrupted / FILENAME} has no usable RNG states", needle)
    assert snapshot(interrupted) == before


# -- F2: Inception weights without data ---------------------------------------------------------------------


@pytest.mark.parametrize("route", ["--inception-weights", "TORCH_HOME"])
def test_f2_inception_weights_holding_a_meta_tensor_are_one_line(route: str, finished: Path, data_root: Path,
                                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: 44-48 lines ending ``Tensor.item() cannot be called on meta tensors`` from ``checks.all_finite``
    (the NaN check of the weights); nothing written."""
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "torch" / "hub" / "checkpoints" / weights.INCEPTION_FILE
    path.parent.mkdir(parents=True)
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.empty(32, 3, 3, 3, device="meta"),
                "Conv2d_1a_3x3.bn.bias": torch.zeros(32)}, path)
    extra = ["--inception-weights", str(path)] if route != "TORCH_HOME" else []
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    before = snapshot(finished)
    code, _, err = run_main(["eval", str(finished), "--features", "inception", "--fid-samples", "20", *EVAL,
                             "--data-root", str(data_root), *extra], capsys)
    assert_one_line_error(code, err, f"{path} does not hold Inception weights (tensor Conv2d_1a_3x3.conv.weight "
                          f"is {META})")
    assert snapshot(finished) == before


# -- F3: a checkpoint's version that is no int --------------------------------------------------------------


VERSIONS = {"two elements": (torch.tensor([1, 1]), "tensor([1, 1])"),
            "meta": (torch.tensor(1, device="meta"), "tensor(..., device='meta'"),
            "0-d": (torch.tensor(1), "tensor(1)"),
            "True": (True, "True")}


@pytest.mark.parametrize("name", list(VERSIONS))
def test_f3_a_checkpoint_version_that_is_no_int_is_refused_by_every_reader(name: str, finished: Path,
                                                                           data_root: Path, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``Boolean value of Tensor with more than one value is ambiguous`` (meta: ``Tensor.item() cannot be
    called on meta tensors``), 35-43 lines, in eval, sample, export, resume and latent; ``tensor(1)`` and
    ``True`` were taken as version 1."""
    version, shown = VERSIONS[name]
    edited(finished, lambda state: state.__setitem__("version", version))
    before = snapshot(finished)
    data = ["--data-root", str(data_root)]
    for args in (["eval", str(finished), "--fid-samples", "0", *EVAL, *data],
                 ["sample", str(finished), "-n", "4", "--out", str(tmp_path / "s.png"), *data],
                 ["export", str(finished), "--format", "safetensors", "--out", str(tmp_path / "export")],
                 ["resume", str(finished), *data],
                 ["latent", str(finished), "--pairs", "0", "--out", str(tmp_path / "latent"), "--test-limit", "20",
                  "--device", "cpu", *data]):
        code, _, err = run_main(args, capsys)
        line = assert_one_line_error(code, err, f"{finished / FILENAME} has checkpoint format version {shown}")
        assert line.endswith("; this genzoo reads version 1"), line
    assert snapshot(finished) == before
    assert not {"s.png", "export", "latent"} & {p.name for p in tmp_path.iterdir()}


def test_f3_a_checkpoint_format_that_is_a_tensor_is_not_a_genzoo_checkpoint(finished: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    edited(finished, lambda state: state.__setitem__("format", torch.tensor([1, 2])))
    code, _, err = run_main(["eval", str(finished), "--fid-samples", "0", *EVAL], capsys)
    assert_one_line_error(code, err, f"{finished / FILENAME} is not a genzoo checkpoint")


# -- the sweep: optimiser state ------------------------------------------------------------------------------


def test_a_saved_setting_without_data_where_a_tensor_is_configured_is_refused_in_one_line() -> None:
    """A learning rate configured as a tensor (torch takes one), saved as a meta or sparse one. Before:
    ``Cannot copy out of meta tensor`` from ``_same_setting``'s comparison."""
    param = torch.nn.Parameter(torch.zeros(2, 3))
    optimizer = torch.optim.Adam([param], lr=torch.tensor(0.01))
    for saved_lr in (torch.tensor(0.01, device="meta"), torch.tensor([0.01]).to_sparse()):
        saved = optimizer.state_dict()
        saved["param_groups"][0]["lr"] = saved_lr
        with pytest.raises(GenzooError, match="group 0 has lr tensor") as caught:
            check_optimizer_state("adam", saved, optimizer, Path("checkpoint.pt"), steps=0)
        assert "\n" not in str(caught.value)


def test_a_quantized_step_count_is_refused_as_no_real_number() -> None:
    """Before: a quantized ``step`` passed every check (all_finite says True for a non-float dtype), to fail
    inside Adam's first step."""
    param = torch.nn.Parameter(torch.zeros(2, 3))
    optimizer = torch.optim.Adam([param])
    param.grad = torch.ones(2, 3)
    optimizer.step()
    saved = optimizer.state_dict()
    saved["state"][0]["step"] = torch.quantize_per_tensor(torch.tensor(1.0), 1.0, 0, torch.qint8)
    with pytest.raises(GenzooError, match="'step' of parameter 0 is a tensor of dtype torch.qint8, not a real"):
        check_optimizer_state("adam", saved, optimizer, Path("checkpoint.pt"), steps=1)
