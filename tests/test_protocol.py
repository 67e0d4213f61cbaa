"""``--protocol paper``: the settings a published protocol fixes, set at once, recorded, and never half-kept."""

from __future__ import annotations

import pytest

import genzoo.compare
import genzoo.evaluation
from genzoo.cli import main
from genzoo.errors import GenzooError
from genzoo.evaluation import EvalConfig, evaluate_run
from genzoo.evaluation.protocols import PROTOCOLS


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code, capsys.readouterr().err


class Seen(GenzooError):
    """Raised by a stand-in for the evaluation: the settings it was handed, as its message."""


def test_the_paper_protocol_is_inception_fid_of_10000_samples() -> None:
    assert PROTOCOLS["paper"]["fixes"] == {"features": "inception", "fid_samples": 10_000}
    assert EvalConfig(features="inception", fid_samples=10_000, protocol="paper").protocol == "paper"


@pytest.mark.parametrize(("fields", "needle"), [
    ({"features": "mnist", "fid_samples": 10_000}, "features inception, not 'mnist'"),
    ({"features": "inception", "fid_samples": 1000}, "fid-samples 10000, not 1000"),
    ({}, "features inception, not 'auto'"),
])
def test_a_config_that_breaks_its_protocol_is_refused(fields: dict[str, object], needle: str) -> None:
    with pytest.raises(GenzooError, match=needle):
        EvalConfig(**fields, protocol="paper")  # type: ignore[arg-type]
    with pytest.raises(GenzooError, match="protocol must be one of paper"):
        EvalConfig(protocol="papre")


def test_eval_with_the_protocol_measures_under_it(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    def seen(run_dir: str, config: EvalConfig, **kwargs: object) -> None:
        raise Seen(f"seen {config.features} {config.fid_samples} {config.protocol}")

    monkeypatch.setattr(genzoo.evaluation, "evaluate_run", seen)
    assert run_cli(["eval", "somewhere", "--protocol", "paper"], capsys) == (1, "Error: seen inception 10000 paper\n")
    # Typed with the protocol's own values: the same.
    assert run_cli(["eval", "somewhere", "--protocol", "paper", "--features", "inception"],
                   capsys) == (1, "Error: seen inception 10000 paper\n")
    assert run_cli(["eval", "somewhere"], capsys) == (1, "Error: seen auto 10000 None\n")


@pytest.mark.parametrize(("extra", "needle"), [
    (["--features", "mnist"], "protocol 'paper' measures with features inception, not 'mnist'"),
    (["--fid-samples", "500"], "protocol 'paper' measures with fid-samples 10000, not 500"),
])
def test_eval_refuses_an_option_the_protocol_fixes(extra: list[str], needle: str, tmp_path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["eval", str(tmp_path / "run"), "--protocol", "paper", *extra], capsys)
    assert (code, err.count("\n")) == (1, 1) and err.startswith(f"Error: {needle}; leave out one or the other"), err


@pytest.mark.usefixtures("mnist_root")
def test_eval_of_a_run_on_part_of_the_test_split_is_refused_before_anything_is_written(
        chdir_tmp, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["train", "ae", "--epochs", "1", "--train-limit", "200", "--test-limit", "100",
                         "--latent", "2", "--out", "run"], capsys)
    assert code == 0, err
    before = sorted(p.name for p in (chdir_tmp / "run").iterdir())
    code, err = run_cli(["eval", "run", "--protocol", "paper", "--test-limit", "100"], capsys)
    assert code == 1 and err == ("Error: protocol 'paper' measures against the whole test split, not the first "
                                 "100 images; leave out the test limit or the protocol\n")
    with pytest.raises(GenzooError, match="whole test split, not the first 50 images"):
        evaluate_run(chdir_tmp / "run", EvalConfig(features="inception", fid_samples=10_000, protocol="paper"),
                     test_limit=50)
    assert sorted(p.name for p in (chdir_tmp / "run").iterdir()) == before  # no eval.json, nothing else


def test_compare_with_the_protocol(monkeypatch: pytest.MonkeyPatch, chdir_tmp,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    def seen(config: genzoo.compare.CompareConfig, **kwargs: object) -> None:
        raise Seen(f"seen {config.evaluation.features} {config.evaluation.fid_samples} {config.evaluation.protocol}")

    monkeypatch.setattr(genzoo.compare, "compare", seen)
    assert run_cli(["compare", "ae", "vae", "--protocol", "paper"], capsys) == (1, "Error: seen inception 10000 "
                                                                                   "paper\n")
    code, err = run_cli(["compare", "ae", "vae", "--protocol", "paper", "--test-limit", "500"], capsys)
    assert code == 1 and err.startswith("Error: protocol 'paper' measures against the whole test split, not the "
                                        "first 500 images"), err
    assert list(chdir_tmp.iterdir()) == []
