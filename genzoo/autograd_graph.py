"""``genzoo graph``: the autograd graph of one training step's loss, drawn as the article draws it.

The article shows what backpropagation walks through with torchviz's ``make_dot``. Here
the loss is exactly what one training step backpropagates (the trainer's reduction of
the objective, or each loss of a model that steps its own optimisers), drawn as SVG and
PNG. torchviz and the Graphviz ``dot`` program are optional (the extra ``genzoo[graph]``
and the system's graphviz package); without either, one line says what to install.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from functools import partial
from pathlib import Path
from typing import IO, Any, Callable

import torch

from genzoo.building import load_model
from genzoo.checks import printable
from genzoo.errors import GenzooError, blamed, warn
from genzoo.files import atomic_write, others_can_change, plain_path, private_folder
from genzoo.model import Model
from genzoo.plugin_registry import registry
from genzoo.sampler import model_call
from genzoo.train_config import TrainConfig
from genzoo.trainer import REDUCTIONS, per_image

INSTALL = "install them with: pip install 'genzoo[graph]' and apt-get install graphviz"
FORMATS = ("svg", "png")


def graph_tools() -> Callable[..., Any]:
    """torchviz's ``make_dot``, once torchviz and Graphviz's ``dot`` are found; else one line on what to install."""
    try:
        with warnings.catch_warnings():  # torchviz imports distutils, deprecated since Python 3.10
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchviz import make_dot
    except ImportError as exc:
        raise GenzooError(f"genzoo graph needs torchviz ({exc.name or 'torchviz'} is not installed) and the "
                          f"Graphviz program dot; {INSTALL}") from None
    if shutil.which("dot") is None:
        raise GenzooError(f"genzoo graph needs the Graphviz program dot, which is not on PATH; {INSTALL}")
    draw: Callable[..., Any] = make_dot
    return draw


def step_loss(model: Model) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """What one training step backpropagates, on a small batch of random images.

    With automatic optimisation: the objective reduced as the trainer reduces it; a model
    that steps its own optimisers: each of its losses, averaged over the batch.
    """
    model.train()
    n = max(2, type(model).min_batch_size)
    x = torch.rand(n, *model.sample_shape, generator=torch.Generator().manual_seed(0)).to(model.device)
    who = f"{type(model).__name__}.loss"
    # Guarded: one that moved the working directory had the graph written in the other folder, exit 0 (twenty-fourth
    # hostile pass, plugins F6)
    with blamed(who), model_call(who, "computing the loss to draw"):
        stats = per_image(model.loss(x), n, who)
    if not model.automatic_optimization:
        return tuple(stats[name].mean() for name in model.loss_names if name in stats)
    objective = model.loss_names[0]
    if objective not in stats or model.objective_reduction not in REDUCTIONS:
        raise GenzooError(f"{type(model).__name__}.loss gives no objective {objective!r} to reduce "
                          f"by {model.objective_reduction!r}")
    return REDUCTIONS[model.objective_reduction](stats[objective])


def graph_model(source: str, dataset: str | None = None) -> tuple[str, Model]:
    """A registered model with its default options, built for ``dataset``'s images (default: the
    training default), or the model of a finished run folder (which knows its images)."""
    reg = registry()
    if source in reg.names("model"):  # a model name holds no '/': ./vae or vae/ is always the run folder
        if dataset is None and os.path.isdir(source):
            # Named: the registered model was drawn, silently, for a folder's run of that name (twenty-sixth hostile
            # pass, files M4)
            warn(f"{source} is both a registered model and a folder here; drawing the registered model "
                 f"{source} (write ./{source} for the run folder)")
        shape = tuple(reg.dataset(dataset or TrainConfig.dataset).sample_shape)
        return source, reg.build_model(source, shape)
    if dataset is not None:
        raise GenzooError(f"--dataset is for a MODEL name; the run folder {source} knows its dataset")
    if Path(source).is_dir():
        model = load_model(source)
        return Path(source).name, model
    raise GenzooError(f"{source!r} is neither a registered model ({', '.join(reg.names('model'))}) "
                      "nor a run folder")


def draw_graph(source: str, out: str | None = None, dataset: str | None = None) -> list[Path]:
    """Draw the loss graph of ``source`` (MODEL or RUN) into ``out``.svg and ``out``.png; the paths written.

    ``out`` defaults to ``graph-<model or run folder name>``; a ``.svg`` or ``.png`` suffix
    is dropped. Nothing is written unless both pictures render, and no file is overwritten.
    The input is checked before the optional tools, so one run of the command names both.
    What Graphviz's ``dot`` writes to stderr reaches the user as genzoo's warning lines, not as it wrote it.
    """
    name, model = graph_model(source, dataset)
    base = plain_path(out) if out is not None else Path(f"graph-{name}")
    if not base.name:  # "" is the current folder, as for every other --out (click refuses "." as a folder)
        raise GenzooError(f"--out {out!r} names a folder ({printable(str(base))}), not a file; give --out FILE "
                          "for FILE.svg and FILE.png")
    if base.suffix in (".svg", ".png"):
        base = base.with_suffix("")
    paths = [base.with_name(f"{base.name}.{fmt}") for fmt in FORMATS]
    taken = [str(p) for p in paths if p.exists() or p.is_symlink()]
    if taken:
        raise GenzooError(f"{', '.join(taken)} already exist(s); choose another --out "
                          "(genzoo never overwrites a picture)")
    problem = others_can_change(base.parent)  # the rule of every other --out: they could swap the pictures later
    if problem is not None:
        raise GenzooError(_others_folder(base, problem))
    make_dot = graph_tools()
    loss = step_loss(model)
    try:
        with warnings.catch_warnings():  # make_dot compares versions with distutils' LooseVersion
            warnings.simplefilter("ignore", DeprecationWarning)
            dot = make_dot(loss, params=dict(model.named_parameters()))
    except RecursionError:  # it walks the graph recursively: a deep one was a 70-line traceback (twenty-sixth
        # hostile pass, plugins F16)
        limit = sys.getrecursionlimit()
        raise GenzooError(f"the loss graph of {printable(name)} ({type(model).__name__}) is {_depth(loss):,} autograd "
                          "nodes deep, too deep for torchviz to draw (it follows the graph one Python call a node, "
                          f"up to Python's recursion limit of {limit:,}); nothing was written") from None
    # escaped: a folder name that is not UTF-8 (a surrogate) was a UnicodeEncodeError in graphviz, whose labels
    # take a backslash as an escape of their own (\l, \n): the escaped name's are doubled to show as typed
    title = printable(name).replace("\\", "\\\\")
    dot.graph_attr.update(label=f"{title}: the loss of one training step ({type(model).__name__})", labelloc="t")
    said: dict[str, str] = {}  # what dot wrote to stderr, each line once: it is said after the pictures are written
    rendered = [_render(dot.source, fmt, said) for fmt in FORMATS]
    if not os.path.isdir(base.parent):
        try:
            problem = private_folder(base.parent, 0o755)[1]  # one a parent's default ACL opens is refused
        except OSError as exc:
            raise GenzooError(f"cannot create {base.parent}: {exc.strerror or exc}") from exc
        if problem is not None:
            raise GenzooError(_others_folder(base, problem))
    for path, data in zip(paths, rendered):
        atomic_write(path, partial(_write, data))
    for line, fmt in said.items():
        warn(_dot_said(line, fmt, paths))
    return paths


def _depth(loss: torch.Tensor | tuple[torch.Tensor, ...]) -> int:
    """The most autograd nodes on one path from ``loss`` down to a leaf, walked without recursion."""
    roots = [t.grad_fn for t in (loss if isinstance(loss, tuple) else (loss,)) if t.grad_fn is not None]
    depth: dict[Any, int] = {}
    for root in roots:
        stack: list[tuple[Any, bool]] = [(root, False)]
        while stack:
            fn, below_done = stack.pop()
            children = [child for child, _ in getattr(fn, "next_functions", ()) if child is not None]
            if below_done:
                depth[fn] = 1 + max((depth[child] for child in children), default=0)
            elif fn not in depth:
                stack.append((fn, True))
                stack.extend((child, False) for child in children if child not in depth)
    return max((depth[root] for root in roots), default=0)


def _render(source: str, fmt: str, said: dict[str, str]) -> bytes:
    """``source`` drawn by Graphviz's ``dot`` as ``fmt``; each line dot writes to stderr is kept in ``said``.

    graphviz's own ``pipe`` passed dot's stderr through as it was (``dot: graph is too large for
    cairo-renderer bitmaps. Scaling by 0.249998 to fit``; twenty-sixth hostile pass, plugins M5).
    """
    try:
        done = subprocess.run(["dot", f"-T{fmt}"], input=source.encode("utf-8", "backslashreplace"),
                              capture_output=True, check=False)
    except OSError as exc:  # dot went missing, or cannot be run
        raise GenzooError(f"Graphviz's dot could not draw the graph ({exc.strerror or exc}); {INSTALL}") from None
    lines = [line.strip() for line in done.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    if done.returncode != 0 or not done.stdout:
        why = "; ".join(lines) or f"exit status {done.returncode}, no {fmt.upper()}"
        raise GenzooError(f"Graphviz's dot could not draw the graph as {fmt.upper()} ({why}); {INSTALL}")
    for line in lines:
        said.setdefault(line, fmt)
    return done.stdout


#: What dot says when a bitmap would pass cairo's 32767 pixels a side, and how much it shrinks it.
_SCALED = re.compile(r"(?:dot: )?graph is too large for cairo-renderer bitmaps\. Scaling by ([0-9.eE+-]+) to fit")


def _dot_said(line: str, fmt: str, paths: list[Path]) -> str:
    """A line dot wrote to stderr, said as genzoo's own: what it means for the pictures, or whose words it is."""
    pictures = dict(zip(FORMATS, paths))
    scaled = _SCALED.fullmatch(line)
    if scaled is not None:
        try:
            percent = f"{float(scaled.group(1)):.0%} of its size"
        except ValueError:
            percent = "a fraction of its size"
        return (f"the graph is too large for a bitmap (Graphviz draws at most 32767 pixels a side), so "
                f"{printable(str(pictures['png']))} is scaled down to {percent} and its labels may be unreadable; "
                f"{printable(str(pictures['svg']))} is full size")
    return f"Graphviz's dot, drawing the {fmt.upper()}: {line.removeprefix('dot: ')}"


def _others_folder(base: Path, problem: str) -> str:
    return (f"graph {base} (.svg, .png) {problem}, so another user could replace it; choose a folder only you "
            "can write (--out)")


def _write(data: bytes, f: IO[bytes]) -> None:
    f.write(data)
