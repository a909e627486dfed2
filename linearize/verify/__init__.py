"""Verification: the checker, the prover, costs and the trusted torch references.

Depends on the IR, rewriting and evaluation.
"""
