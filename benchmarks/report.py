"""Turn pytest-benchmark JSON files into ``docs/benchmarks.md``.

    python benchmarks/report.py benchmarks/results/cpu.json [more.json ...] -o docs/benchmarks.md

Each JSON is one run on one machine; results from several (a CPU run and a GPU run)
become their own rows with the device named, never averaged together. Every number
in the tables is read from the JSON (medians of the timed rounds, ``extra_info``
metrics); ratios are computed here, within one run and one device, so they always
compare rounds taken in the same session. Only the standard library is used, so the
report can be rebuilt without torch.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

Row = dict[str, Any]
Doc = dict[str, Any]

#: Epoch-comparison variants, in the order the table lists them.
VARIANTS = {
    "reference_article_workers0": "article's loop, num_workers=0 (reference)",
    "reference_article_workers4": "article's loop, num_workers=4 (reference)",
    "genzoo_trainer": "genzoo trainer (`Trainer.fit`, as `genzoo train`)",
    "genzoo_steps": "genzoo model steps, no trainer",
    "floor": "compute floor (plain PyTorch, data in memory)",
}
ARTICLE0, ARTICLE4, FLOOR = "reference_article_workers0", "reference_article_workers4", "floor"
MNIST_EPOCH = 60_000


# -- ratios ------------------------------------------------------------------------------

def _median(row: Row) -> float:
    return float(row["stats"]["median"])


def add_ratios(rows: list[Row]) -> None:
    """Give each epoch-comparison row its throughput relative to the article and the floor.

    ``speedup_vs_article_workers0/4`` is the article loop's median time over this
    row's (2.0: twice as fast); ``floor_fraction`` is the floor's median time over this
    row's (1.0: at the floor, 0.9: 10% less throughput); ``time_vs_floor`` is its
    inverse. Only rows of the same group and device are compared.
    """
    by_key: dict[tuple[str, str], dict[str, Row]] = defaultdict(dict)
    for row in rows:
        info = row.get("extra_info", {})
        if info.get("kind") == "epoch":
            by_key[(row.get("group") or "", info.get("device", ""))][info["variant"]] = row
    for variants in by_key.values():
        for row in variants.values():
            info = row["extra_info"]
            t = _median(row)
            for name, key in ((ARTICLE0, "speedup_vs_article_workers0"), (ARTICLE4, "speedup_vs_article_workers4")):
                if name in variants and t > 0:
                    info[key] = _median(variants[name]) / t
            if FLOOR in variants and t > 0:
                info["floor_fraction"] = _median(variants[FLOOR]) / t
                info["time_vs_floor"] = t / _median(variants[FLOOR])


# -- formatting --------------------------------------------------------------------------

def _num(value: Any) -> str:
    """Readable precision: thousands as integers, smaller numbers to three or four figures."""
    if value is None:
        return "n/a"
    value = float(value)
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.1f}"
    if size >= 10:
        return f"{value:.2f}"
    if size >= 1:
        return f"{value:.3f}"
    return f"{value:.{2 - math.floor(math.log10(size))}f}" if size > 0 else "0"


def _ratio(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.2f}×"


def _percent(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.0f}%"


def _table(header: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# -- reading -----------------------------------------------------------------------------

def load(paths: Iterable[str | Path]) -> list[Doc]:
    """Read pytest-benchmark JSON files, remembering where each came from."""
    docs = []
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, RecursionError, ValueError) as exc:
            raise ValueError(f"{path} could not be read as JSON ({exc})") from None
        rows = doc.get("benchmarks", []) if isinstance(doc, dict) else None
        if not isinstance(rows, list) or not all(
                isinstance(row, dict) and all(isinstance(row.get(key, {}), dict) for key in ("stats", "extra_info"))
                for row in rows):
            raise ValueError(f"{path} is no benchmark result: an object whose 'benchmarks' is a list of rows, "
                             "each with 'stats' and 'extra_info' objects (pytest --benchmark-json writes one)")
        doc.setdefault("source", Path(path).name)
        docs.append(doc)
    return docs


def _rows(docs: list[Doc], kind: str) -> list[Row]:
    """Rows of one kind from every document, ratios filled in per document."""
    out = []
    for doc in docs:
        rows = doc.get("benchmarks", [])
        add_ratios(rows)
        out += [r for r in rows if r.get("extra_info", {}).get("kind") == kind]
    return out


def _env(doc: Doc) -> dict[str, Any]:
    """The run's environment: the suite's own record, else the first row's extra_info."""
    env = dict(doc.get("machine_info", {}).get("genzoo", {}) or doc.get("environment", {}))
    if not env:
        for row in doc.get("benchmarks", []):
            env = dict(row.get("extra_info", {}))
            break
    return env


# -- sections ----------------------------------------------------------------------------

def machines(docs: list[Doc]) -> str:
    header = ["source", "device", "CPU", "cores", "torch threads", "torch", "mode", "highest 1-min load average",
              "date", "commit"]
    rows = []
    for doc in docs:
        env = _env(doc)
        loads = [v for row in doc.get("benchmarks", []) for v in row.get("extra_info", {}).get("load_average_1min", [])
                 if v is not None] + [v for v in env.get("load_average_1min", []) if v is not None]
        commit = doc.get("commit_info", {}).get("id") or ""
        dirty = " (dirty)" if doc.get("commit_info", {}).get("dirty") else ""
        rows.append([
            str(doc.get("source", "")), str(env.get("device", "n/a")), str(env.get("cpu", "n/a")),
            str(env.get("cores", "n/a")), str(env.get("torch_threads", "n/a")),
            str(env.get("torch_version", "n/a")), str(env.get("mode", "n/a")),
            f"{max(loads):.2f}" if loads else "n/a",
            str(doc.get("datetime", ""))[:19].replace("T", " "), commit[:10] + dirty,
        ])
    return _table(header, rows)


def throughput(docs: list[Doc]) -> str:
    """Images/s of one training step, per model and device, one column per batch size."""
    rows = _rows(docs, "train_step")
    batches = sorted({int(r["extra_info"]["batch_size"]) for r in rows})
    cells: dict[tuple[str, str], dict[int, Any]] = defaultdict(dict)
    for r in rows:
        info = r["extra_info"]
        cells[(info["model"], info["device"])][int(info["batch_size"])] = info.get("images_per_s")
    header = ["model", "device"] + [f"batch {b}" for b in batches]
    body = [[model, device] + [_num(values.get(b)) for b in batches]
            for (model, device), values in sorted(cells.items())]
    return _table(header, body)


def scaling(docs: list[Doc]) -> str:
    """Step time against batch size: how cost grows with the work."""
    rows = _rows(docs, "train_step")
    base: dict[tuple[str, str], float] = {}
    for r in rows:
        info = r["extra_info"]
        if int(info["batch_size"]) == 100:
            base[(info["model"], info["device"])] = _median(r)
    header = ["model", "device", "batch", "ms/step (median)", "µs/image", "step time ÷ batch-100 step time", "rounds"]
    body = []
    for r in sorted(rows, key=lambda r: (r["extra_info"]["model"], r["extra_info"]["device"],
                                         int(r["extra_info"]["batch_size"]))):
        info = r["extra_info"]
        t, batch = _median(r), int(info["batch_size"])
        ref = base.get((info["model"], info["device"]))
        body.append([info["model"], info["device"], str(batch), _num(1e3 * t), _num(1e6 * t / batch),
                     _ratio(t / ref) if ref else "n/a", str(r["stats"].get("rounds", "n/a"))])
    return _table(header, body)


def epochs(docs: list[Doc]) -> str:
    """The article's loop, genzoo's trainer and the floor on the same VAE and steps."""
    rows = _rows(docs, "epoch")
    order = list(VARIANTS)
    rows.sort(key=lambda r: (r["extra_info"]["device"], order.index(r["extra_info"]["variant"])
                             if r["extra_info"]["variant"] in order else len(order)))
    header = ["variant", "device", "steps × batch", "rounds", "s/round (median)", "images/s",
              "s per 60k-image epoch", "× article w0", "× article w4", "% of floor throughput"]
    body = []
    for r in rows:
        info = r["extra_info"]
        ips = info.get("images_per_s")
        body.append([
            VARIANTS.get(info["variant"], info["variant"]), info["device"],
            f"{info['steps']} × {info['batch_size']}", str(r["stats"].get("rounds", "n/a")),
            _num(_median(r)), _num(ips), _num(MNIST_EPOCH / ips) if ips else "n/a",
            _ratio(info.get("speedup_vs_article_workers0")), _ratio(info.get("speedup_vs_article_workers4")),
            _percent(info.get("floor_fraction")),
        ])
    return _table(header, body)


def sampling(docs: list[Doc]) -> str:
    rows = _rows(docs, "sample")
    header = ["model", "device", "batch", "ms/batch (median)", "images/s"]
    body = [[r["extra_info"]["model"], r["extra_info"]["device"], str(r["extra_info"]["batch_size"]),
             _num(1e3 * _median(r)), _num(r["extra_info"].get("images_per_s"))]
            for r in sorted(rows, key=lambda r: (r["extra_info"]["model"], r["extra_info"]["device"]))]
    return _table(header, body)


QUALITY_COLUMNS = [
    ("reconstruction", "mse_per_pixel", "test MSE/pixel"),
    ("reconstruction", "bce_nats_per_image", "test BCE nats/image"),
    ("nelbo", "nelbo", "test −ELBO nats/image"),
    ("fid-mnist", "fid", "FID, mnist features"),
    ("fid-inception", "fid", "FID, Inception"),
]


def quality(docs: list[Doc]) -> str:
    """One row per model and device; each metric comes from its own benchmark."""
    rows = _rows(docs, "quality")
    cells: dict[tuple[str, str], dict[str, Row]] = defaultdict(dict)
    for r in rows:
        info = r["extra_info"]
        cells[(info["model"], info["device"])][info["metric"]] = r
    header = ["model", "device", "training budget"] + [c[2] for c in QUALITY_COLUMNS] + ["evaluation seconds"]
    body = []
    for (model, device), metrics in sorted(cells.items()):
        budget = next(iter(metrics.values()))["extra_info"].get("budget", "n/a")
        values = []
        for metric, key, _ in QUALITY_COLUMNS:
            row = metrics.get(metric)
            value = row["extra_info"].get(key) if row else None
            if value is not None and metric.startswith("fid"):
                values.append(f"{_num(value)} ({row['extra_info'].get('samples', '?')} samples)")
            else:
                values.append(_num(value))
        seconds = ", ".join(f"{m} {_num(_median(r))}" for m, r in sorted(metrics.items()))
        body.append([model, device, str(budget)] + values + [seconds])
    return _table(header, body)


def per_epoch(docs: list[Doc]) -> str:
    """``benchmarks/epoch_time.py`` runs: every epoch, then the medians, per device."""
    runs = [doc for doc in docs if "epochs" in doc and "summary" in doc]
    workers = sorted({int(k[len("article_w"):-2]) for doc in runs for row in doc["epochs"]
                      for k in row if k.startswith("article_w")})
    header = ["device", "epoch", "genzoo train s", "genzoo wall s", "genzoo test −ELBO", "floor s",
              "floor test −ELBO"] + [f"article w{w} s" for w in workers] + ["genzoo train ÷ floor"]
    body = []
    for doc in runs:
        device = _env(doc).get("device", "n/a")
        for label, row in [(str(r["epoch"]), r) for r in doc["epochs"]] + [("median", doc["median"])]:
            cells = [device, f"**{label}**" if label == "median" else label]
            cells += [_num(row.get(k)) for k in ("genzoo_train_s", "genzoo_wall_s", "genzoo_test_nelbo",
                                                 "floor_s", "floor_test_nelbo")]
            cells += [_num(row.get(f"article_w{w}_s")) for w in workers]
            floor = row.get("floor_s")
            cells.append(_ratio(row["genzoo_train_s"] / floor) if floor else "n/a")
            body.append(cells)
    return _table(header, body)


def inception(docs: list[Doc]) -> str:
    """``benchmarks/inception_speed.py`` runs: images/s before and after, and what the fast path changes."""
    header = ["source", "images", "batch", "before img/s", "after img/s", "speed-up", "max feature difference",
              "FID before", "FID after", "FID difference", "FID of test statistics, before vs after"]
    body = []
    for doc in docs:
        if "speed_up" not in doc:
            continue
        speed, fids = doc["images_per_s"], doc["fid_train_vs_test"]
        body.append([str(doc.get("source", "")), str(doc["images"]), str(doc["batch"]), _num(speed["before"]),
                     _num(speed["after"]), _ratio(doc["speed_up"]), f"{doc['max_abs_feature_difference']:.1e}",
                     _num(fids["before"]), _num(fids["after"]), f"{doc['fid_difference']:.1e}",
                     f"{doc['fid_test_before_vs_after']:.1e}"])
    return _table(header, body)


def step_kinds(docs: list[Doc]) -> str:
    """``benchmarks/step_kinds.py`` runs: seconds per epoch by step kind, the floor, the limit and pythae."""
    header = ["device", "model", "batch", "floor s", "eager s", "fused s", "fast s", "compiled s", "compile s",
              "limit s", "fast limit s", "GFLOP/epoch", "best ÷ floor", "best images/s", "pythae s"]
    body = []
    for doc in docs:
        env = _env(doc)
        device = env.get("device", "n/a")
        pythae = doc.get("pythae", {}).get("per_epoch_s")
        for row in doc.get("models", []):
            median, notes = row["median_s"], row.get("notes", {})
            cells = [device, row["model"], str(env.get("batch_size", "n/a"))]
            cells += [_num(median.get(k)) + (f" ({notes[k]})" if k in notes else "")
                      + (f" ({row['fast_precision']})" if k == "fast" and "fast_precision" in row else "")
                      for k in ("floor", "eager", "fused", "fast", "compiled")]
            floor = median.get("floor")
            best = min(median[k] for k in ("eager", "fused", "fast", "compiled") if k in median)
            cells += [_num(row.get("compile_s")), _num(row["limit_s"]), _num(row.get("fast_limit_s")),
                      f"{row['flops_per_epoch'] / 1e9:.0f}",
                      _ratio(best / floor) if floor else "n/a",
                      f"{row['images_per_epoch'] / best:,.0f}" if row.get("images_per_epoch") else "n/a",
                      _num(pythae) if row["model"] == "vae" else "n/a"]
            body.append(cells)
    return _table(header, body)


def processes(docs: list[Doc]) -> str:
    """Whole 5-epoch processes of ``step_kinds.py --processes``: medians, each over the eager one and under pythae's."""
    body = []
    for doc in docs:
        runs = doc.get("processes", {})
        eager = runs.get("eager", {}).get("median_s")
        pythae = runs.get("pythae", {}).get("median_s")
        for name, run in runs.items():
            nelbo = run.get("test_nelbo")
            body.append([_env(doc).get("device", "n/a"), name, _num(run["median_s"]),
                         _ratio(run["median_s"] / eager) if eager else "n/a",
                         _ratio(pythae / run["median_s"]) if pythae else "n/a",
                         f"{statistics.median(nelbo):.2f}" if nelbo else "n/a"])
    return _table(["device", "setting", "wall s (median)", "÷ eager", "pythae ÷ this (speed-up over pythae)",
                   "final test −ELBO (median)"], body)


def start(docs: list[Doc]) -> str:
    """``benchmarks/start_time.py`` runs: a tiny training process beside torch's import and its optimiser's."""
    body = []
    for doc in docs:
        median = doc.get("start", {}).get("median_s")
        if not median:
            continue
        body.append([_env(doc).get("device", "n/a"), _num(median["torch"]), _num(median["torch_optimiser"]),
                     _num(median["genzoo_train"]), _num(median["genzoo_train"] - median["torch"]),
                     _num(median["genzoo_train"] - median["torch_optimiser"])])
    return _table(["device", "import torch s", "torch + Adam step s", "genzoo train s", "over torch s",
                   "over torch + Adam s"], body)


SECTIONS = [
    ("Machines", machines,
     "One row per results file. torch's threads are pinned to the cores the process may use. The load "
     "average is the highest seen around any benchmark of the file: above about 1 on top of the benchmark "
     "itself, another process shared the cores and the timings are not to be trusted (with every core in "
     "torch's thread pool, one busy process elsewhere can make a step many times slower)."),
    ("Training throughput", throughput,
     "Images per second through one `genzoo.trainer.training_step` (forward, loss, backward, optimiser step), "
     "from the median of the timed rounds, after warm-up, on real MNIST batches already on the device."),
    ("Scaling with batch size", scaling,
     "The same steps: time per step and per image as the batch grows."),
    ("Side by side with the article's loop (VAE, latent 40, batch 100)", epochs,
     "The same VAE trained for the same number of steps, each round from fresh weights. The article's loop "
     "is the *reference* (torchvision MNIST, `transforms.ToTensor()`, `DataLoader(shuffle=True)`, `loss.item()` "
     "every step, bugs fixed); it is written in the benchmark, not in genzoo. genzoo's trainer round is a whole "
     "`Trainer.fit()` of one epoch: it includes the trainer's evaluation on 100 test images and its checkpoint "
     "write. The floor runs the same maths on batches sliced from one pre-shuffled tensor, with no logging. "
     "× article = article's time ÷ this time; % of floor = floor's time ÷ this time."),
    ("Seconds per epoch, interleaved (full MNIST, VAE latent 40, batch 100)", per_epoch,
     "From `python benchmarks/epoch_time.py --json ...`: genzoo's trainer (as `genzoo train vae --latent 40`, "
     "evaluating on the 10,000 test images after each epoch), the floor and the article's loop, each its own "
     "VAE, run in turn epoch by epoch in one process. \"genzoo train s\" is the trainer's own timer over the "
     "steps; \"wall s\" adds the test evaluation and checkpoint. Test −ELBO: nats/image, one z per image."),
    ("Inception feature pass, before and after", inception,
     "From `python benchmarks/inception_speed.py --json ...`: torch-fidelity's `inception-v3-compat` as genzoo "
     "ran it before (torch-fidelity's loop: `no_grad`, batch norms as layers, NCHW, features to the host per "
     "batch) and genzoo's fast path (batch norms folded into the convolutions, channels-last, `inference_mode`, "
     "one host copy), on the same MNIST images (test and as many training images), batch by batch, "
     "interleaved; img/s are medians over batches. FID: the training images against the test images from "
     "each extractor's features; the last column is the FID between the test images' statistics from the two "
     "(what reusing reference statistics cached before costs)."),
    ("Seconds per epoch by kind of training step (MNIST)", step_kinds,
     "From `python benchmarks/step_kinds.py --json ...`: each model's own copy trained by the plain PyTorch loop "
     "(floor, VAE only), by genzoo's `training_step` unfused (eager), with torch's fused optimiser kernels "
     "(fused, `--fused`), fused with the fp32 products in bf16 on a CPU with bf16 units, TF32 on a GPU (fast, "
     "`--fp32-precision auto`, the default on such a CPU) and fused with the objective compiled as well "
     "(compiled, `--compile`, exact products; compile s is its first epoch's extra time), interleaved epoch by "
     "epoch, medians. The limit is the epoch's floating-point work (FlopCounterMode over one real step, from "
     "the shapes of its matrix products) at the measured fp32 matrix-product peak; the fast limit at the peak "
     "of the same products in the fast kind's precision. best ÷ floor: the fastest genzoo step's time over "
     "the floor's (the floor's products exact); best images/s: the images of its epoch (the whole training "
     "split, or `--steps` batches of it) over that time. "
     "pythae s: pythae's own TrainingPipeline per epoch for the same VAE, with its per-epoch evaluation."),
    ("Whole 5-epoch processes: `genzoo train vae --latent 40` and pythae", processes,
     "From `python benchmarks/step_kinds.py --processes N`, interleaved: start-up, data, training, evaluation "
     "after every epoch and pictures; eager: `--no-fused --fp32-precision ieee`; fused, exact products: "
     "`--fp32-precision ieee`; default: no options (fused, `--fp32-precision auto`); the compiled runs (the "
     "default and `--compile`) with an emptied inductor cache (cold) and with the one "
     "the cold run filled (warm); pythae: `python benchmarks/pythae_vae.py --epochs 5`, the same VAE through "
     "pythae's TrainingPipeline, evaluating on the test images after every epoch. Final test −ELBO: each "
     "genzoo run's after its 5th epoch (nats/image, one z per image; every run seed 0; evaluation exact)."),
    ("Start-up: a tiny training process", start,
     "From `python benchmarks/start_time.py --json ...`: `genzoo train vae --epochs 1 --train-limit 100 "
     "--test-limit 100` (all start-up, data, checks, evaluation and pictures), `python -c \"import torch\"`, and "
     "torch plus one Adam step (a torch.optim optimiser imports `torch._dynamo` on first use, a second or so that "
     "every process training with one pays), whole processes, interleaved, medians of the rounds."),
    ("Sampling", sampling,
     "Images per second of each model's default sampler (the AE's `gmm` draws from its fitted mixture)."),
    ("Quality", quality,
     "Each model trained by genzoo's trainer with the fixed budget shown (seed 0), then evaluated on the "
     "MNIST test split: reconstruction error of the decoded encoder mean, negative ELBO (one z per image), "
     "FID of model samples against those test images. The benchmark times the evaluation; the cells "
     "are the metrics. n/a: the model cannot do it (or Inception FID was not requested)."),
]


def render(docs: list[Doc], title: str | None = "genzoo benchmarks", notes: bool = True,
           note: str | None = None) -> str:
    """The whole report as Markdown; a section with no rows is left out."""
    parts = []
    if title:
        parts += [f"# {title}", "",
                  "Generated by `python benchmarks/report.py` from the JSON files in `benchmarks/results/` "
                  "(pytest-benchmark's `--benchmark-json`, and `benchmarks/epoch_time.py --json`). Times are "
                  "medians of the timed rounds, taken after warm-up; benchmarks measure, they assert nothing "
                  "about speed.", "",
                  "- re-measure everything on this machine and rebuild this page: `bash benchmarks/run.sh` "
                  "(on a GPU: `bash benchmarks/run.sh gpu-NAME`, which adds its own rows)",
                  "- the suite alone: `pytest benchmarks --benchmark-only` (quick smoke run: add `--quick` "
                  "or set `GENZOO_BENCH_QUICK=1`; Inception FID: add `--inception`; models: every registered one but "
                  "conv-ae, conv-vae and dcgan, which at their papers' widths take hours per epoch on a CPU, unless "
                  "`--bench-models NAMES` or `all` names them)",
                  "- seconds per epoch, side by side: `python benchmarks/epoch_time.py`",
                  "- seconds per epoch by step kind (eager, fused, fast, compiled), the limit, pythae: "
                  "`python benchmarks/step_kinds.py` (pythae: `pip install 'genzoo[bench-pythae]'`)",
                  "- a tiny training process beside torch's import and its optimiser's: "
                  "`python benchmarks/start_time.py`", ""]
    if note:
        parts += [f"> **Note.** {note}", ""]
    for heading, section, note in SECTIONS:
        table = section(docs)
        if table.count("\n") < 2:  # header and rule only
            continue
        parts += [f"## {heading}", ""] + ([note, ""] if notes else []) + [table, ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", help="pytest-benchmark JSON files (--benchmark-json)")
    parser.add_argument("-o", "--output", help="write Markdown here (default: stdout)")
    parser.add_argument("--note", help="a sentence shown at the top, e.g. how quiet the machine was")
    args = parser.parse_args(argv)
    try:
        docs = load(args.json)
    except ValueError as exc:
        parser.error(str(exc))
    text = render(docs, note=args.note)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
