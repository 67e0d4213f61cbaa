"""Seconds per epoch, side by side: genzoo's trainer, the compute floor, the article's loop.

    python benchmarks/epoch_time.py                     # 5 epochs, article loop with workers 0 and 4
    python benchmarks/epoch_time.py --epochs 5 --article none --quiet

What issue 2 asks to report, measured in one process and interleaved epoch by epoch
(genzoo epoch 1, floor epoch 1, article epoch 1, genzoo epoch 2, ...), so load from
other processes hits every variant alike. Each variant trains its own VAE (latent 40,
batch 100, Adam 1e-3, seed 0) on the full MNIST training split:

* genzoo: ``Trainer.fit`` as ``genzoo train vae --latent 40`` runs it (progress bar on
  stderr unless ``--quiet``), evaluating on the test split after every epoch. Its
  "train s" is the trainer's own timer over the training steps; "wall s" adds the
  per-epoch test evaluation and checkpoint write.
* floor: the same maths on batches sliced from one pre-shuffled in-memory tensor, no
  logging (``benchmarks.common.floor_epoch``).
* article: the REFERENCE loop (torchvision MNIST + ``ToTensor`` + ``DataLoader``),
  bugs fixed (``benchmarks.common.reference_article_epoch``); not part of genzoo.

The test negative ELBO (nats/image, one z per image, seeded) is printed after every
epoch for genzoo and the floor, so equal speed can be checked against equal learning.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console

from benchmarks import common
from genzoo.building import select_device
from genzoo.train_config import TrainConfig
from genzoo.trainer import Trainer, test_losses

EVAL_SEED = 1234


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--article", default="0,4",
                        help="DataLoader num_workers of the article loop, comma-separated, or 'none'")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="auto: CUDA when present, as genzoo train does")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the machine's cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (genzoo train shows one)")
    parser.add_argument("--json", help="also write every number to this JSON file")
    return parser.parse_args(argv)


def commit_info() -> dict[str, Any]:
    """The checked-out commit and whether the tree differs from it, as pytest-benchmark records."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"id": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.CalledProcessError):
        return {}


def nelbo_on_test(model: Any, test: Any) -> float:
    """Test negative ELBO, nats/image, with the same seeded noise for every variant."""
    return test_losses(model, test, 1000, EVAL_SEED)["nelbo"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    loads = [common.load_average()]
    threads = common.pin_threads(args.threads)
    device = select_device(args.device)
    workers = [] if args.article == "none" else [int(w) for w in args.article.split(",")]
    train, test = common.load_mnist(device)
    article_data = common.article_dataset() if workers else None
    env = common.environment(device)
    print(f"# {env['device']}, {env['cores']} cores, torch {env['torch_version']} with {threads} threads; "
          f"VAE latent {common.VAE_OPTIONS['latent']}, batch {common.BATCH}, {len(train):,} training images",
          flush=True)

    # warm-up: thread pool, allocator and kernels, on a throwaway model
    scratch = common.build_model("vae", device, seed=99, **common.VAE_OPTIONS)
    common.floor_epoch(scratch, common.adam(scratch), train.images[: 20 * common.BATCH])

    floor_model = common.build_model("vae", device, seed=0, **common.VAE_OPTIONS)
    floor_opt = common.adam(floor_model)
    article = {w: common.build_model("vae", device, seed=0, **common.VAE_OPTIONS) for w in workers}
    article_opt = {w: common.adam(m) for w, m in article.items()}
    genzoo_model = common.build_model("vae", device, seed=0, **common.VAE_OPTIONS)
    rows: list[dict[str, Any]] = []
    mark = [0.0]

    header = ["epoch", "genzoo train s", "genzoo wall s", "genzoo −ELBO", "floor s", "floor −ELBO"]
    header += [f"article w{w} s" for w in workers]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header), flush=True)

    def after_genzoo_epoch(record: dict[str, Any]) -> None:
        wall = time.perf_counter() - mark[0]
        epoch = record["epoch"]
        floor = common.floor_epoch(floor_model, floor_opt, common.shuffled(train.images, seed=epoch))
        row = {"epoch": epoch, "genzoo_train_s": record["train_seconds"], "genzoo_wall_s": wall,
               "genzoo_test_nelbo": record["test_nelbo"], "floor_s": floor.seconds,
               "floor_test_nelbo": nelbo_on_test(floor_model, test)}
        for w in workers:
            result = common.reference_article_epoch(article[w], article_opt[w], article_data, w, seed=epoch)
            row[f"article_w{w}_s"] = result.seconds
        rows.append(row)
        cells = [str(epoch)] + [f"{row[k]:.2f}" for k in ("genzoo_train_s", "genzoo_wall_s", "genzoo_test_nelbo",
                                                          "floor_s", "floor_test_nelbo")]
        cells += [f"{row[f'article_w{w}_s']:.2f}" for w in workers]
        print("| " + " | ".join(cells) + " |", flush=True)
        mark[0] = time.perf_counter()

    console = Console(quiet=True) if args.quiet else Console(stderr=True)
    config = TrainConfig(model="vae", epochs=args.epochs, batch_size=common.BATCH, seed=0, device=args.device)
    with tempfile.TemporaryDirectory(prefix="genzoo-epoch-time-") as run_dir:
        trainer = Trainer(genzoo_model, train, test, config, Path(run_dir), console)
        mark[0] = time.perf_counter()
        trainer.fit(on_epoch=after_genzoo_epoch)

    median = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "epoch"}
    floor = median["floor_s"]
    print(f"\nmedian over {len(rows)} epochs: genzoo {median['genzoo_train_s']:.2f} s training "
          f"({median['genzoo_wall_s']:.2f} s with evaluation and checkpoint), floor {floor:.2f} s")
    summary = {
        "genzoo_train_over_floor": median["genzoo_train_s"] / floor,
        "genzoo_wall_over_floor": median["genzoo_wall_s"] / floor,
    }
    print(f"genzoo / floor: {summary['genzoo_train_over_floor']:.3f} (training), "
          f"{summary['genzoo_wall_over_floor']:.3f} (wall)")
    for w in workers:
        key = f"article_w{w}_s"
        summary[f"article_w{w}_over_genzoo_train"] = median[key] / median["genzoo_train_s"]
        print(f"article num_workers={w}: {median[key]:.2f} s/epoch = "
              f"{summary[f'article_w{w}_over_genzoo_train']:.2f}× genzoo's training time")
    print(f"final test −ELBO: genzoo {rows[-1]['genzoo_test_nelbo']:.2f}, floor {rows[-1]['floor_test_nelbo']:.2f} "
          "nats/image")
    loads.append(common.load_average())
    print(f"1-min load average before and after: {loads[0]}, {loads[-1]}")
    if args.json:
        doc = {"environment": {**env, "mode": f"{args.epochs} epochs", "load_average_1min": loads},
               "epochs": rows, "median": median, "summary": summary, "datetime": datetime.now(timezone.utc).isoformat(),
               "commit_info": commit_info()}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
