"""Rebuild docs/leaderboard.md: genzoo's MNIST FIDs beside the published ones, under the paper protocol.

    python benchmarks/leaderboard.py --out leaderboard          # every entry: train, evaluate, write the table
    python benchmarks/leaderboard.py --out leaderboard --only ae+gmm,vae+normal
    python benchmarks/leaderboard.py --out /tmp/lb --epochs 1 --train-limit 500 --test-limit 200 \\
        --features mnist --fid-samples 200 --markdown /tmp/lb/leaderboard.md   # a quick check, not the protocol

Each run trains a model to its budget (``genzoo train``; ``genzoo resume`` continues one a
crash stopped), then each entry is evaluated under the protocol (``genzoo eval RUN
--protocol paper --sampler S``: Inception FID of 10,000 samples against the whole test
split) and its FID set beside the published one, with the source and every difference of
protocol. Rerun the same command after a crash: a finished run is never trained again and
an FID its ``eval.json`` holds with the same settings never measured again (``genzoo eval``
keeps it). Written after every step: ``OUT/leaderboard.json`` and the markdown table.

The published numbers are copied from the papers (tables named in ``source``); genzoo's
are measured by this script, never typed in. Full budgets need a GPU: one epoch of the
convolutional models at their papers' widths takes 40 minutes to hours on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PROTOCOL = {"features": "inception", "fid_samples": 10_000}  # genzoo's `--protocol paper` (evaluation/protocols.py)


@dataclass(frozen=True)
class RunSpec:
    """One training run several entries share (the same model, budget and options)."""

    model: str
    epochs: int
    architecture: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class EntrySpec:
    """One row: a run's samples through one sampler, and the published number it stands beside."""

    run: str
    sampler: str
    published: float
    source: str
    target: float | None = None  # the target for genzoo's number (issue 11), where it set one
    published_spread: float | None = None
    paper_setup: str = ""
    notes: tuple[str, ...] = field(default=())


#: genzoo's budgets (epochs at batch 100, Adam 1e-3): its own choice, stated beside every number.
RUNS: dict[str, RunSpec] = {
    "conv-ae": RunSpec("conv-ae", 100, "conv encoder/decoder of Ghosh et al. 2020, latent 16"),
    "conv-vae": RunSpec("conv-vae", 100, "conv encoder/decoder of Ghosh et al. 2020, latent 16"),
    "dcgan": RunSpec("dcgan", 20, "DCGAN-style (InfoGAN MNIST architecture of Lucic et al. 2018)"),
    "ae": RunSpec("ae", 5, "the article's MLP 784-400-40"),
    "vae": RunSpec("vae", 5, "the article's MLP 784-400-40, Bernoulli decoder"),
    "gan": RunSpec("gan", 20, "genzoo's small MLP GAN"),
}

GHOSH = "Ghosh et al. 2020, From Variational to Deterministic Autoencoders, Table 1 (MNIST)"
GHOSH_SETUP = "conv nets, latent 16, 100 epochs, TF Inception FID of 10k samples"
LUCIC = "Lucic et al. 2018, Are GANs Created Equal?, Table 2 (MNIST, NS GAN)"
LUCIC_SETUP = "InfoGAN-style conv GAN, best of a large hyper-parameter search, TF Inception FID of 10k samples"
PYTHAE = "Chadebec et al. 2022, pythae's benchmark (MNIST, VAE with a GMM sampler)"
PYTHAE_SETUP = "conv nets, latent 16, pythae's FID of 10k samples"

ENTRIES: dict[str, EntrySpec] = {
    "conv-ae+gmm": EntrySpec("conv-ae", "gmm", 10.66, GHOSH, 10.7, paper_setup=GHOSH_SETUP),
    "conv-vae+normal": EntrySpec("conv-vae", "normal", 19.21, GHOSH, 18.3, paper_setup=GHOSH_SETUP),
    "conv-vae+gmm": EntrySpec("conv-vae", "gmm", 13.13, PYTHAE, 13.2, paper_setup=PYTHAE_SETUP),
    "dcgan": EntrySpec("dcgan", "model", 6.8, LUCIC, 10.0, published_spread=0.5, paper_setup=LUCIC_SETUP),
    "ae+gmm": EntrySpec("ae", "gmm", 10.66, GHOSH, paper_setup=GHOSH_SETUP),
    "vae+normal": EntrySpec("vae", "normal", 19.21, GHOSH, paper_setup=GHOSH_SETUP),
    "vae+gmm": EntrySpec("vae", "gmm", 13.13, PYTHAE, paper_setup=PYTHAE_SETUP),
    "gan": EntrySpec("gan", "model", 6.8, LUCIC, published_spread=0.5, paper_setup=LUCIC_SETUP),
}


def genzoo(*args: str) -> None:
    """``python -m genzoo ARGS``, its progress on this terminal; a failure ends the leaderboard in one line."""
    print("$ genzoo " + " ".join(args), flush=True)
    done = subprocess.run([sys.executable, "-m", "genzoo", *args])
    if done.returncode != 0:
        raise SystemExit(f"leaderboard: `genzoo {' '.join(args)}` failed (exit {done.returncode}); "
                         "fix that and run the same command again: finished work is kept")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def finished_epochs(run_dir: Path) -> int:
    metrics = run_dir / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.is_file() else 0


def train(spec: RunSpec, run_dir: Path, args: argparse.Namespace) -> str:
    """Train (or continue) the run; what was done, for the progress line."""
    epochs = args.epochs or spec.epochs
    config = read_json(run_dir / "config.json")
    if config is not None:
        budget = config["train_config"]
        wanted = {"epochs": epochs, "seed": args.seed, "train_limit": args.train_limit, "test_limit": args.test_limit}
        found = {name: budget.get(name) for name in wanted}
        if config["model"] != spec.model or found != wanted:
            raise SystemExit(f"leaderboard: {run_dir} holds a {config['model']} run of " + ", ".join(
                f"{k} {v}" for k, v in found.items()) + f", not {spec.model} for " + ", ".join(
                f"{k} {v}" for k, v in wanted.items()) + "; give another --out or move it away")
        if finished_epochs(run_dir) >= epochs:
            return "trained before"
        genzoo("resume", str(run_dir))
        return "continued"
    limits = [opt for name in ("train_limit", "test_limit") if getattr(args, name)
              for opt in (f"--{name.replace('_', '-')}", str(getattr(args, name)))]
    genzoo("train", spec.model, "--epochs", str(epochs), "--seed", str(args.seed), "--out", str(run_dir),
           *limits, *spec.options)
    return "trained"


#: MNIST's test split: the reference of every FID without --test-limit.
MNIST_TEST_IMAGES = 10_000


def fid_record(run_dir: Path, key: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """The FID ``eval.json`` holds under ``key`` with this leaderboard's sample count, seed and reference, if any."""
    evaluation = read_json(run_dir / "eval.json") or {}
    record = (evaluation.get("fid") or {}).get(key)
    if not isinstance(record, dict) or record.get("samples") != args.fid_samples or record.get("seed") != 0:
        return None
    stated = re.search(r"split, (\d+) images", str(record.get("reference")))  # as genzoo's FID names its reference
    return record if stated and int(stated.group(1)) == (args.test_limit or MNIST_TEST_IMAGES) else None


def evaluate(entry: EntrySpec, run_dir: Path, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    key = f"{args.features}/{entry.sampler}"
    if (record := fid_record(run_dir, key, args)) is not None:
        return record, "measured before"
    options = (["--protocol", "paper"] if args.protocol else
               ["--features", args.features, "--fid-samples", str(args.fid_samples)])
    if args.test_limit:
        options += ["--test-limit", str(args.test_limit)]
    if args.iwae_k:
        options += ["--iwae-k", str(args.iwae_k)]
    genzoo("eval", str(run_dir), *options, "--sampler", entry.sampler)
    record = fid_record(run_dir, key, args)
    if record is None:
        evaluation = read_json(run_dir / "eval.json") or {}
        why = (evaluation.get("unavailable") or {}).get(f"sampler {entry.sampler}") or "no FID was recorded"
        raise SystemExit(f"leaderboard: {run_dir}: {key} FID is n/a: {why}")
    return record, "measured"


def differences(entry: EntrySpec, run: RunSpec, run_dir: Path, args: argparse.Namespace) -> list[str]:
    """Every way this number was measured otherwise than the published one."""
    config = read_json(run_dir / "config.json")
    latent = config["model_config"].get("latent")
    train_config = config["train_config"]
    found = [f"genzoo: {run.architecture}, latent {latent}, {train_config['epochs']} epochs at batch "
             f"{train_config['batch_size']}; paper: {entry.paper_setup}"]
    if args.features == "inception":
        found.append("FID through torch-fidelity's inception-v3-compat (the TF Inception's weights, PyTorch code)")
    if not args.protocol:
        found.append(f"NOT the paper protocol: {args.features} features, {args.fid_samples} samples")
    if train_config.get("train_limit") or args.test_limit:
        found.append(f"trained on {train_config.get('train_limit') or 'all'} images, reference of "
                     f"{args.test_limit or 'all'} test images")
    return found + list(entry.notes)


def markdown(board: dict[str, Any]) -> str:
    protocol = board["protocol"]
    reference = (f"the first {protocol['test_limit']:,} test images" if protocol["test_limit"]
                 else "the whole test split")
    lines = [
        "# Leaderboard: MNIST FIDs, genzoo beside the published numbers",
        "",
        f"Last updated by `{board['command']}` ({board['rebuilt']}, {board['device']}). Protocol: "
        f"{protocol['features']} features, {protocol['fid_samples']:,} samples against {reference}"
        f"{'' if protocol['paper'] else ' (NOT the paper protocol: a quick check, not comparable)'}; "
        "evaluation seed 0, training seed "
        f"{board['seed']}. One seed each: no spread is claimed for genzoo's numbers.",
        "",
        "| entry | sampler | genzoo FID | published | source | target | met | epochs | training | FID time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [(name, board["entries"][name]) for name in ENTRIES if name in board["entries"]]
    for name, row in rows:
        published = f"{row['published']:.2f}" + (f" ± {row['published_spread']:.1f}" if row["published_spread"] else "")
        target = f"≤ {row['target']:g}" if row["target"] is not None else "-"
        met = "-" if row["target"] is None else ("yes" if row["fid"] <= row["target"] else "no")
        lines.append(f"| {name} | {row['sampler']} | {row['fid']:.2f} | {published} | {row['source']} | {target} "
                     f"| {met} | {row['epochs']} | {row['training_seconds']:.1f} s | {row['fid_seconds']:.1f} s |")
    lines += ["", "## Differences of protocol, per entry", ""]
    for name, row in rows:
        lines.append(f"- **{name}**: " + "; ".join(row["differences"]) + ".")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder of the runs and leaderboard.json")
    parser.add_argument("--markdown", type=Path, default=Path("docs/leaderboard.md"))
    parser.add_argument("--only", help="comma-separated entries: " + ", ".join(ENTRIES))
    parser.add_argument("--epochs", type=int, help="every run's epochs, instead of its budget")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--train-limit", type=int)
    parser.add_argument("--test-limit", type=int)
    parser.add_argument("--features", default=PROTOCOL["features"], choices=["inception", "mnist"])
    parser.add_argument("--fid-samples", type=int, default=PROTOCOL["fid_samples"])
    parser.add_argument("--iwae-k", type=int, help="eval's --iwae-k (its default: 200)")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(ENTRIES)
    unknown = [name for name in names if name not in ENTRIES]
    if unknown:
        parser.error(f"unknown entries {', '.join(unknown)}; the entries are {', '.join(ENTRIES)}")
    args.protocol = (args.features, args.fid_samples) == (PROTOCOL["features"], PROTOCOL["fid_samples"]) \
        and not args.test_limit
    args.out.mkdir(parents=True, exist_ok=True)
    state_path = args.out / "leaderboard.json"
    board = read_json(state_path) or {"entries": {}}
    import torch

    board.update(command="python benchmarks/leaderboard.py " + " ".join(sys.argv[1:] if argv is None else argv),
                 rebuilt=datetime.now(timezone.utc).strftime("%Y-%m-%d"), seed=args.seed,
                 device="CUDA " + torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU",
                 protocol={**{k: getattr(args, k) for k in PROTOCOL}, "test_limit": args.test_limit,
                           "paper": args.protocol})
    # Rows of another protocol would stand under this one's header: they go (their runs and FIDs stay in OUT).
    board["entries"] = {name: row for name, row in board["entries"].items()
                        if row.get("protocol") == board["protocol"]}
    for i, name in enumerate(names, 1):
        entry = ENTRIES[name]
        run, run_dir = RUNS[entry.run], args.out / "runs" / entry.run
        started = time.perf_counter()
        trained = train(run, run_dir, args)
        record, measured = evaluate(entry, run_dir, args)
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        board["entries"][name] = {
            "model": run.model, "sampler": entry.sampler, "run": str(run_dir), "fid": record["fid"],
            "protocol": board["protocol"],
            "fid_samples": record["samples"], "features": record["features"], "published": entry.published,
            "published_spread": entry.published_spread, "source": entry.source, "target": entry.target,
            "epochs": len(metrics),
            "training_seconds": sum(m.get("train_seconds", 0.0) + m.get("eval_seconds", 0.0) for m in metrics),
            "fid_seconds": record.get("seconds", 0.0), "differences": differences(entry, run, run_dir, args),
            "learning_curve": str(run_dir / "loss.png"),
        }
        write_atomic(state_path, json.dumps(board, indent=2) + "\n")
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.markdown, markdown(board))
        print(f"[{i}/{len(names)}] {name}: {trained}, FID {measured}: {record['fid']:.2f} "
              f"(published {entry.published}); {time.perf_counter() - started:.0f} s this time", flush=True)
    print(f"wrote {state_path} and {args.markdown}")


if __name__ == "__main__":
    main()
