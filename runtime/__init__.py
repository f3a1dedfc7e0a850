"""Runtime: exit table, exit predictor, exit-sorted dispatch and ``GeepEngine``."""
