"""The FID after every epoch (``train --fid-curve N``): where a comparison's ranking settles.

A comparison at one budget ranks models by how far each got within it: a model that learns
slowly ranks last after 5 epochs and may lead after 20 (docs/evaluation.md has the numbers).
So each epoch's FID of the model's default sampler goes to ``fid_curve.jsonl`` in the run
folder, and ``compare`` draws the curves and says whether the ranking still moved at the
end. It is measured after the epoch's checkpoint is saved, in eval mode, under a forked and
seeded RNG: the training continues exactly as it would without it.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sized
from pathlib import Path
from typing import Any, Callable

from genzoo.building import unfitted_sampler
from genzoo.checks import is_count, is_number, printable, shown
from genzoo.data import Split
from genzoo.errors import GenzooError, warn
from genzoo.evaluation.frechet import fid
from genzoo.files import atomic_write_text, parse_json, read_regular
from genzoo.model import Model
from genzoo.plugin_registry import registry
from genzoo.run_folder import append_metrics, is_run_id, read_run
from genzoo.sampler import fit_attributes, origin, sampler_problem
from genzoo.seeding import seeded
from genzoo.train_config import TrainConfig

CURVE_FILE = "fid_curve.jsonl"
#: A sampler that fits to the training split (``gmm``) fits to at most this many of its images
#: each epoch (a full fit takes minutes); the final evaluation fits to all of them.
FIT_IMAGES = 10_000
#: The seed of each epoch's fit and draws: every epoch measured alike.
CURVE_SEED = 0


#: The extractor of every curve: the cheap one, on any device (the curve compares epochs and models).
CURVE_FEATURES = "mnist"
#: Run folders whose curve warned already in this process: one warning per run, not one per epoch.
_warned: set[Path] = set()


def measure_epoch(run_dir: Path, model: Model, name: str, train: Split, test: Split, config: TrainConfig,
                  record: dict[str, Any]) -> None:
    """Append epoch ``record['epoch']``'s FID to ``run_dir``'s curve, if ``config.fid_curve`` asks for one.

    An epoch whose samples cannot be measured (a sampler that cannot fit yet, samples that
    are not pixels) gets ``fid: null`` and the reason, once as a warning. A resume calls it
    first with ``resumed`` set (training's ``after_epoch`` contract): the curve is cut back
    to the checkpoint's epoch (a torn last line goes too, so the next line is whole), and
    at an epoch boundary that epoch is measured if a crash came between its checkpoint
    and its line (the weights are exactly that epoch's).
    """
    if not config.fid_curve:
        return
    epoch = record["epoch"]
    run_id = read_run(run_dir).run_id
    if record.get("resumed"):
        kept = keep_curve_through(run_dir, epoch, run_id)
        if not record.get("boundary") or epoch < 1 or any(entry["epoch"] == epoch for entry in kept):
            return
    if sampler_problem(model) is not None:
        return
    chosen = model.default_sampler
    started = time.perf_counter()
    line: dict[str, Any] = {"epoch": epoch, "sampler": chosen, "features": CURVE_FEATURES,
                            "samples": config.fid_curve, "reference_images": len(test)}
    if run_id is not None:  # whose curve this is: another run's copied in is told apart (nineteenth pass, F4)
        line["run"] = run_id
    model.eval()
    try:
        with seeded(model.device, CURVE_SEED):
            sampler = unfitted_sampler(model, name, chosen)
            if sampler.needs_fit:
                line["fit_images"] = min(len(train), FIT_IMAGES)
                sampler.fit(train.take(line["fit_images"]))
            result = fid(sampler, test, CURVE_FEATURES, config.fid_curve, dataset=config.dataset, seed=CURVE_SEED)
        line["fid"] = result["fid"]
    except GenzooError as exc:
        line.update(fid=None, why=printable(str(exc)))
        if Path(run_dir) not in _warned:
            _warned.add(Path(run_dir))
            warn(f"no FID for epoch {epoch}'s curve (later epochs may have none either, silently): {exc}")
    finally:
        model.train()
    line["seconds"] = time.perf_counter() - started
    append_metrics(run_dir, line, CURVE_FILE)


def keep_curve_through(run_dir: Path, epoch: int, run_id: str | None = None) -> list[dict[str, Any]]:
    """Rewrite the curve (atomically) with its entries through ``epoch``, one per epoch; return them.

    Every line must be of the run ``run_id`` names (its ``config.json``'s): a resume appended this run's
    epochs to another run's curve copied in (twentieth hostile pass, beside F1 and F2).
    """
    path = Path(run_dir) / CURVE_FILE
    if not path.exists():
        return []
    try:
        kept = read_curve(run_dir, through=epoch, run_id=run_id)
    except GenzooError as exc:
        raise GenzooError(f"{exc}; move it away to resume without the curve so far") from None
    atomic_write_text(path, "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in kept))
    return kept


def read_curve(run_dir: Path, through: int | None = None, config: TrainConfig | None = None,
               sampler: str | None = None, train: Callable[[], Sized] | None = None,
               run_id: str | None = None) -> list[dict[str, Any]]:
    """The curve's entries, one per epoch (the last written, when a resume measured an epoch again),
    through epoch ``through``. A torn last line (a crash mid-append) is left out; any other
    line that is no curve entry is corruption, refused naming the line. Given the run's
    ``config``, so is a line its training cannot have written (a copied or edited curve):
    one past its epochs, of other samples than its ``fid_curve``, or any line when that is 0;
    given the ``sampler`` its training measures with (its model's default), one of another;
    given its training split (``train``, loaded only for a line that names a fit), a sampler
    fitted to another number of images than the training fits it to, or an FID of a sampler that needs a fit
    that names none; given the run's ``run_id``, a line of another run, or one naming none."""
    path = Path(run_dir) / CURVE_FILE
    try:
        lines = read_regular(path).split(b"\n")
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise GenzooError(f"cannot read {path}: {exc.strerror or exc}") from exc
    lines.pop()  # b"" after a whole last line; a torn one otherwise
    entries: dict[int, dict[str, Any]] = {}
    fit = None if train is None else functools.cache(lambda: min(len(train()), FIT_IMAGES))  # loaded once, if at all
    for number, line in enumerate(lines, 1):
        try:
            entry = parse_json(line)  # a line nested too deeply too: no RecursionError traceback
        except ValueError:
            entry = None
        if not is_entry(entry):
            raise GenzooError(f"{path} line {number} is no FID-curve entry; a crash only ever tears the last "
                              "line, so this file was changed by something else")
        problem = None if config is None else _not_the_runs(entry, config, sampler, fit)
        if problem is None and run_id is not None and entry.get("run") != run_id:
            problem = (f"was measured by run {shown(entry['run'])}, not by this run ({run_id})" if "run" in entry
                       else f"names no run, but this run ({run_id}) names itself on every line it writes")
        if problem is not None:
            raise GenzooError(f"{path} line {number} {problem}: it is not this run's curve")
        if through is None or entry["epoch"] <= through:
            entries[entry["epoch"]] = entry
    return [entries[epoch] for epoch in sorted(entries)]


def _text(value: Any) -> bool:
    """A line of printable text: compare's report.md quotes ``features`` and ``why`` (escape codes are refused)."""
    return isinstance(value, str) and value.isprintable()


#: Each field of a curve line, and what it may hold: what :func:`measure_epoch` writes. Compare uses each
#: (it sums the seconds, ranks only curves measured against the same reference), so each is checked as read.
_FIELDS: dict[str, Any] = {
    "epoch": is_count, "sampler": lambda v: isinstance(v, str), "features": _text,
    "samples": is_count,
    # NaN: measured, not finite; 10**400: no float; below 0: no FID (a squared distance), as eval.json's
    "fid": lambda v: v is None or (type(v) is float and not v < 0) or (is_number(v) and v >= 0),
    "reference_images": is_count, "fit_images": is_count, "why": _text,
    "seconds": lambda v: is_number(v) and v >= 0, "run": is_run_id,
}
#: Fields a line may lack: reference_images, seconds and run came later; fit_images and why only where they apply.
_OPTIONAL = ("reference_images", "fit_images", "why", "seconds", "run")


def is_entry(value: Any) -> bool:
    """A line :func:`measure_epoch` writes: every field it always writes, each of the type it writes, no other.

    Also what ``compare`` checks each point of a ``results.json``'s curves with: the report reads them alike.
    """
    return (isinstance(value, dict) and all(key in value for key in _FIELDS if key not in _OPTIONAL)
            and all(key in _FIELDS and _FIELDS[key](item) for key, item in value.items()))


def _not_the_runs(entry: dict[str, Any], config: TrainConfig, sampler: str | None = None,
                  fit: Callable[[], int] | None = None) -> str | None:
    """How a curve entry differs from what the run's training measures, if it does (:func:`read_curve`)."""
    if not config.fid_curve:
        return "is a point of a curve, but the run was trained with --fid-curve 0 and measured none"
    if entry["epoch"] > config.epochs:
        return f"is for epoch {entry['epoch']} of a {config.epochs}-epoch run"
    if entry["samples"] != config.fid_curve:
        return f"measured {entry['samples']} samples, but the run's --fid-curve is {config.fid_curve}"
    if sampler is not None and entry["sampler"] != sampler:
        return f"measured sampler {shown(entry['sampler'])}, but the run's training measures with {shown(sampler)}"
    if fit is not None and "fit_images" in entry and entry["fit_images"] != fit():
        return f"fitted its sampler to {entry['fit_images']} images, but the run's training fits it to {fit()}"
    # measure_epoch names the fit of every sampler that needs one, before fitting it: a line without it
    # that holds an FID is another's, the field cut out (F5, ninth hostile pass)
    if fit is not None and "fit_images" not in entry and entry["fid"] is not None and _needs_fit(entry["sampler"]):
        return (f"measured sampler {shown(entry['sampler'])}, which is fitted to training images, but names no "
                "fit_images")
    return None


def _needs_fit(name: str) -> bool:
    """Whether sampler ``name`` fits to the training split, read guarded from its plugin's class."""
    entry = registry().entry("sampler", name)
    return fit_attributes(entry.obj, origin(name, entry.plugin, entry.distribution))[0]


#: A model whose FID fell by more than this fraction over its last epoch is still improving:
#: the budget, not the model, may decide where it ranks.
STILL_FALLING = 0.05


def settle(curves: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Where the ranking by FID (lower first) settles, over the epochs every curve measured.

    ``orders`` holds the ranking after each such epoch, ``settled_since`` the first epoch
    from which it never changed again, ``falling`` each model whose FID fell by more than
    :data:`STILL_FALLING` over its last measured epoch, and by how much.
    """
    measured = {label: {e["epoch"]: e["fid"] for e in entries if e.get("fid") is not None
                        and e["fid"] == e["fid"]} for label, entries in curves.items()}  # NaN: not measured
    ranked = [label for label, points in measured.items() if points]
    common = sorted(set.intersection(*(set(measured[label]) for label in ranked))) if ranked else []
    orders = {epoch: sorted(ranked, key=lambda label: measured[label][epoch]) for epoch in common}
    settled = None
    for epoch in reversed(common):
        if orders[epoch] != orders[common[-1]]:
            break
        settled = epoch
    falling = {}
    for label, points in measured.items():
        epochs = sorted(points)  # over the last epoch only: two measured epochs in a row
        if len(epochs) >= 2 and epochs[-1] == epochs[-2] + 1 and points[epochs[-2]] > 0:
            drop = 1 - points[epochs[-1]] / points[epochs[-2]]
            if drop > STILL_FALLING:
                falling[label] = drop
    return {"epochs": common, "orders": {str(e): order for e, order in orders.items()},
            "final": orders[common[-1]] if common else [], "settled_since": settled,
            "last_epoch": common[-1] if common else None, "falling": falling}
