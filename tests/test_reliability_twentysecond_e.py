"""Found by the nineteenth hostile pass, plugins (F4 to F7): entry-point names that collide after genzoo's
``NAME@DIST`` renaming (F4), codes of width 0 (F5) or of a complex dtype (F6) from a model's ``encode``, and a
built model whose configuration lacks a capability its class claims (F7: the built-in ``vae`` with ``--loss mse``
has no ELBO nor likelihood), which ``capabilities()``, ``eval.json`` and the conformance kit took as there. Each
test failed before its fix (docs/reliability.md, the rows of the nineteenth hostile pass, plugins).
"""

from __future__ import annotations

import json
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
)
from test_security_plugins import BUILTIN_MODELS, Site, site  # noqa: F401 - site is a fixture

from genzoo import hookimpl

# -- F4: entry-point names that collide after the NAME@DIST renaming ---------------------------------------------

TOY = '''
from genzoo import hookimpl
from genzoo_plugins.vae.model import VAE

class Toy(VAE):
    pass

@hookimpl
def register_models(register):
    register({name!r}, Toy)
'''


def distribution(site: Site, name: str, entries: list[tuple[str, str]]) -> None:
    """Install ``name`` whose ``entry_points.txt`` lists ``entries`` (entry-point name, module; a module each
    registering the model of its own name) as given, repeated names included."""
    info = site.root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[genzoo]\n" + "".join(f"{entry} = {module}\n" for entry, module in entries))
    for _, module in entries:
        (site.root / f"{module}.py").write_text(TOY.format(name=module.replace("_", "-")))
        site.modules.append(module)


def plugins(capsys: pytest.CaptureFixture[str]) -> tuple[list[dict[str, Any]], str]:
    code, out, err = run_main(["plugins", "--json"], capsys)
    assert code == 0 and "Traceback" not in err, err
    return json.loads(out), err


def test_an_entry_point_listed_three_times_is_one_warning_and_the_others_load(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    """F4 (a). Before: ``ValueError: Plugin name already registered: models@hostile-dup=<module 'hdup_c' ...>``, a
    traceback in every command."""
    distribution(site, "hostile-dup", [("models", "hdup_a"), ("models", "hdup_b"), ("models", "hdup_c")])
    rows, err = plugins(capsys)
    assert err.strip().splitlines() == [
        "genzoo: warning: entry point models = hdup_c of distribution 'hostile-dup' is skipped: the plugin names "
        "'models' and 'models@hostile-dup' are both taken (by distribution 'hostile-dup'); give each genzoo entry "
        "point of a distribution a name of its own"], err
    models = {row["name"]: (row["plugin"], row["distribution"]) for row in rows if row["kind"] == "model"}
    assert models == {**{name: (name.replace("-", "_"), "genzoo") for name in BUILTIN_MODELS},
                      "hdup-a": ("models", "hostile-dup"), "hdup-b": ("models@hostile-dup", "hostile-dup")}


def test_a_builtins_name_taken_by_a_third_party_entry_point_leaves_the_builtin_its_name(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    """F4 (b): entry points ``vae`` and ``vae@genzoo``, found before genzoo's own. Before: the built-in vae was the
    one that failed, ``ValueError: Plugin name already registered: vae@genzoo=<module 'genzoo_plugins.vae' ...>``,
    a traceback in every command. After: built-ins are registered first, under their own names."""
    distribution(site, "hostile-at", [("vae", "hat_a"), ("vae@genzoo", "hat_b")])
    rows, err = plugins(capsys)
    assert err == ""
    models = {row["name"]: (row["plugin"], row["distribution"]) for row in rows if row["kind"] == "model"}
    assert models["vae"] == ("vae", "genzoo")
    assert models["hat-a"] == ("vae@hostile-at", "hostile-at") and models["hat-b"][1] == "hostile-at"
    code, _, err = run_main(["list"], capsys)
    assert code == 0 and err == "", err


def test_a_third_party_entry_point_never_takes_a_builtins_fallback_name_first(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    """F4: ``vae@hostile-at`` listed before ``vae``: the second finds both its names taken and is the one skipped;
    the built-in keeps ``vae``."""
    distribution(site, "hostile-at", [("vae@hostile-at", "hat_c"), ("vae", "hat_d")])
    rows, err = plugins(capsys)
    assert err.strip().splitlines() == [
        "genzoo: warning: entry point vae = hat_d of distribution 'hostile-at' is skipped: the plugin names 'vae' and "
        "'vae@hostile-at' are both taken (by distributions 'genzoo' and 'hostile-at'); give each genzoo entry point "
        "of a distribution a name of its own"], err
    models = {row["name"]: (row["plugin"], row["distribution"]) for row in rows if row["kind"] == "model"}
    assert models["vae"] == ("vae", "genzoo") and "hat-d" not in models


# -- F5, F6: codes of width 0, complex codes ----------------------------------------------------------------------


class OddCodeVAE(VAE):
    """A VAE whose ``encode`` gives, once ``mode`` is set, codes of width 0 (``z[:, :0]``, a slice bound forgotten)
    or complex ones (whose ``decode`` takes ``real + imag``): trained as a plain VAE first."""

    mode = ""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = super().encode(x)
        if self.mode == "zero-width":
            return z[:, :0]
        if self.mode == "complex":
            return torch.complex(z, z)
        return z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return super().decode(z.real + z.imag if z.is_complex() else z)


@hookimpl
def register_models(register: Any) -> None:
    register("oddcode", OddCodeVAE)


@pytest.fixture
def oddcode_run(genzoo_register: Any, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                monkeypatch: pytest.MonkeyPatch) -> Path:
    """A finished tiny run of ``oddcode`` (its codes still plain)."""
    genzoo_register(types.SimpleNamespace(register_models=register_models), "oddcode", "test-oddcode")
    run = tmp_path / "run"
    code, _, err = run_main(["train", "oddcode", "--data-root", str(data_root), "--epochs", "1", "--batch-size", "40",
                             "--train-limit", "40", "--test-limit", "20", "--latent", "2", "--hidden", "16",
                             "--device", "cpu", "--out", str(run)], capsys)
    assert code == 0, err
    return run


ODD_CODES = {"zero-width": "codes of shape (20, 0)", "complex": "codes of dtype complex64"}


def reason(mode: str) -> str:
    return (f"OddCodeVAE.encode gave {ODD_CODES[mode]} for 20 images; it must give (images, latent) codes, real "
            "floating-point numbers and a latent of at least 1")


@pytest.mark.parametrize("mode", list(ODD_CODES))
def test_genzoo_latent_refuses_codes_of_width_0_or_complex_in_one_line(
        oddcode_run: Path, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """F5: before, ``IndexError: argmax(): Expected reduction dim 1 to have non-zero size.`` from
    ``latent_space.project``, a traceback. F6: before, torch's ``UserWarning: Casting complex values to real
    discards the imaginary part``, the real parts drawn and measured, ``wrote ...``, exit 0."""
    monkeypatch.setattr(OddCodeVAE, "mode", mode)
    out = tmp_path / "latent"
    code, _, err = run_main(["latent", str(oddcode_run), "--pairs", "4", "--test-limit", "20", "--data-root",
                             str(data_root), "--device", "cpu", "--out", str(out)], capsys)
    assert_one_line_error(code, err, reason(mode))
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("mode", list(ODD_CODES))
def test_eval_of_codes_of_width_0_or_complex_files_reconstruction_and_interpolation_as_na(
        oddcode_run: Path, data_root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        mode: str) -> None:
    """F5: before, ``RuntimeError: cannot reshape tensor of 0 elements into shape [-1, 0]`` from
    ``latent_space.midpoint_images``, a traceback. F6: before, the interpolation FID of the codes' real parts in
    ``eval.json``, exit 0, after torch's raw warning."""
    monkeypatch.setattr(OddCodeVAE, "mode", mode)
    code, _, err = run_main(["eval", str(oddcode_run), "--fid-samples", "10", "--features", "mnist", "--iwae-k", "2",
                             "--test-limit", "20", "--data-root", str(data_root), "--device", "cpu"], capsys)
    assert code == 0, err
    assert "Traceback" not in err and "UserWarning" not in err, err
    result = json.loads((oddcode_run / "eval.json").read_text())
    assert result["reconstruction"] is None and result["interpolation"] is None, result
    assert result["unavailable"]["reconstruction"] == reason(mode)
    assert reason(mode) in result["unavailable"]["interpolation"], result["unavailable"]
    assert result["negative_elbo"] is not None and result["fid"], result


# -- F7: a built model lacking a capability its class claims -------------------------------------------------------

NO_ELBO = "VAE has no ELBO: its reconstruction loss 'mse' is not the decoder's negative log-likelihood"
NO_LIKELIHOOD = "VAE has no likelihood: its reconstruction loss 'mse' is not the decoder's negative log-likelihood"


def test_capabilities_of_a_built_vae_follow_its_reconstruction_loss() -> None:
    """F7. Before: ``capabilities()`` of a VAE built with ``mse`` said ``elbo: True, likelihood: True``, the class's
    flags, though both methods refuse. The class (``genzoo list``) still claims them: another loss has them."""
    from genzoo.plugin_registry import registry

    reg = registry()
    mse = reg.build_model("vae", (1, 28, 28), reconstruction_loss="mse", latent=2, hidden=8)
    assert mse.capabilities() == {"reconstruct": True, "sample": True, "encode": True, "elbo": False,
                                  "likelihood": False}
    assert mse.lacking_capabilities() == {"elbo": NO_ELBO, "likelihood": NO_LIKELIHOOD}
    assert reg.build_model("vae", (1, 28, 28), latent=2, hidden=8).capabilities()["elbo"] is True
    assert reg.model("vae").capabilities()["elbo"] is True and reg.model("vae").capabilities()["likelihood"] is True


def test_the_conformance_kit_skips_the_elbo_and_likelihood_checks_of_a_vae_built_with_mse(
        pytester: pytest.Pytester) -> None:
    """F7. Before: ``FAILED ...::test_negative_elbo_is_per_image`` and ``...::test_importance_weights_are_finite_per_
    image_and_draw``, each the ``GenzooError: VAE has no ELBO ...`` the VAE raises as configured."""
    from pytester_support import run_session

    pytester.makepyfile(test_kit='''
from genzoo.testing import ModelConformance

class TestVaeMse(ModelConformance):
    model_name = "vae"
    options = {"loss": "mse"}
''')
    outcomes = run_session(pytester, "-k", "elbo or importance or capabilities or builds")
    found = {outcome.name: (outcome.outcome, outcome.message) for outcome in outcomes}
    assert found == {"test_negative_elbo_is_per_image": ("skipped", NO_ELBO),
                     "test_importance_weights_are_finite_per_image_and_draw": ("skipped", NO_LIKELIHOOD),
                     "test_missing_capabilities_fail_with_a_genzoo_error": ("passed", ""),
                     "test_builds_as_a_genzoo_model": ("passed", "")}, found


def test_eval_json_of_a_vae_trained_with_mse_records_the_capabilities_it_has(
        data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """F7. Before: ``eval.json``'s ``capabilities`` said ``elbo: true, likelihood: true`` beside the two n/a."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--loss", "mse", "--data-root", str(data_root), "--epochs", "1",
                             "--batch-size", "40", "--train-limit", "40", "--test-limit", "20", "--latent", "2",
                             "--hidden", "16", "--device", "cpu", "--out", str(run)], capsys)
    assert code == 0, err
    code, _, err = run_main(["eval", str(run), "--fid-samples", "10", "--features", "mnist", "--iwae-k", "2",
                               "--test-limit", "20", "--data-root", str(data_root), "--device", "cpu"], capsys)
    assert code == 0, err
    result = json.loads((run / "eval.json").read_text())
    assert result["capabilities"] == {"reconstruct": True, "sample": True, "encode": True, "elbo": False,
                                      "likelihood": False}
    assert result["negative_elbo"] is None and result["iwae"] is None
    assert result["unavailable"]["negative_elbo"] == NO_ELBO and result["unavailable"]["iwae"] == NO_LIKELIHOOD


class ClaimsMoreVAE(VAE):
    """Says it lacks a capability genzoo has no name for."""

    def lacking_capabilities(self) -> dict[str, str]:
        return {"teleport": "no"}


def test_a_lacking_capabilities_naming_no_claimed_capability_is_one_line_naming_it() -> None:
    """F7's new method, checked where genzoo asks: an answer it cannot read is a PluginFault naming it."""
    from genzoo_plugins.vae.config import VAEConfig

    from genzoo.errors import PluginFault

    model = ClaimsMoreVAE.build(VAEConfig(latent=2, hidden=8), (1, 28, 28))
    with pytest.raises(PluginFault) as info:
        model.capabilities()
    assert str(info.value) == (
        "ClaimsMoreVAE.lacking_capabilities returned {'teleport': 'no'}, not a dict from capabilities its class "
        "claims (elbo, encode, likelihood, reconstruct, sample) to why each is lacking, a non-empty str")
