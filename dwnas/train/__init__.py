"""Hybrid transformable supernet training and arbitrary-resolution elastic training."""
