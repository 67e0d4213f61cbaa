"""The docs cannot drift from the code: CLI help, hook signatures, the minimal plugin.

``docs/cli.md`` quotes every command's ``--help`` output (at 80 columns) in blocks
that start with ``$ genzoo ... --help``; after changing an option, rewrite them with::

    python tests/test_docs.py --write-cli
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from pytester_support import run_session

from genzoo import hookspecs
from genzoo.cli import cli
from genzoo.testing import ModelConformance

DOCS = Path(__file__).resolve().parent.parent / "docs"
CLI_MD = DOCS / "cli.md"
PLUGINS_MD = DOCS / "plugins.md"
#: ``genzoo train MODEL --help`` adds the model's own options: quoted for each built-in model.
BUILTIN_MODELS = ("ae", "vae", "gan")
HELP_BLOCK = re.compile(r"```text\n\$ (genzoo[^\n]*) --help\n(.*?)```", re.S)


def help_text(command: str) -> str:
    """What ``genzoo ... --help`` prints, at a fixed width so the page does not depend on a terminal."""
    args = command.split()[1:] + ["--help"]
    result = CliRunner().invoke(cli, args, prog_name="genzoo", terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


def documented_commands() -> list[str]:
    """Every command line the page must quote: the group, each command, train for each built-in model."""
    commands = ["genzoo"] + [f"genzoo {name}" for name in sorted(cli.commands)]
    commands += [f"genzoo {name} {sub}" for name, group in sorted(cli.commands.items())
                 if isinstance(group, click.Group) for sub in sorted(group.commands)]
    return commands + [f"genzoo train {model}" for model in BUILTIN_MODELS]


def quoted_help(page: str) -> dict[str, str]:
    return {command: text for command, text in HELP_BLOCK.findall(page)}


def test_cli_page_quotes_every_commands_help_exactly():
    quoted = quoted_help(CLI_MD.read_text())
    missing = [c for c in documented_commands() if c not in quoted]
    assert not missing, f"docs/cli.md has no --help block for {missing}; run python tests/test_docs.py --write-cli"
    stale = [c for c in documented_commands() if quoted[c] != help_text(c)]
    assert not stale, f"docs/cli.md disagrees with --help for {stale}; run python tests/test_docs.py --write-cli"


def test_cli_page_describes_every_option_in_its_prose():
    """Each option appears in the page's own words too, not only inside the quoted help."""
    page = CLI_MD.read_text()
    prose = HELP_BLOCK.sub("", page)
    options = set()
    commands = [*cli.commands.values()]
    commands += [sub for group in commands if isinstance(group, click.Group) for sub in group.commands.values()]
    for command in commands:
        for param in command.params:
            options.update(o for o in param.opts if o.startswith("--") and o != "--help")
    undocumented = sorted(o for o in options if f"`{o}" not in prose)
    assert not undocumented, f"docs/cli.md's prose never mentions {undocumented}"


def hook_headers() -> list[str]:
    """``def NAME(ARGS) -> RET:`` of every hookspec, as written in genzoo/hookspecs.py."""
    tree = ast.parse(Path(hookspecs.__file__).read_text())
    headers = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(ast.unparse(d) == "hookspec" for d in node.decorator_list):
            headers.append(f"def {node.name}({ast.unparse(node.args)}) -> {ast.unparse(node.returns)}:")
    return headers


def test_every_hook_is_in_the_plugin_guide_with_its_exact_signature():
    headers = hook_headers()
    assert len(headers) == len(hookspecs_names()) >= 3
    page = PLUGINS_MD.read_text()
    missing = [h for h in headers if h not in page]
    assert not missing, f"docs/plugins.md lacks {missing}"


def test_every_registry_method_is_in_the_plugin_guide_with_its_exact_signature():
    """The registry's methods were described only in architecture.md, without signatures."""
    from genzoo import plugin_registry

    tree = ast.parse(Path(plugin_registry.__file__).read_text())
    (registry_class,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Registry"]
    # (ast.unparse writes an annotated default as ``kind: str | None=None``; the guide as PEP 8 does)
    headers = [f"def {node.name}({ast.unparse(node.args).replace('=', ' = ')}) -> {ast.unparse(node.returns)}:"
               for node in registry_class.body
               if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]
    assert len(headers) >= 6
    page = PLUGINS_MD.read_text()
    assert [h for h in headers if h not in page] == []


def hookspecs_names() -> list[str]:
    from genzoo.plugin_registry import pm

    return [name for name in dir(pm.hook) if not name.startswith("_")]


def minimal_plugin_source() -> str:
    match = re.search(r"<!-- test: minimal plugin -->\n```python\n(.*?)```", PLUGINS_MD.read_text(), re.S)
    assert match, "docs/plugins.md has no block marked <!-- test: minimal plugin -->"
    return match.group(1)


def test_the_guides_minimal_plugin_passes_the_conformance_kit(pytester):
    pytester.makepyfile(minimal_plugin=minimal_plugin_source())
    pytester.makepyfile(test_minimal='''
import pytest
import minimal_plugin
from genzoo import registry
from genzoo.testing import ModelConformance

@pytest.fixture(autouse=True)
def plugin(genzoo_register):
    genzoo_register(minimal_plugin, "minimal-plugin")

def test_it_registers_a_model():
    assert registry().entry("model", NAME).plugin == "minimal-plugin"

class TestMinimal(ModelConformance):
    model_name = NAME
'''.replace("NAME", repr(_minimal_model_name())))
    outcomes = run_session(pytester)
    assert [t.message for t in outcomes if t.outcome in ("failed", "error")] == []
    # As the guide says: every check passes but the two for an ELBO and a likelihood, which
    # tiny-ae does not offer; they skip for exactly that reason.
    checks = {name for name in dir(ModelConformance) if name.startswith("test_")}
    reasons = {"test_negative_elbo_is_per_image": "the model has no ELBO",
               "test_importance_weights_are_finite_per_image_and_draw": "the model offers no likelihood"}
    assert {t.name: t.message for t in outcomes if t.outcome == "skipped"} == reasons
    assert {t.name for t in outcomes if t.outcome == "passed"} == checks - set(reasons) | {"test_it_registers_a_model"}


def _minimal_model_name() -> str:
    match = re.search(r"register\(\s*[\"']([\w-]+)[\"']", minimal_plugin_source())
    assert match, "the minimal plugin registers no model"
    return match.group(1)


def test_the_readme_links_the_docs():
    readme = (DOCS.parent / "README.md").read_text()
    for page in ("docs/architecture.md", "docs/plugins.md", "docs/cli.md", "docs/api.md",
                 "docs/examples/genzoo-beta-vae"):
        assert f"]({page}" in readme, f"README.md does not link {page}"


def test_the_readme_counts_and_the_guide_lists_every_conformance_check():
    checks = [name for name in dir(ModelConformance) if name.startswith("test_")]
    readme = (DOCS.parent / "README.md").read_text()
    assert f"runs {len(checks)} checks" in readme
    guide = PLUGINS_MD.read_text()
    assert [c for c in checks if f"| `{c}` |" not in guide] == []


def write_cli_page() -> None:
    """Replace each quoted help block in docs/cli.md with the current output."""
    page = CLI_MD.read_text()
    page = HELP_BLOCK.sub(lambda m: f"```text\n$ {m.group(1)} --help\n{help_text(m.group(1))}```", page)
    CLI_MD.write_text(page)
    missing = [c for c in documented_commands() if c not in quoted_help(page)]
    if missing:
        print(f"add a block for each of {missing}:\n```text\n$ COMMAND --help\n```", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-cli"]:
        pytest.exit("usage: python tests/test_docs.py --write-cli")
    write_cli_page()
