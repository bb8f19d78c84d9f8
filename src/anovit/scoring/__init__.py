"""From a model's output to anomaly maps and image scores."""
