"""Benchmarks: `make bench` (all) or `.venv/bin/python -m bench NAME...`.

Each benchmark is a module ``bench/<name>.py`` with ``main() -> str`` that measures the
product against a baseline run *in the same process run* (ratios, not absolute times: this
machine is noisy) and returns a Markdown section. The section replaces the benchmark's own
section of docs/BENCHMARKS.md, so the document always holds the latest figures.
"""
