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
an FID its ``eval.json`` holds with the same settings and extractor weights never measured
again (``genzoo eval`` keeps it). A stop signal (Ctrl-C, SIGTERM, SIGHUP) stops the genzoo
command running, which checkpoints; the script waits for it and exits with 128 + the signal,
saying to rerun. Written after every step: ``OUT/leaderboard.json`` and the markdown table; an existing
``--markdown`` file must be a table this script wrote (its notes below the marker are kept), never another file.
Rows kept from an earlier command are rebuilt from their runs each time, through genzoo's
own readers and checks: a row whose run is gone, is of another training seed, or whose FID
genzoo would not keep (its evaluation of another configuration of the run, or of other test
data than those found now) is left out, and said so.

The published numbers are copied from the papers (tables named in ``source``); genzoo's
are measured by this script, never typed in. Full budgets need a GPU: one epoch of the
convolutional models at their papers' widths takes 40 minutes to hours on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.options import at_least  # noqa: E402 - after the path is set

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
    """One row: a run's samples through one sampler (or its reconstructions of the test images), and the
    published number it stands beside."""

    run: str
    sampler: str  # the sampler whose samples are measured; for reconstructions, the one ``genzoo eval`` is given
    published: float
    source: str
    target: float | None = None  # the target for genzoo's number (issue 11), where it set one
    published_spread: float | None = None
    paper_setup: str = ""
    notes: tuple[str, ...] = field(default=())
    reconstruction: bool = False  # the FID of the decoded test images (Ghosh et al.'s REC column), not of samples


#: genzoo's budgets (epochs at batch 100, Adam 1e-3): its own choice, stated beside every number.
RUNS: dict[str, RunSpec] = {
    "conv-ae": RunSpec("conv-ae", 100, "conv encoder/decoder of Ghosh et al. 2020"),
    "conv-vae": RunSpec("conv-vae", 100, "conv encoder/decoder of Ghosh et al. 2020"),
    "dcgan": RunSpec("dcgan", 20, "DCGAN-style (InfoGAN MNIST architecture of Lucic et al. 2018)"),
    "ae": RunSpec("ae", 5, "the article's MLP 784-400-40"),
    "vae": RunSpec("vae", 5, "the article's MLP 784-400-40, Bernoulli decoder"),
    "gan": RunSpec("gan", 20, "genzoo's small MLP GAN"),
}

GHOSH = "Ghosh et al. 2020, From Variational to Deterministic Autoencoders, Table 1 (MNIST)"
GHOSH_SETUP = "conv nets, latent 16, 100 epochs, TF Inception FID of 10k samples"
GHOSH_REC_SETUP = "conv nets, latent 16, 100 epochs, TF Inception FID of the 10k reconstructed test images"
LUCIC = "Lucic et al. 2018, Are GANs Created Equal?, Table 2 (MNIST, NS GAN)"
LUCIC_SETUP = "InfoGAN-style conv GAN, best of a large hyper-parameter search, TF Inception FID of 10k samples"
PYTHAE = "Chadebec et al. 2022, pythae's benchmark (MNIST, VAE with a GMM sampler)"
PYTHAE_SETUP = "conv nets, latent 16, pythae's FID of 10k samples"

ENTRIES: dict[str, EntrySpec] = {
    "conv-ae+gmm": EntrySpec("conv-ae", "gmm", 10.66, GHOSH, 10.7, paper_setup=GHOSH_SETUP),
    "conv-ae+normal": EntrySpec("conv-ae", "normal", 58.73, GHOSH, paper_setup=GHOSH_SETUP),
    "conv-vae+normal": EntrySpec("conv-vae", "normal", 19.21, GHOSH, 18.3, paper_setup=GHOSH_SETUP),
    "conv-vae+gmm": EntrySpec("conv-vae", "gmm", 13.13, PYTHAE, 13.2, paper_setup=PYTHAE_SETUP),
    "dcgan": EntrySpec("dcgan", "model", 6.8, LUCIC, 10.0, published_spread=0.5, paper_setup=LUCIC_SETUP),
    "ae+gmm": EntrySpec("ae", "gmm", 10.66, GHOSH, paper_setup=GHOSH_SETUP),
    "ae+normal": EntrySpec("ae", "normal", 58.73, GHOSH, paper_setup=GHOSH_SETUP),
    "vae+normal": EntrySpec("vae", "normal", 19.21, GHOSH, paper_setup=GHOSH_SETUP),
    "vae+gmm": EntrySpec("vae", "gmm", 13.13, PYTHAE, paper_setup=PYTHAE_SETUP),
    "gan": EntrySpec("gan", "model", 6.8, LUCIC, published_spread=0.5, paper_setup=LUCIC_SETUP),
    # Reconstructions: measured by the same `genzoo eval` (its interpolation measurement), REC in Ghosh et al.
    "conv-ae/rec": EntrySpec("conv-ae", "normal", 12.95, GHOSH, paper_setup=GHOSH_REC_SETUP, reconstruction=True),
    "conv-vae/rec": EntrySpec("conv-vae", "normal", 18.26, GHOSH, paper_setup=GHOSH_REC_SETUP, reconstruction=True),
    "ae/rec": EntrySpec("ae", "normal", 12.95, GHOSH, paper_setup=GHOSH_REC_SETUP, reconstruction=True),
    "vae/rec": EntrySpec("vae", "normal", 18.26, GHOSH, paper_setup=GHOSH_REC_SETUP, reconstruction=True),
}


def genzoo(*args: str) -> None:
    """``genzoo ARGS`` (:func:`benchmarks.common.genzoo_command`: nothing imported from the current folder), its
    progress on this terminal; a failure ends the leaderboard in one line.

    A stop signal meanwhile reaches genzoo (passed on: after a SIGTERM it once went on training as an orphan after
    the leaderboard exited 143, nineteenth hostile pass, F7), which checkpoints and stops; the leaderboard waits for
    it, then exits with 128 + the signal and a line saying how to continue. A signal sent to the whole process
    group (a terminal's Ctrl-C) or cgroup (systemd's ``KillMode=control-group``) reaches genzoo twice, directly and
    passed on, a few milliseconds apart: genzoo takes the same signal again within a second as a copy
    (``genzoo.trainer.REPEAT_WINDOW_S``), not as the second request that stops it at once. genzoo stays in the
    leaderboard's process group (a SIGKILL to the group, or Ctrl-Z, reaches both), and gets SIGTERM when the
    leaderboard dies (``genzoo.distributed.parent_death_signal``, set before ``exec``): a leaderboard killed with
    SIGKILL once left it training as an orphan, holding its run, and the rerun it advised was refused as "in use"
    (twenty-first hostile pass, F1).
    """
    from benchmarks.common import genzoo_command
    from genzoo.distributed import parent_death_signal

    command = "genzoo " + " ".join(args)
    print(f"$ {command}", flush=True)
    stops: list[int] = []
    children: list[subprocess.Popen[bytes]] = []

    def stop(signum: int, frame: Any) -> None:
        stops.append(signum)
        if children:
            children[0].send_signal(signum)

    # Taken before the child starts: a SIGTERM in between would end the leaderboard and orphan the child.
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        parent = os.getpid()
        children.append(subprocess.Popen(genzoo_command(*args),
                                         preexec_fn=lambda: parent_death_signal(signal.SIGTERM, parent)))
        for signum in stops:  # arrived while it started: passed on now
            children[0].send_signal(signum)
        returncode = children[0].wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if stops:
        print(f"leaderboard: stopped by {signal.Signals(stops[0]).name} during `{command}` (exit {returncode}); "
              "rerun the same command to continue: finished work is kept", file=sys.stderr, flush=True)
        raise SystemExit(128 + stops[0])
    if returncode != 0:
        raise SystemExit(f"leaderboard: `{command}` failed (exit {returncode}); "
                         "fix that and run the same command again: finished work is kept")


def read_board(path: Path) -> dict[str, dict[str, Any]]:
    """The rows of ``leaderboard.json`` (none before the first command), or one line naming the file."""
    from genzoo import GenzooError
    from genzoo.checks import shown
    from genzoo.files import read_json

    move = "; move it away (the runs beside it are kept, and their rows are made again with --only)"
    try:
        board = read_json(path)  # a regular file of UTF-8 JSON, or one line saying why not
    except FileNotFoundError:
        return {}
    except (GenzooError, OSError) as exc:
        raise SystemExit(f"leaderboard: {exc}{move}") from None
    rows = board.get("entries") if isinstance(board, dict) else None
    if not isinstance(rows, dict) or not all(isinstance(row, dict) for row in rows.values()):
        raise SystemExit(f"leaderboard: {path} is not a leaderboard this script wrote (it holds {shown(board)}, "
                         f"not an object of entries){move}")
    return rows


def check_paths(out: Path, markdown: Path) -> None:
    """Refuse an ``--out`` or ``--markdown`` that cannot be written, before anything is written.

    Names too long for their file system are found here, the table's temporary file's too (genzoo's
    ``atomic_write`` names it ``.NAME.XXXXXXXX.tmp``): else they fail after all the work.
    """
    try:
        for option, path in (("--out", out), ("--markdown", markdown)):
            # The nearest folder that exists above it ("/" at last; `--out .` has no parent of its own: the
            # absolute path's are looked at, eighteenth hostile pass, F7); exists() is False for a long name.
            above = next(p for p in path.absolute().parents if os.path.exists(p))
            limit = os.pathconf(above, "PC_NAME_MAX")
            if any(len(os.fsencode(name)) > limit for name in path.parts):
                raise SystemExit(f"leaderboard: {option} {path}: a name in it is longer than {limit} bytes, the "
                                 "longest its file system takes")
            if option == "--markdown" and len(os.fsencode(temporary := f".{path.name}.XXXXXXXX.tmp")) > limit:
                raise SystemExit(f"leaderboard: {option} {path}: the name of its temporary file ({temporary}, "
                                 f"{len(os.fsencode(temporary))} bytes) is longer than {limit} bytes, the longest its "
                                 "file system takes; give the table a shorter name")
            if not above.is_dir():
                raise SystemExit(f"leaderboard: {option} {path} is under {above}, which is not a folder")
        check_kinds(out, markdown)
    except OSError as exc:  # a path the system refuses to look at (too long in all, no permission)
        raise SystemExit(os_error_line(exc)) from None
    except RuntimeError as exc:  # Path.resolve's loop of links
        raise SystemExit(f"leaderboard: {exc}; give a path without a loop of links") from None


def os_error_line(exc: OSError) -> str:
    """The one line of an ``OSError``: the file and the system's reason, no traceback."""
    return f"leaderboard: {exc.filename}: {exc.strerror}" if exc.filename else f"leaderboard: {exc}"


def check_kinds(out: Path, markdown: Path) -> None:
    """Refuse an ``--out`` that is no folder, a ``--markdown`` that is no file, or one inside the other."""
    if out.exists() and not out.is_dir():
        raise SystemExit(f"leaderboard: --out {out} is not a folder; give a folder for the runs and leaderboard.json")
    if markdown.exists() and not markdown.is_file():
        kind = "a folder" if markdown.is_dir() else "no regular file"
        raise SystemExit(f"leaderboard: --markdown {markdown} is {kind}; give the table a file name")
    if markdown.resolve() in (out.resolve(), *out.resolve().parents, (out / "leaderboard.json").resolve()):
        raise SystemExit(f"leaderboard: --markdown {markdown} is --out {out}, a folder above it or its "
                         "leaderboard.json; give the table a file of its own")
    if out.resolve() in markdown.resolve().parents:  # a run's own file (its checkpoint) would become the table
        raise SystemExit(f"leaderboard: --markdown {markdown} is inside --out {out}, which holds the runs; give the "
                         "table a file of its own")


def budget_problem(run: Any, spec: RunSpec, wanted: dict[str, Any]) -> str | None:
    """How the run (``genzoo.open_run``'s, its config.json checked by genzoo) differs from ``spec`` and ``wanted``."""
    found = {name: run.config["train_config"].get(name) for name in wanted}
    if run.model_name == spec.model and found == wanted:
        return None
    return (f"{run.path} holds a {run.model_name} run of " + ", ".join(f"{k} {v}" for k, v in found.items())
            + f", not {spec.model} for " + ", ".join(f"{k} {v}" for k, v in wanted.items()))


def train(spec: RunSpec, run_dir: Path, args: argparse.Namespace) -> str:
    """Train (or continue) the run; what was done, for the progress line."""
    from genzoo import open_run

    epochs = spec.epochs if args.epochs is None else args.epochs
    if os.path.lexists(run_dir / "config.json"):
        run = open_run(run_dir)  # a config.json genzoo does not accept: its one line
        wanted = {"epochs": epochs, "seed": args.seed, "train_limit": args.train_limit, "test_limit": args.test_limit}
        problem = budget_problem(run, spec, wanted)
        if problem is not None:
            raise SystemExit(f"leaderboard: {problem}; give another --out or move it away")
        if len(run.metrics) >= epochs:
            return "trained before"
        genzoo("resume", str(run_dir))
        return "continued"
    limits = [opt for name in ("train_limit", "test_limit") if getattr(args, name) is not None
              for opt in (f"--{name.replace('_', '-')}", str(getattr(args, name)))]
    genzoo("train", spec.model, "--epochs", str(epochs), "--seed", str(args.seed), "--out", str(run_dir),
           *limits, *spec.options)
    return "trained"


@functools.cache
def found_test_split(dataset: str, data_root: str | None) -> Any:
    """The whole test split found now, as ``genzoo eval`` loads it (once per process)."""
    import torch

    from genzoo.evaluation.run_evaluation import load_test_split

    return load_test_split(dataset, data_root, None, torch.device("cpu"))


def entry_key(entry: EntrySpec, args: argparse.Namespace) -> str:
    """Where ``eval.json`` holds the entry's FID: ``FEATURES/SAMPLER`` under ``fid``, or the reconstructions'."""
    return f"{args.features}/reconstruction" if entry.reconstruction else f"{args.features}/{entry.sampler}"


def weights_digest(run_dir: Path) -> str | None:
    """The digest of the run's trained weights that ``genzoo eval`` records: loaded once per checkpoint file, though
    each entry of the run asks (its samplers and its reconstructions)."""
    from genzoo.checkpoint import FILENAME

    info = (run_dir / FILENAME).stat()
    return _weights_digest(str(run_dir.resolve()), info.st_ino, info.st_size, info.st_mtime_ns)


@functools.cache
def _weights_digest(run_dir: str, *checkpoint: int) -> str | None:
    from genzoo import load_model
    from genzoo.evaluation.run_evaluation import model_weights_sha256

    return model_weights_sha256(load_model(run_dir))


def fid_record(run_dir: Path, entry: EntrySpec, args: argparse.Namespace) -> dict[str, Any] | None:
    """The entry's FID that ``eval.json`` holds with this leaderboard's features, sample count and seed, if
    genzoo would keep it as the run's; None when it is to be measured.

    A sampler's FID is of ``--fid-samples`` samples; the reconstructions' (``genzoo eval``
    measures them with its first extractor, beside the interpolation) of every test image
    the reference holds, with this leaderboard's extractor.

    genzoo decides, through its own readers and checks: config.json and eval.json as genzoo
    reads them, the evaluation one of the run as it is (``genzoo eval`` replaces one of
    another configuration, or of other weights than the checkpoint's), the run's recorded
    data those found now (``genzoo eval`` refuses other data: its ``GenzooError`` is raised
    here), and the FID's reference the first test images found now, named as genzoo names it.
    The record's extractor must be the one ``genzoo eval`` measures with now, its weights'
    digest included: ``genzoo eval --inception-weights OTHER`` (or another ``$TORCH_HOME``)
    keeps its FID in the same place, and the leaderboard took it as its own (twentieth
    hostile pass, files F4).
    """
    from genzoo import open_run
    from genzoo.building import check_data
    from genzoo.evaluation.frechet import extractor_description, reference_cache_name
    from genzoo.evaluation.run_evaluation import run_identity, same_run
    from genzoo.run_folder import read_run

    run = open_run(run_dir)
    evaluation = run.evaluation or {}
    train_config = run.config["train_config"]
    dataset = train_config.get("dataset", "mnist")
    whole = found_test_split(dataset, train_config.get("data_root"))
    if entry.reconstruction:
        record = (evaluation.get("interpolation") or {}).get("reconstruction_fid")
        samples = len(whole) if args.test_limit is None else min(args.test_limit, len(whole))
    else:
        record, samples = (evaluation.get("fid") or {}).get(entry_key(entry, args)), args.fid_samples
    if not isinstance(record, dict) or record.get("samples") != samples or record.get("seed") != 0 \
            or record.get("features") != args.features \
            or not same_run(evaluation.get("run_config"), run_identity(run.config, weights_digest(run_dir))):
        return None  # of other settings, data, or weights than the checkpoint's (one copied over it)
    if record.get("extractor") != extractor_description(args.features):
        return None  # of other extractor weights (--inception-weights, another $TORCH_HOME): measured again
    check_data(read_run(run_dir), None, whole, run_dir)
    reference = reference_cache_name(dataset, whole.take(len(whole) if args.test_limit is None else args.test_limit))
    return record if record["reference"].endswith(f"({reference})") else None


def evaluate(entry: EntrySpec, run_dir: Path, args: argparse.Namespace, names: list[str]) -> tuple[dict[str, Any], str]:
    """The entry's FID record, measured now unless ``eval.json`` holds it; one ``genzoo eval`` measures every
    FID of ``names`` its run still lacks (its samplers at once, and the reconstructions beside them)."""
    if (record := fid_record(run_dir, entry, args)) is not None:
        return record, "measured before"
    lacking = [ENTRIES[name] for name in names if ENTRIES[name].run == entry.run]
    samplers = [other.sampler for other in lacking
                if not other.reconstruction and fid_record(run_dir, other, args) is None]
    if not entry.reconstruction:
        samplers.insert(0, entry.sampler)
    elif not samplers:  # `genzoo eval` measures the reconstructions beside some sampler's FID: the entry's own
        samplers = [entry.sampler]
    options = (["--protocol", "paper"] if args.protocol else
               ["--features", args.features, "--fid-samples", str(args.fid_samples)])
    if args.test_limit is not None:
        options += ["--test-limit", str(args.test_limit)]
    if args.iwae_k is not None:
        options += ["--iwae-k", str(args.iwae_k)]
    genzoo("eval", str(run_dir), *options, "--sampler", ",".join(dict.fromkeys(samplers)))
    record = fid_record(run_dir, entry, args)
    if record is None:
        from genzoo import open_run

        unavailable = (open_run(run_dir).evaluation or {}).get("unavailable") or {}
        why = unavailable.get("interpolation" if entry.reconstruction else f"sampler {entry.sampler}")
        raise SystemExit(f"leaderboard: {run_dir}: {entry_key(entry, args)} FID is n/a: "
                         f"{why or 'no FID was recorded'}")
    return record, "measured"


def differences(entry: EntrySpec, run: RunSpec, run_dir: Path, args: argparse.Namespace) -> list[str]:
    """Every way this number was measured otherwise than the published one."""
    from genzoo import open_run

    config = open_run(run_dir).config
    latent = config["model_config"].get("latent")
    train_config = config["train_config"]
    found = [f"genzoo: {run.architecture}, latent {latent}, {train_config['epochs']} epochs at batch "
             f"{train_config['batch_size']}; paper: {entry.paper_setup}"]
    if args.features == "inception":
        found.append("FID through torch-fidelity's inception-v3-compat (the TF Inception's weights, PyTorch code)")
    if entry.reconstruction:
        found.append("genzoo decodes each test image's code (a VAE its posterior mean); its FID time is that of "
                     "the whole interpolation measurement, midpoints and reconstructions")
    if not args.protocol:
        found.append(f"NOT the paper protocol: {args.features} features, {args.fid_samples} samples")
    if train_config.get("train_limit") is not None or args.test_limit is not None:
        found.append(f"trained on {train_config.get('train_limit') or 'all'} images, reference of "
                     f"{args.test_limit or 'all'} test images")
    return found + list(entry.notes)


#: Text below this line of the table's file is written by hand (what a target's miss means, pictures) and kept
#: as it is each time the table above it is rebuilt.
NOTES_MARKER = ("<!-- Notes by hand below this line: benchmarks/leaderboard.py keeps them when it rebuilds "
                "the table. -->")


#: The first line of every table this script writes: an existing ``--markdown`` that does not start with it is
#: another file (a run's config.json, notes), which the table would replace (eighteenth hostile pass, F6).
TITLE = "# Leaderboard: MNIST FIDs"


def kept_notes(path: Path) -> str:
    """The hand-written notes of the table's file (from :data:`NOTES_MARKER` on), or "" when it has none.

    A file that is not a table this script wrote is refused: it would be replaced by the table. An empty one holds
    nothing to lose and is taken as a new file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except UnicodeDecodeError:
        raise SystemExit(f"leaderboard: --markdown {path} is not UTF-8 text; give the table a file of its "
                         "own") from None
    except OSError as exc:
        raise SystemExit(os_error_line(exc)) from None
    if text and not text.startswith(TITLE):
        raise SystemExit(f"leaderboard: --markdown {path} is not a table this script wrote (it does not start with "
                         f"{TITLE!r}), so it is not replaced; give the table a new file, or that table")
    at = text.find(NOTES_MARKER)
    return "" if at < 0 else text[at:]


def seconds(value: float | None) -> str:
    """A table's time: ``12.3 s``, or n/a for one that could not be added up."""
    return "n/a" if value is None else f"{value:.1f} s"


def markdown(board: dict[str, Any]) -> str:
    protocol = board["protocol"]
    reference = (f"the first {protocol['test_limit']:,} test images" if protocol["test_limit"]
                 else "the whole test split")
    lines = [
        f"{TITLE}, genzoo beside the published numbers",
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
                     f"| {met} | {row['epochs']} | {seconds(row['training_seconds'])} "
                     f"| {seconds(row['fid_seconds'])} |")
    lines += ["", "## Differences of protocol, per entry", ""]
    for name, row in rows:
        lines.append(f"- **{name}**: " + "; ".join(row["differences"]) + ".")
    return "\n".join(lines) + "\n"


def training_seconds(metrics: list[dict[str, Any]]) -> float | None:
    """Seconds the run's epochs took, training and test passes; None (n/a) where the sum overflows.

    Each value genzoo reads back is finite, but two huge ones add up to infinity, which
    is no JSON number (``json.dumps`` would write ``Infinity``).
    """
    total = sum((m.get("train_seconds") or 0.0) + (m.get("eval_seconds") or 0.0) for m in metrics)
    return total if math.isfinite(total) else None


def make_row(name: str, run_dir: Path, record: dict[str, Any], protocol: dict[str, Any],
             args: argparse.Namespace) -> dict[str, Any]:
    """The table's row of entry ``name``: its FID ``record`` (one genzoo keeps) and its finished run's training.

    Its epochs are those the checkpoint holds, as ``genzoo eval`` reads the run; a run whose
    ``metrics.jsonl`` lost lines has its training time n/a, said on a line, as ``eval`` marks it
    (the lines left were counted as its epochs, their seconds as its time: fifteenth hostile pass, F6).
    """
    from genzoo import open_run
    from genzoo.evaluation.run_evaluation import finished_records
    from genzoo.run_folder import lost_metrics

    entry = ENTRIES[name]
    run = RUNS[entry.run]
    description, metrics = finished_records(run_dir)  # the checkpoint holds the last epoch, metrics.jsonl agrees
    epochs = description["train_config"]["epochs"]
    lost = lost_metrics(run_dir, metrics, epochs)
    if lost:
        print(f"leaderboard: the {name} row's training time is n/a: {lost}", flush=True)
    return {
        "model": run.model, "sampler": "reconstruction" if entry.reconstruction else entry.sampler,
        "run": str(run_dir), "fid": record["fid"],
        "protocol": protocol, "seed": args.seed,
        "fid_samples": record["samples"], "features": record["features"], "published": entry.published,
        "published_spread": entry.published_spread, "source": entry.source, "target": entry.target,
        "epochs": epochs,
        "training_seconds": None if lost else training_seconds(metrics),
        "fid_seconds": ((open_run(run_dir).evaluation or {}).get("interpolation") or {}).get("seconds")
        if entry.reconstruction else record.get("seconds", 0.0),
        "differences": differences(entry, run, run_dir, args),
        "learning_curve": str(run_dir / "loss.png"),
    }


def _protocol_text(protocol: Any) -> str:
    """A row's protocol in a few words, whatever an earlier leaderboard.json held."""
    if not isinstance(protocol, dict):
        return "none recorded"
    return ", ".join(f"{key} {protocol.get(key)}" for key in ("features", "fid_samples", "test_limit"))


def kept_row(name: str, protocol: dict[str, Any], args: argparse.Namespace) -> dict[str, Any] | str:
    """Entry ``name``'s row made again from its run under ``--out``, or why the run does not back one.

    A row of ``leaderboard.json`` is never trusted as it is: its run must still be there,
    trained with this command's seed, and hold an FID of this protocol that genzoo keeps.
    """
    from genzoo import GenzooError, open_run

    if name not in ENTRIES:
        return "it is no entry of this script"
    entry = ENTRIES[name]
    run_dir = args.out / "runs" / entry.run
    if not run_dir.is_dir():
        return f"its run {run_dir} is gone"
    try:
        problem = budget_problem(open_run(run_dir), RUNS[entry.run], {"seed": args.seed, "test_limit": args.test_limit})
        record = fid_record(run_dir, entry, args) if problem is None else None
        if problem is None and record is not None:
            return make_row(name, run_dir, record, protocol, args)  # its run no longer finished: left out, why
    except GenzooError as exc:
        return str(exc)
    if problem is not None:
        return problem
    what = "of its reconstructions" if entry.reconstruction else f"of {args.fid_samples} samples"
    return f"{run_dir} holds no {entry_key(entry, args)} FID {what} that genzoo keeps"


#: An option's count (epochs, images, samples): 0 or fewer means nothing, so it is refused, not read as "not given"
#: (``genzoo`` itself refuses them too).
count = at_least(1)


def output_path(text: str) -> Path:
    """An output path, ``--out`` or ``--markdown``, without its ``..`` (genzoo's :func:`genzoo.files.plain_path`),
    before any check reads it: ``RUN/new/../config.json`` passed the check of an existing table as a new file, and
    the table replaced the run's ``config.json`` (nineteenth hostile pass, files F6)."""
    from genzoo.files import plain_path

    return plain_path(text)


def fid_samples(text: str) -> int:
    """The samples of each FID: 2 to 100,000, as ``genzoo eval`` takes them, refused here before any run trains
    (``--fid-samples 1`` trained every run, then eval refused it: seventeenth hostile pass, M5)."""
    from genzoo.evaluation.limits import MAX_FID_SAMPLES

    return at_least(2, MAX_FID_SAMPLES)(text)


def iwae_k(text: str) -> int:
    """eval's ``--iwae-k``: 1 to 10,000, refused here before any run trains, not by the first evaluation."""
    from genzoo.evaluation.limits import MAX_IWAE_K

    return at_least(1, MAX_IWAE_K)(text)


def epochs(text: str) -> int:
    """Every run's epochs: as many as ``genzoo train`` takes, refused here before OUT is made."""
    from genzoo.train_config import MAX_EPOCHS

    return at_least(1, MAX_EPOCHS)(text)


def seed(text: str) -> int:
    """A training seed ``genzoo train`` takes: refused here, before OUT is made, not by the first training."""
    from genzoo import GenzooError
    from genzoo.seeding import check_seed

    try:
        value = int(text)
        check_seed(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    except GenzooError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


class OneLineParser(argparse.ArgumentParser):
    """A bad option is one ``leaderboard: ...`` line, as every other refusal of this script."""

    def error(self, message: str) -> NoReturn:
        raise SystemExit(f"leaderboard: {message}")


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=output_path, help="folder of the runs and leaderboard.json")
    parser.add_argument("--markdown", type=output_path, default=Path("docs/leaderboard.md"))
    parser.add_argument("--only", help="comma-separated entries: " + ", ".join(ENTRIES))
    parser.add_argument("--epochs", type=epochs, help="every run's epochs, instead of its budget")
    parser.add_argument("--seed", type=seed, default=0, help="training seed")
    parser.add_argument("--train-limit", type=count)
    parser.add_argument("--test-limit", type=count)
    parser.add_argument("--features", default=PROTOCOL["features"], choices=["inception", "mnist"])
    parser.add_argument("--fid-samples", type=fid_samples, default=PROTOCOL["fid_samples"])
    parser.add_argument("--iwae-k", type=iwae_k, help="eval's --iwae-k (its default: 200; at most 10,000)")
    args = parser.parse_args(argv)
    # `--only ''` names no entry (it ran every one, the conv models' hours first), and an entry named twice is
    # one row, made once (eighteenth hostile pass, M6).
    names = list(dict.fromkeys(args.only.split(","))) if args.only is not None else list(ENTRIES)
    if "" in names:
        parser.error(f"--only {args.only!r} holds an empty entry name; the entries are {', '.join(ENTRIES)}")
    unknown = [name for name in names if name not in ENTRIES]
    if unknown:
        parser.error(f"unknown entries {', '.join(unknown)}; the entries are {', '.join(ENTRIES)}")
    args.protocol = (args.features, args.fid_samples) == (PROTOCOL["features"], PROTOCOL["fid_samples"]) \
        and args.test_limit is None
    # Every input checked before anything is written: a bad one is one line, and the files stay as they were.
    check_paths(args.out, args.markdown)
    state_path = args.out / "leaderboard.json"
    earlier = read_board(state_path)
    notes = kept_notes(args.markdown)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # no space, no permission
        raise SystemExit(os_error_line(exc)) from None
    import torch

    from genzoo import GenzooError
    from genzoo.files import atomic_write_text

    board: dict[str, Any] = dict(
        command="python benchmarks/leaderboard.py " + " ".join(sys.argv[1:] if argv is None else argv),
        rebuilt=datetime.now(timezone.utc).strftime("%Y-%m-%d"), seed=args.seed,
        device="CUDA " + torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU",
        protocol={**{k: getattr(args, k) for k in PROTOCOL}, "test_limit": args.test_limit, "paper": args.protocol})
    rows: dict[str, dict[str, Any]] = {}
    try:
        # Rows of another protocol would stand under this one's header: they go (their runs and FIDs stay in
        # OUT). The others are made again from their runs, or go with the reason.
        for name, row in earlier.items():
            if name in names:
                continue
            if row.get("protocol") != board["protocol"]:  # said, as every other row left out is
                print(f"leaderboard: the {name} row is left out: it was measured under another protocol "
                      f"({_protocol_text(row.get('protocol'))}); its run and FIDs stay in {args.out}", flush=True)
                continue
            made = kept_row(name, board["protocol"], args)
            if isinstance(made, str):
                print(f"leaderboard: the {name} row is left out: {made}", flush=True)
            else:
                rows[name] = made
        for i, name in enumerate(names, 1):
            entry = ENTRIES[name]
            run, run_dir = RUNS[entry.run], args.out / "runs" / entry.run
            started = time.perf_counter()
            trained = train(run, run_dir, args)
            record, measured = evaluate(entry, run_dir, args, names)
            rows[name] = make_row(name, run_dir, record, board["protocol"], args)
            board["entries"] = {n: rows[n] for n in ENTRIES if n in rows}  # in the table's order
            # genzoo's writer: a fresh temporary file each time, never a link's target (F3, ninth hostile pass)
            atomic_write_text(state_path, json.dumps(board, indent=2) + "\n")
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(args.markdown, markdown(board) + (f"\n{notes}" if notes else ""))
            print(f"[{i}/{len(names)}] {name}: {trained}, FID {measured}: {record['fid']:.2f} "
                  f"(published {entry.published}); {time.perf_counter() - started:.0f} s this time", flush=True)
    except GenzooError as exc:  # a run's file genzoo does not accept, data other than a run's, a write that failed
        raise SystemExit(f"leaderboard: {exc}") from None
    except OSError as exc:  # the table's folder made (no space, no permission)
        raise SystemExit(os_error_line(exc)) from None
    print(f"wrote {state_path} and {args.markdown}")


if __name__ == "__main__":
    main()
