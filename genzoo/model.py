"""The Model interface every generative model plugin implements.

A model is an ``nn.Module`` built from a small config dataclass. It declares what it
can do (reconstruct, sample, encode, ELBO, likelihood) and computes per-image losses;
the trainer does the rest. A model with one optimiser implements only :meth:`Model.loss`
(automatic optimisation: the trainer reduces, backpropagates and steps); a model with
several (a GAN) sets ``automatic_optimization = False`` and steps them in its own
:meth:`Model.training_step`, as in Lightning's manual optimisation. Every method
returns values per image, shape ``(batch,)``; the trainer and evaluation do every
reduction over the batch.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from genzoo import process_settings
from genzoo.checks import NotCodes, is_count, printable, require_count, same_value, shown
from genzoo.errors import PLUGIN_FAULTS, GenzooError, PluginFault, blamed, describe, first_line
from genzoo.loss import Loss

if TYPE_CHECKING:
    from typing_extensions import Self

    from genzoo.data import Split
    from genzoo.plugin_registry import Registry


def require_positive_int(name: str, value: object) -> None:
    """Refuse anything but an ``int`` of at least 1 (``True`` included), in one line: for plugins' configs."""
    require_count(name, value)


@dataclass
class ModelConfig:
    """Hyper-parameters shared by every model; plugins subclass it to add their own."""

    latent: int = 40
    lr: float = 1e-3

    #: The field that ``--loss NAME`` sets (``None``: this model has no loss to choose).
    loss_option: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        require_positive_int("latent", self.latent)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise GenzooError(f"lr must be a positive finite number, got {self.lr!r}")

    @classmethod
    def loss_fields(cls) -> dict[str, str]:
        """The fields that name a registered loss, with the kind each must have.

        Declare one as ``field(default="bce-sum", metadata={"loss": "reconstruction"})``;
        :meth:`Model.build` hands the model the :class:`~genzoo.Loss` it names.
        """
        return {f.name: f.metadata["loss"] for f in dataclasses.fields(cls) if "loss" in f.metadata}

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON has them (tuples become lists), so config.json and checkpoints agree."""
        data: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(self)))
        return data

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        """Build a config, refusing keys this model does not know.

        The key ``loss`` stands for the model's own loss field (``loss_option``), so
        the command line offers one ``--loss`` for every model.
        """
        if "loss" in values:
            if cls.loss_option is None:
                raise GenzooError(f"{cls.__name__} has no loss to choose; leave out --loss")
            values = dict(values)
            loss = values.pop("loss")
            if values.get(cls.loss_option, loss) != loss:
                raise GenzooError(f"--loss {loss!r} contradicts {cls.loss_option} {values[cls.loss_option]!r}")
            values[cls.loss_option] = loss
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise GenzooError(
                f"unknown option(s) for {cls.__name__}: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        hints = typing.get_type_hints(cls)
        values = {k: tuple(v) if isinstance(v, list) and typing.get_origin(hints[k]) is tuple else v
                  for k, v in values.items()}  # JSON brought tuples back as lists
        # A field with init=False is the config's to compute (config.json records it): its recorded value is held
        # to what the config computes again, not passed to __init__, which refused it (twenty-third pass, M1).
        computed = {f.name for f in dataclasses.fields(cls) if not f.init} & set(values)
        given = {name: values.pop(name) for name in sorted(computed)}
        # Its __post_init__ is plugin code run wherever a config is read, some of those places unguarded: one that
        # turned grad mode off failed the run's first step blaming the model's loss (twenty-third pass, M3).
        settings = process_settings.saved()
        try:
            built = cls(**values)
        except (GenzooError, KeyboardInterrupt):
            raise
        except (TypeError, ValueError) as exc:  # a check such as ``0 <= beta1 < 1`` met a string
            raise GenzooError(f"invalid options for {cls.__name__} ({shown(values)}): {exc}") from exc
        except PLUGIN_FAULTS as exc:  # a plugin's own check (an ``assert`` in ``__post_init__``)
            raise GenzooError(f"invalid options for {cls.__name__} ({shown(values)}): {describe(exc)}") from exc
        finally:
            changed = process_settings.put_back(settings)
        if changed:
            raise PluginFault(f"{cls.__name__}.__post_init__ changed {' and '.join(changed)} while building the "
                              "config; they are put back (the Model contract: a config's __post_init__ leaves "
                              "torch's defaults and the process's settings alone)")
        for name, value in given.items():
            if not same_value(getattr(built, name, None), value):
                raise GenzooError(f"{cls.__name__}'s field {name!r} is computed by the config (init=False), not "
                                  f"given: it computed {shown(getattr(built, name, None))}, and {shown(value)} was "
                                  "given")
        return built


def resolve_losses(config: ModelConfig, registry: Registry | None = None) -> dict[str, Loss]:
    """The losses ``config``'s loss fields name, by field, each checked to be of its declared kind.

    ``registry`` defaults to the registry of the plugins loaded now.
    """
    if registry is None:
        from genzoo.plugin_registry import registry as loaded

        registry = loaded()
    return {name: registry.loss(getattr(config, name), kind=kind) for name, kind in config.loss_fields().items()}


class Losses(dict[str, Loss]):
    """A model's losses by config field; a field it was not handed is named in one line."""

    def __missing__(self, field: str) -> Loss:
        raise GenzooError(
            f"no loss was handed over for the config field {field!r}: declare it as "
            f"field(default=..., metadata={{'loss': KIND}}) and build the model with Model.build "
            "(the registry does)")


def _own_loss(name: str, loss: Loss) -> tuple[Loss, str | None]:
    """A copy of the registered ``loss`` (registered as ``name``) for one model: state a loss keeps (a count of its
    calls) is then the model's, which the state checks hold to its state_dict, not shared by every model and every
    copy the checks make (nineteenth hostile pass, F1).

    One that cannot be deep-copied (holding a lock), or whose deep copy is itself or shares a changeable attribute
    with it (:func:`_shared_attribute`), is shared as registered, with the line that refuses it for training
    (:meth:`Model.refuse_shared_losses`): the model, the checks' copies and every fresh build shared its state, which
    no check could then see, and a resumed run differed from one never stopped, exit 0 (twentieth hostile pass,
    plugins F3). Loading a finished run takes it shared, as before.
    """
    shown_name = f"loss {printable(name)!r} ({type(loss).__name__})"
    why = ("each model is handed a copy of its own, so that state a loss keeps is the model's and every check and "
           "checkpoint sees it; make it copyable (create a lock or open file when first used, or define "
           "__deepcopy__ to give a new one)")
    try:
        own = copy.deepcopy(loss)
    except KeyboardInterrupt:
        raise
    except PLUGIN_FAULTS as exc:
        return loss, f"{shown_name} cannot be deep-copied ({first_line(describe(exc))}): {why}"
    if own is loss:
        return loss, (f"{shown_name} is its own deep copy (a __deepcopy__ returning self?), so every model would "
                      f"share it: {why}")
    shared = _shared_attribute(loss, own)
    if shared is not None:
        return loss, (f"{shown_name}'s deep copy shares its attribute {printable(shared)!r} with it (a __deepcopy__ "
                      f"making a shallow copy?), so every model would share what it holds: {why}")
    return own, None


def _shared_attribute(loss: Loss, own: Loss) -> str | None:
    """The name of an attribute ``own``, ``loss``'s deep copy, shares with it though a deep copy of the attribute's
    value alone is another object (a list, dict, tensor, array, an object of attributes), if any: what
    ``copy.deepcopy`` itself keeps as it is (numbers, strings, classes, functions, enum members, a logger) holds no
    state a copy could part, and a value that cannot be deep-copied alone is left as it is.

    A ``__deepcopy__`` returning ``copy.copy(self)`` gave a new object sharing its call count (kept in a list) with
    the registered loss, every model's copy and every copy the state checks made: the checks saw the trained count
    in the fresh copies, and a resumed run differed from one never stopped, exit 0 (twenty-first hostile pass,
    plugins F1).
    """
    copied = getattr(own, "__dict__", {})
    for name, value in getattr(loss, "__dict__", {}).items():
        if copied.get(name) is not value:
            continue
        try:
            apart = copy.deepcopy(value) is not value
        except KeyboardInterrupt:
            raise
        except PLUGIN_FAULTS:  # a lock, a module: nothing to part
            apart = False
        if apart:
            return str(name)
    return None


Batch = torch.Tensor
Stats = dict[str, torch.Tensor]


def require_stats_dict(stats: Any, where: str) -> None:
    """Refuse ``stats``, what ``where`` returned, in one line unless it is a dict (of per-image values)."""
    if not isinstance(stats, dict):  # a bare objective tensor, say: the contract is a dict of named losses
        raise GenzooError(f"{where} returned a {type(stats).__name__}, not a dict of per-image values "
                          "(name -> tensor of shape (batch,))")


def _not_codes(codes: object, images: int) -> str | None:
    """What ``encode`` gave for ``images`` images, when that is not ``(images, latent)`` codes; else None.

    A latent of width 0 (a slice bound forgotten, ``z[:, :0]``) passed, and ``genzoo latent`` and ``eval`` ended in
    tracebacks deep in torch; complex codes were cast to their real part with torch's raw warning, and the
    interpolations of the real parts measured and filed (nineteenth hostile pass, plugins F5, F6). Integer codes
    are no point of a space to interpolate in either.
    """
    if not isinstance(codes, torch.Tensor):
        return f"a {type(codes).__name__}"
    if codes.dim() != 2 or codes.shape[0] != images or codes.shape[1] == 0:
        return f"codes of shape {tuple(codes.shape)}"
    if not codes.is_floating_point():
        return f"codes of dtype {str(codes.dtype).removeprefix('torch.')}"
    return None


class _Capabilities:
    """``Model.capabilities()``: on a model class, what it claims (its flags: ``genzoo list``); on a built model,
    what it can do as configured, less what its :meth:`Model.lacking_capabilities` names.

    The flags alone said ``elbo`` and ``likelihood`` for a VAE built with ``--loss mse``, which refuses both:
    ``eval.json`` recorded them so, and the conformance kit ran their checks into the refusal (nineteenth hostile
    pass, plugins F7).
    """

    def __get__(self, model: Model | None, owner: type[Model]) -> Callable[[], dict[str, bool]]:
        def capabilities() -> dict[str, bool]:
            claimed = {"reconstruct": owner.can_reconstruct, "sample": owner.can_sample, "encode": owner.can_encode,
                       "elbo": owner.has_elbo, "likelihood": owner.has_likelihood}
            lacking = {} if model is None else model.checked_lacking_capabilities()
            return {name: can and name not in lacking for name, can in claimed.items()}

        return capabilities


class Model(nn.Module):
    """Base class of genzoo models.

    Subclasses set ``Config``, the capability flags and :attr:`loss_names`, and
    implement :meth:`loss` (one optimiser) or, with ``automatic_optimization = False``,
    :meth:`configure_optimizers` and :meth:`training_step` (several), plus whichever
    of :meth:`sample`, :meth:`encode`, :meth:`reconstruct`, :meth:`negative_elbo` and
    :meth:`log_importance_weights` they can do. Images are float tensors in [0, 1] of
    shape ``(batch, *sample_shape)``. A model that can do none of this itself but has
    a Gaussian encoder and a Bernoulli decoder subclasses
    :class:`genzoo.VariationalAutoencoder` instead.
    """

    Config: ClassVar[type[ModelConfig]] = ModelConfig
    can_reconstruct: ClassVar[bool] = False
    can_sample: ClassVar[bool] = False
    #: Offers ``encode(x) -> (batch, latent)`` codes and ``decode(z)`` back to images; the
    #: conformance kit checks their shapes, and ``genzoo latent`` draws and measures the codes.
    can_encode: ClassVar[bool] = False
    #: Its latents are drawn from N(0, I): ``genzoo latent`` then interpolates between codes
    #: spherically (slerp), keeping the path where the prior has its mass, else linearly.
    gaussian_prior: ClassVar[bool] = False
    has_elbo: ClassVar[bool] = False
    #: Offers :meth:`log_importance_weights`, from which ``genzoo eval`` estimates -log p(x).
    has_likelihood: ClassVar[bool] = False
    #: The per-image metrics :meth:`loss` (or :meth:`training_step`) and :meth:`evaluate`
    #: return, the first being the objective the trainer minimises; the progress bar
    #: and the loss curve show them.
    loss_names: ClassVar[tuple[str, ...]] = ("loss",)
    #: How the trainer reduces the objective over the batch before backpropagating it:
    #: ``"mean"``, or ``"sum"`` (the step size then grows with the batch, as the VAE
    #: article's ``loss.sum().backward()`` does).
    objective_reduction: ClassVar[str] = "mean"
    #: False: the model steps its optimisers itself in :meth:`training_step`.
    automatic_optimization: ClassVar[bool] = True
    #: The fewest images every training batch must hold, the last, partial one included
    #: (2 for a model that batch-normalises the images it is given: batch norm cannot
    #: train on one). :meth:`check_training_split` enforces it.
    min_batch_size: ClassVar[int] = 1
    #: Why each registered loss :meth:`build` could not copy for this model is shared (:meth:`refuse_shared_losses`).
    _shared_losses: Sequence[str] = ()
    #: The registered sampler ``genzoo eval``, ``sample`` and the run's pictures use when none is
    #: named: ``"model"`` is the model's own :meth:`sample` (its prior); a model without one names a
    #: sampler that decodes codes it draws itself (the AE: ``"gmm"``).
    default_sampler: ClassVar[str] = "model"
    #: Prefixes of state-dict keys an older version of the model saved and this one no longer has
    #: (the AE's ``prior.``, moved into the ``gmm`` sampler): dropped when old weights are loaded.
    retired_state: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ModelConfig, sample_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.config = config
        self.sample_shape = tuple(sample_shape)
        #: The losses the config's loss fields name, by field (see :meth:`build`).
        self.losses = Losses()

    @classmethod
    def build(cls, config: ModelConfig, sample_shape: tuple[int, ...], registry: Registry | None = None) -> Self:
        """Build the model and hand it the losses its config names (:meth:`ModelConfig.loss_fields`).

        The registry builds every model this way; a test that builds one directly
        calls it too, so no model looks losses up itself.
        """
        losses = resolve_losses(config, registry)
        model = cls(config, sample_shape)
        owned = {field: _own_loss(getattr(config, field), loss) for field, loss in losses.items()}
        model.losses = Losses({field: loss for field, (loss, _) in owned.items()})
        model._shared_losses = [problem for _, problem in owned.values() if problem is not None]
        return model

    def refuse_shared_losses(self) -> None:
        """Refuse to train with a loss shared with every other model (see :func:`_own_loss`), in one line."""
        for problem in self._shared_losses:
            raise PluginFault(problem)

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters: make noise and latents there.

        The trainer and ``genzoo eval`` move the model (``model.to(device)``) before
        calling it, and its batches arrive on the same device.
        """
        return next(self.parameters()).device

    capabilities = _Capabilities()

    def lacking_capabilities(self) -> dict[str, str]:
        """The capabilities its class claims (``"elbo"``, ``"likelihood"``, ...: the keys of :meth:`capabilities`)
        that this model lacks as built, each with why; none by default.

        For a model whose configuration decides (the built-in VAE has no ELBO nor likelihood with ``--loss mse``):
        ``capabilities()`` of the built model leaves them out, ``genzoo eval`` files them n/a with the reason
        without calling the method, and the conformance kit skips their checks with it.
        """
        return {}

    def checked_lacking_capabilities(self) -> dict[str, str]:
        """:meth:`lacking_capabilities`, checked (not to be overridden): where genzoo and the kit ask, so that a
        fault in it, or an answer that is no dict of claimed capabilities to reasons, is one line naming it."""
        who = f"{type(self).__name__}.lacking_capabilities"
        with blamed(who):
            lacking = self.lacking_capabilities()
        claimed = sorted(name for name, can in type(self).capabilities().items() if can)
        if not (isinstance(lacking, dict) and set(lacking) <= set(claimed)
                and all(isinstance(why, str) and why for why in lacking.values())):
            raise PluginFault(f"{who} returned {shown(lacking)}, not a dict from capabilities its class claims "
                              f"({', '.join(claimed) or 'none'}) to why each is lacking, a non-empty str")
        return lacking

    @classmethod
    def check_training_split(cls, config: ModelConfig, images: int, batch_size: int) -> None:
        """Raise :class:`GenzooError` if training on ``images`` images in ``batch_size`` batches cannot finish.

        Called before a run folder is made and again before a resume trains, so a run
        that would fail in its last batch or in :meth:`after_training` is refused up
        front rather than failing after its epochs, and on every resume. The default
        checks :attr:`min_batch_size` against the smallest batch; a model with other
        needs (the AE's mixture has at most one component per image) extends it.
        """
        smallest = images % batch_size or min(images, batch_size)
        if smallest < cls.min_batch_size:
            raise GenzooError(
                f"{cls.__name__} trains on batches of at least {cls.min_batch_size} images, but "
                f"{images} training images in batches of {batch_size} leave a last batch of {smallest}; "
                "choose another --batch-size or --train-limit"
            )

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Return the optimisers by name (one, unless ``automatic_optimization`` is off); all are checkpointed."""
        return {"adam": torch.optim.Adam(self.parameters(), lr=self.config.lr)}

    def optimizer_steps(self, training_steps: int) -> dict[str, int] | None:
        """Manual optimisation only: how often each optimiser has stepped after ``training_steps`` steps.

        A resume checks the saved optimiser states against it (an edited checkpoint
        whose moments were dropped or rewound is refused). None, the default, says the
        model does not fix it (one that accumulates gradients over steps, say): then
        only counts that are no whole numbers are refused. A model that steps each
        optimiser a fixed number of times per step says so (a critic stepped ``n``
        times: ``n * training_steps``). With automatic optimisation the trainer steps
        the one optimiser once a step and asks nobody.
        """
        return None

    def loss(self, x: Batch) -> Stats:
        """Per-image losses on ``x``, each of shape ``(batch,)``: every name in :attr:`loss_names`.

        With automatic optimisation the trainer reduces ``loss_names[0]`` (see
        :attr:`objective_reduction`), backpropagates it and steps the optimiser.
        """
        raise NotImplementedError(f"{type(self).__name__} implements neither loss nor training_step")

    def training_step(self, x: Batch, optimizers: dict[str, torch.optim.Optimizer]) -> Stats:
        """Manual optimisation only: step the optimisers on ``x``; return per-image losses.

        Called instead of :meth:`loss` when ``automatic_optimization`` is False; each
        value has shape ``(batch,)`` and the trainer detaches and averages them.
        """
        raise NotImplementedError(f"{type(self).__name__} sets automatic_optimization = False "
                                  "but does not override training_step")

    def evaluate(self, x: Batch) -> Stats:
        """Per-image metrics on the test split, shape ``(batch,)``; the trainer averages them.

        Defaults to :meth:`loss`, without gradients. Called under a seeded fork of the
        global random stream, so it may draw from it (``torch.randn``) and stays
        reproducible; it must not change the weights or buffers.
        """
        with torch.no_grad():
            stats = self.loss(x)
        # Named as the loss's: an evaluate of the model's own passing it on was blamed (eighteenth hostile pass, M14).
        require_stats_dict(stats, f"{type(self).__name__}.loss (through evaluate)")
        return stats

    def after_training(self, train: Split) -> None:
        """Called once when training ends, with the training split."""

    def sampler_options(self, sampler: str) -> dict[str, Any]:
        """Options this model's config sets for sampler ``sampler`` (the AE's ``prior_components`` for ``gmm``)."""
        return {}

    def load_state_dict(self, state_dict: typing.Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> Any:
        """Load weights, dropping the keys of :attr:`retired_state` that older runs and exports hold.

        A key the model holds itself is kept whatever its prefix (a subclass's own ``prior``
        module). A mismatch is one line naming the tensors: torch's first line names none.
        """
        own = self.state_dict()
        kept = {key: value for key, value in state_dict.items()
                if key in own or not any(key.startswith(prefix) for prefix in self.retired_state)}
        try:
            return super().load_state_dict(kept, strict=strict, assign=assign)
        except RuntimeError as exc:
            mismatch = _mismatch(own, kept) if strict else ""
            if not mismatch:
                raise
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}: {mismatch}") from exc

    def sampling_description(self, short: bool = False) -> str | None:
        """How :meth:`sample` draws, when not from the model's own latent prior (None).

        The report prints it beside the model's samples (``short``: a few words for a
        picture title).
        """
        return None

    def sample(self, n: int) -> torch.Tensor:
        raise GenzooError(f"{type(self).__name__} cannot sample")

    def encode(self, x: Batch) -> torch.Tensor:
        """Codes of shape ``(batch, latent)``: the encoder's mean for a VAE."""
        raise GenzooError(f"{type(self).__name__} cannot encode")

    def checked_codes(self, x: Batch) -> torch.Tensor:
        """:meth:`encode`'s codes, checked to be ``(images, latent)``: where genzoo, its samplers and the built-in
        reconstructions take codes (not to be overridden), so codes of another shape (``(batch, latent, 1)``, a
        ``(mu, logvar)`` pair) name this model's ``encode`` in one line, not a fault deep in ``decode`` or a sampler."""
        with blamed(f"{type(self).__name__}.encode"):
            codes = self.encode(x)
        found = _not_codes(codes, x.shape[0])
        if found is not None:
            raise NotCodes(f"{type(self).__name__}.encode gave {found} for {x.shape[0]} images; it must give "
                           "(images, latent) codes, real floating-point numbers and a latent of at least 1")
        latent = getattr(self.config, "latent", None)
        if is_count(latent) and codes.shape[1] != latent:  # decode's fault, it said (twenty-sixth pass, plugins M2)
            raise NotCodes(f"{type(self).__name__}.encode gave codes {codes.shape[1]} wide for a latent of {latent}; "
                           "it must give (images, latent) codes, as decode and the samplers take them")
        return codes

    def checked_decode(self, z: torch.Tensor) -> torch.Tensor:
        """:meth:`decode`'s images, checked to be ``(codes, *sample_shape)``: where genzoo's samplers decode (not to
        be overridden), so images of another shape (a ``.view`` left out) name this model's ``decode`` in one line,
        not the sampler that asked for them; so is a fault it raises."""
        with blamed(f"{type(self).__name__}.decode"):
            images = self.decode(z)
        expected = (z.shape[0], *self.sample_shape)
        if not isinstance(images, torch.Tensor) or tuple(images.shape) != expected:
            found = f"images of shape {tuple(images.shape)}" if isinstance(images, torch.Tensor) else \
                f"a {type(images).__name__}"
            raise GenzooError(f"{type(self).__name__}.decode gave {found} for {z.shape[0]} codes; it must give "
                              f"{expected} images, (codes, *sample_shape)")
        return images

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], shape ``(batch, *sample_shape)``, from codes as :meth:`encode` gives them."""
        raise GenzooError(f"{type(self).__name__} cannot decode")

    def reconstruct(self, x: Batch) -> torch.Tensor:
        """Decode the encoder's mean: Bernoulli means in [0, 1]."""
        raise GenzooError(f"{type(self).__name__} cannot reconstruct")

    def negative_elbo(self, x: Batch) -> Stats:
        """Per-image negative ELBO in nats (``nelbo``) and its parts, for models with ``has_elbo``.

        ``nelbo`` must be a true bound: the decoder's negative log-likelihood of ``x``
        (normalised, in nats) plus the KL of the posterior to the prior, whatever the
        decoder's distribution. The report's "-ELBO" column shows ``nelbo`` with the
        parts ``bce`` (that negative log-likelihood) and ``kl``.
        """
        raise GenzooError(f"{type(self).__name__} has no ELBO")

    def log_importance_weights(self, x: Batch, k: int) -> torch.Tensor:
        """``log p(x, z_j) - log q(z_j | x)`` for ``k`` draws ``z_j ~ q(z | x)``, shape ``(batch, k)``.

        For models with ``has_likelihood``: ``genzoo eval`` averages their exponentials
        into the IWAE estimate of -log p(x) (Burda et al. 2016), drawing from the seeded
        global random stream.
        """
        raise GenzooError(f"{type(self).__name__} offers no importance weights (no likelihood)")


def refuse_changed_config(model: Model, built: ModelConfig, when: str) -> None:
    """Refuse, in one line, ``model`` if its config differs from ``built``, a copy taken when it was built.

    config.json and every checkpoint record the config a model was built with, and every load (resume,
    eval, sample, export) builds it again from that record: a value training keeps in the config (a KL
    warm-up weight) is lost to all of them, silently (sixteenth hostile pass, F8). The model's fault, a
    :class:`PluginFault`: in training, ``Trainer.fit`` adds what the run folder holds.
    """
    config = getattr(model, "config", None)
    changes = config_changes(built, config)
    if changes:
        more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
        raise PluginFault(
            f"{type(model).__name__} changed its config {when} ({', '.join(changes[:3])}{more}): config.json and "
            "every checkpoint keep the config it was built with, so a resume and every later load would compute "
            "otherwise; keep what training changes in the model's state (register_buffer, nn.Parameter, or "
            "get_extra_state), never in its config")


def refuse_unrebuilt_config(model: Model) -> None:
    """Refuse, in one line before any run folder, a model whose config does not come back from its record.

    config.json and every checkpoint record ``config.to_dict()``, and every later load (resume, eval,
    sample, export, ``load_model``) builds the model from that record through ``from_dict``, so through the
    config's ``__post_init__`` again. One that is not idempotent (``self.temperature *= 2``, ``self.hidden
    += 1``) trained one model and had every load build another: other samples and FIDs, exit 0, or a
    checkpoint that fits no model it loads (twentieth hostile pass on plugins, F1). The JSON trip is made
    here, as the conformance kit makes it; the changes are named with the ``__post_init__`` that made them.
    """
    config = model.config
    cls = type(config)
    try:
        recorded = config.to_dict()
    except KeyboardInterrupt:
        raise
    except PLUGIN_FAULTS as exc:  # a value JSON cannot hold (a set): it was a traceback
        raise PluginFault(f"{cls.__name__} cannot be recorded in config.json ({describe(exc)}); keep its fields "
                          "to what JSON holds (numbers, strings, booleans, None, lists, tuples and dicts of them)"
                          ) from exc
    try:
        rebuilt = cls.from_dict(recorded)
    except GenzooError as exc:
        changes = [str(exc)]
    else:  # the fields: what the model keeps on its config from its build on is the model's, checked elsewhere
        changes = config_changes(config, rebuilt, fields_only=True)
    tripped = [name for name in recorded if _json_changes(getattr(config, name, None))]
    if changes and tripped:  # {1: "a"} came back as {"1": "a"}: JSON's doing, not __post_init__'s (26th pass, M4)
        raise PluginFault(
            f"{cls.__name__}'s field {printable(tripped[0])} ({shown(getattr(config, tripped[0]))}) does not come back "
            "from config.json as it is (JSON has string keys only, and lists for tuples): every load of the run "
            "would build another model; keep config fields to what JSON holds as they are")
    if changes:
        more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
        raise PluginFault(
            f"{cls.__name__} built from what config.json records of it is not the config that would be trained "
            f"({', '.join(changes[:3])}{more}): every load of the run would build another model; "
            f"{getattr(cls.__post_init__, '__qualname__', cls.__name__ + '.__post_init__')} must leave values it "
            "has already checked or normalised as they are (it runs again on every load)")


def _json_changes(value: Any) -> bool:
    """Whether a JSON trip gives back another value: a dict with keys that are not strings, or a tuple or set
    inside a dict or list (a top-level tuple :meth:`ModelConfig.from_dict` turns back into one)."""
    if isinstance(value, tuple):
        value = list(value)
    try:
        return repr(json.loads(json.dumps(value))) != repr(value)  # (repr: NaN comes back as NaN)
    except (TypeError, ValueError):
        return False


def config_changes(built: ModelConfig, config: object, fields_only: bool = False) -> list[str]:
    """Each attribute of ``config`` unlike ``built``'s, as ``kl_weight 0.0 -> 0.05`` (one entry for the whole
    config when it is no longer one of ``built``'s kind).

    Its fields, then (unless ``fields_only``) whatever else its ``__dict__`` holds: a value a model keeps on its
    config outside the fields (``config._warm``) is in no config.json either, so every load lost it alike
    (seventeenth hostile pass, F1).
    """
    if type(config) is not type(built):
        return [f"config {shown(built)} -> {shown(config)}"]
    fields = [field.name for field in dataclasses.fields(built)]
    before_all, after_all = getattr(built, "__dict__", {}), getattr(config, "__dict__", {})
    others = [] if fields_only else [name for name in {**before_all, **after_all} if name not in fields]
    changes = []
    for name in [*fields, *others]:
        before = getattr(built, name, _UNSET) if name in fields else before_all.get(name, _UNSET)
        after = getattr(config, name, _UNSET) if name in fields else after_all.get(name, _UNSET)
        if not _same(before, after):
            changes.append(f"{printable(str(name))} {shown(before)} -> {shown(after)}")
    return changes


def _same(before: object, after: object, depth: int = 0) -> bool:
    """Whether a config's value is still the one its copy taken at build time holds: equal, tensors element for
    element, and lists, tuples, dicts and objects that define no ``==`` of their own (a copy of which is never equal
    to them) part by part, a few levels deep."""
    if before is after:
        return True
    if isinstance(before, float) and isinstance(after, float) and before != before and after != after:
        return True  # NaN, unchanged (a NaN is no NaN's equal)
    if isinstance(before, torch.Tensor) and isinstance(after, torch.Tensor):
        try:
            return (before.shape == after.shape and before.dtype == after.dtype
                    and torch.equal(before.nan_to_num(0.0), after.nan_to_num(0.0))
                    and torch.equal(before.isnan(), after.isnan()))
        except (RuntimeError, NotImplementedError):  # tensors torch cannot compare (meta, sparse)
            return False
    if isinstance(before, torch.Tensor) or isinstance(after, torch.Tensor):  # a tensor where a list of its value
        return False  # was (whose == a one-element tensor would call true) is a change
    if isinstance(before, np.ndarray) and isinstance(after, np.ndarray):  # whose == is elementwise
        try:
            return before.dtype == after.dtype and bool(np.array_equal(before, after, equal_nan=True))
        except TypeError:  # a dtype without NaN (strings, objects)
            return bool(np.array_equal(before, after))
    if depth < 4 and type(before) is type(after):
        if isinstance(before, (list, tuple)) and isinstance(after, (list, tuple)):
            return len(before) == len(after) and all(_same(a, b, depth + 1) for a, b in zip(before, after))
        if isinstance(before, dict) and isinstance(after, dict):
            return before.keys() == after.keys() and all(_same(before[key], after[key], depth + 1) for key in before)
        if type(before).__eq__ is object.__eq__ and hasattr(before, "__dict__"):
            return _same(vars(before), vars(after), depth + 1)
    try:
        return bool(before == after)
    except KeyboardInterrupt:
        raise
    except PLUGIN_FAULTS:  # a plugin's __eq__ may raise anything
        return False


class _Unset:
    """What :func:`config_changes` shows for an attribute a config did not have."""

    def __repr__(self) -> str:
        return "unset"


_UNSET = _Unset()


def _mismatch(own: typing.Mapping[str, Any], saved: typing.Mapping[str, Any]) -> str:
    """The keys missing from ``saved``, unexpected in it, and of another shape: a few of each, then a count."""
    def few(keys: list[str]) -> str:
        more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
        return ", ".join(keys[:3]) + more

    misshapen = [f"{printable(key)} (saved {tuple(saved[key].shape)}, model {tuple(own[key].shape)})" for key in own
                 if isinstance(saved.get(key), torch.Tensor) and isinstance(own[key], torch.Tensor)
                 and saved[key].shape != own[key].shape]
    parts = [(word, keys) for word, keys in (
        ("missing", [printable(key) for key in own if key not in saved]),
        ("unexpected", [printable(str(key)) for key in saved if key not in own]),
        ("misshapen", misshapen)) if keys]
    return "; ".join(f"{word} {few(keys)}" for word, keys in parts)


def parameter_count(model: Model) -> int:
    """Every parameter, trainable or not (buffers such as the AE's mixture excluded)."""
    return sum(p.numel() for p in model.parameters())
