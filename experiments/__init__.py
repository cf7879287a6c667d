"""Experiments around semlib, importable by the tests and by the thin entry points of
scripts/: not part of the library (pyproject.toml packages ``semlib`` alone).

- :mod:`experiments.fuzzing`  damaged and forged ``.semc`` files against ``semlib.codec.decode``
  (scripts/fuzz_decode.py; ROBUSTNESS.md)
- :mod:`experiments.benchmarks`  the codec benchmarks of BENCHMARKS.md, each item in its own process
  (scripts/benchmarks.py, scripts/batch_benchmark.py)
"""
