"""Evaluation on real offline data: ``retrieval eval --suite NAME`` writes ``results/NAME/``."""

from retrieval.evaluation.suites.emoji import SUITES, run_suite

__all__ = ["SUITES", "run_suite"]
