"""Found by the sixteenth look (fourteenth hostile pass, F2, F3, F8, F9, F10 and M3): files and plugin answers read
without bounds or guards.

F2: a deeply nested line in ``fid_curve.jsonl`` was a RecursionError traceback in ``resume`` and ``compare``.
M3: a curve line's ``features`` holding escape sequences reached compare's report.md raw. F3: a model's
``sampler_options`` that raises (a dict lookup) was a traceback in sample, eval and compare. Each test failed
before its fix (docs/reliability.md, "Found by the fifteenth look (fourteenth hostile pass)").
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest
from genzoo_plugins.ae import AE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
)

from genzoo import GenzooError, hookimpl
from genzoo.evaluation.fid_curve import CURVE_FILE, keep_curve_through, read_curve

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu"]
#: A curve line as ``measure_epoch`` writes it.
WHOLE = {"epoch": 1, "sampler": "model", "features": "mnist", "samples": 50, "reference_images": 100, "fid": 30.0,
         "seconds": 1.5}


# -- F2 and M3: a curve line that is deeply nested, or whose text is not printable ---------------------------------


@pytest.mark.parametrize("line", ["[" * 200_000, "{\"a\":" * 100_000,
                                  json.dumps({**WHOLE, "features": "mnist\u001b[41mRED\u001b[0m"}),
                                  json.dumps({**WHOLE, "fid": None, "why": "no\nfit"})])
def test_a_deeply_nested_or_unprintable_curve_line_is_a_bad_line(line: str, tmp_path: Path) -> None:
    """Before: RecursionError traceback (resume, compare), or escape codes written raw into report.md. After: the
    line refused as any other bad line: compare leaves the curve out with a warning, resume refuses in one line."""
    (tmp_path / CURVE_FILE).write_text(json.dumps(WHOLE) + "\n" + line + "\n")
    with pytest.raises(GenzooError, match="line 2 is no FID-curve entry"):
        read_curve(tmp_path)
    with pytest.raises(GenzooError, match="line 2 is no FID-curve entry.*move it away"):
        keep_curve_through(tmp_path, 1)


# -- F3: a model's sampler_options that raises ----------------------------------------------------------------------


class LookupOptsAE(AE):
    """Options for the samplers it names, by dict lookup: any other sampler raises KeyError."""

    def sampler_options(self, sampler: str) -> dict[str, Any]:
        return {"gmm": {"components": self.config.prior_components}}[sampler]


@pytest.fixture
def lookup(genzoo_register: Any) -> None:
    @hookimpl
    def register_models(register: Any) -> None:
        register("lookupae", LookupOptsAE)

    genzoo_register(types.SimpleNamespace(register_models=register_models), "sixteenth", "test-sixteenth")


def test_sampler_options_that_raise_are_one_line_blaming_the_model(
        lookup: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``KeyError: 'normal'`` traceback in sample and eval. After: one line naming the method."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "lookupae", "--data-root", str(data_root), *TINY, "--latent", "2",
                             "--hidden", "16", "--out", str(run)], capsys)
    assert code == 0, err
    code, _, err = run_main(["sample", str(run), "-n", "2", "--sampler", "normal", "--out", str(tmp_path / "s.npz")],
                            capsys)
    assert_one_line_error(code, err, "LookupOptsAE.sampler_options('normal') raised KeyError: 'normal'")
    assert not (tmp_path / "s.npz").exists()
    # eval measures what needs no sampler, as for a sampler_options that returns no dict
    code, _, err = run_main(["eval", str(run), "--sampler", "normal", "--fid-samples", "0", "--iwae-k", "2",
                             "--test-limit", "20", "--device", "cpu"], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert "warning: LookupOptsAE.sampler_options('normal') raised KeyError: 'normal'" in err
