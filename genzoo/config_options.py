"""Command-line options made from a model's config dataclass.

A plugin adds a hyper-parameter by adding a field to its config; ``genzoo train
beta-vae --beta 4`` then works without the core knowing ``beta``. Each field becomes
``--field-name`` (underscores turn into dashes) with the type of its annotation
(``int``, ``float``, ``str``, ``bool`` as ``--x/--no-x``, a ``Literal`` of choices,
or ``X | None`` of those) and the help text in ``field(metadata={"help": ...})``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

import click

from genzoo.errors import GenzooError
from genzoo.model import ModelConfig

#: Fields of :class:`ModelConfig` itself, which ``genzoo train`` offers for every model.
SHARED_FIELDS = ("latent", "lr")
_SCALARS = {int: click.INT, float: click.FLOAT, str: click.STRING}


def option_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


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


def config_options(model: str, config_cls: type[ModelConfig], taken: set[str]) -> list[click.Option]:
    """One option per field of ``config_cls`` beyond the shared ones.

    ``taken`` holds the option strings the command already has: a field that would
    shadow one of them is a plugin error, reported rather than silently dropped.
    Fields whose type has no command-line form are left to the config's default.
    """
    hints = typing.get_type_hints(config_cls)
    options = []
    for field in model_fields(config_cls):
        flag = option_name(field.name)
        if flag in taken:
            raise GenzooError(
                f"model {model!r}: its config field {field.name!r} clashes with genzoo's own {flag}; "
                "the plugin must rename it"
            )
        kind = _click_type(hints[field.name])
        if kind is None:
            continue
        default = field.default if field.default is not dataclasses.MISSING else None
        text = field.metadata.get("help", "")
        text = f"{text} [{model} default: {default}]".strip()
        if kind is bool:
            options.append(click.Option([f"{flag}/--no-{flag[2:]}", field.name], default=None, help=text))
        else:
            options.append(click.Option([flag, field.name], type=kind, default=None, help=text))
    return options


def parse_setting(text: str, models: list[str]) -> tuple[str, str, Any]:
    """``MODEL.FIELD=VALUE`` (``beta-vae.beta=2``) checked against MODEL's config: (model, field, value).

    The value is converted as ``genzoo train MODEL --field VALUE`` would convert it.
    """
    from genzoo.plugins import registry

    target, sep, raw = text.partition("=")
    model, dot, name = target.rpartition(".")
    if not sep or not dot:
        raise GenzooError(f"--set {text!r}: expected MODEL.FIELD=VALUE, for example beta-vae.beta=2")
    if model not in models:
        raise GenzooError(f"--set {text!r}: {model!r} is not among the models to train ({', '.join(models)})")
    options = {option.name: option for option in config_options(model, registry().model(model).Config, set())}
    option = options.get(name.replace("-", "_"))
    if option is None:
        known = ", ".join(sorted(options)) or "none"
        raise GenzooError(f"--set {text!r}: {model} has no option {name!r} (its own options: {known})")
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
