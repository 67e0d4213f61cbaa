"""``--fid-curve N``: the FID after every epoch, measured without changing the training, and where a
compare's ranking settles (issue 11 §5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from genzoo.checkpoint import load_checkpoint
from genzoo.cli import main
from genzoo.errors import GenzooError
from genzoo.evaluation.fid_curve import CURVE_FILE, read_curve, settle
from genzoo.train_config import TrainConfig

SMALL = ["--epochs", "2", "--train-limit", "300", "--test-limit", "100", "--batch-size", "50", "--latent", "4"]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code, capsys.readouterr().err


@pytest.mark.usefixtures("mnist_root")
@pytest.mark.parametrize("model", ["ae", "gan"])  # a sampler that fits to the codes (gmm), and one that does not
def test_the_curve_is_measured_without_changing_the_training(model: str, chdir_tmp: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    for name, curve in (("plain", "0"), ("curved", "50")):
        code, err = run_cli(["train", model, *SMALL, "--fid-curve", curve, "--out", name], capsys)
        assert code == 0, err
    plain, curved = (load_checkpoint(chdir_tmp / name / "checkpoint.pt") for name in ("plain", "curved"))
    for key, tensor in plain["model_state"].items():
        assert torch.equal(tensor, curved["model_state"][key]), key  # the same weights, bit for bit
    assert torch.equal(plain["rng"]["torch"], curved["rng"]["torch"])
    losses = [{k: v for k, v in json.loads(line).items() if "seconds" not in k and "per_s" not in k and k != "run"}
              for name in ("plain", "curved") for line in (chdir_tmp / name / "metrics.jsonl").read_text().splitlines()]
    assert losses[:2] == losses[2:]
    assert not (chdir_tmp / "plain" / CURVE_FILE).exists()
    points = read_curve(chdir_tmp / "curved")
    assert [p["epoch"] for p in points] == [1, 2]
    assert all(p["samples"] == 50 and p["features"] == "mnist" and p["fid"] > 0 for p in points)
    assert {p["sampler"] for p in points} == {"gmm" if model == "ae" else "model"}


def test_a_curve_file_keeps_the_last_entry_of_each_epoch_and_refuses_other_lines(tmp_path: Path) -> None:
    entry = {"sampler": "model", "features": "mnist", "samples": 50}
    lines = [{**entry, "epoch": 1, "fid": 30.0}, {**entry, "epoch": 2, "fid": 20.0},
             {**entry, "epoch": 2, "fid": 19.0}, {**entry, "epoch": 3, "fid": None, "why": "no fit"}]
    (tmp_path / CURVE_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"epoch": 4, "fi')
    assert [(p["epoch"], p["fid"]) for p in read_curve(tmp_path)] == [(1, 30.0), (2, 19.0), (3, None)]
    assert [p["epoch"] for p in read_curve(tmp_path, through=2)] == [1, 2]  # a resume redoes epoch 3
    (tmp_path / CURVE_FILE).write_text(json.dumps(lines[0]) + "\nnot json\n" + json.dumps(lines[1]) + "\n")
    with pytest.raises(GenzooError, match="line 2 is no FID-curve entry"):
        read_curve(tmp_path)


def test_settle_names_where_the_ranking_stopped_changing_and_who_still_improves() -> None:
    def curve(*fids: float) -> list[dict[str, object]]:
        return [{"epoch": e, "fid": f} for e, f in enumerate(fids, 1)]

    # The numbers, roughly: at 5 epochs the GAN ranks last and still falls fast.
    found = settle({"ae": curve(300, 200, 150, 130, 125), "vae": curve(500, 450, 420, 400, 391),
                    "gan": curve(1500, 900, 600, 500, 413)})
    assert found["final"] == ["ae", "vae", "gan"] and found["settled_since"] == 1
    assert set(found["falling"]) == {"gan"} and found["falling"]["gan"] == pytest.approx(0.174)
    changed = settle({"vae": curve(400, 395, 391), "gan": curve(900, 420, 300)})
    assert changed["orders"] == {"1": ["vae", "gan"], "2": ["vae", "gan"], "3": ["gan", "vae"]}
    assert changed["settled_since"] == 3 == changed["last_epoch"]
    unmeasured = settle({"vae": curve(400, float("nan")), "gan": [{"epoch": 1, "fid": None}]})
    assert unmeasured["final"] == ["vae"] and unmeasured["epochs"] == [1]


def test_the_report_says_when_the_budget_decides_the_ranking() -> None:
    curves = {"vae": [{"epoch": e, "fid": f} for e, f in ((1, 400), (2, 395), (3, 391))],
              "gan": [{"epoch": e, "fid": f} for e, f in ((1, 900), (2, 420), (3, 300))]}
    from genzoo.compare import _ranking_lines

    text = "\n".join(_ranking_lines({"curves": curves, "ranking": settle(curves), "drawn": True}))
    assert "after epoch 1: vae < gan; after epoch 3: gan < vae" in text
    assert "The ranking changed at the last epoch (3): this budget, not the models, decides it" in text
    assert "Still improving at the end** (FID down more than 5% over the last epoch): gan (down 28.6%)" in text
    assert "![FID after each epoch](fid_curve.png)" in text
    assert _ranking_lines(None) == []  # a results.json from before FID curves
    assert "in the second half" not in text


def test_the_report_says_when_two_models_keep_swapping_places() -> None:
    """Measured: `compare ae vae gan --epochs 20`'s AE and GAN curves crossed at epochs 15 to 19 (1,000 samples)."""
    from genzoo.compare import _ranking_lines

    fids = {"ae": (160, 161, 159, 158, 160, 157, 159, 158), "gan": (400, 300, 200, 150, 170, 150, 162, 162),
            "vae": (500, 450, 420, 400, 390, 380, 370, 360)}
    curves = {label: [{"epoch": e, "fid": f} for e, f in enumerate(values, 1)] for label, values in fids.items()}
    text = "\n".join(_ranking_lines({"curves": curves, "ranking": settle(curves), "drawn": False}))
    assert "It has held since epoch 7 of 8." in text
    assert ("**It changed 2 times in the second half of the epochs**: ae, gan swap places within the noise of the "
            "curve's FIDs") in text


@pytest.mark.parametrize("value", [1, -1, 10_001, True])
def test_a_curve_of_one_sample_or_too_many_is_refused(value: object) -> None:
    with pytest.raises(GenzooError, match=r"^fid_curve (\(--fid-curve\) )?must be"):
        TrainConfig(model="ae", fid_curve=value)  # type: ignore[arg-type]


@pytest.mark.usefixtures("mnist_root")
def test_compare_draws_the_curves_and_says_where_the_ranking_settles(chdir_tmp: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    common = ["compare", "ae", "gan", *SMALL, "--fid-samples", "50", "--iwae-k", "2"]
    code, err = run_cli([*common, "--fid-curve", "50", "--out", "cmp"], capsys)
    assert code == 0, err
    results = json.loads((chdir_tmp / "cmp" / "results.json").read_text())
    curves = results["fid_curve"]["curves"]
    assert sorted(curves) == ["ae", "gan"] and all([p["epoch"] for p in c] == [1, 2] for c in curves.values())
    assert curves["ae"] == read_curve(chdir_tmp / "cmp" / "runs" / "ae")  # the runs' own measurements
    final = sorted(curves, key=lambda label: curves[label][-1]["fid"])
    assert results["fid_curve"]["ranking"]["final"] == final
    report = (chdir_tmp / "cmp" / "report.md").read_text()
    assert "## Where the ranking settles" in report and f"{final[0]} < {final[1]}." in report
    assert (chdir_tmp / "cmp" / "fid_curve.png").read_bytes()[:4] == b"\x89PNG"

    # Lost, drawn again from results.json by --resume.
    (chdir_tmp / "cmp" / "fid_curve.png").unlink()
    code, err = run_cli(["compare", "--resume", "cmp"], capsys)
    assert code == 0, err
    assert (chdir_tmp / "cmp" / "fid_curve.png").is_file()

    code, err = run_cli([*common, "--fid-curve", "0", "--out", "flat"], capsys)
    assert code == 0, err
    assert not (chdir_tmp / "flat" / "fid_curve.png").exists()
    assert "No ranking over epochs: 0 model(s) have an FID after each epoch measured alike (none)" in (
        chdir_tmp / "flat" / "report.md").read_text()


class Crash(RuntimeError):
    """Raised by the test's after-epoch callback: training ends there, after the epoch's checkpoint."""


@pytest.mark.usefixtures("mnist_root")
@pytest.mark.parametrize("how", ["torn", "hole"])
def test_a_resume_mends_a_torn_curve_and_catches_up_on_a_lost_epoch(how: str, tmp_path: Path) -> None:
    """A crash after epoch 2's checkpoint that tore its curve line ("torn"), or came before it ("hole"):
    the resume cuts the curve back to whole lines, measures epoch 2 again, and ends with the curve and
    the weights of a run never stopped."""
    from genzoo.evaluation.fid_curve import measure_epoch
    from genzoo.training import resume_run, start_run

    config = TrainConfig(model="ae", epochs=3, batch_size=50, train_limit=300, test_limit=100, fid_curve=50)
    start_run(config, {"latent": 4}, out=tmp_path / "whole", after_epoch=measure_epoch)

    def crashing(run_dir: Path, *args: object) -> None:
        record = args[-1]
        assert isinstance(record, dict)
        if record["epoch"] == 2 and how == "hole":
            raise Crash("before the curve line")
        measure_epoch(run_dir, *args)  # type: ignore[arg-type]
        if record["epoch"] == 2:
            path = run_dir / CURVE_FILE
            path.write_bytes(path.read_bytes()[:-20])  # the last line torn
            raise Crash("mid-line")

    with pytest.raises(Crash):
        start_run(config, {"latent": 4}, out=tmp_path / "stopped", after_epoch=crashing)
    assert [p["epoch"] for p in read_curve(tmp_path / "stopped")] == [1]
    resume_run(tmp_path / "stopped", after_epoch=measure_epoch)

    def without_time(run: str) -> list[dict[str, object]]:  # nor the run's name: two runs
        return [{k: v for k, v in p.items() if k not in ("seconds", "run")} for p in read_curve(tmp_path / run)]

    assert without_time("stopped") == without_time("whole")  # epochs 1, 2, 3, the same FIDs
    lines = (tmp_path / "stopped" / CURVE_FILE).read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]  # every line whole
    whole, stopped = (load_checkpoint(tmp_path / run / "checkpoint.pt") for run in ("whole", "stopped"))
    assert all(torch.equal(t, stopped["model_state"][k]) for k, t in whole["model_state"].items())


def test_compare_on_several_processes_passes_the_curve_to_the_training_ranks() -> None:
    """``compare --nproc N`` trains each model through ``genzoo train ... --nproc N``: its curve setting goes too."""
    import dataclasses

    from genzoo.compare import _options

    train = TrainConfig(model="ae", fid_curve=1000)
    budget = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("model", "eval_batch_size")]
    args = _options(train, budget)
    assert args[args.index("--fid-curve") + 1] == "1000"


@pytest.mark.usefixtures("mnist_root")
def test_compare_leaves_out_a_curve_it_cannot_read(chdir_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["train", "vae", *SMALL, "--fid-curve", "50", "--out", "run"], capsys)
    assert code == 0, err
    (chdir_tmp / "run" / CURVE_FILE).write_text("not json\n")
    code, err = run_cli(["compare", "--from-runs", "run", "--fid-samples", "0", "--iwae-k", "2", "--fid-curve", "50",
                         "--out", "cmp"], capsys)
    assert code == 0, err
    assert "vae's FID curve is left out: " in err and "line 1 is no FID-curve entry" in err
    assert json.loads((chdir_tmp / "cmp" / "results.json").read_text())["fid_curve"]["curves"] == {}


#: A field left out of the line.
ABSENT = object()
#: A curve line as ``measure_epoch`` writes it.
WHOLE = {"epoch": 1, "sampler": "model", "features": "mnist", "samples": 50, "reference_images": 100, "fid": 30.0,
         "seconds": 1.5}


@pytest.mark.parametrize("change", [
    {"seconds": "x"}, {"seconds": -1.0}, {"seconds": float("nan")}, {"reference_images": [100]},
    {"reference_images": 0}, {"fid": 10**400}, {"fid": "30"}, {"fid": True}, {"fit_images": 2.5}, {"why": 3},
    {"epoch": True}, {"samples": 50.0}, {"sampler": None}, {"added": 1}, {"fid": ABSENT}, {"samples": ABSENT},
    {"fid": -1000.0}, {"fid": -1}, {"fid": float("-inf")},  # H8-3: an FID, a squared distance, is never negative
])
def test_every_field_of_a_curve_line_is_checked_as_it_is_read(change: dict[str, object], tmp_path: Path) -> None:
    """``compare`` sums ``seconds``, hashes ``reference_images`` and takes ``fid`` as a float: a line whose
    field would fail there (a traceback after all the evaluation) is no curve entry, refused naming the line."""
    bad = {key: value for key, value in {**WHOLE, "epoch": 2, **change}.items() if value is not ABSENT}
    (tmp_path / CURVE_FILE).write_text(json.dumps(WHOLE) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(GenzooError, match="line 2 is no FID-curve entry"):
        read_curve(tmp_path)


def test_a_curve_line_as_genzoo_writes_it_is_read() -> None:
    from genzoo.evaluation.fid_curve import is_entry

    assert is_entry(WHOLE)
    assert is_entry({**WHOLE, "fid": None, "why": "no fit", "fit_images": 300})
    assert is_entry({**WHOLE, "fid": float("nan")}) and is_entry({**WHOLE, "fid": 31})
    assert is_entry({**WHOLE, "fid": 0.0}) and is_entry({**WHOLE, "fid": 0})
    assert is_entry({k: v for k, v in WHOLE.items() if k not in ("seconds", "reference_images")})  # an early curve


@pytest.mark.parametrize("line, settings, why, fits", [
    ({"epoch": 3}, {"epochs": 2, "fid_curve": 50}, "line 2 is for epoch 3 of a 2-epoch run",
     {"epochs": 3, "fid_curve": 50}),
    ({"samples": 100}, {"epochs": 2, "fid_curve": 50}, "line 2 measured 100 samples, but the run's --fid-curve is 50",
     None),
    ({}, {"epochs": 2, "fid_curve": 0}, "line 1 is a point of a curve, but the run was trained with --fid-curve 0 and "
     "measured none", {"epochs": 2, "fid_curve": 50}),
])
def test_a_curve_is_checked_against_its_run(line: dict[str, object], settings: dict[str, int], why: str,
                                            fits: dict[str, int] | None, tmp_path: Path) -> None:
    """A curve copied from another run, or a line appended by hand, is not the run's: refused given its config."""
    (tmp_path / CURVE_FILE).write_text(json.dumps(WHOLE) + "\n" + json.dumps({**WHOLE, "epoch": 2, **line}) + "\n")
    assert len(read_curve(tmp_path)) == 2  # a curve entry each, as a file
    with pytest.raises(GenzooError, match=f"{why}: it is not this run's curve"):
        read_curve(tmp_path, config=TrainConfig(model="vae", **settings))  # type: ignore[arg-type]
    if fits is not None:  # the same lines in a run that measured them
        assert len(read_curve(tmp_path, config=TrainConfig(model="vae", **fits))) == 2  # type: ignore[arg-type]


class Loads:
    """A run's training split as compare passes it: loaded only when called; counts its calls."""

    def __init__(self, images: int) -> None:
        self.images, self.calls = images, 0

    def __call__(self) -> list[int]:
        self.calls += 1
        return list(range(self.images))


FITTED = {**WHOLE, "sampler": "gmm", "fit_images": 200}


@pytest.mark.parametrize("sampler, train_images, why", [
    ("model", 200, "line 1 measured sampler 'gmm', but the run's training measures with 'model'"),
    ("gmm", 300, "line 1 fitted its sampler to 200 images, but the run's training fits it to 300"),
    ("gmm", 60_000, "line 1 fitted its sampler to 200 images, but the run's training fits it to 10000"),
    ("gmm", 200, None), ("gmm", 199, "fits it to 199"),
])
def test_a_curve_names_the_sampler_and_fit_its_run_measures_with(sampler: str, train_images: int, why: str | None,
                                                                  tmp_path: Path) -> None:
    """H8-8: another model's curve (the AE's ``gmm``, fitted to 200 images) copied into a VAE run passed: the check
    compared epochs and samples only, while the run's default sampler and training split are known too."""
    (tmp_path / CURVE_FILE).write_text(json.dumps(FITTED) + "\n" + json.dumps({**FITTED, "epoch": 2}) + "\n")
    config = TrainConfig(model="ae", epochs=2, fid_curve=50)
    train = Loads(train_images)
    if why is None:
        assert len(read_curve(tmp_path, config=config, sampler=sampler, train=train)) == 2  # type: ignore[arg-type]
    else:
        with pytest.raises(GenzooError, match=f"{why}: it is not this run's curve"):
            read_curve(tmp_path, config=config, sampler=sampler, train=train)  # type: ignore[arg-type]
    unfitted = tmp_path / "unfitted"
    unfitted.mkdir()
    (unfitted / CURVE_FILE).write_text(json.dumps(WHOLE) + "\n")
    train = Loads(train_images)
    assert len(read_curve(unfitted, config=config, sampler="model", train=train)) == 1  # type: ignore[arg-type]
    assert train.calls == 0  # no line names a fit: the split is not loaded


def test_a_fitted_samplers_line_without_its_fit_is_not_the_runs(tmp_path: Path) -> None:
    """F5 (ninth hostile pass): another run's ``gmm`` curve with ``fit_images`` cut out passed H8-8's check (it
    compared the field only where present) and was ranked as the run's; ``measure_epoch`` always writes it for a
    sampler that needs a fit. A line with no FID (the sampler could not be built: no fit was named) stays."""
    unnamed = {k: v for k, v in FITTED.items() if k != "fit_images"}
    (tmp_path / CURVE_FILE).write_text(json.dumps({**unnamed, "fid": None, "why": "no sampler"}) + "\n"
                                       + json.dumps({**unnamed, "epoch": 2}) + "\n")
    config = TrainConfig(model="ae", epochs=2, fid_curve=50)
    with pytest.raises(GenzooError, match="line 2 measured sampler 'gmm', which is fitted to training images, but "
                                          "names no fit_images: it is not this run's curve"):
        read_curve(tmp_path, config=config, sampler="gmm", train=Loads(200))  # type: ignore[arg-type]
    (tmp_path / CURVE_FILE).write_text(json.dumps({**unnamed, "fid": None, "why": "no sampler"}) + "\n")
    assert len(read_curve(tmp_path, config=config, sampler="gmm", train=Loads(200))) == 1  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def curve_runs(tmp_path_factory: pytest.TempPathFactory, mnist_root: Path) -> Path:
    """Two finished 2-epoch VAE runs, trained once for the module: ``curved`` (``--fid-curve 50``) and ``flat``."""
    from genzoo.evaluation.fid_curve import measure_epoch
    from genzoo.training import start_run

    folder = tmp_path_factory.mktemp("curve-runs")
    for name, curve in (("curved", 50), ("flat", 0)):
        config = TrainConfig(model="vae", epochs=2, batch_size=50, train_limit=300, test_limit=100, fid_curve=curve)
        start_run(config, {"latent": 4}, out=folder / name, after_epoch=measure_epoch)
    return folder


COMPARE_REUSED = ["--test-limit", "100", "--fid-samples", "0", "--iwae-k", "2", "--fid-curve", "50"]


@pytest.mark.usefixtures("mnist_root")
def test_compare_leaves_out_curves_their_runs_cannot_have_measured(curve_runs: Path, chdir_tmp: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    for name in ("good", "past", "huge", "negative", "gmm", "fitted"):
        shutil.copytree(curve_runs / "curved", name)
    shutil.copytree(curve_runs / "flat", "flat")
    shutil.copy(curve_runs / "curved" / CURVE_FILE, "flat")  # a curve in a run trained without one
    lines = (chdir_tmp / "good" / CURVE_FILE).read_text().splitlines()
    (chdir_tmp / "past" / CURVE_FILE).write_text("\n".join([*lines, lines[-1].replace('"epoch": 2', '"epoch": 7')])
                                                 + "\n")
    huge = json.loads(lines[1])
    (chdir_tmp / "huge" / CURVE_FILE).write_text(lines[0] + "\n" + json.dumps({**huge, "fid": 10**400}) + "\n")
    for name, change in (("negative", {"fid": -1000.0}), ("gmm", {"sampler": "gmm", "fit_images": 300}),
                         ("fitted", {"fit_images": 250})):  # H8-3, H8-8: the ae's curve, a fit of other images
        (chdir_tmp / name / CURVE_FILE).write_text("".join(json.dumps({**json.loads(line), **change}) + "\n"
                                                           for line in lines))
    runs = [arg for name in ("good", "past", "huge", "flat", "negative", "gmm", "fitted") for arg in ("--from-runs", name)]
    code, err = run_cli(["compare", *runs, *COMPARE_REUSED, "--out", "cmp"], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    for label, why in (("past", "line 3 is for epoch 7 of a 2-epoch run"),
                       ("huge", "line 2 is no FID-curve entry"),
                       ("flat", "line 1 is a point of a curve, but the run was trained with --fid-curve 0"),
                       ("negative", "line 1 is no FID-curve entry"),
                       ("gmm", "line 1 measured sampler 'gmm', but the run's training measures with 'model'"),
                       ("fitted", "line 1 fitted its sampler to 250 images, but the run's training fits it to 300")):
        assert f"vae ({label})'s FID curve is left out: " in err and why in err, (label, err)
    results = json.loads((chdir_tmp / "cmp" / "results.json").read_text())
    assert list(results["fid_curve"]["curves"]) == ["vae (good)"]
    assert [p["epoch"] for p in results["fid_curve"]["curves"]["vae (good)"]] == [1, 2]
    assert "Measuring the curves took vae (good)" in (chdir_tmp / "cmp" / "report.md").read_text()
    assert "vae (flat) " not in (chdir_tmp / "cmp" / "report.md").read_text().split("## Where the ranking settles")[1]


@pytest.mark.usefixtures("mnist_root")
def test_compare_resume_refuses_a_results_file_whose_fid_curve_is_not_genzoos(
        curve_runs: Path, chdir_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    shutil.copytree(curve_runs / "curved", "run")
    code, err = run_cli(["compare", "--from-runs", "run", *COMPARE_REUSED, "--out", "cmp"], capsys)
    assert code == 0, err
    path = chdir_tmp / "cmp" / "results.json"
    written = json.loads(path.read_text())
    point = written["fid_curve"]["curves"]["vae"][0]
    for curves in (5, {"drawn": True}, {**written["fid_curve"], "drawn": "yes"},
                   {**written["fid_curve"], "curves": {"vae": [{**point, "fid": "x"}]}},
                   {**written["fid_curve"], "curves": {"ae": [point]}},
                   {**written["fid_curve"], "seconds": {"vae": "1"}},
                   {**written["fid_curve"], "ranking": {**written["fid_curve"]["ranking"], "orders": {}}}):
        path.write_text(json.dumps({**written, "fid_curve": curves}))
        (chdir_tmp / "cmp" / "report.md").unlink(missing_ok=True)
        code, err = run_cli(["compare", "--resume", "cmp"], capsys)
        assert code == 1 and "Traceback" not in err, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            "Error: cmp/results.json is not a usable genzoo compare result (fid_curve is "), err
        assert lines[0].endswith("not the compare's FID curves and their ranking); move it away and run genzoo "
                                 "compare --resume cmp to evaluate again"), err
        assert not (chdir_tmp / "cmp" / "report.md").exists()
    path.write_text(json.dumps(written))  # genzoo's own: the report is written again from it
    code, err = run_cli(["compare", "--resume", "cmp"], capsys)
    assert code == 0, err
    assert "## Where the ranking settles" in (chdir_tmp / "cmp" / "report.md").read_text()
