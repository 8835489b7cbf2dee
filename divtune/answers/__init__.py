"""The shared vocabulary of rewards and evaluation: answer extraction and the diversity metrics.

Pure functions with no model or tracking dependencies; both :mod:`divtune.rewards` and
:mod:`divtune.evaluate` build on them.
"""
