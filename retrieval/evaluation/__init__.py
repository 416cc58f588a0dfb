"""Evaluation on real offline data: ``retrieval eval --suite NAME`` writes ``results/NAME/``."""

from .suites import SUITES, run_suite

__all__ = ["SUITES", "run_suite"]
