"""Verdict: compare U-students with C-students per configuration, combine, and decide."""
