"""genzoo's Python API: docs/api.md runs as written, and the public surface is what plugins use."""

from __future__ import annotations

import ast
import doctest
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st
from reliability_support import data_root, one_thread, run_main, write_fake_mnist  # noqa: F401 - fixtures

import genzoo
from genzoo import GenzooError, Model, hookimpl

REPO = Path(__file__).resolve().parent.parent
API_MD = REPO / "docs" / "api.md"
BLOCK = re.compile(r"^```(python|sh)\n(.*?)^```", re.S | re.M)


def test_the_api_guide_runs_as_written(tmp_path, monkeypatch, capsys):
    """Its ``genzoo`` lines run, then its Python blocks, as one doctest session in that folder."""
    monkeypatch.setenv("GENZOO_DATA", str(write_fake_mnist(tmp_path / "data")))  # 120 images: fast
    monkeypatch.chdir(tmp_path)
    page = API_MD.read_text()
    globs: dict[str, object] = {}  # shared by the blocks, as in one interpreter session
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    examples = 0
    for match in BLOCK.finditer(page):
        language, block = match.groups()
        if language == "sh":
            for line in block.splitlines():
                code, _, err = run_main(shlex.split(line)[1:], capsys)
                assert code == 0, f"{line}: {err}"
            continue
        first_line = page.count("\n", 0, match.start(2))
        test = doctest.DocTestParser().get_doctest(block, globs, "docs/api.md", str(API_MD), first_line)
        examples += len(test.examples)
        runner.run(test, out=report.append, clear_globs=False)
        globs = test.globs  # a copy of the last block's, with what this block defined
    assert runner.failures == 0, "".join(report)
    assert examples == runner.tries >= 20


def test_get_model_builds_what_genzoo_train_builds():
    torch.manual_seed(3)
    model = genzoo.get_model("vae", latent=5, hidden=32)
    torch.manual_seed(3)
    same = genzoo.registry().build_model("vae", (1, 28, 28), latent=5, hidden=32)
    assert isinstance(model, Model) and model.config == same.config
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values()))


@pytest.mark.parametrize("kwargs,message", [
    ({"sample_shape": (1, 0, 28)}, "sample_shape must be a sequence of positive integers, got (1, 0, 28)"),
    ({"sample_shape": 28}, "sample_shape must be a sequence of positive integers, got 28"),
    ({"sample_shape": (1, 2.5)}, "sample_shape must be a sequence of positive integers"),
    ({"dataset": "mnist", "sample_shape": (1, 28, 28)}, "give get_model a dataset or a sample_shape, not both"),
    ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
    ({"latent": 0}, "latent must be a positive integer"),
])
def test_get_model_refuses_bad_arguments_in_one_line(kwargs, message):
    with pytest.raises(GenzooError, match=re.escape(message)) as info:
        genzoo.get_model("vae", **kwargs)
    assert "\n" not in str(info.value)


def test_get_model_of_an_unknown_name_suggests_the_closest():
    with pytest.raises(GenzooError, match="unknown model 'vea'; did you mean 'vae'"):
        genzoo.get_model("vea")


def test_list_models_and_get_model_see_a_plugin_registered_now(genzoo_register):
    class Plugin:
        @hookimpl
        def register_models(self, register):
            register("api-model", Model)

    assert "api-model" not in genzoo.list_models()
    genzoo_register(Plugin(), "api-plugin")
    assert "api-model" in genzoo.list_models()
    assert genzoo.get_model("api-model", sample_shape=[3, 8, 8]).sample_shape == (3, 8, 8)


@pytest.fixture
def finished_run(data_root, tmp_path, capsys):  # noqa: F811 - the fixture it uses
    out = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--epochs", "1", "--latent", "4", "--hidden", "16", "--data-root",
                             str(data_root), "--no-download", "--out", str(out)], capsys)
    assert code == 0, err
    return out


def test_open_run_reads_the_runs_files_through_the_validating_readers(finished_run):
    run = genzoo.open_run(finished_run)
    assert isinstance(run, genzoo.Run) and run.path == finished_run and run.model_name == "vae"
    assert run.config == json.loads((finished_run / "config.json").read_text())
    assert [r["epoch"] for r in run.metrics] == [1]
    assert run.evaluation is None
    model = run.model()
    assert not model.training and model.config.latent == 4
    # metrics are read on each access: a line that is corrupt now is one line naming the file
    with (finished_run / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": "two"}\n')
    with pytest.raises(GenzooError, match=r"metrics.jsonl line 2 is corrupt"):
        _ = run.metrics


def test_load_model_refuses_what_genzoo_eval_refuses(finished_run):
    loaded = genzoo.load_model(finished_run)
    assert loaded.config.hidden == 16 and not loaded.training
    (finished_run / "checkpoint.pt").unlink()
    with pytest.raises(GenzooError, match="checkpoint.pt"):
        genzoo.load_model(finished_run)
    with pytest.raises(GenzooError, match="checkpoint.pt"):
        genzoo.open_run(finished_run).model()
    (finished_run / "config.json").write_text("[1]")
    with pytest.raises(GenzooError, match=r"config.json is not a genzoo run configuration: a JSON list"):
        genzoo.open_run(finished_run)


# -- the public surface ------------------------------------------------------------------


def test_import_genzoo_imports_neither_torch_nor_the_plugins():
    """Every public name is imported on first use; ``import genzoo`` took 2.6 s (torch) before."""
    code = ("import sys, genzoo\n"
            "heavy = [m for m in ('torch', 'genzoo.plugin_registry', 'genzoo_plugins') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "from genzoo import hookimpl\n"
            "assert 'torch' not in sys.modules\n"
            "assert genzoo.Model.__module__ == 'genzoo.model' and 'torch' in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_public_name_resolves_and_type_checkers_see_the_same_names():
    init = Path(genzoo.__file__)
    checked: set[str] = set()
    for node in ast.walk(ast.parse(init.read_text())):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                for alias in statement.names:
                    assert genzoo._EXPORTS[alias.name] == statement.module, alias.name
                    checked.add(alias.name)
    assert checked == set(genzoo._EXPORTS) and set(genzoo.__all__) == checked | {"__version__"}
    for name in genzoo.__all__:
        assert getattr(genzoo, name) is not None
    assert set(genzoo.__all__) <= set(dir(genzoo))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        genzoo.nothing  # noqa: B018


STDLIB = set(sys.stdlib_module_names) | {"__future__"}
#: Besides the standard library: what a plugin may import (genzoo's own dependencies, its own package).
ALLOWED = {"torch", "torchvision", "genzoo_plugins"}


def public_api_violations(path: Path) -> list[str]:
    """Imports in ``path`` that a third-party plugin could not rely on."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "genzoo":
                found += [f"from genzoo import {a.name}" for a in node.names if a.name not in genzoo.__all__]
            elif node.module.split(".")[0] not in STDLIB | ALLOWED:
                found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names
                      if a.name != "genzoo" and a.name.split(".")[0] not in STDLIB | ALLOWED]
    return found


def test_the_checker_catches_private_imports(tmp_path):
    source = tmp_path / "plugin.py"
    source.write_text("from genzoo.files import atomic_write\nfrom genzoo import Model, registry, _EXPORTS\n"
                      "import genzoo.plugin_registry\nimport numpy\nimport os.path\nimport torch.nn\nfrom . import sibling\n"
                      "from genzoo_plugins.mlp import mlp\n")
    assert public_api_violations(source) == ["from genzoo.files import ...", "from genzoo import _EXPORTS",
                                             "import genzoo.plugin_registry", "import numpy"]


@pytest.mark.parametrize("path", sorted((REPO / "plugins").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_every_builtin_plugin_module_imports_only_genzoos_public_api(path):
    """The built-ins are plugins of exactly the kind a third party writes: no private genzoo module."""
    assert public_api_violations(path) == [], path


SHAPES = st.one_of(
    st.lists(st.integers(1, 6), min_size=1, max_size=3),  # small: a real model is built for each
    st.lists(st.integers(-2, 6), min_size=0, max_size=4),
    st.lists(st.integers(2**40, 2**70), min_size=1, max_size=2),  # terabytes at least: torch cannot allocate
    st.tuples(st.integers(1, 3), st.floats(allow_nan=True), st.integers(1, 3)),
    st.lists(st.booleans(), min_size=1, max_size=3),
    st.text(max_size=4), st.integers(-3, 3), st.none(),
)


@settings(max_examples=60, deadline=None)
@given(shape=SHAPES)
def test_any_sample_shape_builds_a_model_of_that_shape_or_is_one_line(shape):
    try:
        model = genzoo.get_model("vae", sample_shape=shape, latent=2, hidden=4)
    except GenzooError as exc:
        event("refused")
        assert "\n" not in str(exc) and str(exc)
        return
    event("built")
    expected = (1, 28, 28) if shape is None else tuple(shape)
    assert model.sample_shape == expected and all(n >= 1 for n in expected)
