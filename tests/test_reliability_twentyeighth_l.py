"""A model whose ``loss_names`` came in another order in another process (built from a set of strings, whose order
Python draws anew per process) had the resumed part of an interrupted run minimise another objective than the part
before it, exit 0, no word (twenty-sixth hostile pass, plugins F13). config.json records the order; a resume whose
model names its losses in another order is refused, naming the model."""

from __future__ import annotations

import json
from pathlib import Path

from reliability_support import assert_one_line_error, data_root, register_model, run_main  # noqa: F401

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu",
        "--latent", "2"]


def test_a_resume_whose_model_names_its_losses_in_another_order_is_refused(genzoo_register, capsys, data_root,
                                                                          tmp_path: Path) -> None:  # noqa: F811
    from genzoo_plugins.vae.model import VAE

    class Shuffled(VAE):
        loss_names = ("nelbo", "bce", "kl")

    register_model(genzoo_register, "shuffled28", Shuffled)
    run = tmp_path / "run"
    code, _, err = run_main(["train", "shuffled28", *TINY, "--data-root", str(data_root), "--out", str(run)], capsys)
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["loss_names"] == ["nelbo", "bce", "kl"]
    metrics = (run / "metrics.jsonl").read_bytes()
    Shuffled.loss_names = ("bce", "nelbo", "kl")  # as another process's set gave them
    code, _, err = run_main(["resume", str(run), "--data-root", str(data_root)], capsys)
    assert_one_line_error(code, err, "Shuffled.loss_names is ('bce', 'nelbo', 'kl') now, but ('nelbo', 'bce', 'kl') "
                                     "when the run started")
    assert (run / "metrics.jsonl").read_bytes() == metrics


def test_a_config_json_whose_loss_names_are_no_list_of_names_is_refused(capsys, data_root, tmp_path: Path) -> None:  # noqa: F811
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", *TINY, "--data-root", str(data_root), "--out", str(run)], capsys)
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    config["loss_names"] = "nelbo"
    (run / "config.json").write_text(json.dumps(config))
    code, _, err = run_main(["resume", str(run), "--data-root", str(data_root)], capsys)
    assert_one_line_error(code, err, "is not a genzoo run configuration: loss_names is 'nelbo', not the list of its "
                                     "model's loss names")
