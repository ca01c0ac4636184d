"""Metric keys, defined once: the LightningModule logs them, callbacks read them, W&B shows them."""

VAL_ACC = "val/acc"
TRAIN_LOSS = "train/loss"
LR = "train/lr"
