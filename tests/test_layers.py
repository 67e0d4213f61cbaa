"""Every import inside genzoo points down its layers (docs/architecture.md), even those inside functions.

Before the layers were drawn, ``genzoo/run.py`` imported the evaluation layer, evaluation
imported ``run`` and the trainer back inside functions, and the conformance kit imported
the command line. This test reads every module's imports and fails on any that points up
or sideways into another part of the same layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import genzoo

ROOT = Path(genzoo.__file__).resolve().parent

#: Layer of each module (or package, for its submodules), lowest first. A module may import
#: from lower layers and from its own part; the parts of one layer never import each other.
LAYERS: dict[str, tuple[int, str]] = {
    "genzoo.errors": (0, "foundations"), "genzoo.checks": (0, "foundations"), "genzoo.files": (0, "foundations"),
    "genzoo.seeding": (0, "foundations"), "genzoo.distributed": (0, "foundations"), "genzoo.figures": (0, "foundations"),
    "genzoo.precision": (0, "foundations"), "genzoo.process_settings": (0, "foundations"),
    "genzoo.process_tree": (0, "foundations"), "genzoo.memory": (0, "foundations"),
    "genzoo.matplotlib_import": (0, "foundations"),
    "genzoo.hookspecs": (1, "interfaces"), "genzoo.loss": (1, "interfaces"), "genzoo.data": (1, "interfaces"),
    "genzoo.model": (1, "interfaces"), "genzoo.latent": (1, "interfaces"), "genzoo.logger": (1, "interfaces"),
    "genzoo.plugin_registry": (1, "interfaces"), "genzoo.sampler": (1, "interfaces"),
    "genzoo.train_config": (2, "run storage"), "genzoo.run_folder": (2, "run storage"),
    "genzoo.checkpoint": (2, "run storage"),
    "genzoo.building": (3, "building"), "genzoo.sampler_cache": (3, "building"),
    "genzoo.trainer": (4, "training"), "genzoo.compile_cache": (4, "training"),
    "genzoo.training": (4, "training"), "genzoo.autograd_graph": (4, "training"),
    "genzoo.evaluation": (4, "evaluation"), "genzoo.sharing": (4, "sharing"),
    "genzoo.compare": (5, "comparison"),
    "genzoo.options": (6, "command-line options"),
    "genzoo.cli": (7, "commands"), "genzoo.__main__": (7, "commands"),
    "genzoo.api": (7, "python api"), "genzoo.testing": (7, "conformance kit"),
}


def layer(module: str) -> tuple[int, str]:
    while module not in LAYERS:
        if "." not in module:
            raise AssertionError(f"{module} has no layer in LAYERS: add it (and to docs/architecture.md)")
        module = module.rsplit(".", 1)[0]
    return LAYERS[module]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def absolute(path: Path, node: ast.ImportFrom) -> str | None:
    """The module a ``from`` import names, relative ones (``from .x import y``) resolved from ``path``."""
    if node.level == 0:
        return node.module
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[:len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """Every ``genzoo`` module ``path`` (or ``source``, as if at ``path``) imports at run time
    (``TYPE_CHECKING`` blocks left out)."""
    tree = ast.parse(path.read_text() if source is None else source)
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        module = absolute(path, node) if isinstance(node, ast.ImportFrom) else None
        if module:
            names = ([f"{module}.{a.name}" for a in node.names] if module == "genzoo" or node.module is None
                     else [module])
            found += [(node.lineno, n) for n in names if n.startswith("genzoo")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("genzoo")]
    return found


def test_every_import_points_down_the_layers():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        here = module_name(path)
        if here == "genzoo":  # the package's lazy front door names the public API of every layer
            continue
        level, part = layer(here)
        for line, target in imports(path):
            if target == "genzoo":  # ``import genzoo`` for its version string
                continue
            their_level, their_part = layer(target)
            if their_level > level or (their_level == level and their_part != part):
                wrong.append(f"{path.relative_to(ROOT.parent)}:{line} ({part}, layer {level}) imports {target} "
                             f"({their_part}, layer {their_level})")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_the_layer_test_catches_an_import_that_points_up(tmp_path):
    """The check itself: an upward import, even inside a function, is found."""
    module = tmp_path / "fake.py"
    module.write_text("def f():\n    from genzoo.cli import main\n    return main\n")
    assert [target for _, target in imports(module)] == ["genzoo.cli"]
    assert layer("genzoo.cli")[0] > layer("genzoo.trainer")[0]
    assert layer("genzoo.evaluation.frechet") == LAYERS["genzoo.evaluation"]


def test_the_layer_test_resolves_relative_imports():
    """``from ..cli import main`` in the evaluation package points up as surely as the absolute form."""
    here = ROOT / "evaluation" / "frechet.py"
    source = "from ..cli import main\nfrom . import report\nfrom .cost import x\nfrom .. import trainer\n"
    assert [target for _, target in imports(here, source)] == [
        "genzoo.cli", "genzoo.evaluation.report", "genzoo.evaluation.cost", "genzoo.trainer"]
    package = ROOT / "evaluation" / "__init__.py"
    assert [target for _, target in imports(package, "from .frechet import fid\n")] == ["genzoo.evaluation.frechet"]


def test_torch_load_is_called_in_one_place_with_weights_only():
    """Two copies of the weights-only loader (checkpoints, weights files) mapped torch's refusals apart."""
    calls = [f"{path.relative_to(ROOT.parent)}:{node.lineno}" for path in sorted(ROOT.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load"]
    assert [c.split(":")[0] for c in calls] == ["genzoo/checkpoint.py", "genzoo/testing/conformance.py"], calls
