"""Rewriting: the rule engine, the recorded derivation, the rules by family and the pipelines.

Depends on the IR only.
"""

from __future__ import annotations

from .engine import Derivation, LinearizeError, Pass, Rule, Step, run_pass, run_pipeline
from .pipelines import (
    ALL_PASSES,
    ALL_RULES,
    DEFAULT_PIPELINE,
    DISTINCT_RANKS,
    MASKED_SUMS,
    ORDER,
    PIPELINES,
    SEED_PIPELINE,
    SELECT,
    SHARE,
    SHARED_PIPELINE,
    SIMPLIFY,
    SORT,
    STABLE_RANKS,
    linearize,
)

__all__ = ["ALL_PASSES", "ALL_RULES", "DEFAULT_PIPELINE", "DISTINCT_RANKS", "MASKED_SUMS", "ORDER", "PIPELINES",
           "SEED_PIPELINE", "SELECT", "SHARE", "SHARED_PIPELINE", "SIMPLIFY", "SORT", "STABLE_RANKS", "Derivation",
           "LinearizeError", "Pass", "Rule", "Step", "linearize", "run_pass", "run_pipeline"]
