"""Inception feature pass, side by side: torch-fidelity's plain loop (genzoo before) and genzoo's fast path.

    python benchmarks/inception_speed.py                      # 500 test + 500 training images, batch 50
    python benchmarks/inception_speed.py --images 100 --json benchmarks/results/cpu-inception.json

Both extractors load the same weights (``$TORCH_HOME/hub/checkpoints``, as ``genzoo eval
--features inception`` does). "before" is torch-fidelity's ``inception-v3-compat`` as
genzoo ran it until now: ``get_featuresdict_from_dataset`` per batch (``no_grad``, features
moved to the host per batch, batch norms as separate layers, NCHW). "after" is
:meth:`genzoo.evaluation.frechet.Extractor.build` and :func:`genzoo.evaluation.frechet._features`
(batch norms folded, channels-last, ``inference_mode``, one host copy). They run batch
by batch, interleaved, their order swapped every batch, on the same images, so load from
other processes hits both alike; the speeds are medians over batches.

The same passes give the numerical check: the largest feature difference, and the FID of
the first ``--images`` training images against the first ``--images`` test images computed
from each extractor's features (the fixed set), and the FID between the test images'
statistics from the two extractors (what reusing statistics cached before costs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric
from torch_fidelity.utils import get_featuresdict_from_dataset

from benchmarks import common
from genzoo.building import load_split
from genzoo.evaluation import frechet
from genzoo.evaluation.weights import file_sha256, inception_extractor, inception_weights


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="test images, and as many training images")
    parser.add_argument("--batch", type=int, default=frechet.EXTRACTORS["inception"].batch_size)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the machine's cores)")
    parser.add_argument("--json", help="also write every number to this JSON file")
    return parser.parse_args(argv)


def fid_of(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID between two feature sets, as genzoo computes it (float64 statistics, torch-fidelity's formula)."""
    value = fid_statistics_to_metric(frechet.statistics(a), frechet.statistics(b), False)[KEY_METRIC_FID]
    return float(value)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    threads = common.pin_threads(args.threads)
    cpu = torch.device("cpu")
    test = load_split("mnist", "test", None, args.images, cpu, False).images
    train = load_split("mnist", "train", None, args.images, cpu, False).images
    pixels = torch.cat([test, train])
    images = frechet.ImageSet(pixels).images  # uint8 RGB, as both extractors get them
    weights = inception_weights(download=False)
    layer = frechet.EXTRACTORS["inception"].layer
    before_net = inception_extractor(weights, layer)
    after_net = frechet.EXTRACTORS["inception"].build(weights, file_sha256(weights), cuda=False)

    def before(start: int) -> torch.Tensor:
        return get_featuresdict_from_dataset(before_sets[start], before_net, args.batch, False, True, False)[layer]

    def after(start: int) -> torch.Tensor:
        return frechet._features(after_net, layer, [images[start:start + args.batch]], None)

    before_sets = {start: frechet.ImageSet(pixels[start:start + args.batch]) for start in range(0, len(pixels),
                                                                                                 args.batch)}

    variants = {"before": before, "after": after}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    features: dict[str, list[torch.Tensor]] = {name: [] for name in variants}
    loads = [common.load_average()]
    for index, start in enumerate(range(0, len(images), args.batch)):
        batch = images[start:start + args.batch]
        for name in (list(variants) if index % 2 == 0 else list(reversed(variants))):
            started = time.perf_counter()
            features[name].append(variants[name](start))
            seconds[name].append(time.perf_counter() - started)
        loads.append(common.load_average())
        print(f"batch {index + 1}: " + ", ".join(f"{name} {len(batch) / seconds[name][-1]:.2f} img/s"
                                               for name in variants) + f", load {loads[-1]}", flush=True)
    n = args.images
    full = {name: torch.cat(parts) for name, parts in features.items()}
    speed = {name: args.batch / statistics.median(times) for name, times in seconds.items()}
    result = {
        "images": 2 * n, "batch": args.batch, "threads": threads,
        "images_per_s": speed, "speed_up": speed["after"] / speed["before"],
        "total_seconds": {name: sum(times) for name, times in seconds.items()},
        "max_abs_feature_difference": float((full["after"] - full["before"]).abs().max()),
        "largest_feature": float(full["before"].abs().max()),
        "fid_train_vs_test": {name: fid_of(f[n:], f[:n]) for name, f in full.items()},
        "fid_test_before_vs_after": fid_of(full["after"][:n], full["before"][:n]),
        "environment": {**common.environment(cpu), "mode": f"Inception, {2 * n} images",
                        "load_average_1min": loads},
        "datetime": datetime.now(timezone.utc).isoformat(),
    }
    result["fid_difference"] = abs(result["fid_train_vs_test"]["after"] - result["fid_train_vs_test"]["before"])
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
