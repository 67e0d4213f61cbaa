"""Evaluation of genzoo models: reconstruction, likelihood, FID and cost.

``evaluate_model`` measures one model on a test split, ``evaluate_run`` one finished
run folder (writing ``eval.json``); the metric functions can be used on their own.
See ``docs/evaluation.md`` for what each number means and the rules for reporting it.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Each public name and the submodule that defines it. They are imported on first use,
#: so importing one metric (say, the likelihood) does not load torch-fidelity.
_SOURCES = {
    "sampling_throughput": "cost", "training_throughput": "cost",
    "DEFAULT_IWAE_K": "run_evaluation", "EVAL_FILE": "run_evaluation", "EvalConfig": "run_evaluation",
    "evaluate_model": "run_evaluation", "evaluate_run": "run_evaluation", "load_test_split": "run_evaluation",
    "fid_key": "run_evaluation",
    "FEATURES": "frechet", "default_features": "frechet", "fid": "frechet",
    "reference_statistics": "frechet", "resolve_features": "frechet",
    "iwae_nll": "likelihood", "iwae_unsupported": "likelihood", "negative_elbo": "likelihood",
    "reconstruction_metrics": "reconstruction",
    "inception_weights": "weights",
}


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)


__all__ = list(sorted(_SOURCES))  # list(): what tools that read __all__ accept
