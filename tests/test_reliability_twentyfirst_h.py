"""Found by the twenty-first look (eighteenth hostile pass, plugins report, minor items M2-M7, M13, M14).

M2: config fields whose options clash (a field ``help``; a bool ``sparse`` beside an int ``no_sparse``) were taken.
M3: a hook with a typo'd name (``register_model``) was ignored without a word. M4: one plugin registering one name
twice stopped every command as if two plugins clashed. M5: names no one can type or use as a folder name (250
characters, ``-dash``, one space) were taken, and a run folder too long to make left its parents behind. M6: a stat
named ``""`` was written as ``train_``. M7: an empty ``unsupported()`` reason gave an empty line. M13: a
``check_training_split`` that returned its objection was ignored. M14: a ``loss`` returning a mapping that is not a
dict was blamed on ``evaluate``, which only passed it on. Each test failed before its fix (docs/reliability.md).
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.vae.config import VAEConfig
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
)
from test_security_plugins import Site, site  # noqa: F401 - site is a fixture

from genzoo import GenzooError, Sampler, hookimpl, plugin_registry
from genzoo.sampler import sampler_problem

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu",
        "--latent", "2", "--hidden", "16"]


def registered(genzoo_register: Any, kind: str, entries: dict[str, Any], capsys: Any) -> tuple[list[str], list[str]]:
    """Register ``entries`` (name -> object) of ``kind`` from one test plugin 'named' (distribution 'test-named');
    the registry's names of that kind and the warning lines the registration printed."""
    @hookimpl
    def hook(register: Any) -> None:
        for name, obj in entries.items():
            register(name, obj)

    hooks = {"model": "register_models", "sampler": "register_samplers"}
    genzoo_register(types.SimpleNamespace(**{hooks[kind]: hook}), "named", "test-named")
    capsys.readouterr()
    names = plugin_registry.registry().names(kind)
    return names, capsys.readouterr().err.strip().splitlines()


def skipped(kind: str, why: str) -> str:
    """The one warning of the registry's for test plugin 'named' skipped for ``why``."""
    return (f"genzoo: warning: plugin 'named' (distribution 'test-named') failed while registering {kind}s and is "
            f"skipped: {why}")


# -- M2: config fields whose options clash ------------------------------------------------------


@dataclass
class HelpConfig(VAEConfig):
    help: int = field(default=1, metadata={"help": "A field called help."})


@dataclass
class NoSparseConfig(VAEConfig):
    sparse: bool = field(default=False, metadata={"help": "Sparse codes."})
    no_sparse: int = field(default=3, metadata={"help": "How many codes are never sparse."})


@dataclass
class SeedConfig(VAEConfig):
    seed: int = field(default=1, metadata={"help": "Shadows genzoo train's own --seed."})


@dataclass
class LoggersConfig(VAEConfig):
    loggers: int = field(default=1, metadata={"help": "How many loggers (named as train's --log keeps its value)."})


@dataclass
class ModelFieldConfig(VAEConfig):
    model: int = field(default=1, metadata={"help": "Named as train's MODEL argument."})


@pytest.mark.parametrize(("config", "why"), [
    (HelpConfig, "its config field 'help' gives the option --help, which is genzoo's own"),
    (NoSparseConfig, "its config fields 'sparse' and 'no_sparse' both give the option --no-sparse"),
    (SeedConfig, "its config field 'seed' gives the option --seed, which is genzoo's own"),
    (LoggersConfig, "its config field 'loggers' has the name genzoo keeps its own --log under, whose value it "
                    "would overwrite"),
    (ModelFieldConfig, "its config field 'model' has the name genzoo keeps its own MODEL argument under, whose "
                       "value it would overwrite")])
def test_config_fields_whose_options_clash_are_refused_at_registration(genzoo_register: Any, config: type,
                                                                       why: str, capsys: Any) -> None:
    """M2. Before: registered; ``train helpvae --help`` said only ``Option '--help' requires an argument`` (no help
    at all), and ``train novae --no-sparse --out X`` read ``--out`` as the int's value, the bool never settable
    false; a field ``loggers`` made every run say ``Invalid value for '--log': Value must be an iterable``, one
    named ``model`` read the model's name as its value (a field clashing with genzoo's own option was refused only
    by each ``train MODEL``). After: the registry
    refuses the model, one warning, as other bad registrations."""
    model = type("ClashVAE", (VAE,), {"Config": config})
    names, warnings = registered(genzoo_register, "model", {"clashvae": model, "fine": VAE}, capsys)
    assert "clashvae" not in names and "fine" not in names
    assert warnings == [skipped("model", f"TypeError: model 'clashvae': {why}; the plugin must rename it")]
    code, _, err = run_main(["train", "clashvae", "--help"], capsys)
    assert code == 1 and err.strip().splitlines()[-1].startswith("Error: unknown model 'clashvae'"), err


def test_config_fields_that_clash_with_nothing_become_options(genzoo_register: Any, capsys: Any) -> None:
    """M2, the other side: a bool ``sparse`` beside an int ``sparsity`` is two options, each settable."""
    @dataclass
    class SparseConfig(VAEConfig):
        sparse: bool = field(default=True, metadata={"help": "Sparse codes."})
        sparsity: int = field(default=3, metadata={"help": "How many codes are sparse."})

    names, warnings = registered(genzoo_register, "model", {"sparsevae": type("S", (VAE,), {"Config": SparseConfig})},
                                 capsys)
    assert "sparsevae" in names and warnings == []
    code, out, _ = run_main(["train", "sparsevae", "--help"], capsys)
    assert code == 0 and "--sparse / --no-sparse" in out and "--sparsity" in out


class PlainConfig:
    """A config that is no ModelConfig dataclass."""

    latent: int = 2


def test_a_config_that_is_no_model_config_dataclass_is_refused_at_registration(genzoo_register: Any,
                                                                               capsys: Any) -> None:
    """M2, what the clash check reads. Before: registered, then ``genzoo list`` and ``train`` were an
    ``AttributeError: ... has no attribute 'loss_option'`` traceback. After: refused at registration in one warning."""
    names, warnings = registered(genzoo_register, "model", {"plainvae": type("P", (VAE,), {"Config": PlainConfig})},
                                 capsys)
    assert "plainvae" not in names
    assert warnings == [skipped("model", "TypeError: model 'plainvae' has a Config that is not a genzoo.ModelConfig "
                                         f"dataclass: {PlainConfig!r}")]


# -- M3: a hook genzoo does not know ------------------------------------------------------------


TYPO_HOOK = '''
from genzoo import hookimpl
from genzoo_plugins.vae.model import VAE
from genzoo_plugins.losses import BCESum

@hookimpl
def register_model(register):
    register("typovae", VAE)

@hookimpl
def register_losses(register):
    register("typo-bce", BCESum())
'''


def test_a_hook_genzoo_does_not_know_skips_its_plugin_with_one_warning(site: Site, capsys: Any) -> None:
    """M3. Before: ``register_model`` (for ``register_models``) was ignored without a word, and ``train typovae``
    said only ``unknown model 'typovae'``. After: one warning naming the plugin and the hook, the plugin skipped
    (its known hooks too: a plugin is loaded whole or not at all, as one with an invalid hook is)."""
    site.install("genzoo-typo", "hz_typo", TYPO_HOOK, entry="typo")
    code, out, err = run_main(["list"], capsys)
    assert code == 0
    assert err.strip().splitlines() == [
        "genzoo: warning: plugin 'typo' from 'genzoo-typo' has an invalid hook and is skipped: it implements "
        "register_model (did you mean register_models?), which is no genzoo hook; genzoo's hooks are "
        "register_datasets, register_loggers, register_losses, register_models, register_samplers"]
    assert not plugin_registry.pm.has_plugin("typo")
    assert "typo-bce" not in plugin_registry.registry().names("loss")


# -- M4: one plugin registering one name twice -------------------------------------------------


class OtherVAE(VAE):
    pass


def test_one_plugin_registering_one_name_twice_is_that_plugins_failure(genzoo_register: Any, capsys: Any) -> None:
    """M4. Before: every command, ``genzoo list`` too, stopped with ``model 'dupvae' is registered twice: by plugin
    'named' ... and by plugin 'named' ...; uninstall one or restrict plugins with GENZOO_LOAD_PLUGINS``, advice that
    cannot apply. After: that plugin's registrations are skipped with one warning; every command runs."""
    @hookimpl
    def register_twice(register: Any) -> None:
        register("dupvae", VAE)
        register("dupvae", OtherVAE)

    genzoo_register(types.SimpleNamespace(register_models=register_twice), "named", "test-named")
    code, out, err = run_main(["list"], capsys)
    assert code == 0 and "dupvae" not in out
    assert err.strip().splitlines() == [skipped("model", "ValueError: it registers model 'dupvae' twice")]


# -- M5: names no one can type or use as a folder name ----------------------------------------


@pytest.mark.parametrize(("name", "why"), [
    ("v" * 250, "a model name must be at most 100 bytes (it names folders, runs/NAME-TIMESTAMP), got 'vvv"),
    ("-dash", "a model name must not start with '-' (the command line would read it as an option)"),
    (" ", "a model name must not start or end with a space"),
    (" vae", "a model name must not start or end with a space"),
    ("vae\t", "a model name must hold printable characters only"),
    ("x\x1b[31m", "a model name must hold printable characters only")])
def test_a_name_no_one_can_type_or_use_as_a_folder_name_is_refused(genzoo_register: Any, name: str, why: str,
                                                                   capsys: Any) -> None:
    """M5. Before: a 250-character name was registered, and ``train`` failed with ``File name too long``, leaving
    the empty ``runs/`` behind; ``-dash`` could not be given (``train -- -dash`` read the options as extra
    arguments); a name of one space trained into ``runs/ -TIMESTAMP``. After: refused as ``/`` and ``..`` are."""
    names, warnings = registered(genzoo_register, "model", {"fine": VAE, name: VAE}, capsys)
    assert name not in names and "fine" not in names
    assert len(warnings) == 1 and warnings[0].startswith(skipped("model", f"TypeError: {why}")), warnings


def test_a_run_folder_too_long_to_make_leaves_no_folder_behind(data_root: Path, tmp_path: Path,
                                                                capsys: Any) -> None:
    """M5, the folder: before, ``File name too long`` left the parents made for it (the default ``runs/``, or
    those of ``--out``). After: one line, and the folders made for it are removed."""
    out = tmp_path / "made" / "for" / ("w" * 300)
    code, _, err = run_main(["train", "vae", *TINY, "--data-root", str(data_root), "--out", str(out)], capsys)
    assert_one_line_error(code, err, f"cannot create run folder {out}: File name too long")
    assert not (tmp_path / "made").exists()


# -- M6 and M14: what loss returns ------------------------------------------------------------


class EmptyNameVAE(VAE):
    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().loss(x)
        return {**out, "": out["kl"]}


class ProxyVAE(VAE):
    """Its loss returns a read-only view of its dict; evaluate is Model's, which calls loss."""

    def loss(self, x: torch.Tensor) -> Any:
        return types.MappingProxyType(super().loss(x))


class ProxyEvalVAE(ProxyVAE):
    """As ProxyVAE, with an evaluate of its own that passes on what the inherited evaluate gave."""

    def evaluate(self, x: torch.Tensor) -> Any:
        return super().evaluate(x)


class ReturningSplitVAE(VAE):
    """Returns its objection instead of raising it."""

    @classmethod
    def check_training_split(cls, config: Any, images: int, batch_size: int) -> Any:
        return "need at least 10000 images"


@pytest.fixture
def models(genzoo_register: Any) -> None:
    @hookimpl
    def register_models(register: Any) -> None:
        for name, cls in {"emptyname": EmptyNameVAE, "proxy": ProxyVAE, "proxyeval": ProxyEvalVAE,
                          "returnsplit": ReturningSplitVAE}.items():
            register(name, cls)

    genzoo_register(types.SimpleNamespace(register_models=register_models), "twentyfirst-h", "test-twentyfirst-h")


def test_a_stat_named_by_the_empty_string_is_refused_before_the_run_folder(models: None, data_root: Path,
                                                                          tmp_path: Path, capsys: Any) -> None:
    """M6. Before: trained, exit 0: metrics.jsonl held ``train_`` and ``test_``, and the summary read ``final test
    metrics (epoch 1, per image):  0.0452, bce ...``, a value without a name. After: one line, as the int name."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "emptyname", *TINY, "--data-root", str(data_root), "--out", str(run)], capsys)
    assert_one_line_error(code, err, "EmptyNameVAE.loss returned a value named by the empty str: metrics.jsonl "
                                     "names each value train_NAME and test_NAME")
    assert not run.exists()


@pytest.mark.parametrize("model", ["proxy", "proxyeval"])
def test_a_loss_returning_a_mapping_not_a_dict_is_blamed_on_the_loss(models: None, data_root: Path, tmp_path: Path,
                                                                    model: str, capsys: Any) -> None:
    """M14. Before: ``ProxyEvalVAE.evaluate returned a mappingproxy, not a dict ...``, though its evaluate only
    passed on what the inherited evaluate got from the loss. After: the loss is named, through evaluate."""
    run = tmp_path / "run"
    cls = {"proxy": "ProxyVAE", "proxyeval": "ProxyEvalVAE"}[model]
    code, _, err = run_main(["train", model, *TINY, "--data-root", str(data_root), "--out", str(run)], capsys)
    assert_one_line_error(code, err, f"Error: {cls}.loss (through evaluate) returned a mappingproxy, not a dict of "
                                     "per-image values")
    assert not run.exists()


# -- M13: check_training_split's answer -------------------------------------------------------


def test_a_check_training_split_that_returns_its_objection_is_refused(models: None, data_root: Path,
                                                                      tmp_path: Path, capsys: Any) -> None:
    """M13. Before: ``return "need at least 10000 images"`` was ignored and the run trained, exit 0. After: one
    line before the run folder; the method must raise its objection and return None."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "returnsplit", *TINY, "--data-root", str(data_root), "--out", str(run)],
                            capsys)
    assert_one_line_error(code, err, "ReturningSplitVAE.check_training_split returned 'need at least 10000 images', "
                                     "not None: it must raise GenzooError with its objection")
    assert not run.exists()


# -- M7: an empty reason from unsupported() ----------------------------------------------------


class EmptyReasonSampler(Sampler):
    """Says it cannot draw, without saying why."""

    @classmethod
    def unsupported(cls, model: Any) -> str | None:
        return "  "


def test_a_sampler_whose_unsupported_gives_an_empty_reason_is_refused_as_a_broken_answer(
        genzoo_register: Any, capsys: Any) -> None:
    """M7. Before: ``sampler 'emptyreason' cannot draw from model 'vae':``, a line ending in no reason. After: the
    empty answer is refused as one that is not a str is."""
    names, _ = registered(genzoo_register, "sampler", {"emptyreason": EmptyReasonSampler}, capsys)
    assert "emptyreason" in names
    model = plugin_registry.registry().build_model("vae", (1, 28, 28), latent=2, hidden=16)
    expected = ("sampler 'emptyreason' from plugin 'named' (distribution 'test-named') answered unsupported() with "
                "an empty str, not a reason or None")
    with pytest.raises(GenzooError) as raised:
        sampler_problem(model, "emptyreason")
    assert str(raised.value) == expected
    with pytest.raises(GenzooError) as raised:
        plugin_registry.registry().build_sampler("emptyreason", model, "vae")
    assert str(raised.value) == expected

