"""Portico's benchmark harness (see bench/README.md); a package so ``bench.apps`` imports."""
