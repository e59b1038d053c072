"""RunEvaluator under the import path that tests/test_precision.py and benchmarks/precision_quality.py
use; the evaluation suite itself is gankit.metrics.suite."""

from gankit.metrics.suite import RunEvaluator, format_table

__all__ = ["RunEvaluator", "format_table"]
