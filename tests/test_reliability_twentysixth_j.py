"""Plugins F9 (and F8, below) of the twenty-fourth hostile pass, fixed by the twenty-sixth look: a plugin's ``GenzooError`` whose
``__str__`` raises. genzoo printed every ``GenzooError`` with ``str()``: a 46- to 52-line traceback from its own
``Error:`` line, in ``train`` (a model's ``loss`` raising it) and in every command (a ``register_*`` hook raising it).
Now the plugin is named with what it raised, in one line. Each test failed before its fix.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import assert_one_line_error, data_root, register_model, run_main  # noqa: F401 - data_root is a fixture

from genzoo import hookimpl
from genzoo.errors import GenzooError


def _train(name: str, data_root: Any, tmp_path: Any, capsys: Any, *more: str) -> tuple[int, str, str]:
    """``genzoo train NAME`` on a tiny budget into ``tmp_path/run``."""
    return run_main(["train", name, "--epochs", "1", "--train-limit", "64", "--test-limit", "20", "--batch-size",
                     "16", "--device", "cpu", "--data-root", str(data_root), "--out", str(tmp_path / "run"), *more],
                    capsys)


class Unshowable(GenzooError):
    def __str__(self) -> str:
        raise RuntimeError("no str")


class UnshowableVAE(VAE):
    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise Unshowable("x")


def test_a_loss_raising_an_unshowable_genzoo_error_is_one_line(genzoo_register, data_root, tmp_path, capsys) -> None:  # noqa: F811
    register_model(genzoo_register, "unshowable26", UnshowableVAE)
    code, _, err = _train("unshowable26", data_root, tmp_path, capsys)
    assert_one_line_error(code, err, "UnshowableVAE.loss raised Unshowable: (its message cannot be shown: "
                                     "RuntimeError)")


def test_a_hook_raising_an_unshowable_genzoo_error_is_one_line(genzoo_register, capsys) -> None:
    @hookimpl
    def register_models(register: Any) -> None:
        raise Unshowable("licence server unreachable")

    genzoo_register(types.SimpleNamespace(register_models=register_models), "unshowable26", "test-unshowable26")
    code, _, err = run_main(["plugins"], capsys)
    assert_one_line_error(code, err, "plugin 'unshowable26' (distribution 'test-unshowable26') failed while "
                                     "registering models: Unshowable: (its message cannot be shown: RuntimeError)")


# -- plugins F8: a load_state_dict that leaves weights as built ------------------------------------------------------


class PartialLoadVAE(VAE):
    """Its ``load_state_dict`` drops the decoder's weights (a renamed layer) when :attr:`drop` is set."""

    drop = False

    def load_state_dict(self, state: Any, strict: bool = True, assign: bool = False) -> Any:
        if self.drop:
            state = {k: v for k, v in state.items() if not k.startswith("decoder.")}
            return super().load_state_dict(state, strict=False)
        return super().load_state_dict(state, strict=strict, assign=assign)


def test_weights_a_load_state_dict_left_as_built_are_refused_before_any_measurement(genzoo_register, data_root,  # noqa: F811
                                                                                   tmp_path, capsys,
                                                                                   monkeypatch) -> None:
    """Plugins F8. Before: ``wrote RUN/eval.json``, exit 0, its nelbo 551.9 where the run's weights give 448.1
    (a freshly initialised decoder); ``sample`` drew from it too."""
    register_model(genzoo_register, "partial26", PartialLoadVAE)
    run = tmp_path / "run"
    code, _, err = _train("partial26", data_root, tmp_path, capsys, "--latent", "2")
    assert code == 0, err
    monkeypatch.setattr(PartialLoadVAE, "drop", True)
    for command in (["eval", str(run), "--test-limit", "20", "--fid-samples", "0", "--iwae-k", "2"],
                    ["sample", str(run), "-n", "4", "--out", str(tmp_path / "s.png")]):
        code, _, err = run_main(command, capsys)
        assert_one_line_error(code, err, "PartialLoadVAE.load_state_dict left decoder.0.bias, decoder.0.weight, "
                                         f"decoder.2.bias and 1 more otherwise than {run / 'checkpoint.pt'} holds them")
    assert not (run / "eval.json").exists() and not (tmp_path / "s.png").exists()


def test_an_automatic_optimization_flag_that_is_no_bool_is_named(genzoo_register, data_root, tmp_path,  # noqa: F811
                                                                  capsys) -> None:
    """Plugins M5. Before: ``Error: GanX has 2 optimisers: automatic optimisation steps one; a model with several sets
    automatic_optimization = False ...``, to an author who had set it to the string ``"False"``."""
    from genzoo_plugins.gan.model import GAN

    register_model(genzoo_register, "ganx26", type("GanX", (GAN,), {"automatic_optimization": "False"}))
    code, _, err = _train("ganx26", data_root, tmp_path, capsys)
    assert_one_line_error(code, err, "GanX.automatic_optimization is 'False', not True or False")
    assert not (tmp_path / "run").exists()


class InfiniteStatVAE(VAE):
    """Reports a statistic that is infinite from the first step, its objective finite."""

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        stats = super().loss(x)
        return {**stats, "ratio": torch.full_like(stats["kl"], float("inf")).detach()}


def test_a_non_finite_statistic_beside_a_finite_objective_is_named_not_a_divergence(genzoo_register, data_root,  # noqa: F811
                                                                                   tmp_path, capsys) -> None:
    """Plugins M10. Before: ``Error: training diverged: non-finite loss at epoch 1, step 1; ...``, naming neither
    the model nor the statistic, though nothing diverged."""
    register_model(genzoo_register, "infstat26", InfiniteStatVAE)
    code, _, err = _train("infstat26", data_root, tmp_path, capsys)
    line = assert_one_line_error(code, err, "InfiniteStatVAE.loss gave a non-finite 'ratio' (inf) at epoch 1, step 1, "
                                            "its objective 'nelbo' finite: every statistic it reports must be finite")
    assert "diverged" not in line


def test_an_unknown_default_sampler_names_the_model_whose_default_it_is(genzoo_register, data_root, tmp_path,  # noqa: F811
                                                                        capsys) -> None:
    """Plugins M7. Before: ``Error: unknown sampler 'no-such' (available: gmm, model, normal)``, to a user who named
    no sampler."""
    register_model(genzoo_register, "nosampler26", type("NoSamplerVAE", (VAE,), {"default_sampler": "no-such"}))
    code, _, err = _train("nosampler26", data_root, tmp_path, capsys)
    assert_one_line_error(code, err, "NoSamplerVAE.default_sampler names unknown sampler 'no-such' (available: ")


def test_an_exception_without_a_message_is_named_without_a_dangling_colon() -> None:
    """Plugins M3 (its second part). Before: ``Error: ExcVAE.loss raised StopIteration:; the last good ...``."""
    from genzoo.errors import describe

    assert describe(StopIteration()) == "StopIteration"
    assert describe(MemoryError("  ")) == "MemoryError"
    assert describe(ValueError("bad")) == "ValueError: bad"
