"""Normalization layers and the factory that models use to build them."""
