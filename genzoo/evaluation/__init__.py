"""Evaluation of genzoo models: reconstruction, likelihood, FID and cost.

``evaluate_model`` measures one model on a test split, ``evaluate_run`` one finished
run folder (writing ``eval.json``); the metric functions can be used on their own.
See ``docs/evaluation.md`` for what each number means and the rules for reporting it.
"""

from genzoo.evaluation.cost import parameter_count, sampling_throughput, training_throughput
from genzoo.evaluation.evaluate import (DEFAULT_IWAE_K, EVAL_FILE, EvalConfig, evaluate_model, evaluate_run,
                                        load_test_split, sampler_description)
from genzoo.evaluation.frechet import (FEATURES, default_features, fid, reference_statistics,
                                      resolve_features)
from genzoo.evaluation.likelihood import iwae_nll, iwae_unsupported, negative_elbo
from genzoo.evaluation.reconstruction import reconstruction_metrics
from genzoo.evaluation.weights import inception_weights

__all__ = [
    "DEFAULT_IWAE_K",
    "EVAL_FILE",
    "EvalConfig",
    "FEATURES",
    "default_features",
    "evaluate_model",
    "evaluate_run",
    "fid",
    "inception_weights",
    "iwae_nll",
    "iwae_unsupported",
    "load_test_split",
    "negative_elbo",
    "parameter_count",
    "reconstruction_metrics",
    "reference_statistics",
    "resolve_features",
    "sampler_description",
    "sampling_throughput",
    "training_throughput",
]
