"""Hydra plugin: the `study` sweeper (hydra/sweeper=study) for bnbench's studies."""
