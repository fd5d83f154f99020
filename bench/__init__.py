"""Benchmarks of the executor's data plane against the real local stack: ``python -m bench`` (``make bench``).

Speed goals here are ratios against a baseline measured in the same run, never absolute timings: this
2-core machine's timings vary from run to run, but the executor and the hand-written baseline it is
compared with see the same machine, the same stack and the same rows, so their ratio is what carries over.
See ``bench/__main__.py`` for what is measured and ``bench/BENCHMARKS.md`` for the last report.
"""
