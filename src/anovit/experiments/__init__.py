"""Benchmarks over datasets and models, with the paper's published numbers beside them."""
