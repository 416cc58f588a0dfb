"""Evaluation on real offline data: ``retrieval eval --suite NAME`` writes ``results/NAME/``."""

from retrieval.evaluation.suites import SUITES, Suite, run_suite

__all__ = ["SUITES", "Suite", "run_suite"]
