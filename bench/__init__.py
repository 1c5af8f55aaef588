"""vaultbundle benchmarks: `python -m bench.run [--smoke]` (see bench/README.md)."""
