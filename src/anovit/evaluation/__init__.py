"""Evaluating a model on a labelled set: metrics, thresholds, the HTML report and figures."""
