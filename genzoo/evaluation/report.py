"""Turn evaluation results into the comparison table, ``report.md`` and ``compare.png``.

One function builds the columns, so the terminal table and the Markdown report can
never disagree. A number a model cannot have prints as "n/a"; FID columns are keyed by
(extractor, sampler, sample count), so FIDs measured differently never share a column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from rich.console import Console
from rich.table import Table
from rich.text import Text

from genzoo import figures
from genzoo.checks import NotCodes, NotPixels, check_pixels
from genzoo.errors import GenzooError, PluginFault, blamed, warn
from genzoo.model import Model
from genzoo.sampler import Sampler, model_images
from genzoo.seeding import seeded

#: matplotlib as genzoo imports it (:mod:`genzoo.figures`: never from the current folder).
plt = figures.pyplot
NA = "n/a"
Column = tuple[str, list[str]]


def _num(value: float | None, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals; from 1e9 on, in three significant digits (``1e+300``, not 301 digits).

    No bound refuses a huge value: FID and the other numbers have no upper limit a
    reader could defend, so one past any sensible size is printed short and left to judge.
    """
    if value is None:
        return NA
    return f"{value:.3g}" if abs(value) >= 1e9 else f"{value:,.{digits}f}"


def _get(result: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(result, dict) or result.get(key) is None:
            return None
        result = result[key]
    return result


def fid_keys(results: Sequence[dict[str, Any]]) -> list[tuple[str, int]]:
    """Every (FID key: extractor and sampler, sample count) pair measured, in a stable order."""
    keys = {(label, r["fid"][label]["samples"]) for r in results for label in r.get("fid", {})}
    return sorted(keys, key=lambda k: (not k[0].startswith("mnist"), k[0], k[1]))


def _fid_header(label: str, results: Sequence[dict[str, Any]], samples: int) -> str:
    """``FID mnist`` over ``sampler gmm, 10,000 samples``: what the column measured with."""
    entry = next(r["fid"][label] for r in results if label in r.get("fid", {}))
    return f"FID {entry['features']}\nsampler {entry['sampler']}, {samples:,} samples"


def table_columns(results: Sequence[dict[str, Any]]) -> list[Column]:
    """(header, cells) of every column; headers may hold a newline for the terminal."""
    cols: list[Column] = [
        ("model", [r["model"] for r in results]),
        ("params", [f"{r['parameters']:,}" for r in results]),
        ("epochs", [str(_get(r, "training", "epochs") or NA) for r in results]),
        ("train\nimg/s", [_num(_get(r, "training", "images_per_s"), 0) for r in results]),
        ("recon MSE\nper pixel", [_num(_get(r, "reconstruction", "mse_per_pixel"), 4) for r in results]),
        ("recon BCE\nnats/img", [_num(_get(r, "reconstruction", "bce_nats_per_image"), 1) for r in results]),
        ("-ELBO nats/img\n(BCE + KL)", [_elbo(r) for r in results]),
    ]
    ks = sorted({r["iwae"]["k"] for r in results if r.get("iwae")})
    cols.append((f"IWAE NLL\nnats/img (K={'/'.join(map(str, ks)) or NA})",
                 [_num(_get(r, "iwae", "nll"), 1) for r in results]))
    for label, samples in fid_keys(results):
        cells = []
        for r in results:
            entry = r.get("fid", {}).get(label)
            cells.append(_num(entry["fid"], 2) if entry and entry["samples"] == samples else NA)
        cols.append((_fid_header(label, results, samples), cells))
    pairs = sorted({r["interpolation"]["pairs"] for r in results if r.get("interpolation")})
    if pairs:  # models that encode: the latent space between codes (docs/evaluation.md)
        # one column per extractor (Inception under the paper protocol): numbers of two extractors never share one
        extractors = {r["interpolation"]["midpoint_fid"]["features"] for r in results if r.get("interpolation")}
        for label in sorted(extractors):
            cols.append((f"interp. FID {label}\n{'/'.join(f'{p:,}' for p in pairs)} midpoints",
                         [_num(_get(r, "interpolation", "midpoint_fid", "fid"), 2)
                          if _get(r, "interpolation", "midpoint_fid", "features") == label else NA for r in results]))
        cols.append(("midpoint\nconfidence", [_num(_get(r, "interpolation", "midpoint_confidence"), 3)
                                               for r in results]))
    cols.append(("sample\nimg/s", [_num(_get(r, "sampling", "images_per_s"), 0) for r in results]))
    cols.append(("eval\nseconds", [_num(sum(r["seconds"].values()), 1) for r in results]))
    return cols


def _elbo(result: dict[str, Any]) -> str:
    e = result.get("negative_elbo")
    if e is None:
        return NA
    nelbo, bce, kl = (_num(e[k], 1).replace(",", "") for k in ("nelbo", "bce", "kl"))
    return f"{nelbo} ({bce} + {kl})"


#: The footer's "n/a": a capability the model lacks, a measurement skipped, or the model's code failing (warned).
#: Its own line, narrower than the narrowest table: rich wraps a caption to the table's width.
NOT_MEASURED = 'n/a = not measured: the model cannot do it, it was skipped, or its code failed ("unavailable" says why)'


def notes(results: Sequence[dict[str, Any]]) -> list[str]:
    """The lines a reader needs beside the table: samplers, test split, FID references."""
    lines = []
    for r in results:
        for sampler, words in (r.get("samplers") or {}).items():
            lines.append(f"{r['model']} samples, sampler {sampler}: {words}")
    first = results[0] if results else {}
    lines.append(f"all metrics on the {first.get('dataset', '?')} test split, "
                 f"{first.get('test_images', '?'):,} images")
    lines.append(NOT_MEASURED)
    if any(r.get("interpolation") for r in results):
        lines.append("interp. FID: decoded midpoints of random pairs of test codes (spherical for a Gaussian prior) "
                     "against the test split; midpoint confidence: the MNIST classifier's mean top probability on them")
    seen = set()
    for r in results:
        for entry in r.get("fid", {}).values():
            if entry["features"] not in seen:
                seen.add(entry["features"])
                lines.append(f"FID {entry['features']}: {entry['extractor']}; reference {entry['reference']}")
    return lines


def table_console() -> Console:
    """Standard output; when it is not a terminal, wide enough that no number is cut."""
    console = Console()
    return console if console.is_terminal else Console(width=220)


def rich_table(results: Sequence[dict[str, Any]], title: str = "genzoo compare") -> Table:
    """The table for the terminal; every piece of it is plain :class:`Text`, never rich markup.

    The title holds a folder and the cells and notes hold model labels (folder names),
    sampler descriptions and plugin names: ``[/bold]`` in any of them was a MarkupError
    after all the work, and ``[red]`` or ``:smile:`` was swallowed or restyled.
    """
    table = Table(title=Text(title, style="table.title"),
                  caption=Text("\n".join(notes(results)), style="table.caption"), caption_justify="left")
    for i, (header, _) in enumerate(table_columns(results)):
        table.add_column(Text(header), justify="left" if i == 0 else "right")
    for row in zip(*(cells for _, cells in table_columns(results))):
        table.add_row(*[Text(c, style="dim" if c == NA else "") for c in row])
    return table


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    cols = table_columns(results)
    head = "| " + " | ".join(h.replace("\n", " ") for h, _ in cols) + " |"
    rule = "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(cols))) + "|"
    rows = ["| " + " | ".join(_cell(c) for c in row) + " |" for row in zip(*(cells for _, cells in cols))]
    return "\n".join([head, rule, *rows])


def _cell(text: str) -> str:
    """A Markdown table cell: a ``|`` in a label (a folder name) would start a new column."""
    return text.replace("|", "\\|")


PHASE_ORDER = ("reconstruction", "negative ELBO", "IWAE", "FID reference", "FID", "sampling")


def _phase_rank(phase: str) -> int:
    return next((i for i, prefix in enumerate(PHASE_ORDER) if phase.startswith(prefix)), len(PHASE_ORDER))


def phase_table(results: Sequence[dict[str, Any]], training_seconds: dict[str, float]) -> str:
    """Wall time of every phase per model, in Markdown."""
    phases: list[str] = []
    for r in results:
        phases += [p for p in r["seconds"] if p not in phases]
    phases.sort(key=_phase_rank)
    head = "| model | training (wall) | of which optimisation steps | " + " | ".join(phases) + " |"
    rule = "|:---|" + "---:|" * (len(phases) + 2)
    rows = []
    for r in results:
        train = training_seconds.get(r["model"])
        cells = [_num(train, 1) if train is not None else "reused run",
                 _num(_get(r, "training", "train_seconds"), 1)]
        cells += [_num(r["seconds"].get(p), 1) for p in phases]
        rows.append(f"| {_cell(r['model'])} | " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *rows]) + (
        "\n\nAll times in seconds. Training wall time also holds the per-epoch test evaluation, "
        "checkpoints, pictures and what a model does after training (the AE fits its mixture).")


@torch.no_grad()
@figures.drawing()
def compare_figure(models: dict[str, Model], samplers: dict[str, Sampler | str], test_images: torch.Tensor,
                   path: Path, seed: int) -> None:
    """One column per model: 64 samples above, 32 test digits beside their reconstructions below.

    Each model's samples come from its sampler in ``samplers`` (or the reason it has none).
    """
    fig, axes = plt.subplots(2, len(models), figsize=(4.2 * len(models), 9), squeeze=False)
    x = test_images[:32]
    for col, (label, model) in enumerate(models.items()):
        model.eval()
        with seeded(model.device, seed):
            sampler = samplers[label]
            if isinstance(sampler, Sampler):
                try:
                    samples = check_pixels(sampler.sample(64), label)
                except NotPixels:
                    _blank(axes[0, col], f"{label}: samples are not pixels in [0, 1]")
                except GenzooError as exc:  # a sampler that failed or broke its contract
                    warn(str(exc))
                    _blank(axes[0, col], f"{label}: its sampler failed")
                else:
                    figures.show_grid(axes[0, col], samples, f"{label}: 64 samples ({sampler.description(True)})")
            else:
                _blank(axes[0, col], sampler)
        if model.can_reconstruct:
            try:
                # A copy each: a model editing its input in place would change the next models' inputs.
                with blamed(f"{type(model).__name__}.reconstruct"):
                    reconstructed = model.reconstruct(x.to(model.device, copy=True))
                recon = model_images(reconstructed, label, "reconstruct", "reconstructions")
            except NotPixels:  # float8 or complex ones: interleave would fail after all the evaluation
                _blank(axes[1, col], f"{label}: reconstructions are not pixels")
            except (NotCodes, PluginFault) as exc:  # its encode's codes of another shape, or its code raised
                warn(str(exc))
                _blank(axes[1, col], f"{label}: its reconstruct failed")
            else:
                figures.show_grid(axes[1, col], figures.interleave(x.cpu(), recon.reshape(x.shape).cpu()),
                                  f"{label}: test digit | reconstruction")
        else:
            _blank(axes[1, col], f"{label} cannot reconstruct")
    fig.suptitle("samples (top); test digits beside their reconstructions from the encoder mean (bottom)")
    fig.tight_layout()
    figures._save(fig, path)


def _blank(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, color="0.4")
    ax.axis("off")
