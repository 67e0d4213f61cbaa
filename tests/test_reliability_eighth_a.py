"""Found by the eighth look (seventh hostile pass): the sampler guard (F3, F4, F11) and the finiteness check (F8).

A sampler's samples must be a plain ``torch.Tensor`` (a subclass's ``__torch_function__``
would run in genzoo's code, outside the guard) and reach genzoo as float32 (torch cannot
check float8 or uint16/32/64); a sampler that hooks or patches the model changes it as surely
as one that changes its weights; a model's own float8 or complex samples and reconstructions
never leave a run that cannot be completed; and training checks complex tensors as the loader
does. Each test failed before its fix (docs/reliability.md, "Found by the eighth look").
"""

from __future__ import annotations

import json
import re
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    copied,
    data_root,
    evaluate,
    one_thread,
    run_main,
    sample,
    write_fake_mnist,
)
from test_reliability_writes import Fragile, train_fragile
from test_security import finished_run

from genzoo import GenzooError, Sampler, hookimpl
from genzoo.checkpoint import FILENAME, load_checkpoint, save_checkpoint
from genzoo.checks import check_pixels

PLUGIN = "eightha"
DISTRIBUTION = "test-eightha"
ORIGIN = f"from plugin {PLUGIN!r} (distribution {DISTRIBUTION!r})"


def shape(sampler: Sampler, n: int) -> tuple[int, ...]:
    return (n, *sampler.model.sample_shape)


class Harmless(Sampler):
    """Changes nothing: the control for the samplers below."""

    def sample(self, n: int) -> torch.Tensor:
        return torch.rand(shape(self, n))


# -- F3: hooks and patched methods ----------------------------------------------------------


class Hooking(Harmless):
    """A forward hook on the decoder: every later decode is a constant image."""

    def sample(self, n: int) -> torch.Tensor:
        self.model.decoder.register_forward_hook(lambda module, args, out: torch.zeros_like(out))
        return super().sample(n)


class PreHooking(Harmless):
    def sample(self, n: int) -> torch.Tensor:
        self.model.decoder[0].register_forward_pre_hook(lambda module, args: (torch.zeros_like(args[0]),))
        return super().sample(n)


class BackwardHooking(Harmless):
    def sample(self, n: int) -> torch.Tensor:
        self.model.encoder.register_full_backward_hook(lambda module, grad_in, grad_out: None)
        return super().sample(n)


class GlobalHooking(Harmless):
    """A hook torch calls around every module's forward."""

    handles: list[Any] = []

    def sample(self, n: int) -> torch.Tensor:
        self.handles.append(torch.nn.modules.module.register_module_forward_hook(
            lambda module, args, out: torch.zeros_like(out) if isinstance(out, torch.Tensor) else out))
        return super().sample(n)


class Patching(Harmless):
    """``model.decode`` as an instance attribute: constant 0.5 images."""

    def sample(self, n: int) -> torch.Tensor:
        self.model.decode = lambda z: torch.full((len(z), *self.model.sample_shape), 0.5)
        return super().sample(n)


class SubPatching(Harmless):
    def sample(self, n: int) -> torch.Tensor:
        self.model.decoder.forward = lambda z: torch.zeros(len(z), 784)
        return super().sample(n)


class Training(Harmless):
    """Leaves the model in training mode (dropout, batch statistics)."""

    def sample(self, n: int) -> torch.Tensor:
        self.model.train()
        return super().sample(n)


# -- F3, F4: tensor subclasses ----------------------------------------------------------------


class Boom(torch.Tensor):
    """Fails when genzoo reads its pixels (the hostile pass's: the guard's checks passed, ``.detach()`` was a
    traceback in genzoo's code)."""

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in ("detach", "float", "cpu", "to", "contiguous", "isfinite", "amin", "amax", "clamp"):
            raise RuntimeError(f"boom in {name}")
        return super().__torch_function__(func, types, args, kwargs or {})


class Sneaky(torch.Tensor):
    """Zeroes the model's weights at any operation on it (genzoo's ``.detach()``), then works."""

    model: torch.nn.Module | None = None

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if cls.model is not None:
            with torch.no_grad():
                for p in cls.model.parameters():
                    p.mul_(0.0)
        out = super().__torch_function__(func, types, args, kwargs or {})
        return out.as_subclass(torch.Tensor) if isinstance(out, torch.Tensor) else out


class Subclassed(Harmless):
    def sample(self, n: int) -> torch.Tensor:
        return super().sample(n).as_subclass(Boom)


class SneakySubclassed(Harmless):
    def sample(self, n: int) -> torch.Tensor:
        Sneaky.model = self.model
        return super().sample(n).as_subclass(Sneaky)


# -- F11: dtypes torch cannot check -----------------------------------------------------------


class Typed(Harmless):
    """0/1 pixels in ``dtype`` (set by the test)."""

    dtype: Any = torch.float32

    def sample(self, n: int) -> torch.Tensor:
        return (super().sample(n) > 0.5).to(self.dtype)


class Float8(Harmless):
    def sample(self, n: int) -> torch.Tensor:
        return super().sample(n).to(torch.float8_e4m3fn)


class UInt32(Typed):
    dtype = torch.uint32


class UInt16(Typed):
    dtype = torch.uint16


class OutOfRange(Harmless):
    """Values from -1 to 2: the sampler's fault, not the model's (its decode is never called)."""

    def sample(self, n: int) -> torch.Tensor:
        return super().sample(n) * 3 - 1


SAMPLERS: dict[str, type[Sampler]] = {
    "harmless": Harmless, "hook": Hooking, "prehook": PreHooking, "backhook": BackwardHooking,
    "globalhook": GlobalHooking, "patch": Patching, "subpatch": SubPatching, "training": Training,
    "sub": Subclassed, "sneaky": SneakySubclassed, "typed": Typed, "f8": Float8, "u32": UInt32, "u16": UInt16,
    "range": OutOfRange}


@hookimpl
def register_samplers(register: Any) -> None:
    for name, cls in SAMPLERS.items():
        register(name, cls)


class Float8VAE(VAE):
    def sample(self, n: int) -> torch.Tensor:
        return super().sample(n).to(torch.float8_e4m3fn)


class Float8ReconstructionVAE(VAE):
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return super().reconstruct(x).to(torch.float8_e4m3fn)


class ComplexReconstructionVAE(VAE):
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return super().reconstruct(x).to(torch.complex64)


# -- F8: complex tensors that go non-finite -----------------------------------------------------


class ComplexBuffer(Fragile):
    """A complex running statistic that goes NaN at step 10 (the parameters stay finite)."""

    bad_step = 10
    breaks = "nothing"

    def __init__(self, config: Any, sample_shape: Any) -> None:
        super().__init__(config, sample_shape)
        self.register_buffer("phase", torch.ones((), dtype=torch.complex64))

    def training_step(self, x: torch.Tensor, optimizers: Any) -> dict[str, torch.Tensor]:
        stats = super().training_step(x, optimizers)
        if self.steps == self.bad_step:
            self.phase.fill_(complex(float("nan"), 0.0))
        return stats


class ComplexMoments(Fragile):
    """A complex parameter whose Adam moments overflow at ``bad_step`` (None: never)."""

    bad_step = 10

    def __init__(self, config: Any, sample_shape: Any) -> None:
        super().__init__(config, sample_shape)
        self.phase = torch.nn.Parameter(torch.zeros((), dtype=torch.complex64))

    def training_step(self, x: torch.Tensor, optimizers: Any) -> dict[str, torch.Tensor]:
        self.steps += 1
        opt = optimizers["adam"]
        opt.zero_grad()
        loss = (self.w - x.flatten(1).mean(1)) ** 2 + self.phase.real * 0.0
        loss.mean().backward()
        opt.step()
        if self.steps == self.bad_step:
            opt.state[self.phase]["exp_avg_sq"].fill_(complex(float("inf"), 0.0))
        return {"loss": loss}


class SoundComplexMoments(ComplexMoments):
    bad_step = None


@hookimpl
def register_models(register: Any) -> None:
    register("f8vae", Float8VAE)
    register("f8rec", Float8ReconstructionVAE)
    register("cplxrec", ComplexReconstructionVAE)
    register("complex-buffer", ComplexBuffer)
    register("complex-moments", ComplexMoments)
    register("sound-complex-moments", SoundComplexMoments)


@pytest.fixture
def faulty(genzoo_register: Any) -> Any:
    """The samplers and models above registered as plugin ``eightha`` for one test."""
    genzoo_register(types.SimpleNamespace(register_samplers=register_samplers, register_models=register_models),
                    PLUGIN, DISTRIBUTION)
    yield
    for handle in GlobalHooking.handles:  # had the guard missed it, no later test would draw anything
        handle.remove()
    GlobalHooking.handles.clear()
    Sneaky.model = None


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eightha")
    return finished_run(write_fake_mnist(root / "data"), root / "run")


def compare_args(data: Path, out: Path, *models: str, fid: str = "0") -> list[str]:
    return ["compare", *models, "--epochs", "1", "--latent", "2", "--batch-size", "20", "--device", "cpu",
            "--data-root", str(data), "--train-limit", "40", "--test-limit", "20", "--fid-samples", fid,
            "--features", "mnist", "--iwae-k", "2", "--out", str(out)]


def without_seconds(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "seconds"}


# -- F3: a sampler that hooks or patches the model ------------------------------------------

CHANGES = {"hook": "decoder._forward_hooks", "prehook": "decoder.0._forward_pre_hooks",
           "backhook": "encoder._backward_hooks", "globalhook": "torch.nn.modules.module._global_forward_hooks",
           "patch": "decode", "subpatch": "decoder.forward", "training": "training"}


@pytest.mark.parametrize("sampler", sorted(CHANGES))
def test_a_sampler_that_hooks_or_patches_the_model_is_refused_and_put_back(faulty, vae_run, sampler):
    """F3: the hook or the attribute is named, and the model draws and decodes as before the call."""
    from genzoo.building import build_sampler, load_model

    model = load_model(vae_run)
    z = torch.randn(3, model.config.latent, generator=torch.Generator().manual_seed(0))
    x = torch.rand(3, *model.sample_shape, generator=torch.Generator().manual_seed(1))
    before = (model.decode(z), model.reconstruct(x))
    hooks = [name for name in vars(torch.nn.Module()) if name.endswith("hooks")]
    hooked = [(name, dict(getattr(module, name))) for module in model.modules() for name in hooks]
    built = build_sampler(model, "vae", sampler, lambda: pytest.fail("no sampler here fits"))
    with pytest.raises(GenzooError, match=re.escape(f"sampler {sampler!r} {ORIGIN} changed the model's "
                                                    f"{CHANGES[sampler]}") + ".* while drawing 4 samples"):
        built.sample(4)
    assert torch.equal(model.decode(z), before[0]) and torch.equal(model.reconstruct(x), before[1])
    assert not model.training and "decode" not in vars(model) and "forward" not in vars(model.decoder)
    assert [(name, dict(getattr(module, name))) for module in model.modules() for name in hooks] == hooked
    assert not torch.nn.modules.module._global_forward_hooks


def test_genzoo_s_own_samplers_and_models_pass_the_check(vae_run, tmp_path, capsys):
    """The control: the built-in samplers hook and patch nothing (their draws, and gmm's fit, pass)."""
    for sampler in ("model", "normal", "gmm"):
        code, _, err = sample(vae_run, sampler, tmp_path / f"{sampler}.png", capsys)
        assert code == 0 and "changed the model" not in err, err


@pytest.mark.parametrize("sampler", ["hook", "patch", "sneaky"])
def test_eval_with_a_sampler_that_hooks_or_patches_the_model_measures_the_untouched_model(
        faulty, vae_run, sampler, tmp_path, capsys):
    """F3: its FID is n/a with the reason; the interpolation FIDs measured after it are the control's (they were the
    FID of a constant image, exit 0)."""
    code, control, err = evaluate(copied(vae_run, tmp_path / "control"), vae_run.parent / "data", "harmless", capsys)
    assert code == 0, err
    code, result, err = evaluate(copied(vae_run, tmp_path / "run"), vae_run.parent / "data", sampler, capsys)
    assert code == 0 and "Traceback" not in err, err
    assert result["fid"] == {}, result["fid"]
    reason = result["unavailable"][f"sampler {sampler}"]
    assert "changed the model's" in reason or "a Sneaky (a torch.Tensor subclass)" in reason, reason
    assert without_seconds(result["interpolation"]) == without_seconds(control["interpolation"])
    assert without_seconds(result["reconstruction"]) == without_seconds(control["reconstruction"])


def test_compare_with_a_sampler_that_hooks_the_model_draws_the_untouched_model(faulty, tmp_path, capsys):
    """F3: compare.png was uniform grey (samples and reconstructions), exit 0."""
    data = write_fake_mnist(tmp_path / "data")
    code, _, err = run_main([*compare_args(data, tmp_path / "control", "ae", fid="10"), "--sampler", "harmless"],
                            capsys)
    assert code == 0, err
    code, _, err = run_main([*compare_args(data, tmp_path / "cmp", "ae", fid="10"), "--sampler", "hook"], capsys)
    assert code == 0 and "Traceback" not in err and "changed the model's decoder._forward_hooks" in err, err
    assert (tmp_path / "cmp" / "compare.png").read_bytes() == (tmp_path / "control" / "compare.png").read_bytes()


# -- F4 (and F3's subclass): samples that are a torch.Tensor subclass -------------------------

SUBCLASSES = {"sub": "a Boom (a torch.Tensor subclass)", "sneaky": "a Sneaky (a torch.Tensor subclass)"}


@pytest.mark.parametrize("sampler", sorted(SUBCLASSES))
def test_genzoo_sample_of_a_tensor_subclass_is_one_line(faulty, vae_run, sampler, tmp_path, capsys):
    """F4: a traceback (``boom in detach``) from genzoo's own code, after the guard, and no file."""
    out = tmp_path / "s.png"
    code, _, err = sample(vae_run, sampler, out, capsys)
    assert_one_line_error(code, err, f"sampler {sampler!r} {ORIGIN} returned {SUBCLASSES[sampler]} when asked for 4")
    assert not out.exists()


def test_eval_of_a_tensor_subclass_files_no_fid_and_says_why(faulty, vae_run, tmp_path, capsys):
    """F4: the traceback came after the reconstruction, ELBO and IWAE work, with no eval.json."""
    code, result, err = evaluate(copied(vae_run, tmp_path / "run"), vae_run.parent / "data", "sub", capsys)
    assert code == 0 and "Traceback" not in err, err
    assert result["fid"] == {}, result["fid"]
    assert SUBCLASSES["sub"] in result["unavailable"]["sampler sub"], result["unavailable"]


def test_compare_and_its_resume_with_a_tensor_subclass_finish(faulty, tmp_path, capsys):
    """F4: compare trained, then failed; ``--resume`` failed the same way: it could never finish."""
    data = write_fake_mnist(tmp_path / "data")
    out = tmp_path / "cmp"
    code, _, err = run_main([*compare_args(data, out, "vae", fid="10"), "--sampler", "sub"], capsys)
    assert code == 0 and "Traceback" not in err and SUBCLASSES["sub"] in err, err
    assert json.loads((out / "results.json").read_text())["models"][0]["fid"] == {}
    code, stdout, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 0 and "Traceback" not in err and "already complete" in stdout + err, stdout + err


# -- F11: dtypes torch cannot check ----------------------------------------------------------

DTYPES = sorted({value for value in vars(torch).values() if isinstance(value, torch.dtype)}, key=str)
#: Those that hold 0 and 1 exactly (float8_e8m0fnu, powers of two only, does not hold 0).
EXACT = {torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32,
         torch.uint64, torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.float8_e4m3fn,
         torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_samples_of_any_dtype_reach_genzoo_as_float32_or_are_one_error(faulty, vae_run, dtype, monkeypatch):
    """F11: every dtype torch has (float8 kinds, uint16/32/64, bits, sub-byte, complex, quantized): either float32
    pixels that every check takes (equal to what was drawn where the dtype holds 0 and 1), or one GenzooError
    (from the guard or from check_pixels); never another exception."""
    from genzoo.building import load_model
    from genzoo.plugin_registry import registry

    monkeypatch.setattr(Typed, "dtype", dtype)
    built = registry().build_sampler("typed", load_model(vae_run), "vae")
    torch.manual_seed(0)
    try:
        images = check_pixels(built.sample(4), "vae")
    except GenzooError:
        assert dtype not in EXACT, dtype
        return
    assert type(images) is torch.Tensor and images.dtype in (torch.float32, torch.float64), images.dtype
    torch.manual_seed(0)
    drawn = torch.rand(images.shape) > 0.5
    assert dtype not in EXACT or torch.equal(images, drawn.to(images.dtype)), dtype


@pytest.mark.parametrize("sampler", ["f8", "u32", "u16"])
def test_eval_of_float8_or_uint32_samples_files_their_fid(faulty, vae_run, sampler, tmp_path, capsys):
    """F11: a traceback from check_pixels (``"isfinite" not implemented for 'Float8_e4m3fn'``), no eval.json."""
    code, result, err = evaluate(copied(vae_run, tmp_path / "run"), vae_run.parent / "data", sampler, capsys)
    assert code == 0 and "Traceback" not in err, err
    assert list(result["fid"]) == [f"mnist/{sampler}"], result


@pytest.mark.parametrize("model, picture", [("f8vae", "samples.png"), ("f8rec", "reconstructions.png")])
def test_a_model_of_float8_samples_or_reconstructions_trains_to_a_complete_run(faulty, model, picture, tmp_path,
                                                                               capsys):
    """F11: training's pictures were a traceback after the final checkpoint, and again in every resume."""
    data = write_fake_mnist(tmp_path / "data")
    run = tmp_path / "run"
    base = ["--epochs", "1", "--batch-size", "40", "--latent", "2", "--hidden", "16", "--test-limit", "20",
            "--device", "cpu", "--data-root", str(data)]
    code, _, err = run_main(["train", model, *base, "--out", str(run)], capsys)
    assert code == 0 and "Traceback" not in err and "is drawn" not in err, err
    assert (run / picture).is_file()
    code, out, err = run_main(["resume", str(run), "--device", "cpu", "--data-root", str(data)], capsys)
    assert code == 0 and "already complete" in out, out + err


def test_a_model_of_complex_reconstructions_trains_to_a_complete_run_and_compares(faulty, tmp_path, capsys):
    """F11 (adjacent): complex reconstructions: a warning and no reconstructions.png, the run complete; compare
    blanks them in compare.png (both were tracebacks after all the work)."""
    data = write_fake_mnist(tmp_path / "data")
    run = tmp_path / "run"
    code, _, err = run_main(["train", "cplxrec", "--epochs", "1", "--batch-size", "40", "--latent", "2",
                             "--test-limit", "20", "--device", "cpu", "--data-root", str(data), "--out", str(run)],
                            capsys)
    assert code == 0 and "Traceback" not in err, err
    assert ("model 'cplxrec' produced reconstructions that are not pixels in [0, 1] (complex64 values" in err
            and "no reconstructions.png is drawn" in err), err
    assert not (run / "reconstructions.png").exists() and (run / "samples.png").is_file()
    code, out, err = run_main(["resume", str(run), "--device", "cpu", "--data-root", str(data)], capsys)
    assert code == 0 and "already complete" in out, out + err
    code, _, err = run_main(["compare", "--from-runs", str(run), "--fid-samples", "0", "--iwae-k", "2",
                             "--test-limit", "20", "--device", "cpu", "--data-root", str(data),
                             "--out", str(tmp_path / "cmp")], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert (tmp_path / "cmp" / "compare.png").is_file()


# -- F8: complex weights, buffers and optimiser state --------------------------------------------


@pytest.mark.parametrize("model, broken", [("complex-buffer", "weights ('phase')"),
                                           ("complex-moments", "optimiser state ('adam')")])
def test_a_complex_tensor_that_went_nan_is_never_checkpointed(faulty, model, broken, data_root, tmp_path, capsys):
    """F8: training saved a NaN complex buffer (exit 0) that every loader then refused: a run that could never be
    evaluated; complex optimiser moments were checked by neither side."""
    run = tmp_path / "run"
    code, _, err = train_fragile(model, data_root, run, capsys, "--checkpoint-every", "5")
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        f"Error: training diverged: non-finite {broken} at epoch 1, step 10; "
        f"the last good checkpoint is kept at {run / FILENAME}")
    state = load_checkpoint(run)
    assert (state["position"]["epoch"], state["position"]["step"]) == (0, 5)


def test_a_checkpoint_with_non_finite_complex_moments_is_refused_by_resume(faulty, data_root, tmp_path, capsys):
    """F8 (minor): the loader checked only real optimiser state; an infinite complex moment was resumed."""
    run = tmp_path / "run"
    code, _, err = train_fragile("sound-complex-moments", data_root, run, capsys)
    assert code == 0, err
    state = load_checkpoint(run)
    moments = state["optimizers"]["adam"]["state"][1]["exp_avg_sq"]
    assert moments.is_complex()
    moments.fill_(complex(float("inf"), 0.0))
    save_checkpoint(run / FILENAME, {k: v for k, v in state.items() if k not in ("format", "version")})
    code, _, err = run_main(["resume", str(run), "--device", "cpu", "--data-root", str(data_root)], capsys)
    assert code == 1 and "Traceback" not in err, err  # the line before it: adam on a complex weight steps unfused
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "'exp_avg_sq' of parameter 1 has NaN or infinite values" in last, err


# -- Minor: the wrong plugin was blamed --------------------------------------------------------

BLAMED = f"sampler 'range' {ORIGIN} drew samples from model 'vae' that are not pixels in [0, 1] (values from -"


def test_samples_out_of_range_blame_the_sampler_that_drew_them(faulty, vae_run, tmp_path, capsys):
    """Minor: ``Error: model 'vae' produced samples that are not pixels ...`` blamed the model for a sampler's."""
    out = tmp_path / "s.png"
    code, _, err = sample(vae_run, "range", out, capsys)
    assert_one_line_error(code, err, BLAMED, "the Sampler contract: sample returns pixels in [0, 1]")
    assert not out.exists()
    code, result, err = evaluate(copied(vae_run, tmp_path / "run"), vae_run.parent / "data", "range", capsys)
    assert code == 0 and BLAMED in result["unavailable"]["fid"], result["unavailable"]
