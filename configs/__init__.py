"""Packaged YAML configs (default, per runner, mixtures, benchmarks)."""
