"""Train, calibrate and test runs: the steps that make and judge a run folder."""
