"""Metrics: evaluator networks (evaluator.py) and the measures computed in their feature space.

This __init__ imports nothing, so that each metric module loads only what it needs; import
from the submodules directly.
"""
