"""Plugins F5 of the twenty-fourth hostile pass, fixed by the twenty-sixth look: an ``eval.json`` that is no
evaluation of genzoo's.

Any JSON object without genzoo's keys (a person's notes, a logger's file) passed as an empty evaluation, and
``genzoo eval`` merged into it and replaced it, exit 0: what it held was lost, though docs/reliability.md promises
such a file is refused before any work. An evaluation genzoo writes always records its settings (``eval_config``);
one without them is refused. The test failed before its fix.
"""

from __future__ import annotations

import json

import pytest
from reliability_support import EVAL, assert_one_line_error, data_root, run_main  # noqa: F401 - data_root is a fixture

TINY = ["--epochs", "1", "--batch-size", "16", "--train-limit", "64", "--test-limit", "20", "--latent", "2",
        "--device", "cpu"]


@pytest.mark.parametrize("held", [{"notes": "FID 12.3 by pytorch-fid, 50k samples", "my_fid": 12.3}, {"hello": 1},
                                  {"eval_config": 5}])
def test_an_eval_json_that_is_no_genzoo_evaluation_is_refused_and_kept(data_root, tmp_path, capsys, held) -> None:  # noqa: F811
    """Before: ``wrote RUN/eval.json``, exit 0, and the file held genzoo's evaluation alone."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", *TINY, "--data-root", str(data_root), "--out", str(run)], capsys)
    assert code == 0, err
    (run / "eval.json").write_text(json.dumps(held))
    code, _, err = run_main(["eval", str(run), *EVAL, "--fid-samples", "0"], capsys)
    assert_one_line_error(code, err, f"{run / 'eval.json'} is not a genzoo evaluation (", "move it away first")
    assert json.loads((run / "eval.json").read_text()) == held
    (run / "eval.json").unlink()
    code, _, err = run_main(["eval", str(run), *EVAL, "--fid-samples", "0"], capsys)  # its own, then merged into
    assert code == 0, err
    code, _, err = run_main(["eval", str(run), *EVAL, "--fid-samples", "0"], capsys)
    assert code == 0, err
