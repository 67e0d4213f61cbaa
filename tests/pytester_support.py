"""Run a pytest session in a subprocess and read each test's outcome: for tests of tests.

A subprocess, not ``pytester.inline_run``: pytester undoes an inline session's imports
when it ends, so modules first imported inside it (``torch._dynamo``, which the first
optimiser imports; genzoo's plugins) are imported a second time by later tests, and
fail there (``Only a single TORCH_LIBRARY ...``, ``'bce-sum' is registered twice``).
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree import ElementTree

import pytest


@dataclass(frozen=True)
class Outcome:
    """One test of the inner session: ``Class`` ("" for a module-level test), name, result."""

    cls: str
    name: str
    outcome: str  # passed, failed, error or skipped
    message: str  # the failure's text, or the reason for a skip


def run_session(pytester: pytest.Pytester, *args: str) -> list[Outcome]:
    """Run pytest in ``pytester.path`` in a fresh process; every test's outcome, from its JUnit XML."""
    report = pytester.path / "outcomes.xml"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")  # on a shared two-core machine two threads can be ten times slower
        pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--junitxml={report}", *args)
    outcomes = []
    for case in ElementTree.parse(report).iter("testcase"):
        cls = case.get("classname", "").partition(".")[2]
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                outcome = "failed" if kind == "failure" else kind
                message = found.get("message", "") if kind == "skipped" else found.text or ""
                break
        outcomes.append(Outcome(cls, case.get("name", ""), outcome, message.strip()))
    assert outcomes, f"the inner session ran no test: {report.read_text()}"
    return outcomes
