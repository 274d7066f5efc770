"""wikimem benchmarks: `python -m bench [--quick] [--only a,b]` (see docs/benchmarks.md)."""
