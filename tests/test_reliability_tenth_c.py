"""Found by the tenth look (ninth hostile pass), helper C's part: the sampler guard and odd dtypes (F6, F7, F10, F11).

torch's ``isfinite`` says True for float8_e8m0fnu's NaN (F6); the guard could neither copy-compare packed
float4, complex32, bits or sparse buffers nor finiteness-check them (F7); it did not see a parameter's
``requires_grad`` (F10); and a sampler's or model's ``__init__`` could leave torch's defaults changed (F11).
Each test failed before its fix (docs/reliability.md, "Found by the tenth look").
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
from reliability_support import copied, data_root, evaluate, one_thread, run_main  # noqa: F401 - fixtures
from test_reliability_ninth_a import Harmless, vae_run  # noqa: F401 - vae_run is a fixture
from test_reliability_ninth_b import Float8Buffer
from test_reliability_writes import train_fragile

from genzoo import GenzooError, Sampler, hookimpl
from genzoo.checkpoint import FILENAME, load_checkpoint, save_checkpoint
from genzoo.checks import all_finite
from genzoo.plugin_registry import registry

PLUGIN = "tenthc"
ORIGIN = f"from plugin {PLUGIN!r} (distribution 'test-tenthc')"
SHAPE = (1, 28, 28)
SMALL = ["--epochs", "2", "--batch-size", "20", "--latent", "2", "--hidden", "16", "--device", "cpu",
         "--test-limit", "20"]


def e8m0_nan() -> torch.Tensor:
    """float8_e8m0fnu's NaN (0xFF) beside 1.0 (0x7F)."""
    return torch.tensor([127, 255, 127, 127], dtype=torch.uint8).view(torch.float8_e8m0fnu)


# -- F6: float8_e8m0fnu's NaN --------------------------------------------------------------------


def test_all_finite_sees_float8_e8m0fnu_nan() -> None:
    """torch.isfinite answers True for 0xFF: all_finite said the NaN buffer was finite."""
    assert not all_finite(e8m0_nan())
    assert all_finite(torch.ones(4).to(torch.float8_e8m0fnu))


class E8Buffer(Float8Buffer):
    """The ninth look's float8 buffer in float8_e8m0fnu (the MX-format scale dtype)."""

    def __init__(self, config: Any, sample_shape: Any) -> None:
        super().__init__(config, sample_shape)
        self.scale8 = torch.ones(4, dtype=torch.float8_e8m0fnu)


class NaNE8Buffer(E8Buffer):
    bad_step = 10

    def training_step(self, x: torch.Tensor, optimizers: Any) -> dict[str, torch.Tensor]:
        stats = super(Float8Buffer, self).training_step(x, optimizers)
        if self.steps == self.bad_step:
            self.scale8.copy_(e8m0_nan())
        return stats


# -- F7: tensors torch cannot compare or convert --------------------------------------------------


class OddVAE(VAE):
    """A VAE keeping buffers of dtypes and layouts torch's equal/isfinite do not take (none used in the loss)."""

    def __init__(self, config: Any, sample_shape: Any) -> None:
        super().__init__(config, sample_shape)
        self.register_buffer("packed4", torch.zeros(8, dtype=torch.uint8).view(torch.float4_e2m1fn_x2))
        self.register_buffer("spectrum", torch.zeros(4, dtype=torch.complex32))
        self.register_buffer("raw16", torch.zeros(4, dtype=torch.int16).view(torch.bits16))
        self.register_buffer("adjacency", torch.eye(4).to_sparse())


class Uint4VAE(VAE):
    """A VAE with a sub-byte integer buffer: torch can neither copy nor save it."""

    def __init__(self, config: Any, sample_shape: Any) -> None:
        super().__init__(config, sample_shape)
        self.register_buffer("nibbles", torch.zeros(4, dtype=torch.uint8).view(torch.uint4))


def poke(buffer: str) -> type[Sampler]:
    """A sampler that writes into ``buffer`` in place, then draws."""

    class Poke(Harmless):
        def sample(self, n: int) -> torch.Tensor:
            tensor = getattr(self.model, buffer)
            if tensor.layout != torch.strided:
                tensor.copy_((torch.eye(4) * 2).to_sparse())
            elif tensor.element_size() == 1:
                tensor.view(torch.uint8).fill_(3)
            else:
                tensor.view({2: torch.int16, 4: torch.int32}[tensor.element_size()]).fill_(3)
            return super().sample(n)

    return Poke


ODD = ("packed4", "spectrum", "raw16", "adjacency")


def test_all_finite_takes_float4_complex32_bits_and_sparse() -> None:
    """fp4 raised (``copy_kernel`` not implemented), sparse raised; complex32 went through ``.float()``."""
    model = OddVAE(VAE.Config(latent=2, hidden=16), SHAPE)
    assert all(all_finite(getattr(model, name)) for name in ODD)
    assert not all_finite(torch.tensor([1.0, float("inf")]).to(torch.complex32))
    assert not all_finite(torch.tensor([1.0, 0.0, 0.0, float("nan")]).view(2, 2).to_sparse())
    assert not all_finite(torch.tensor([1.0, 0.0, 0.0, float("nan")]).view(2, 2).to_sparse_csr())


# -- F10: requires_grad -------------------------------------------------------------------------


class FrozenDecoder(Harmless):
    """The honest mistake: ``requires_grad_(False)`` where ``torch.no_grad()`` was meant."""

    def sample(self, n: int) -> torch.Tensor:
        self.model.decoder.requires_grad_(False)
        return super().sample(n)


class FrozenDecoderVAE(VAE):
    default_sampler = "frozendecoder"


class HonestVAE(VAE):
    default_sampler = "harmless"


# -- F11: torch's defaults changed while being built ----------------------------------------------


class F64Init(Harmless):
    def __init__(self, config: Any, model: Any) -> None:
        super().__init__(config, model)
        torch.set_default_dtype(torch.float64)


class F64BuildVAE(VAE):
    def __init__(self, config: Any, sample_shape: Any) -> None:
        torch.set_default_dtype(torch.float64)
        super().__init__(config, sample_shape)


@hookimpl
def register_models(register: Any) -> None:
    register("e8-buffer", E8Buffer)
    register("nan-e8-buffer", NaNE8Buffer)
    register("oddvae", OddVAE)
    register("u4vae", Uint4VAE)
    register("fdvae", FrozenDecoderVAE)
    register("honestvae", HonestVAE)
    register("f64build", F64BuildVAE)


@hookimpl
def register_samplers(register: Any) -> None:
    register("harmless", Harmless)
    register("frozendecoder", FrozenDecoder)
    register("f64init", F64Init)
    for name in ODD:
        register(f"poke-{name}", poke(name))


@pytest.fixture
def tenth(genzoo_register: Any) -> Any:
    """The models and samplers above as plugin ``tenthc``; torch's default dtype restored after the test."""
    genzoo_register(types.SimpleNamespace(register_models=register_models, register_samplers=register_samplers),
                    PLUGIN, "test-tenthc")
    yield
    torch.set_default_dtype(torch.float32)


def test_a_float8_e8m0fnu_buffer_that_went_nan_is_never_checkpointed(tenth, data_root, tmp_path, capsys):
    """F6: exit 0, ``final test metrics``, the checkpoint held ``scale8 float8_e8m0fnu [nan, ...]``."""
    run = tmp_path / "run"
    code, _, err = train_fragile("nan-e8-buffer", data_root, run, capsys, "--checkpoint-every", "5")
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        "Error: training diverged: non-finite weights ('scale8') at epoch 1, step 10; "
        f"the last good checkpoint is kept at {run / FILENAME}")


def test_a_checkpoint_with_a_nan_float8_e8m0fnu_buffer_is_refused_by_the_loader(tenth, data_root, tmp_path, capsys):
    """F6: eval of the planted NaN wrote eval.json, exit 0."""
    run = tmp_path / "run"
    code, _, err = train_fragile("e8-buffer", data_root, run, capsys, "--epochs", "1")
    assert code == 0, err
    state = load_checkpoint(run)
    state["model_state"]["scale8"] = e8m0_nan()
    save_checkpoint(run / FILENAME, {k: v for k, v in state.items() if k not in ("format", "version")})
    code, _, err = run_main(["eval", str(run), "--test-limit", "20", "--iwae-k", "2", "--device", "cpu",
                             "--data-root", str(data_root)], capsys)
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        f"Error: {run / FILENAME} holds non-finite weights ('scale8' has NaN or infinite values); it is damaged "
        "or not a trained model"), err


@pytest.mark.parametrize("buffer", ODD)
def test_the_guard_takes_odd_buffers_and_catches_a_change_to_them(tenth, buffer):
    """F7: ``NotImplementedError: "equal_cpu" not implemented for 'Float4_e2m1fn_x2'`` (and 'ComplexHalf', 'Bits16'),
    ``RuntimeError: Cannot access data pointer of Tensor that doesn't have storage`` (sparse)."""
    model = registry().build_model("oddvae", SHAPE, latent=2, hidden=16)
    before = {name: tensor.clone() for name, tensor in model.named_buffers()}
    assert registry().build_sampler("harmless", model, "oddvae").sample(2).shape == (2, *SHAPE)
    sampler = registry().build_sampler(f"poke-{buffer}", model, "oddvae")
    with pytest.raises(GenzooError, match=re.escape(f"changed the model's {buffer} while drawing 2 samples")):
        sampler.sample(2)
    for name, tensor in model.named_buffers():
        if tensor.layout != torch.strided:
            assert torch.equal(tensor.to_dense(), before[name].to_dense()), name
        else:
            size = {1: torch.uint8, 2: torch.int16, 4: torch.int32}[tensor.element_size()]
            assert torch.equal(tensor.view(size), before[name].view(size)), name


def test_a_model_with_odd_buffers_trains_and_evaluates(tenth, data_root, tmp_path, capsys):
    """F7: a traceback from the guard before the run folder was made, every time."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "oddvae", *SMALL, "--data-root", str(data_root), "--out", str(run)], capsys)
    assert code == 0 and "Traceback" not in err, err
    state = load_checkpoint(run)["model_state"]
    assert state["packed4"].dtype == torch.float4_e2m1fn_x2 and state["spectrum"].dtype == torch.complex32
    assert state["adjacency"].layout == torch.sparse_coo and state["raw16"].dtype == torch.bits16
    code, _, err = run_main(["eval", str(run), "--test-limit", "20", "--iwae-k", "2", "--device", "cpu",
                             "--fid-samples", "0", "--data-root", str(data_root)], capsys)
    assert code == 0 and "Traceback" not in err, err


def test_a_model_with_a_sub_byte_integer_buffer_is_one_line(tenth, data_root, tmp_path, capsys):
    """F7: torch can neither copy nor save a uint4 tensor: one line naming it, no run folder."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "u4vae", *SMALL, "--data-root", str(data_root), "--out", str(run)], capsys)
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        "Error: the model's nibbles is of dtype uint4, which torch can neither copy nor save: genzoo "
        "cannot guard or checkpoint it"), err
    assert not run.exists()


def test_a_sampler_that_freezes_the_model_is_refused_and_requires_grad_put_back(tenth):
    """F10: the guard did not compare ``requires_grad``: the decoder stayed frozen, silently."""
    model = registry().build_model("fdvae", SHAPE, latent=2, hidden=16)
    sampler = registry().build_sampler("frozendecoder", model, "fdvae")
    with pytest.raises(GenzooError, match=re.escape(f"sampler 'frozendecoder' {ORIGIN} changed the model's "
                                                    "decoder.0.weight.requires_grad, decoder.0.bias.requires_grad, "
                                                    "decoder.2.weight.requires_grad and 1 more while drawing 2")):
        sampler.sample(2)
    assert all(p.requires_grad for p in model.parameters())


def losses(run: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in json.loads(line).items() if "seconds" not in k and "per_s" not in k and k != "run"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]  # each run names itself


def test_train_with_a_freezing_default_sampler_and_a_fid_curve_trains_as_without_it(tenth, data_root, tmp_path,
                                                                                        capsys):
    """F10: with ``--fid-curve`` the decoder stopped training after epoch 1 (a worse run, exit 0, no warning)."""
    runs = {}
    for model, curve in (("honestvae", "0"), ("honestvae", "10"), ("fdvae", "10")):
        run = runs[model, curve] = tmp_path / f"{model}{curve}"
        code, _, err = run_main(["train", model, *SMALL, "--data-root", str(data_root), "--out", str(run),
                                 "--fid-curve", curve], capsys)
        assert code == 0 and "Traceback" not in err, err
    assert "decoder.0.bias.requires_grad" in err and "no FID for epoch 1's curve" in err, err
    plain, frozen = (load_checkpoint(runs[key])["model_state"] for key in (("honestvae", "0"), ("fdvae", "10")))
    assert all(torch.equal(tensor, frozen[key]) for key, tensor in plain.items())
    assert losses(runs["honestvae", "0"]) == losses(runs["fdvae", "10"]) == losses(runs["honestvae", "10"])


def test_a_sampler_that_sets_the_default_dtype_while_being_built_is_refused(tenth, vae_run):
    """F11: the default dtype stayed float64 and the FID extractor failed with a traceback after the work."""
    from genzoo.building import load_model

    with pytest.raises(GenzooError, match=re.escape(f"sampler 'f64init' {ORIGIN} changed torch's default dtype "
                                                    "(float32, set to float64) while being built")):
        registry().build_sampler("f64init", load_model(vae_run), "vae")
    assert torch.get_default_dtype() is torch.float32


def test_eval_with_a_sampler_that_sets_the_default_dtype_while_being_built_finishes(tenth, vae_run, tmp_path,
                                                                                   capsys):
    code, result, err = evaluate(copied(vae_run, tmp_path / "run"), vae_run.parent / "data", "f64init", capsys)
    assert code == 0 and "Traceback" not in err, err
    assert result["fid"] == {} and "while being built" in result["unavailable"]["sampler f64init"], result
    assert torch.get_default_dtype() is torch.float32


def test_a_model_that_sets_the_default_dtype_while_being_built_is_one_line(tenth, data_root, tmp_path, capsys):
    """F11: trained (in float64), then its eval failed with a traceback after the work."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "f64build", *SMALL, "--data-root", str(data_root), "--out", str(run)], capsys)
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        f"Error: model 'f64build' {ORIGIN} changed torch's default dtype (float32, set to float64) while being "
        "built; they are put back (the Model contract: building a model leaves torch's defaults and the process's "
        "settings alone)"), err
    assert not run.exists() and torch.get_default_dtype() is torch.float32


@pytest.mark.parametrize("tensor, found", [
    (torch.zeros(4, dtype=torch.complex32), "dtype complex32 (the model's 'odd')"),
    (torch.eye(4).to_sparse(), "the model's 'odd' (a torch.sparse_coo tensor)")])
def test_export_of_weights_safetensors_cannot_hold_is_one_line(tensor, found, tmp_path):
    """F7's neighbour: such a model trains now; its export was a traceback (``KeyError: torch.complex32``,
    ``RuntimeError: unsupported memory format option Contiguous``)."""
    from genzoo.checkpoint import WEIGHTS_FIELDS, save_weights

    state = {"model_state": {"odd": tensor, "fine": torch.ones(2)}, **dict.fromkeys(WEIGHTS_FIELDS)}
    with pytest.raises(GenzooError, match=re.escape(f"safetensors cannot hold {found}; this run cannot be exported")):
        save_weights(tmp_path / "w.safetensors", state)
    assert not (tmp_path / "w.safetensors").exists()


def test_export_of_packed_float4_weights_is_one_line(tmp_path):
    """safetensors writes packed float4 as ``F4`` but cannot read it back: the export was written (exit 0), and
    eval of it said ``is not a genzoo weights file (KeyError: 'F4')``."""
    from genzoo.checkpoint import WEIGHTS_FIELDS, save_weights

    packed = torch.zeros(8, dtype=torch.uint8).view(torch.float4_e2m1fn_x2)
    state = {"model_state": {"packed4": packed}, **dict.fromkeys(WEIGHTS_FIELDS)}
    with pytest.raises(GenzooError, match=re.escape("safetensors cannot hold dtype F4 (the model's 'packed4'); "
                                                    "this run cannot be exported")):
        save_weights(tmp_path / "w.safetensors", state)
