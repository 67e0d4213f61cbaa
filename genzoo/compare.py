"""``genzoo compare``: train (or reuse) several models on one budget, evaluate them alike.

Every model is trained with the same epochs, batch size, latent size, seed and data
subset through :func:`genzoo.run.start_run`, then evaluated on one and the same test
split. The output folder receives ``results.json`` (every number, with its
conditions), ``report.md`` and ``compare.png``; trained runs live in its ``runs/``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from genzoo import figures
from genzoo.errors import GenzooError
from genzoo.evaluation import mnist_classifier
from genzoo.evaluation.evaluate import (EVAL_FILE, EvalConfig, environment, evaluate_model, finished_records,
                                        load_test_split,
                                        prepare_reference)
from genzoo.evaluation.phases import Phases, make_progress
from genzoo.evaluation.report import compare_figure, markdown_table, notes, phase_table, rich_table, table_console
from genzoo.files import atomic_write_json, atomic_write_text
from genzoo.plugins import registry
from genzoo.runs import new_run_dir, read_config



@dataclass
class CompareConfig:
    """One shared budget for every model trained, and the evaluation settings."""

    models: list[str] = field(default_factory=list)
    epochs: int = 5
    latent: int | None = 40
    seed: int = 0
    batch_size: int = 100
    dataset: str = "mnist"
    data_root: str | None = None
    device: str = "auto"
    train_limit: int | None = None
    test_limit: int | None = None
    from_runs: list[str] = field(default_factory=list)
    #: A trained model's own config options, by model name (``--set beta-vae.beta=2``).
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    out: str | None = None
    evaluation: EvalConfig = field(default_factory=EvalConfig)

    def options_for(self, model: str) -> dict[str, Any]:
        """The config options ``model`` is trained with: the shared latent size, then its ``--set``s."""
        latent = {"latent": self.latent} if self.latent is not None else {}
        return {**latent, **self.model_options.get(model, {})}


@dataclass
class Entry:
    """One column of the comparison: a label, its model name and the run that holds it."""

    label: str
    model: str
    run_dir: Path | None = None  # None until trained
    reused: bool = False
    training_seconds: float | None = None


def plan(config: CompareConfig) -> list[Entry]:
    """Which models to train and which runs to reuse; fail before any work on a bad request."""
    reg = registry()
    for name in config.models:
        # Builds each config now, so a bad --set fails before any model trains.
        reg.model(name).Config.from_dict(config.options_for(name))
    if len(set(config.models)) != len(config.models):
        raise GenzooError("each model may be named once; to compare two runs of one model, pass both with --from-runs")
    reused: list[Entry] = []
    for run in config.from_runs:
        description, _ = finished_records(Path(run))
        dataset = description.get("train_config", {}).get("dataset", "mnist")
        if dataset != config.dataset:
            raise GenzooError(f"run {run} was trained on {dataset!r}, not on {config.dataset!r}")
        reused.append(Entry(description["model"], description["model"], Path(run), reused=True))
    counts = {e.model: sum(1 for o in reused if o.model == e.model) for e in reused}
    for e in reused:
        if counts[e.model] > 1:
            e.label = f"{e.model} ({e.run_dir.name})"
    entries = [Entry(name, name) for name in config.models if name not in counts]
    entries += reused
    if not entries:
        raise GenzooError("nothing to compare: name models (genzoo compare ae vae gan) or pass --from-runs")
    return entries


def compare(config: CompareConfig, console: Console | None = None, command: str | None = None) -> dict[str, Any]:
    """Train or reuse every entry, evaluate all on one test split, write the three outputs."""
    from genzoo.run import load_model, start_run
    from genzoo.trainer import TrainConfig, select_device

    console = console or Console(stderr=True)
    entries = plan(config)
    device = select_device(config.device)
    features = config.evaluation.check(device)
    out = new_run_dir("compare", config.out)
    started = time.perf_counter()

    for i, entry in enumerate(entries, 1):
        if entry.reused:
            console.rule(f"[{i}/{len(entries)}] {entry.label}: reusing {entry.run_dir}")
            continue
        console.rule(f"[{i}/{len(entries)}] {entry.label}: training {config.epochs} epochs")
        train_config = TrainConfig(model=entry.model, dataset=config.dataset, epochs=config.epochs,
                                   batch_size=config.batch_size, seed=config.seed, device=config.device,
                                   data_root=config.data_root, train_limit=config.train_limit,
                                   test_limit=config.test_limit)
        t0 = time.perf_counter()
        result = start_run(train_config, config.options_for(entry.model), out=out / "runs" / entry.label,
                           console=console)
        entry.training_seconds = time.perf_counter() - t0
        entry.run_dir = result.run_dir
    _warn_on_budget_mismatch(entries, console)

    console.rule(f"evaluating {len(entries)} models on one test split")
    test = load_test_split(config.dataset, config.data_root, config.test_limit, device)
    results, models = [], {}
    with make_progress(console) as progress:
        reference = Phases(progress, "test split")
        reg = registry()
        if any(reg.model(e.model).can_sample for e in entries):
            for label in features:
                prepare_reference(test, label, config.evaluation, config.dataset, reference, device)
        overall = progress.add_task("compare: models evaluated", total=len(entries))
        for entry in entries:
            description, records = finished_records(entry.run_dir)
            model = load_model(entry.run_dir, str(device), description)
            result = evaluate_model(model, test, config.evaluation, name=entry.label, dataset=config.dataset,
                                    records=records, progress=progress)
            result.update(run=str(entry.run_dir), reused_run=entry.reused,
                          run_config={k: description.get(k) for k in ("model_config", "train_config")})
            if not entry.reused:
                atomic_write_json(entry.run_dir / EVAL_FILE, result)
            results.append(result)
            models[entry.label] = model
            progress.advance(overall)

    figure_started = time.perf_counter()
    compare_figure(models, next(iter(test.batches(32))), out / "compare.png", figures.PICTURE_SEED)
    summary = {
        "command": command,
        "config": {**asdict(config), "evaluation": config.evaluation.to_dict()},
        "out": str(out),
        "models": results,
        "training_seconds": {e.label: e.training_seconds for e in entries if e.training_seconds is not None},
        "reference_seconds": reference.seconds,
        "figure_seconds": time.perf_counter() - figure_started,
        "mnist_classifier": _classifier_info(),
        "environment": environment(device),
    }
    summary["total_seconds"] = time.perf_counter() - started
    atomic_write_json(out / "results.json", summary)
    atomic_write_text(out / "report.md", render_report(summary))
    table_console().print(rich_table(results, title=f"genzoo compare ({out})"))
    console.print(f"wrote {out / 'report.md'}, {out / 'results.json'}, {out / 'compare.png'} "
                  f"in {summary['total_seconds']:.0f} s")
    return summary


def _warn_on_budget_mismatch(entries: list[Entry], console: Console) -> None:
    """Reused runs may differ in budget: say so, since the table puts them side by side."""
    keys = ("epochs", "seed", "batch_size", "train_limit")
    budgets = {}
    for e in entries:
        train = read_config(e.run_dir).get("train_config", {})
        budgets[e.label] = tuple(train.get(k) for k in keys)
    if len(set(budgets.values())) > 1:
        detail = "; ".join(f"{label}: " + ", ".join(f"{k} {v}" for k, v in zip(keys, b))
                           for label, b in budgets.items())
        console.print(f"[yellow]warning: the models were trained on different budgets ({detail})")


def _classifier_info() -> dict[str, Any]:
    _, meta = mnist_classifier.load_classifier()
    return {"test_accuracy": meta.get("test_accuracy"), "test_images": meta.get("test_images"),
            "recipe": meta.get("recipe"), "weights": str(mnist_classifier.WEIGHTS)}


def render_report(summary: dict[str, Any]) -> str:
    """``report.md``: the table, what it was measured under, and the wall time of each phase."""
    results = summary["models"]
    cfg = summary["config"]
    env = summary["environment"]
    clf = summary["mnist_classifier"]
    lines = [
        "# genzoo compare",
        "",
        f"Command: `{summary['command'] or 'genzoo compare (API)'}`",
        "",
        markdown_table(results),
        "",
        *[f"- {line}" for line in notes(results)],
        f"- mnist features: genzoo's MNIST classifier, test accuracy {clf['test_accuracy']:.4f} "
        f"on {clf['test_images']:,} images",
        "- FID depends on the sample count (fewer samples bias it upward): compare FIDs only within a column.",
        "- Reconstruction decodes the encoder's mean; -ELBO uses one posterior sample per test image; "
        "NLL is the IWAE bound with K importance samples (BCE on grey-level pixels, so not comparable "
        "to binarised-MNIST likelihoods).",
        "",
        "## Budget",
        "",
        f"epochs {cfg['epochs']}, batch {cfg['batch_size']}, latent {cfg['latent']}, seed {cfg['seed']}, "
        f"train images {cfg['train_limit'] or 'all'}, test images {cfg['test_limit'] or 'all'}; "
        f"device {env['device']}, {env['torch_threads']} torch threads, torch {env['torch_version']}, "
        f"{env['platform']}",
        "",
    ]
    for r in results:
        if r.get("reused_run"):
            train = (r.get("run_config") or {}).get("train_config") or {}
            lines.append(f"- {r['model']}: reused run {r['run']} (epochs {train.get('epochs')}, "
                         f"seed {train.get('seed')}, train images {train.get('train_limit') or 'all'})")
    lines += [
        "",
        "## Wall time per phase",
        "",
        phase_table(results, summary["training_seconds"]),
        "",
        *_reference_lines(summary),
        "",
        f"Total: {summary['total_seconds']:.0f} s.",
        "",
        "![samples and reconstructions](compare.png)",
        "",
    ]
    return "\n".join(lines)


def _reference_lines(summary: dict[str, Any]) -> list[str]:
    """Where each extractor's test-split statistics came from: computed here (and how long) or the cache."""
    labels = sorted({label for r in summary["models"] for label in r.get("fid", {})})
    lines = []
    for label in labels:
        phase = next((p for p in summary["reference_seconds"] if p.endswith(label)), None)
        if phase is not None:
            lines.append(f"Test-split statistics for FID {label}: computed once for all models in "
                         f"{summary['reference_seconds'][phase]:.1f} s.")
        else:
            lines.append(f"Test-split statistics for FID {label}: read from the cache (computed by an earlier run).")
    return lines


def command_line() -> str:
    """The command as typed, for the report."""
    return " ".join(["genzoo", *sys.argv[1:]])
