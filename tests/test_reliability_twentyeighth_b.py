"""An MNIST label file holding labels outside 0-9 (10, 255) was read as it was: training, evaluation and
``latent.png`` went on, the picture's legend naming classes 10 and 255 (twenty-fifth hostile pass, files M2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_support import assert_one_line_error, data_root, run_main  # noqa: F401 - data_root is a fixture

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu",
        "--latent", "2"]


def _damage(data: Path, prefix: str, item: int, label: int) -> Path:
    path = data / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[8 + item] = label
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("label", [10, 255])
def test_a_label_outside_the_classes_is_refused_naming_the_file_and_item(capsys, data_root,
                                                                         tmp_path: Path, label: int) -> None:  # noqa: F811
    path = _damage(data_root, "train", 7, label)
    out = tmp_path / "run"
    code, _, err = run_main(["train", "vae", *TINY, "--data-root", str(data_root), "--out", str(out)], capsys)
    assert_one_line_error(code, err, f"{path} holds the label {label} at item 7, and the labels are 0 to 9")
    assert not out.exists()


def test_a_damaged_test_label_stops_latent_without_a_picture(capsys, data_root, tmp_path: Path) -> None:  # noqa: F811
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", *TINY, "--data-root", str(data_root), "--out", str(run)], capsys)
    assert code == 0, err
    path = _damage(data_root, "t10k", 3, 255)
    out = tmp_path / "latent"
    code, _, err = run_main(["latent", str(run), "--out", str(out), "--test-limit", "20", "--data-root",
                             str(data_root)], capsys)
    assert_one_line_error(code, err, f"{path} holds the label 255 at item 3")
    assert not (out / "latent.png").exists()
