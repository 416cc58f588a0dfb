"""The query planner: pure route choice from descriptions of spaces and bridges (planner.py)."""

from retrieval.planning.planner import ROUTES, Bridge, Plan, plan

__all__ = ["ROUTES", "Bridge", "Plan", "plan"]
