"""Evaluate one model, or one finished run, on the test split: every metric it can have.

A metric a model cannot have is ``None`` in the result with the reason under
``unavailable``; reports print "n/a" for it, never 0.
"""

from __future__ import annotations

import os
import platform
import re
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, cast

import torch
from rich.console import Console
from rich.progress import Progress

import genzoo
from genzoo.building import (
    build_sampler,
    check_data,
    finished_checkpoint,
    load_model,
    load_split,
    pixels_sha256,
    run_training_split,
    select_device,
)
from genzoo.checkpoint import contents_sha256
from genzoo.checks import NotCodes, NotPixels, is_count, is_number, printable, require_count, same_value, shown
from genzoo.data import Split
from genzoo.errors import PLUGIN_FAULTS, GenzooError, PluginFault, warn
from genzoo.evaluation import cost
from genzoo.evaluation.frechet import (
    EXTRACTORS,
    check_cache,
    fid,
    reference_cache_name,
    reference_cached,
    reference_statistics,
    resolve_features,
)
from genzoo.evaluation.latent_space import interpolation_metrics
from genzoo.evaluation.likelihood import iwae_nll, iwae_unsupported, negative_elbo
from genzoo.evaluation.limits import MAX_FID_SAMPLES, MAX_IWAE_K
from genzoo.evaluation.phases import Phases, make_progress
from genzoo.evaluation.protocols import protocol_problem
from genzoo.evaluation.reconstruction import reconstruction_metrics
from genzoo.evaluation.weights import inception_extractor, inception_weights
from genzoo.files import MAX_JSON_BYTES, atomic_write_json, cannot_write, read_json
from genzoo.model import Model, parameter_count
from genzoo.plugin_registry import registry
from genzoo.run_folder import (
    CONFIG,
    check_in_place,
    is_data_sha256,
    is_sha256,
    locked,
    lost_metrics,
    read_metrics,
    read_run,
)
from genzoo.sampler import Sampler, drawn_by, fit_attributes, origin, sampler_problem
from genzoo.seeding import check_seed

EVAL_FILE = "eval.json"
#: Room ``eval.json`` may take beyond the earlier one's size (whose measurements it may keep): those written are
#: 3-5 kB, and each sampler adds under 1 kB (its FIDs, its description, their seconds). ``evaluate_run`` writes this
#: much into its probe before any measurement, so that a full disk is found before the work, not after it (M4).
EVAL_JSON_ROOM = 64 * 2**10
#: IWAE samples per test image. Measured with the trained 5-epoch VAE on the 10,000 test
#: images, one torch thread on the shared 2-core development CPU (load average ~7):
#: K = 100 took 25 s, K = 200 56 s, K = 250 70 s (NLL 103.11, 102.88, 102.81 nats).
DEFAULT_IWAE_K = 200


@dataclass
class EvalConfig:
    """What to measure and how hard; saved into every result."""

    fid_samples: int = 10_000
    features: str = "auto"  # auto (mnist on CPU, both on GPU), mnist, inception or all
    iwae_k: int = DEFAULT_IWAE_K
    seed: int = 0
    batch_size: int = 1000
    sampling_images: int = 10_000
    inception_weights: str | None = None
    download: bool = True
    cache: str | None = None  # FID statistics cache folder (default: genzoo's cache)
    #: The registered samplers each FID is measured with; None: each model's ``default_sampler``.
    samplers: list[str] | None = None
    #: The named preset these settings follow (:mod:`genzoo.evaluation.protocols`), if any.
    protocol: str | None = None

    def __post_init__(self) -> None:
        if self.samplers is not None:
            if isinstance(self.samplers, (list, tuple)):
                self.samplers = list(self.samplers)
            if not (isinstance(self.samplers, list) and self.samplers
                    and all(isinstance(name, str) and name for name in self.samplers)):
                raise GenzooError(f"samplers must be a non-empty list of sampler names, got {shown(self.samplers)}")
            twice = next((name for number, name in enumerate(self.samplers) if name in self.samplers[:number]), None)
            if twice is not None:
                raise GenzooError(f"samplers names sampler {shown(twice)} twice: {shown(self.samplers)}")
        for name in ("fid_samples", "sampling_images"):
            require_count(name, getattr(self, name), minimum=0)
        if self.fid_samples == 1:
            raise GenzooError("fid_samples must be 0 (no FID) or at least 2")
        for name in ("iwae_k", "batch_size"):
            require_count(name, getattr(self, name))
        for name, most in (("fid_samples", MAX_FID_SAMPLES), ("sampling_images", MAX_FID_SAMPLES),
                           ("iwae_k", MAX_IWAE_K)):
            if getattr(self, name) > most:
                raise GenzooError(f"{name} must be at most {most:,} (more would run for days), "
                                  f"got {getattr(self, name)!r}")
        check_seed(self.seed)
        problem = protocol_problem(self.protocol, asdict(self), None)
        if problem is not None:
            raise GenzooError(problem)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self, device: torch.device) -> list[str]:
        """Fail now, before any training or evaluation, if FID cannot be computed as asked.

        The FID cache must take the reference statistics, and Inception's weights must
        load (weights only: a file that would run code is refused here). Returns the
        feature labels that will be computed on ``device``.
        """
        for name in self.samplers or []:  # an unknown name is one line with suggestions, before any work
            registry().sampler(name)
        features = resolve_features(self.features, device) if self.fid_samples else []
        if features:
            check_cache(features, Path(self.cache) if self.cache else None, self.inception_weights, self.download)
        if "inception" in features:
            inception_extractor(inception_weights(self.inception_weights, self.download), EXTRACTORS["inception"].layer)
        return features


def fid_key(features: str, sampler: str) -> str:
    """The key of one FID in ``eval.json``'s ``fid``: its extractor and its sampler, as ``mnist/gmm``."""
    return f"{features}/{sampler}"


def model_samplers(model: Model, name: str, config: EvalConfig, train: Callable[[], Split] | None,
                   unavailable: dict[str, str], cache: dict[str, Sampler]) -> dict[str, Sampler]:
    """The samplers ``config`` asks for that can draw from ``model``, built and fitted, by name.

    One that cannot (a GAN has no codes for ``gmm``), or that must fit to a training split
    not given, is named in ``unavailable`` under ``sampler NAME``. One in ``cache`` is reused;
    one built here is added to it.
    """
    built: dict[str, Sampler] = {}
    for chosen in config.samplers or [model.default_sampler]:
        if chosen in cache:
            built[chosen] = cache[chosen]
            continue
        entry = registry().entry("sampler", chosen)  # an unknown name: one line, as EvalConfig.check refuses it
        try:  # a fault in the plugin's unsupported() or needs_fit: n/a with the reason, as one in its fit
            problem = sampler_problem(model, chosen)
            if problem is None and fit_attributes(entry.obj, origin(chosen, entry.plugin, entry.distribution))[0] \
                    and train is None:
                problem = "it fits to the training split, which this evaluation was not given"
        except GenzooError as exc:
            unavailable[f"sampler {chosen}"] = str(exc)
            warn(str(exc))
            continue
        if problem is not None:
            unavailable[f"sampler {chosen}"] = f"sampler {chosen!r} cannot draw from {name}: {problem}"
            continue
        try:
            sampler = build_sampler(model, name, chosen, cast(Callable[[], Split], train))
            sampler.description()  # one it cannot give: n/a now, not every number lost once all are measured
            built[chosen] = cache[chosen] = sampler
        except GenzooError as exc:  # a sampler that cannot fit (codes it refuses, a plugin's fault): n/a, why
            unavailable[f"sampler {chosen}"] = str(exc)
            warn(str(exc))
    return built


def check_fid_reference(config: EvalConfig, test_images: int) -> None:
    """One line before any work when an FID is asked for and the test split cannot be its reference."""
    if config.fid_samples and test_images < 2:
        raise GenzooError(f"FID needs at least 2 test images as its reference, and the test split has {test_images}: "
                          "raise --test-limit, or give --fid-samples 0 for no FID")


def evaluate_model(model: Model, test: Split, config: EvalConfig | None = None, *, name: str | None = None,
                   dataset: str = "mnist", records: list[dict[str, Any]] | None = None,
                   progress: Progress | None = None, train: Callable[[], Split] | None = None,
                   samplers: dict[str, Sampler] | None = None) -> dict[str, Any]:
    """Every metric ``model`` supports on ``test``, with the wall time of each phase.

    Each FID is measured with each sampler of ``config.samplers`` that can draw from the
    model; ``train`` gives the training split to a sampler that fits to it (``gmm``).
    ``samplers`` holds samplers built before for this model, reused, and receives those built
    here (``compare`` draws its figure with the same fit: one EM fit of 60,000 codes takes minutes).
    """
    config = config or EvalConfig()
    check_fid_reference(config, len(test))
    name = name or type(model).__name__.lower()
    phases = Phases(progress, name)
    model.eval()
    unavailable: dict[str, str] = {}
    n = len(test)

    recon = elbo = None
    if model.can_reconstruct:
        try:
            with phases.phase("reconstruction", n) as bar:
                recon = reconstruction_metrics(model, test, config.batch_size, bar)
        except NotPixels as exc:  # no error of means that are not pixels; the other metrics still count
            unavailable["reconstruction"] = str(NotPixels(name, exc.found, "reconstruct", "reconstructions"))
            warn(unavailable["reconstruction"])
            phases.seconds.pop("reconstruction", None)
        except (NotCodes, PluginFault) as exc:  # codes of another shape, or its code raised: n/a with the reason
            unavailable["reconstruction"] = str(exc)
            warn(unavailable["reconstruction"])
            phases.seconds.pop("reconstruction", None)
    else:
        unavailable["reconstruction"] = f"{name} cannot reconstruct"

    # A model with the capability may lack it as configured (a VAE trained on mse): the reason it gives
    # (Model.lacking_capabilities), or the GenzooError its method raises, is the reason the report gives.
    lacking = model.checked_lacking_capabilities()
    if model.has_elbo and "elbo" not in lacking:
        try:
            with phases.phase("negative ELBO", n) as bar:
                elbo = negative_elbo(model, test, config.batch_size, config.seed, bar)
        except GenzooError as exc:
            unavailable["negative_elbo"] = str(exc)
            if isinstance(exc, PluginFault):  # a bug, not a capability it lacks as configured: said at once
                warn(str(exc))
            phases.seconds.pop("negative ELBO")
    else:
        unavailable["negative_elbo"] = lacking.get("elbo", f"{name} has no ELBO")

    iwae = None
    reason = iwae_unsupported(model)
    if reason is None:
        try:
            with phases.phase(f"IWAE NLL, K={config.iwae_k}", n) as bar:
                nll = iwae_nll(model, test, config.iwae_k, batch_size=100, seed=config.seed, bar=bar,
                               nelbo=None if elbo is None else elbo["nelbo"])
            iwae = {"nll": nll, "k": config.iwae_k, "images": n,
                    "seconds": phases.seconds[f"IWAE NLL, K={config.iwae_k}"]}
        except GenzooError as exc:
            unavailable["iwae"] = str(exc)
            if isinstance(exc, PluginFault):
                warn(str(exc))
            phases.seconds.pop(f"IWAE NLL, K={config.iwae_k}")
    else:
        unavailable["iwae"] = reason

    fids: dict[str, Any] = {}
    features = resolve_features(config.features, model.device)
    samplers = model_samplers(model, name, config, train, unavailable, {} if samplers is None else samplers)
    if not samplers:
        asked = config.samplers or [model.default_sampler]
        unavailable["fid"] = unavailable["sampling"] = f"{name} cannot sample with " + (
            ", ".join(config.samplers) if config.samplers else f"its default sampler {model.default_sampler!r}") + (
            ": " + "; ".join(unavailable[f"sampler {chosen}"] for chosen in asked))
    elif config.fid_samples == 0:
        unavailable["fid"] = "skipped (--fid-samples 0)"
    else:
        for chosen, sampler in samplers.items():
            for label in features:
                prepare_reference(test, label, config, dataset, phases, model.device)
                phase = f"FID {label}, sampler {chosen}, {config.fid_samples} samples"
                try:
                    with phases.phase(phase, config.fid_samples) as bar:
                        result = fid(sampler, test, label, config.fid_samples, dataset=dataset, seed=config.seed,
                                     cache=Path(config.cache) if config.cache else None,
                                     inception_path=config.inception_weights, download=config.download, bar=bar)
                except NotPixels as exc:  # the model's own samples: no FID, and the other metrics still count
                    # named as registered, not by its class; a sampler other than the model's own is blamed
                    unavailable["fid"] = str(NotPixels(name, exc.found, through=drawn_by(sampler)))
                    warn(unavailable["fid"])
                    phases.seconds.pop(phase)
                    break
                except GenzooError as exc:  # a sampler that failed or broke its contract: its FID is n/a, why
                    unavailable["fid"] = unavailable[f"sampler {chosen}"] = str(exc)
                    warn(str(exc))
                    phases.seconds.pop(phase, None)
                    break
                fids[fid_key(label, chosen)] = {**result, "sampler": chosen, "seconds": phases.seconds[phase]}

    interpolation = None
    if not model.can_encode:
        unavailable["interpolation"] = f"{name} cannot encode"
    elif config.fid_samples == 0:
        unavailable["interpolation"] = "skipped (--fid-samples 0)"
    else:  # with the evaluation's first extractor: Inception under the paper protocol, else the cheap mnist one
        label = features[0]
        prepare_reference(test, label, config, dataset, phases, model.device)
        phase = f"interpolation FID {label}, {config.fid_samples} midpoints"
        try:
            with phases.phase(phase, config.fid_samples):
                interpolation = interpolation_metrics(model, test, config.fid_samples, seed=config.seed,
                                                      dataset=dataset, batch_size=config.batch_size,
                                                      cache=Path(config.cache) if config.cache else None,
                                                      features=label, inception_path=config.inception_weights,
                                                      download=config.download)
            interpolation["seconds"] = phases.seconds[phase]
        except NotPixels as exc:  # decoded images that are not pixels (complex ones, or NotShaped): n/a, why
            unavailable["interpolation"] = str(type(exc)(name, exc.found, "decode", "decoded images"))
            warn(unavailable["interpolation"])
            phases.seconds.pop(phase, None)
        except (NotCodes, PluginFault) as exc:  # codes of another shape, or its encode or decode raised: n/a, why
            unavailable["interpolation"] = str(exc)
            warn(unavailable["interpolation"])
            phases.seconds.pop(phase, None)

    sampling = None
    if samplers:  # with the first sampler asked for that can draw
        chosen, sampler = next(iter(samplers.items()))
        try:
            with phases.phase("sampling speed", config.sampling_images) as bar:
                sampling = cost.sampling_throughput(sampler, config.sampling_images, config.batch_size,
                                                    config.seed, bar)
        except GenzooError as exc:  # the sampler failed while timed: the speed is n/a, why
            unavailable["sampling"] = str(exc)
            warn(str(exc))
            phases.seconds.pop("sampling speed", None)
        if sampling is not None:
            sampling["sampler"] = chosen

    return {
        "model": name,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "capabilities": model.capabilities(),
        "samplers": {chosen: sampler.description() for chosen, sampler in samplers.items()},
        "parameters": parameter_count(model),
        "dataset": dataset,
        "test_images": n,
        # What a later evaluation checks a measurement it would keep against: the same test pixels.
        "test_data_sha256": pixels_sha256(test),
        "reconstruction": recon,
        "negative_elbo": elbo,
        "iwae": iwae,
        "fid": fids,
        "interpolation": interpolation,
        "sampling": sampling,
        "training": cost.training_throughput(records or []),
        "seconds": dict(phases.seconds),
        "unavailable": unavailable,
        "eval_config": config.to_dict(),
        "environment": environment(model.device),
    }


def prepare_reference(test: Split, features: str, config: EvalConfig, dataset: str, phases: Phases,
                      device: torch.device) -> None:
    """Cache the test split's FID statistics as a phase of its own when they are not cached yet, and check them
    when they are: a damaged statistics file is then the one ``Error:`` line, before any FID. Read first by the
    FID of a sampler, it was that sampler's failure (a warning) and then, read again by the interpolation's FID,
    the ``Error:`` line, word for word the same (twenty-first hostile pass, files M2)."""
    where: dict[str, Any] = dict(dataset=dataset, cache=Path(config.cache) if config.cache else None,
                 inception_path=config.inception_weights, download=config.download)
    if reference_cached(test, features, **where):
        reference_statistics(test, features, device=device, **where)  # read and checked: nothing is extracted
        return
    with phases.phase(f"FID reference statistics, {features}", len(test)) as bar:
        reference_statistics(test, features, device=device, bar=bar, **where)


def environment(device: torch.device) -> dict[str, Any]:
    """What an evaluation ran on and with, recorded beside its numbers."""
    return {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "genzoo_version": genzoo.__version__,
        "python_version": platform.python_version(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def load_test_split(dataset: str, data_root: str | None, test_limit: int | None, device: torch.device,
                    download: bool = True, recorded_in: Path | None = None) -> Split:
    """The test split of a registered dataset, optionally narrowed to its first ``test_limit`` images."""

    return load_split(dataset, "test", data_root, test_limit, device, download, recorded_in)


def finished_records(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A run's config and metric records, all checked; refuse a run whose checkpoint is not its last epoch."""

    run_dir = Path(run_dir)
    run = read_run(run_dir)
    records = read_metrics(run_dir, run.run_id)
    finished_checkpoint(run_dir, run, records)
    return run.raw, records


def note_lost_metrics(result: dict[str, Any], run_dir: Path, description: dict[str, Any],
                      records: list[dict[str, Any]]) -> None:
    """Say on stderr and in ``result`` which epochs' metric lines a finished run has lost.

    Its training throughput would otherwise be computed from the epochs left, as if
    they were all.
    """
    lost = lost_metrics(run_dir, records, description["train_config"]["epochs"])
    if lost:
        warn(lost)
        result["training"] = None
        result["unavailable"]["training"] = lost


#: What an evaluation measures besides FID (kept per feature): one it did not make this
#: time is kept from the run's earlier ``eval.json``.
MEASUREMENTS = ("reconstruction", "negative_elbo", "iwae", "interpolation", "sampling")


def earlier_evaluation(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``eval.json`` (None if there is none), checked before any work is done.

    One that is not a genzoo evaluation is refused rather than replaced: it may hold
    numbers someone needs, and moving it away is the user's call.
    """
    path = run_dir / EVAL_FILE
    try:
        value = read_json(path)
    except FileNotFoundError:
        return None
    if isinstance(value, dict):
        try:  # the run's model says which sampler older, unlabelled FIDs were of
            default: str | None = registry().model(read_run(run_dir).model).default_sampler
        except GenzooError:  # no run to say it: such FIDs are refused below as unlabelled
            default = None
        if default is not None:
            _label_old_fids(value, default)
    problem = evaluation_problem(value)
    if problem is not None:
        raise GenzooError(f"{path} is not a genzoo evaluation ({problem}); genzoo merges new measurements "
                          "into it, so move it away first")
    problem = _settings_problem(cast(dict[str, Any], value))  # evaluation_problem found it an object
    if problem is not None:
        raise GenzooError(f"{path} does not hold each measurement with the settings it was measured under "
                          f"({problem}); genzoo would keep it under the wrong ones: delete it or move it away, "
                          "then evaluate again")
    return cast(dict[str, Any], value)


def _label_old_fids(value: dict[str, Any], default: str) -> None:
    """An ``eval.json`` from before samplers were plugins keys each FID by its extractor alone.

    Those FIDs were of the model's default sampler (the AE's mixture is the ``gmm`` sampler
    now, fitted the same way): label them so, as this version keys them.
    """
    fids, kept = value.get("fid"), value.get("kept")
    if not isinstance(fids, dict):
        return
    for label in [label for label, entry in fids.items() if isinstance(entry, dict) and "sampler" not in entry]:
        entry = fids.pop(label)
        fids[fid_key(label, default)] = {**entry, "sampler": default}
        if isinstance(kept, dict) and f"fid.{label}" in kept:
            kept[f"fid.{fid_key(label, default)}"] = kept.pop(f"fid.{label}")


def evaluation_problem(value: Any) -> str | None:
    """What makes ``value`` no genzoo evaluation record, if anything: an ``eval.json``, or one model's
    entry of a compare's ``results.json``, which holds the same fields (checked field by field)."""
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}, not an object"
    # Every evaluation genzoo writes records its settings: an object with none of its fields (a logger's or a
    # person's own notes, {"my_fid": 12.3}) passed as an empty one, and was merged into and replaced (twenty-fourth
    # hostile pass, plugins F5).
    if not isinstance(value.get("eval_config"), dict):
        return "no eval_config, which every evaluation genzoo writes records"
    samplers = value.get("samplers")
    if samplers is not None and not (isinstance(samplers, dict) and all(_text(k) and _text(v)
                                                                         for k, v in samplers.items())):
        return f"samplers is {shown(samplers)}, not sampler names with what each draws"
    for key in ("fid", "kept", "eval_config", "environment", "unavailable", "run_config", *MEASUREMENTS):
        if value.get(key) is not None and not isinstance(value[key], dict):
            return f"{key} is {shown(value[key])}, not an object"
    for key in ("fid", "kept"):
        for name, entry in (value.get(key) or {}).items():
            if not isinstance(entry, dict):
                return f"{key} {shown(name)} is {shown(entry)}, not an object"
            problem = _fields_problem(entry, FIELDS[key])
            if problem:
                return f"{key} {shown(name)}: {problem}"
            if key == "fid" and fid_key(entry["features"], entry["sampler"]) != name:
                return f"fid {shown(name)} holds features {shown(entry['features'])}, sampler {shown(entry['sampler'])}"
    for key in MEASUREMENTS:
        problem = _fields_problem(value[key], FIELDS[key]) if value.get(key) is not None else None
        if problem:
            return f"{key}: {problem}"
    # Compared with the run's, a malformed digest read as other weights or data: the file was replaced, its FIDs
    # lost, with an untrue warning (twentieth hostile pass, files F6).
    run_config = value.get("run_config") or {}
    if run_config.get("weights_sha256") is not None and not is_sha256(run_config["weights_sha256"]):
        return f"run_config: weights_sha256 is {shown(run_config['weights_sha256'])}, not a sha256"
    if run_config.get("data_sha256") is not None and not is_data_sha256(run_config["data_sha256"]):
        return (f"run_config: data_sha256 is {shown(run_config['data_sha256'])}, not the sha256 of its train and "
                "test data")
    # This evaluation's own settings become those of each measurement kept from it.
    return _fields_problem({"eval_config": value.get("eval_config"), "test_images": value.get("test_images"),
                            "evaluated_at": (value.get("environment") or {}).get("evaluated_at")}, FIELDS["kept"])


def _settings_problem(value: dict[str, Any]) -> str | None:
    """The first measurement whose own record contradicts the settings it is filed under, if any.

    Each measurement is kept with its ``kept`` entry, else with the file's own settings;
    a hand edit (``kept`` deleted, ``eval_config`` changed) would otherwise re-attach an
    FID of 30 samples to ``fid_samples 0``, and every later merge would carry that on.
    """
    kept = value.get("kept") or {}
    own = {"eval_config": value.get("eval_config"), "test_images": value.get("test_images")}
    entries = {name: value[name] for name in MEASUREMENTS if value.get(name) is not None}
    entries.update({f"fid.{label}": entry for label, entry in (value.get("fid") or {}).items()})
    for name in kept:
        if name not in entries:
            return f"kept {shown(name)} names no measurement of the file"
    for name, entry in entries.items():
        settings = kept.get(name) or own
        config, images = settings.get("eval_config"), settings.get("test_images")
        if not isinstance(config, dict):
            return f"{name} has no eval_config it was measured under"
        for field, recorded, expected in _ties(name, entry, config, images):
            if recorded != expected:
                return f"{name} records {field} {shown(recorded)}, its settings say {shown(expected)}"
    return None


def _ties(name: str, entry: dict[str, Any], config: dict[str, Any], images: Any) -> list[tuple[str, Any, Any]]:
    """What ``entry`` records of its settings, as (field, recorded, what ``config`` and ``images`` imply)."""
    if name.startswith("fid."):
        label, sampler = entry["features"], entry.get("sampler")
        allowed = list(EXTRACTORS) if config.get("features") in ("auto", "all") else [config.get("features")]
        asked = config.get("samplers")
        ties = [("samples", entry["samples"], config.get("fid_samples")), ("seed", entry["seed"], config.get("seed")),
                ("features", label, label if label in allowed else config.get("features")),
                *([("sampler", sampler, sampler if sampler in asked else asked)] if isinstance(asked, list) else [])]
        stated = re.search(r"split, (\d{1,12}) images", entry["reference"])  # how frechet describes its reference
        return ties + ([("reference images", int(stated.group(1)), images)] if stated else [])
    if name == "interpolation":  # as many pairs as FID samples, drawn with the evaluation's seed
        # With the evaluation's first extractor: ``all``'s first, ``auto``'s depends on the device it ran on.
        chosen = config.get("features")
        first = list(EXTRACTORS) if chosen == "auto" else [resolve_features("all", "cpu")[0]] if chosen == "all" \
            else [chosen]
        return [("pairs", entry["pairs"], config.get("fid_samples")), ("seed", entry["seed"], config.get("seed")),
                ("test_images", entry["test_images"], images),
                *((f"{part}.features", entry[part]["features"],
                   entry[part]["features"] if entry[part]["features"] in first else first[0])
                  for part in ("midpoint_fid", "reconstruction_fid"))]
    if name == "sampling":
        return [("images", entry["images"], config.get("sampling_images")),
                ("batch_size", entry["batch_size"], config.get("batch_size"))]
    return [("images", entry["images"], images), *([("k", entry["k"], config.get("iwae_k"))] if name == "iwae" else [])]


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _text(v: Any) -> bool:
    """A line of printable text: kept text goes to the terminal and report.md as it is (no escape sequences)."""
    return isinstance(v, str) and v.isprintable()


#: The fields an ``eval.json`` entry must have for genzoo to keep and print it, each with its check;
#: ``negative_elbo``'s other fields are the model's own names, each a finite number.
#: An FID as :func:`~genzoo.evaluation.frechet.fid` returns it; ``eval.json``'s own FID entries add their seconds.
FIELDS_FID: dict[str, Callable[[Any], bool]] = {
    "fid": lambda v: is_number(v) and v >= 0, "samples": lambda v: is_count(v, 2), "extractor": _text,
    "reference": _text, "features": _text, "seed": lambda v: is_count(v, 0)}
FIELDS: dict[str, dict[str, Callable[[Any], bool]]] = {
    "fid": {**FIELDS_FID, "sampler": _text, "seconds": is_number},
    "kept": {"eval_config": _optional(lambda v: isinstance(v, dict)), "test_images": _optional(is_count),
             "evaluated_at": _optional(_text)},
    "iwae": {"nll": is_number, "k": is_count, "images": is_count, "seconds": is_number},
    "reconstruction": {"mse_per_pixel": is_number, "bce_nats_per_image": is_number, "images": is_count},
    "negative_elbo": {"images": is_count},
    "interpolation": {"pairs": lambda v: is_count(v, 2), "seed": lambda v: is_count(v, 0), "test_images": is_count,
                      "interpolation": _text, "seconds": is_number,
                      "midpoint_fid": lambda v: isinstance(v, dict) and _fields_problem(v, FIELDS_FID) is None,
                      "reconstruction_fid": lambda v: isinstance(v, dict) and _fields_problem(v, FIELDS_FID) is None,
                      **{key: lambda v: is_number(v) and 0 <= v <= 1 for key in
                         ("midpoint_confidence", "reconstruction_confidence", "test_confidence")}},
    "sampling": {"images": is_count, "batch_size": is_count, "seconds": is_number,
                 "images_per_s": _optional(is_number)},
}


def _fields_problem(entry: dict[str, Any], fields: dict[str, Callable[[Any], bool]]) -> str | None:
    for name, check in fields.items():
        if name not in entry:
            return f"no {name}"
        if not check(entry[name]):
            return f"{name} is {shown(entry[name])}"
    if fields is FIELDS["negative_elbo"]:
        for name, number in entry.items():
            if name != "images" and not is_number(number):
                return f"{shown(name)} is {shown(number)}, not a finite number"
    return None


def run_identity(description: dict[str, Any], weights_sha256: str | None = None) -> dict[str, Any]:
    """An evaluation's ``run_config``: what the weights it measured are, so that a later evaluation keeps its
    measurements only for the same weights. The settings, the data trained on (``data_sha256``, None for a run
    from before it was recorded: an ``eval.json`` of a run with the same settings on other data was kept as this
    run's, eighteenth hostile pass, F1), and the digest of the weights measured (``weights_sha256``: two runs of
    one setting differ on a GPU, and a checkpoint copied over this run's is another run's)."""
    return {**{k: description.get(k) for k in ("model_config", "train_config", "data_sha256")},
            "weights_sha256": weights_sha256}


def model_weights_sha256(model: Model) -> str | None:
    """The digest :func:`run_identity` records of the weights an evaluation measures: its state_dict, digested as a
    checkpoint's contents are (:func:`~genzoo.checkpoint.contents_sha256`: each tensor by its values on the CPU,
    whatever its layout or device). None (nothing compared) for a state_dict that cannot be read."""
    try:
        return contents_sha256(model.state_dict())
    except KeyboardInterrupt:
        raise
    except PLUGIN_FAULTS:  # a get_extra_state that fails
        return None


#: What :func:`run_identity` records that an earlier one may not: compared only when both sides record it.
ADDED_IDENTITY = ("data_sha256", "weights_sha256")


def same_run(earlier: Any, now: dict[str, Any]) -> bool:
    """``earlier``, a kept evaluation's ``run_config``, names the run ``now`` (:func:`run_identity`) names.

    A field of :data:`ADDED_IDENTITY` that ``earlier`` lacks (written before it was recorded) or ``now`` lacks (a
    run from before its data was recorded) is left out of the comparison: the measurements are kept as before.
    """
    if isinstance(earlier, dict):
        unknown = [k for k in ADDED_IDENTITY if earlier.get(k) is None or now.get(k) is None]
        earlier, now = ({k: v for k, v in side.items() if k not in unknown} for side in (earlier, now))
    return same_value(earlier, now)  # a NaN in a model's config is the same NaN (eighteenth hostile pass, F5)


def identity_change(earlier: Any, now: dict[str, Any]) -> str:
    """What differs between two run identities :func:`same_run` tells apart, for the warning that replaces one."""
    if isinstance(earlier, dict) and same_run({**earlier, "weights_sha256": None}, now):
        return "other weights than this run's checkpoint"
    return "another configuration of this run"


def merge_earlier(result: dict[str, Any], earlier: dict[str, Any], path: Path, test: Split) -> None:
    """Keep each measurement of ``earlier`` that ``result`` lacks, with the settings it was made under.

    ``result["kept"]`` names every kept measurement (``fid.mnist``, ``iwae``) with its
    evaluation settings, test images and time; the rest of ``result`` is this
    evaluation's. An earlier evaluation of another configuration, or one measured on
    other test data than the first images of ``test`` (the whole test split found
    now), is not merged.
    """
    if not same_run(earlier.get("run_config"), result["run_config"]):
        warn(f"{path} held an evaluation of {identity_change(earlier.get('run_config'), result['run_config'])}; "
             "it is replaced")
        return
    earlier_kept = earlier.get("kept") or {}

    def settings(name: str) -> dict[str, Any]:
        return earlier_kept.get(name) or {"eval_config": earlier.get("eval_config"),
                                          "test_images": earlier.get("test_images"),
                                          "evaluated_at": (earlier.get("environment") or {}).get("evaluated_at"),
                                          "test_data_sha256": earlier.get("test_data_sha256")}

    other = _on_other_test_data(earlier, settings, test, result["dataset"])
    if other:
        warn(f"{path} held {', '.join(other)} measured on other test data than this evaluation's; it is replaced")
        return

    def skipped(name: str) -> bool:  # not a measurement the model cannot have
        return str(result["unavailable"].get(name, "skipped")).startswith("skipped")

    kept: dict[str, Any] = {}
    for name in MEASUREMENTS:
        if result.get(name) is None and earlier.get(name) is not None and skipped(name):
            result[name] = earlier[name]
            result["unavailable"].pop(name, None)
            kept[name] = settings(name)
    # The samplers this evaluation asked for: those that drew, and those that could not draw from the model.
    asked = {*(result.get("samplers") or {}),
             *(name[len("sampler "):] for name in result["unavailable"] if name.startswith("sampler "))}
    for label, entry in (earlier.get("fid") or {}).items():
        # Another sampler's FID is kept whatever this evaluation measured with its own.
        if label not in result["fid"] and (skipped("fid") or entry.get("sampler") not in asked | {None}):
            result["fid"][label] = entry
            result["unavailable"].pop("fid", None)
            kept[f"fid.{label}"] = settings(f"fid.{label}")
    if kept:
        result["kept"] = kept
        warn(f"kept from the earlier {path}, with the settings each was measured under: {', '.join(kept)}")


def _on_other_test_data(earlier: dict[str, Any], settings: Callable[[str], dict[str, Any]], test: Split,
                        dataset: str) -> list[str]:
    """The measurements of ``earlier`` not made on the first images of ``test``.

    Each is checked by the pixel digest recorded with it; an FID also by the digest its
    reference names (so an ``eval.json`` from before digests were recorded is checked too).
    A measurement without either cannot be checked and is taken as recorded.
    """
    digests: dict[int, str] = {}

    def digest(images: int) -> str:
        if images not in digests:
            digests[images] = pixels_sha256(test.take(images))
        return digests[images]

    other = []
    for name in [*(m for m in MEASUREMENTS if earlier.get(m) is not None),
                 *(f"fid.{label}" for label in earlier.get("fid") or {})]:
        recorded, stated = settings(name).get("test_data_sha256"), settings(name).get("test_images")
        images = stated if isinstance(stated, int) and is_count(stated) else 0
        if recorded is not None and (not 1 <= images <= len(test) or recorded != digest(images)):
            other.append(name)
        elif name.startswith("fid."):
            named = re.search(r"\((genzoo-[^()]*-test-(\d{1,12})-[0-9a-f]{12})\)$",
                              earlier["fid"][name[len("fid."):]]["reference"])
            count = int(named.group(2)) if named else 0
            if named is None or not 2 <= count <= len(test) \
                    or named.group(1) != reference_cache_name(dataset, test.take(count)):
                other.append(name)
    return other


def evaluate_run(run_dir: str | Path, config: EvalConfig | None = None, *, test_limit: int | None = None,
                 device: str = "auto", data_root: str | None = None, console: Console | None = None,
                 write: bool = True, report: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Evaluate a finished run on its dataset's test split; write ``eval.json`` into it atomically.

    What an earlier ``eval.json`` measured and this evaluation did not (FID skipped
    with ``--fid-samples 0``) is kept in it, with its own settings. The run folder is
    locked throughout, as training locks it: a second eval or a resume is refused.
    A run folder this user cannot write is refused before any measurement (an export
    from a read-only share measured for minutes, then lost it all); ``report`` is given
    the result before it is written, so a write that fails anyway (a full disk) loses no number.
    """
    run_dir = Path(run_dir)
    config = config or EvalConfig()
    read_run(run_dir)  # a run folder, before it is locked
    problem = cannot_write(run_dir, _room_needed(run_dir)) if write else None
    if problem is not None:
        raise GenzooError(f"cannot write {EVAL_FILE} into run folder {printable(str(run_dir))} ({problem}), where "
                          "eval keeps its results (it has no --out); copy the run to a folder you can write "
                          "(cp -r) and evaluate the copy")
    with locked(run_dir):  # another eval or a resume would overwrite what this one writes, or be reported stale
        return _evaluate_locked(run_dir, config, test_limit, device, data_root, console, write, report)


def _room_needed(run_dir: Path) -> int:
    """The most bytes writing ``eval.json`` takes: :data:`EVAL_JSON_ROOM` beyond the earlier one (capped as its
    reader caps it), which stays until the new one is renamed over it."""
    try:
        info = os.lstat(run_dir / EVAL_FILE)
    except OSError:  # none yet, or a folder that cannot be looked into: the probe finds out
        return EVAL_JSON_ROOM
    return EVAL_JSON_ROOM + (min(info.st_size, MAX_JSON_BYTES) if stat.S_ISREG(info.st_mode) else 0)


def _evaluate_locked(run_dir: Path, config: EvalConfig, test_limit: int | None, device: str,
                     data_root: str | None, console: Console | None, write: bool,
                     report: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:

    problem = protocol_problem(config.protocol, config.to_dict(), test_limit)
    if problem is not None:
        raise GenzooError(problem)
    description, records = finished_records(run_dir)
    model_class = registry().model(description["model"])
    for chosen in config.samplers or []:  # asked for by name for this one run: a sampler that cannot draw is refused
        problem = sampler_problem(model_class, chosen)  # a fault in the plugin's unsupported(): one line, here
        if problem is not None:
            raise GenzooError(f"sampler {chosen!r} cannot draw from model {description['model']!r} of run "
                              f"{run_dir}: {problem}")
        entry = registry().entry("sampler", chosen)
        fit_attributes(entry.obj, origin(chosen, entry.plugin, entry.distribution))
    earlier = earlier_evaluation(run_dir) if write else None
    target = select_device(device)
    config.check(target)
    model = load_model(run_dir, str(target), description)
    identity = run_identity(description, model_weights_sha256(model))  # of the weights as loaded, before any use
    train_config = description["train_config"]
    dataset = train_config.get("dataset", "mnist")
    # The whole split: the run's recorded digest and those of measurements kept are of its first images.
    whole = load_test_split(dataset, data_root or train_config.get("data_root"), None, target,
                            recorded_in=None if data_root else run_dir / CONFIG)
    test = whole.take(test_limit) if test_limit is not None else whole
    check_data(read_run(run_dir), None, whole, run_dir)  # before any measurement, as resume checks
    with make_progress(console) as progress:
        result = evaluate_model(model, test, config, name=description["model"], dataset=dataset,
                                records=records, progress=progress,
                                train=lambda: run_training_split(run_dir, description, target, data_root))
    result["run"] = str(run_dir)
    result["run_config"] = identity
    note_lost_metrics(result, run_dir, description, records)
    if earlier is not None:
        merge_earlier(result, earlier, run_dir / EVAL_FILE, whole)
    if report is not None:
        report(result)
    if write:
        check_in_place(run_dir, "eval")
        atomic_write_json(run_dir / EVAL_FILE, result)
    return result
