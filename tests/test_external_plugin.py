"""The example plugin distribution, pip-installed as a user would, joins the zoo and leaves it.

It is installed with pip into a fresh virtual environment that sees this one's
packages (genzoo, torch) through a ``.pth`` file, so this environment is never
changed and nothing is downloaded. Every command runs in a subprocess of that
environment, as ``python -m genzoo``.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import genzoo

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "docs" / "examples" / "genzoo-beta-vae"
DISTRIBUTION = "genzoo-beta-vae"
SMALL = ["--train-limit", "300", "--test-limit", "200", "--no-download"]


class Environment:
    """A virtual environment in ``root`` that also sees the running interpreter's packages."""

    def __init__(self, root: Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
        self.python = str(root / "bin" / "python")
        purelib = self.run_python("import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
        # addsitedir, not a bare path: it also runs that folder's .pth files (genzoo's editable install).
        parent = sysconfig.get_paths()["purelib"]
        Path(purelib, "_parent_environment.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
        self.env = {k: v for k, v in os.environ.items() if k not in ("GENZOO_LOAD_PLUGINS", "PYTHONPATH")}

    def run_python(self, code: str) -> str:
        return subprocess.run([self.python, "-c", code], check=True, capture_output=True, text=True).stdout

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.python, *args], capture_output=True, text=True, env=self.env, cwd=cwd)

    def genzoo(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "genzoo", *args, cwd=cwd)

    def models(self) -> dict[str, dict[str, str]]:
        listed = self.genzoo("plugins", "--json")
        assert listed.returncode == 0, listed.stderr
        return {row["name"]: row for row in json.loads(listed.stdout) if row["kind"] == "model"}


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> Environment:
    root = tmp_path_factory.mktemp("plugin-env")
    env = Environment(root / "venv")
    source = root / "source"  # build from a copy: pip's build leaves files beside the sources
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    installed = env.run("-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
                        str(source))
    assert installed.returncode == 0, installed.stderr
    return env


@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_pip_installed_plugin_is_listed_trained_compared_tested_then_uninstalled(environment, tmp_path):
    models = environment.models()
    for name in ("beta-vae", "beta-conv-vae"):
        assert models[name]["distribution"] == DISTRIBUTION
        assert models[name]["version"] == "0.1.0"
    assert models["vae"]["distribution"] == "genzoo"

    # --beta is the plugin's own option: it reaches the model's config, core never names it.
    help_text = environment.genzoo("train", "beta-vae", "--help").stdout
    assert "Options of beta-vae" in help_text and "--beta FLOAT" in help_text
    trained = environment.genzoo("train", "beta-vae", "--beta", "4", "--epochs", "1", *SMALL,
                                 "--out", str(tmp_path / "beta4"))
    assert trained.returncode == 0, trained.stderr
    config = json.loads((tmp_path / "beta4" / "config.json").read_text())
    assert config["model"] == "beta-vae" and config["model_config"]["beta"] == 4.0
    assert len((tmp_path / "beta4" / "metrics.jsonl").read_text().splitlines()) == 1
    assert (tmp_path / "beta4" / "samples.png").stat().st_size > 0
    refused = environment.genzoo("train", "beta-vae", "--beta", "0", *SMALL, "--out", str(tmp_path / "beta0"))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "beta" in refused.stderr
    assert not (tmp_path / "beta0").exists()

    compared = environment.genzoo("compare", "vae", "beta-vae", "--epochs", "1", *SMALL[:-1],
                                  "--fid-samples", "200", "--iwae-k", "4", "--out", str(tmp_path / "cmp"))
    assert compared.returncode == 0, compared.stderr
    results = {r["model"]: r for r in json.loads((tmp_path / "cmp" / "results.json").read_text())["models"]}
    assert set(results) == {"vae", "beta-vae"}
    assert results["beta-vae"]["run_config"]["model_config"]["beta"] == 4.0  # the plugin's default
    assert "beta-vae" in (tmp_path / "cmp" / "report.md").read_text()

    benchmarks = environment.run("-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                 str(REPO / "benchmarks"), cwd=REPO)
    assert benchmarks.returncode == 0, benchmarks.stdout[-3000:]
    for name in ("test_train_step[beta-vae-100]", "test_sample[beta-conv-vae]", "test_fid_mnist[beta-vae]"):
        assert name in benchmarks.stdout  # the benchmark suite measures plugins like the built-ins

    kit = environment.run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests"), cwd=tmp_path)
    assert kit.returncode == 0, kit.stdout[-3000:]
    assert " failed" not in kit.stdout and " passed" in kit.stdout

    removed = environment.run("-m", "pip", "uninstall", "--yes", "--quiet", DISTRIBUTION)
    assert removed.returncode == 0, removed.stderr
    models = environment.models()
    assert "beta-vae" not in models and "beta-conv-vae" not in models and {"ae", "vae", "gan"} <= set(models)
    gone = environment.genzoo("train", "beta-vae", *SMALL)
    assert gone.returncode == 1 and "unknown model 'beta-vae'" in gone.stderr
    still = environment.genzoo("train", "vae", "--epochs", "1", *SMALL, "--out", str(tmp_path / "vae"))
    assert still.returncode == 0, still.stderr


def _genzoo_imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every ``import genzoo...`` / ``from genzoo... import`` in a file: (module, names)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0].startswith("genzoo"):
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.split(".")[0].startswith("genzoo")]
    return found


def test_the_example_plugin_imports_only_genzoos_public_api():
    package = sorted((EXAMPLE / "genzoo_beta_vae").glob("*.py"))
    assert package
    for path in package:
        for module, names in _genzoo_imports(path):
            if module == "genzoo_beta_vae" or module.startswith("genzoo_beta_vae."):
                continue
            assert module == "genzoo" and set(names) <= set(genzoo.__all__), f"{path.name}: from {module} import {names}"
    for path in sorted((EXAMPLE / "tests").glob("*.py")):
        for module, _names in _genzoo_imports(path):
            assert module in ("genzoo", "genzoo.testing", "genzoo_beta_vae") or module.startswith("genzoo_beta_vae."), (
                f"{path.name}: {module}")
