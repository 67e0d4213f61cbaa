"""Command-line options: those several commands share (the training budget, data, device, evaluation), and those
made from a model's config.

Shared options are written once here, so every command spells and checks them alike, and
the conformance kit can see which option names a model may not take without importing
the command line. A plugin adds a hyper-parameter by adding a field to its config; ``genzoo train
beta-vae --beta 4`` then works without the core knowing ``beta``. Each field becomes
``--field-name`` (underscores turn into dashes) with the type of its annotation
(``int``, ``float``, ``str``, ``bool`` as ``--x/--no-x``, a ``Literal`` of choices,
or ``X | None`` of those) and the help text in ``field(metadata={"help": ...})``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Callable, Literal, Union

import click

from genzoo import plugin_registry
from genzoo.checks import shown
from genzoo.errors import GenzooError
from genzoo.evaluation.limits import MAX_FID_SAMPLES, MAX_IWAE_K
from genzoo.evaluation.protocols import PROTOCOLS
from genzoo.model import ModelConfig
from genzoo.plugin_registry import registry
from genzoo.precision import PRECISIONS
from genzoo.seeding import MAX_SEED
from genzoo.train_config import MAX_CURVE_SAMPLES, MAX_EPOCHS, TrainConfig

#: The options every genzoo command takes for its help (the group's ``help_option_names``).
HELP_OPTIONS = ("-h", "--help")
#: Fields of :class:`ModelConfig` itself, which ``genzoo train`` offers for every model.
SHARED_FIELDS = ("latent", "lr")
_SCALARS = {int: click.INT, float: click.FLOAT, str: click.STRING}
#: ``TrainConfig``'s defaults, which the budget's on/off options show.
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def option_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


class PositiveFloat(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """A finite float above zero (rejects 0, negatives, NaN and infinity)."""

    name = "positive number"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or number <= 0:
            self.fail(f"{value!r} must be a finite number above 0", param, ctx)
        return number


class NoneOrCount(click.IntRange):
    """0 (none), or a count of samples from 2 to ``most``: one sample has no covariance to take an FID of.

    Both bounds are click's, shown in ``--help`` and refused before anything starts, as ``--seed``'s are: the
    upper one and 1 were refused only by the config, seconds later (nineteenth hostile pass, files M1).
    """

    def __init__(self, most: int) -> None:
        super().__init__(0, most)

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        number: int = super().convert(value, param, ctx)
        if number == 1:
            self.fail(f"{number} is not in the range {self._describe_range()}.", param, ctx)
        return number

    def _describe_range(self) -> str:
        return f"x=0 or 2<=x<={self.max}"


def data_root_option(help: str = "Data folder [default: see genzoo data where].") -> click.Option:
    """``--data-root``: every command that reads data takes it; ``help`` says what it means there."""
    return click.Option(["--data-root"], type=click.Path(file_okay=False), help=help)


def seed_option(default: int = 0, help: str | None = None) -> click.Option:
    """``--seed``: every command that takes one takes the seeds ``check_seed`` does, and its help says which
    (``genzoo latent`` showed ``x>=0`` and refused seeds above 2**32 - 1; eighteenth hostile pass, M2)."""
    return click.Option(["--seed"], type=click.IntRange(0, MAX_SEED), default=default, show_default=True, help=help)


def device_option(default: str | None = "auto", help: str = "auto, cpu or cuda.") -> click.Option:
    return click.Option(["--device"], default=default, show_default=default is not None, help=help)


def download_option() -> click.Option:
    return click.Option(["--download/--no-download"], default=True, show_default=True, help="Download missing data.")


def nproc_option(help: str) -> click.Option:
    return click.Option(["--nproc"], type=click.IntRange(min=1), default=1, show_default=True, help=help)


def eval_options() -> list[click.Option]:
    """The evaluation options ``eval`` and ``compare`` share; :func:`eval_config` turns them into an ``EvalConfig``."""
    return [
        click.Option(["--fid-samples"], type=NoneOrCount(MAX_FID_SAMPLES), default=10_000, show_default=True,
                     help="Samples per FID (0: no FID)."),
        click.Option(["--features"], type=click.Choice(["auto", "mnist", "inception", "all"]), default="auto",
                     show_default=True, help="FID features; auto is mnist on CPU, both on a GPU."),
        click.Option(["--iwae-k"], type=click.IntRange(1, MAX_IWAE_K),
                     help="Importance samples for the NLL of a model with a likelihood "
                          "[default: 200, about a minute on a 2-core CPU]."),
        click.Option(["--inception-weights"], type=click.Path(dir_okay=False),
                     help="Inception weights file [default: $TORCH_HOME/hub/checkpoints/]."),
        click.Option(["--sampler", "samplers"], multiple=True, metavar="NAME[,NAME...]",
                     help="Measure each FID with these registered samplers (repeatable; see genzoo plugins) "
                          "[default: each model's own default sampler]."),
        click.Option(["--protocol"], type=click.Choice(sorted(PROTOCOLS)),
                     help="A named evaluation preset, recorded in the results; " + "; ".join(
                         f"{name}: {protocol['about']}" for name, protocol in sorted(PROTOCOLS.items())) + "."),
    ]


def eval_config(fid_samples: int, features: str, iwae_k: int | None, inception_weights: str | None,
                samplers: tuple[str, ...], protocol: str | None, given: Callable[[str], bool], seed: int = 0) -> Any:
    """The ``EvalConfig`` of :func:`eval_options`' values (evaluation imported only when a command evaluates).

    A protocol fixes the options ``given`` says were not typed; one typed with another
    value than the protocol's is refused by the config, in one line.
    """
    from genzoo.evaluation import DEFAULT_IWAE_K, EvalConfig

    values: dict[str, Any] = {"fid_samples": fid_samples, "features": features}
    if protocol is not None:
        values.update({name: fixed for name, fixed in PROTOCOLS[protocol]["fixes"].items() if not given(name)})
    return EvalConfig(**values, iwae_k=iwae_k or DEFAULT_IWAE_K, inception_weights=inception_weights, seed=seed,
                      samplers=sampler_names(samplers), protocol=protocol)


def sampler_names(given: tuple[str, ...]) -> list[str] | None:
    """``--sampler normal,gmm --sampler model`` as one list of names; None when none is given."""
    return listed_names("--sampler", "sampler", given) or None


def listed_names(option: str, kind: str, given: tuple[str, ...]) -> list[str]:
    """The names of ``kind`` a repeatable ``option`` took (``--log a,b --log c``), each once, in order.

    An empty name (``--log ''``, ``--sampler a,``) is refused in one line, whichever option it is given to:
    ``--log ''`` once trained with no logger while ``--sampler ''`` was refused; a name given twice is taken
    once, as ``--log a,a`` always was (``--sampler model,model`` said ``samplers names one sampler twice``;
    nineteenth hostile pass on plugins, M2 and M3).
    """
    names = [name.strip() for text in given for name in text.split(",")]
    if any(not name for name in names):
        typed = " ".join(f"{option} {shown(text)}" for text in given)
        raise GenzooError(f"{option} takes registered {kind} names separated by commas, got {typed}")
    return list(dict.fromkeys(names))


def budget_options(fid_curve: int = 0) -> list[click.Option]:
    """The training budget and data ``train`` and ``compare`` share: the fields of ``TrainConfig`` they set.

    ``fid_curve`` is the default of ``--fid-curve`` (``compare`` measures one, ``train`` none).
    """
    count = click.IntRange(min=1)
    return [
        click.Option(["--epochs"], type=click.IntRange(1, MAX_EPOCHS), default=5, show_default=True),
        click.Option(["--batch-size"], type=count, default=100, show_default=True),
        seed_option(),
        click.Option(["--dataset"], default="mnist", show_default=True, help="A registered dataset."),
        data_root_option(),
        device_option(),
        click.Option(["--train-limit"], type=count, help="Train on the first N images only."),
        click.Option(["--test-limit"], type=count, help="Evaluate on the first N test images only."),
        click.Option(["--fused/--no-fused"], default=_DEFAULTS["fused"], show_default=True,
                     help="Step the optimisers with torch's fused kernels where they offer them."),
        click.Option(["--compile/--no-compile"], default=_DEFAULTS["compile"], show_default=True,
                     help="Compile the training step with torch.compile (docs/benchmarks.md)."),
        click.Option(["--fp32-precision"], type=click.Choice(PRECISIONS), default=_DEFAULTS["fp32_precision"],
                     show_default=True,
                     help="How training multiplies fp32 matrices: auto (bf16 products on a CPU with bf16 units, "
                          "torch's defaults on a GPU), ieee (exact), bf16 (CPU), tf32 (NVIDIA GPU). Evaluation "
                          "is always exact."),
        click.Option(["--fid-curve"], type=NoneOrCount(MAX_CURVE_SAMPLES), default=fid_curve,
                     show_default=True, metavar="N",
                     help="After every epoch, the FID of N samples of the model's default sampler, in "
                          "fid_curve.jsonl (0: none; docs/evaluation.md)."),
    ]


NPROC_HELP = "Train on N processes of this machine, launched through torch.distributed.run (docs/distributed.md)."


def train_options() -> list[click.Parameter]:
    """Every option of ``genzoo train`` before the model's own (which :func:`config_options` adds)."""
    return [
        click.Argument(["model"]),
        click.Option(["--latent"], type=click.IntRange(min=1), help="Latent size (model default if omitted)."),
        click.Option(["--lr"], type=PositiveFloat(), help="Learning rate (model default if omitted)."),
        click.Option(["--loss"], help="A registered loss for the model to train with (model default if omitted)."),
        *budget_options(),
        click.Option(["--out"], type=click.Path(), help="Run folder [default: runs/<model>-<timestamp>]."),
        click.Option(["--checkpoint-every"], type=click.IntRange(min=1), help="Also checkpoint every N steps."),
        click.Option(["--log", "loggers"], multiple=True, metavar="NAME",
                     help="Stream the run to a registered logger, e.g. tensorboard (repeatable or a comma list)."),
        download_option(),
        nproc_option(NPROC_HELP),
    ]


def option_strings(params: list[click.Parameter]) -> set[str]:
    """The option names ``params`` take (``--epochs``, ``--no-download``, ...): a model's field may not reuse one."""
    return {opt for p in params if isinstance(p, click.Option) for opt in (*p.opts, *p.secondary_opts)}


def _click_type(annotation: Any) -> Any:
    """The click type for a field's annotation, or None when it has no command-line form."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _click_type(args[0]) if len(args) == 1 else None
    if typing.get_origin(annotation) is Literal:
        choices = typing.get_args(annotation)
        return click.Choice([str(c) for c in choices]) if all(isinstance(c, str) for c in choices) else None
    if annotation is bool:
        return bool
    return _SCALARS.get(annotation)


def model_fields(config_cls: type[ModelConfig]) -> list[dataclasses.Field[Any]]:
    """The fields a model adds beyond the shared ones and its ``--loss`` field."""
    skip = {*SHARED_FIELDS, config_cls.loss_option}
    return [f for f in dataclasses.fields(config_cls) if f.init and f.name not in skip]


def config_options(model: str, config_cls: type[ModelConfig]) -> list[click.Option]:
    """One option per field of ``config_cls`` beyond the shared ones.

    Fields whose type has no command-line form are left to the config's default. The
    registry refused a config whose options clash (:func:`config_clash`).
    """
    hints = typing.get_type_hints(config_cls)
    options = []
    for field in model_fields(config_cls):
        kind = _click_type(hints[field.name])
        if kind is None:
            continue
        flag = option_name(field.name)
        default = field.default if field.default is not dataclasses.MISSING else None
        text = field.metadata.get("help", "")
        text = f"{text} [{model} default: {default}]".strip()
        if kind is bool:
            options.append(click.Option([f"{flag}/--no-{flag[2:]}", field.name], default=None, help=text))
        else:
            options.append(click.Option([flag, field.name], type=kind, default=None, help=text))
    return options


def config_clash(model: str, config_cls: type[ModelConfig]) -> str | None:
    """Why the options of ``config_cls``'s fields cannot all be options of ``genzoo train MODEL``, or None.

    A field whose option is one of genzoo's own (``--epochs``, or click's ``--help``: a field ``help`` made
    ``train MODEL --help`` say only ``Option '--help' requires an argument``), or another field's (a bool
    ``sparse`` gives ``--no-sparse``, as an int ``no_sparse`` does: ``--no-sparse --out X`` read ``--out`` as the
    int, and the bool could never be set false), would fail or mislead every command taking the model's options.
    So would a field named as one of genzoo's own parameters, whose values click keeps by name (a field
    ``loggers`` made every run say ``Invalid value for '--log'``, one named ``model`` took the model's name as its
    value). The registry refuses such a model, so that it fails in its plugin (eighteenth hostile pass, M2).
    """
    params = train_options()
    taken = dict.fromkeys(option_strings(params) | set(HELP_OPTIONS), "")
    named = {str(p.name): p.opts[0] if isinstance(p, click.Option) else f"{str(p.name).upper()} argument"
             for p in params}
    for option in config_options(model, config_cls):
        for flag in (*option.opts, *option.secondary_opts):
            other = taken.get(flag)
            if other == "":
                return f"its config field {option.name!r} gives the option {flag}, which is genzoo's own"
            if other is not None:
                return f"its config fields {other!r} and {option.name!r} both give the option {flag}"
            taken[flag] = str(option.name)
        if option.name in named:
            return (f"its config field {option.name!r} has the name genzoo keeps its own {named[option.name]} "
                    "under, whose value it would overwrite")
    return None



#: Every model the registry takes must give options that ``genzoo train MODEL`` can parse.
plugin_registry.CONFIG_CHECKS.append(config_clash)

def parse_setting(text: str, models: list[str]) -> tuple[str, str, Any]:
    """``MODEL.FIELD=VALUE`` (``beta-vae.beta=2``) checked against MODEL's config: (model, field, value).

    The value is converted as ``genzoo train MODEL --field VALUE`` would convert it.
    """
    target, sep, raw = text.partition("=")
    model, dot, name = target.rpartition(".")
    if not sep or not dot:
        raise GenzooError(f"--set {text!r}: expected MODEL.FIELD=VALUE, for example beta-vae.beta=2")
    if model not in models:
        raise GenzooError(f"--set {text!r}: {model!r} is not among the models to train ({', '.join(models)})")
    config_cls = registry().model(model).Config
    options = {option.name: option for option in config_options(model, config_cls)}
    # train's --latent, --lr and --loss, which every model (with a loss option) takes beside its own fields
    options["latent"] = click.Option(["--latent", "latent"], type=click.IntRange(min=1))
    options["lr"] = click.Option(["--lr", "lr"], type=PositiveFloat())
    if config_cls.loss_option is not None:
        options["loss"] = click.Option(["--loss", "loss"])
    option = options.get(name.replace("-", "_"))
    if option is None:
        known = ", ".join(sorted(options)) or "none"
        raise GenzooError(f"--set {text!r}: {model} has no option {name!r} (its options: {known})")
    if option.is_flag:
        value: Any = raw.lower() in ("1", "true", "yes", "on")
        if raw.lower() not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
            raise GenzooError(f"--set {text!r}: {raw!r} is not true or false")
    else:
        try:
            value = option.type.convert(raw, None, None)
        except click.BadParameter as exc:
            raise GenzooError(f"--set {text!r}: {exc.message}") from None
    return model, str(option.name), value
