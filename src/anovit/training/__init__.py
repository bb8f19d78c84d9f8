"""The training loop, its objectives and synthetic anomalies, and the resumable train state."""
