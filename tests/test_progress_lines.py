"""What a run prints while it trains: plain lines in a log, a bar that cuts nothing in a narrow terminal."""

from __future__ import annotations

import io
import re
import subprocess
import sys

from reliability_support import data_root, one_thread, subprocess_env  # noqa: F401 - fixtures
from rich.console import Console

from genzoo.run_folder import read_metrics
from genzoo.train_config import TrainConfig
from genzoo.training import start_run

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def expected_words(record: dict) -> list[str]:
    """Every loss of the epoch's metric line as ``split name value``, and its speed."""
    words = [f"{key.replace('_', ' ', 1)} {value:.3f}" for key, value in record.items()
             if key.split("_")[0] in ("train", "test") and key not in ("train_seconds", "train_images_per_s")]
    return [*words, "img/s"]


def test_a_log_file_gets_one_plain_line_per_epoch_with_every_loss_and_the_speed(data_root, tmp_path):
    log = tmp_path / "train.log"
    with log.open("w") as stderr:
        subprocess.run([sys.executable, "-m", "genzoo", "train", "gan", "--latent", "2", "--epochs", "2",
                        "--batch-size", "40", "--test-limit", "20", "--device", "cpu", "--data-root", str(data_root),
                        "--no-download", "--out", str(tmp_path / "run")],
                       stderr=stderr, stdout=subprocess.DEVNULL, env=subprocess_env(COLUMNS="40"), check=True,
                       timeout=300)
    lines = log.read_text().splitlines()
    records = read_metrics(tmp_path / "run")
    assert len(lines) == 2 and "\x1b" not in log.read_text() and "━" not in log.read_text()
    for line, record in zip(lines, records):
        assert line.startswith(f"epoch {record['epoch']}/2  ")
        assert "…" not in line
        for word in expected_words(record):
            assert word in line, (word, line)


def test_a_narrow_terminal_still_shows_the_epoch_every_loss_and_the_speed(data_root, tmp_path):
    out = io.StringIO()
    console = Console(file=out, width=40, force_terminal=True, color_system=None)
    config = TrainConfig(model="gan", epochs=1, batch_size=40, device="cpu", data_root=str(data_root), test_limit=20)
    start_run(config, {"latent": 2}, out=tmp_path / "run", console=console)
    final = ANSI.sub("", out.getvalue()).split("\r")[-1]  # the bar as it stays on the screen
    lines = [line.rstrip() for line in final.splitlines()]
    assert lines[0].startswith("epoch 1/1 ") and lines[0].endswith("3/3 0:00:00")
    assert all(len(line) <= 40 for line in lines) and "…" not in final
    text = " ".join(lines)
    for word in expected_words(read_metrics(tmp_path / "run")[0]):
        assert word in text, (word, final)
