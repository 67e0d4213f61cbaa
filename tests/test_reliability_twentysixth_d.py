"""Files M2 of the twenty-third hostile pass, fixed by the twenty-sixth look: ``compare --resume`` of a compare
whose unfinished run holds a metric line of another run.

Its plan warned that the line was left out, as lost, then the run's resume refused it (``put back this run's own
metrics.jsonl ...``): two answers, and the first one wrong. The plan now refuses it, before anything trains, with the
resume's line; in a finished run such a line is still left out with the warning, as ``genzoo eval`` does.
"""

from __future__ import annotations

import json
import shutil

from reliability_support import SteeredVAE, data_root, run_main, snapshot, steered  # noqa: F401 - fixtures
from test_compare_resume import EPOCHS, compare_args

from genzoo.run_folder import METRICS


def _foreign_line(run_id: str, epoch: int) -> str:
    record = {"epoch": epoch, "step": 12 * epoch, "train_loss": 1.0, "run": run_id}
    return json.dumps(record) + "\n"


def test_a_foreign_line_in_a_run_to_resume_is_refused_before_anything_trains(steered, data_root, tmp_path,  # noqa: F811
                                                                              capsys) -> None:
    """Before: ``genzoo: warning: ... it is not this run's; the lines of other runs (epochs 2) are left out, as
    lost``, the first model's pictures redrawn, then ``Error: ... it is not this run's; put back this run's own
    metrics.jsonl ...``."""
    out = tmp_path / "cmp"
    SteeredVAE.interrupt_at = 3  # the second model, steered-vae, in its first epoch
    assert run_main(compare_args(data_root, out), capsys)[0] == 130
    SteeredVAE.interrupt_at = None
    metrics = out / "runs" / "steered-vae" / METRICS
    with metrics.open("a") as lines:
        lines.write(_foreign_line("0" * 32, 2))
    before = snapshot(out)
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 1
    assert err.strip() == (f"Error: {metrics} line 1 was written by run '{'0' * 32}', not by this run "
                           f"({json.loads((metrics.parent / 'config.json').read_text())['run_id']}): it is not "
                           "this run's; put back this run's own metrics.jsonl, or move this one away to resume "
                           "without the metric lines so far")
    assert snapshot(out) == before


def test_a_foreign_line_in_a_finished_run_of_a_compare_is_left_out_with_the_warning(steered, data_root, tmp_path,  # noqa: F811
                                                                                    capsys) -> None:
    out = tmp_path / "cmp"
    SteeredVAE.interrupt_at = 3
    assert run_main(compare_args(data_root, out), capsys)[0] == 130
    SteeredVAE.interrupt_at = None
    metrics = out / "runs" / "steered-ae" / METRICS  # the first model finished its epochs
    shutil.copy(metrics, tmp_path / "own")
    with metrics.open("a") as lines:
        lines.write(_foreign_line("0" * 32, EPOCHS + 1))
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("genzoo: warning:")]
    assert len(warnings) == 1 and "the lines of other runs (epochs 3) are left out, as lost" in warnings[0], err
    assert (out / "results.json").is_file()
