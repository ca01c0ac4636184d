"""bnbench: Batch Normalization reproduced as a benchmarking and ablation harness."""
__version__ = "0.1.0"
