"""Found by the ninth look (eighth hostile pass): the sampler guard (H8-1, H8-15, H8-6, H8-7, H8-14, H8-2) and the
interpolation's images (H8-13).

A sampler changes what the model draws as surely by swapping a module's or a weight's class,
reordering a Sequential, giving a module a new ``__dict__`` or rebinding torch's global hook
dict as by changing a weight; one that changes torch's default dtype or device leaves every
later step failing; and a model's decoded midpoints must be pixels as its reconstructions are.
Each test failed before its fix (docs/reliability.md, "Found by the ninth look").
"""

from __future__ import annotations

import json
import re
import types
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    copied,
    data_root,
    evaluate,
    one_thread,
    run_main,
    write_fake_mnist,
)
from test_security import finished_run

from genzoo import GenzooError, Sampler, hookimpl

PLUGIN = "ninetha"
DISTRIBUTION = "test-ninetha"
ORIGIN = f"from plugin {PLUGIN!r} (distribution {DISTRIBUTION!r})"
MODULE = torch.nn.modules.module


class Harmless(Sampler):
    """Changes nothing: the control for the samplers below."""

    def sample(self, n: int) -> torch.Tensor:
        return torch.rand((n, *self.model.sample_shape))


def constant(z: torch.Tensor) -> torch.Tensor:
    return torch.full((z.shape[0], 784), -20.0)


class Const(torch.nn.Sequential):
    """A decoder whose every image is black."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return constant(z)


class BoomP(torch.nn.Parameter):
    """A weight whose ``linear`` answers constant logits (all else passes through)."""

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if getattr(func, "__name__", "") == "linear":
            return constant(args[0])
        return super().__torch_function__(func, types, args, kwargs or {})


class Klass(Harmless):
    """H8-1: the decoder's own class swapped."""

    def sample(self, n: int) -> torch.Tensor:
        self.model.decoder.__class__ = Const
        return super().sample(n)


class ParameterClass(Harmless):
    """H8-15: a weight's class swapped."""

    def sample(self, n: int) -> torch.Tensor:
        self.model.decoder[2].weight.__class__ = BoomP
        return super().sample(n)


class Reorder(Harmless):
    """H8-6: Linear-ReLU-Linear becomes Linear-Linear-ReLU (same keys, same modules)."""

    def sample(self, n: int) -> torch.Tensor:
        modules = self.model.decoder._modules
        modules["1"] = modules.pop("1")
        return super().sample(n)


class NewDict(Harmless):
    """H8-7: the decoder reads a new ``__dict__`` (a ``forward`` of its own)."""

    def sample(self, n: int) -> torch.Tensor:
        decoder = self.model.decoder
        decoder.__dict__ = {**vars(decoder), "forward": constant}
        return super().sample(n)


class GlobalRebind(Harmless):
    """H8-14: torch's global forward-hook dict rebound to a new one holding a hook."""

    def sample(self, n: int) -> torch.Tensor:
        hooks = OrderedDict(MODULE._global_forward_hooks)
        hooks[987654] = lambda module, args, out: torch.zeros_like(out) if isinstance(out, torch.Tensor) else out
        MODULE._global_forward_hooks = hooks
        return super().sample(n)


class Float64(Harmless):
    """H8-2: torch's default dtype left float64."""

    def sample(self, n: int) -> torch.Tensor:
        torch.set_default_dtype(torch.float64)
        return super().sample(n).float()


class Meta(Harmless):
    """H8-2: torch's default device left ``meta`` (after good samples)."""

    def sample(self, n: int) -> torch.Tensor:
        images = super().sample(n)
        torch.set_default_device("meta")
        return images


class NoGrad(Harmless):
    """H8-2: grad mode left off."""

    def sample(self, n: int) -> torch.Tensor:
        torch.set_grad_enabled(False)
        return super().sample(n)


SAMPLERS: dict[str, type[Sampler]] = {
    "harmless": Harmless, "klass": Klass, "pclass": ParameterClass, "order": Reorder, "newdict": NewDict,
    "grebind": GlobalRebind, "f64": Float64, "meta": Meta, "nograd": NoGrad}


@hookimpl
def register_samplers(register: Any) -> None:
    for name, cls in SAMPLERS.items():
        register(name, cls)


class ComplexDecodeVAE(VAE):
    """H8-13: the pixels in the imaginary part of what ``decode`` gives."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        pixels = super().decode(z)
        return torch.complex(torch.zeros_like(pixels), pixels)


class WideDecodeVAE(VAE):
    """H8-13's neighbour: decoded values above 1."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return super().decode(z) + 1.5


@hookimpl
def register_models(register: Any) -> None:
    register("cdec", ComplexDecodeVAE)
    register("widedec", WideDecodeVAE)


@pytest.fixture
def faulty(genzoo_register: Any) -> Any:
    """The samplers and model above registered as plugin ``ninetha`` for one test; torch's globals restored after
    it (had the guard missed a change, no later test would run as it should)."""
    hooks = MODULE._global_forward_hooks
    genzoo_register(types.SimpleNamespace(register_samplers=register_samplers, register_models=register_models),
                    PLUGIN, DISTRIBUTION)
    yield
    MODULE._global_forward_hooks = hooks
    torch.set_default_dtype(torch.float32)
    torch.set_default_device(None)
    torch.set_grad_enabled(True)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ninetha")
    return finished_run(write_fake_mnist(root / "data"), root / "run")


def without_seconds(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "seconds"}


# -- H8-1, H8-15, H8-6, H8-7, H8-14: changes the guard did not see ------------------------------

CHANGES = {"klass": "decoder.__class__", "pclass": "decoder.2.weight.__class__", "order": "decoder._modules",
           "newdict": "decoder.__dict__", "grebind": "torch.nn.modules.module._global_forward_hooks"}


@pytest.mark.parametrize("sampler", sorted(CHANGES))
def test_a_sampler_that_changes_classes_order_dict_or_global_hooks_is_refused_and_put_back(faulty, vae_run, sampler):
    """Each passed the guard: no error, and every later decode was a constant image."""
    from genzoo.building import build_sampler, load_model

    model = load_model(vae_run)
    z = torch.randn(3, model.config.latent, generator=torch.Generator().manual_seed(0))
    x = torch.rand(3, *model.sample_shape, generator=torch.Generator().manual_seed(1))
    before = (model.decode(z), model.reconstruct(x))
    decoder, hooks = vars(model.decoder), MODULE._global_forward_hooks
    built = build_sampler(model, "vae", sampler, lambda: pytest.fail("no sampler here fits"))
    with pytest.raises(GenzooError, match=re.escape(f"sampler {sampler!r} {ORIGIN} changed the model's "
                                                    f"{CHANGES[sampler]}") + ".* while drawing 4 samples"):
        built.sample(4)
    assert torch.equal(model.decode(z), before[0]) and torch.equal(model.reconstruct(x), before[1])
    assert type(model.decoder) is torch.nn.Sequential and type(model.decoder[2].weight) is torch.nn.Parameter
    assert list(model.decoder._modules) == ["0", "1", "2"] and vars(model.decoder) is decoder
    assert MODULE._global_forward_hooks is hooks and not hooks


def test_a_sampler_that_reorders_hooks_is_refused_and_they_are_put_back_in_order(faulty, vae_run):
    """H8-6 for hooks: torch calls them in their dict's order."""
    from genzoo.building import build_sampler, load_model

    model = load_model(vae_run)
    model.decoder.register_forward_hook(lambda module, args, out: out * 0.5)
    model.decoder.register_forward_hook(lambda module, args, out: out + 1.0)
    z = torch.randn(3, model.config.latent, generator=torch.Generator().manual_seed(0))
    before, order = model.decoder(z), list(model.decoder._forward_hooks)

    class Reversed(Harmless):
        def sample(self, n: int) -> torch.Tensor:
            hooks = self.model.decoder._forward_hooks
            hooks.move_to_end(next(iter(hooks)))
            return super().sample(n)

    built = build_sampler(model, "vae", "harmless", lambda: pytest.fail("no fit"))
    built.inner = Reversed(built.inner.config, model)
    with pytest.raises(GenzooError, match=re.escape("changed the model's decoder._forward_hooks")):
        built.sample(4)
    assert list(model.decoder._forward_hooks) == order and torch.equal(model.decoder(z), before)


@pytest.mark.parametrize("sampler", ["klass", "pclass", "order", "newdict", "grebind"])
def test_eval_with_such_a_sampler_measures_the_untouched_model(faulty, vae_run, sampler, tmp_path, capsys):
    """The interpolation FIDs filed were a constant image's (or a reordered decoder's), exit 0, no warning."""
    code, control, err = evaluate(copied(vae_run, tmp_path / "control"), vae_run.parent / "data", "harmless", capsys)
    assert code == 0, err
    code, result, err = evaluate(copied(vae_run, tmp_path / "run"), vae_run.parent / "data", sampler, capsys)
    assert code == 0 and "Traceback" not in err, err
    assert result["fid"] == {}, result["fid"]
    assert f"changed the model's {CHANGES[sampler]}" in result["unavailable"][f"sampler {sampler}"]
    assert without_seconds(result["interpolation"]) == without_seconds(control["interpolation"])
    assert without_seconds(result["reconstruction"]) == without_seconds(control["reconstruction"])


# -- H8-2: torch's default dtype, default device and grad mode -----------------------------------

DEFAULTS = {"f64": "torch's default dtype (float32, set to float64)",
            "meta": "torch's default device (cpu, set to meta)",
            "nograd": "torch's grad mode (enabled, set to disabled)"}


@pytest.mark.parametrize("sampler", sorted(DEFAULTS))
def test_a_sampler_that_changes_torch_s_defaults_is_refused_and_they_are_put_back(faulty, vae_run, sampler):
    """The next step failed with a traceback (``Input type (float) and bias type (double) should be the same``)."""
    from genzoo.building import build_sampler, load_model

    built = build_sampler(load_model(vae_run), "vae", sampler, lambda: pytest.fail("no sampler here fits"))
    with pytest.raises(GenzooError, match=re.escape(f"sampler {sampler!r} {ORIGIN} changed {DEFAULTS[sampler]} "
                                                    "while drawing 4 samples")):
        built.sample(4)
    assert torch.get_default_dtype() is torch.float32 and torch.get_default_device() == torch.device("cpu")
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("sampler", ["f64", "meta"])
def test_eval_with_a_sampler_that_changes_torch_s_defaults_finishes(faulty, vae_run, sampler, tmp_path, capsys):
    """A traceback after the work, no eval.json."""
    code, control, err = evaluate(copied(vae_run, tmp_path / "control"), vae_run.parent / "data", "harmless", capsys)
    assert code == 0, err
    code, result, err = evaluate(copied(vae_run, tmp_path / "run"), vae_run.parent / "data", sampler, capsys)
    assert code == 0 and "Traceback" not in err, err
    assert result["fid"] == {} and DEFAULTS[sampler] in result["unavailable"][f"sampler {sampler}"], result
    assert without_seconds(result["interpolation"]) == without_seconds(control["interpolation"])


def test_compare_and_its_resume_with_a_sampler_that_changes_the_default_dtype_finish(faulty, tmp_path, capsys):
    """compare trained, then failed with a traceback; ``--resume`` failed the same way: it could never finish."""
    data = write_fake_mnist(tmp_path / "data")
    out = tmp_path / "cmp"
    code, _, err = run_main(["compare", "vae", "--epochs", "1", "--latent", "2", "--batch-size", "20", "--device",
                             "cpu", "--data-root", str(data), "--train-limit", "40", "--test-limit", "20",
                             "--fid-samples", "10", "--features", "mnist", "--iwae-k", "2", "--out", str(out),
                             "--sampler", "f64"], capsys)
    assert code == 0 and "Traceback" not in err and DEFAULTS["f64"] in err, err
    assert json.loads((out / "results.json").read_text())["models"][0]["fid"] == {}
    code, stdout, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 0 and "Traceback" not in err and "already complete" in stdout + err, stdout + err


# -- H8-13: a model's decoded midpoints that are not pixels ---------------------------------------


@pytest.mark.parametrize("model, found", [("cdec", "complex64 values"), ("widedec", "values from 1.")])
def test_eval_of_a_model_whose_decodes_are_not_pixels_gives_the_interpolation_n_a(faulty, data_root, model, found,
                                                                                   tmp_path, capsys):
    """The interpolation FIDs kept the real part (a raw torch UserWarning) and were filed; decodes out of [0, 1]
    were ``Error: model 'given as images' produced samples ...`` after all the work, exit 1, no eval.json."""
    run = finished_run(data_root, tmp_path / "run", model=model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, result, err = evaluate(run, data_root, "model", capsys)
    assert code == 0 and "Traceback" not in err, err
    assert not [w for w in caught if "imaginary part" in str(w.message)], [str(w.message) for w in caught]
    assert result["interpolation"] is None
    assert f"model {model!r} produced decoded images that are not pixels in [0, 1] ({found}" in \
        result["unavailable"]["interpolation"], result["unavailable"]
