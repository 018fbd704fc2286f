"""Benchmarks for the Countersign runtime (`make bench`)."""
