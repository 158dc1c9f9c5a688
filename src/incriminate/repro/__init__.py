"""Reproductions of published results with this project's own losses and training code."""
