"""lm-eval task configs for ``divtune evaluate benchmarks`` (package data; see :mod:`divtune.evaluate.benchmarks`)."""
