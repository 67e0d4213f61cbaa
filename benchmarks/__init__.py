"""genzoo's benchmark suite (pytest-benchmark); run with ``pytest benchmarks --benchmark-only``."""
