"""Scoring new images with a trained run: the Python API, backends, predict, export and serve."""
