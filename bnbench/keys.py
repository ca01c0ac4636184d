"""Metric keys, defined once: the LightningModule logs them, callbacks read them, W&B shows them."""

VAL_ACC = "val/acc"    # validation accuracy: the held-out part of the training set, what selection reads
TEST_ACC = "test/acc"  # test accuracy: reported beside, never selected on
TRAIN_LOSS = "train/loss"
LR = "train/lr"

# The evaluation sets, in the order of every data module's val_dataloader() list (Lightning's
# dataloader_idx): validation first, then test.
EVAL_SETS = (VAL_ACC, TEST_ACC)
