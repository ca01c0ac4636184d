"""The Lightning system: loss, optimizer, schedule, metrics. The network itself is a plain
nn.Module passed in (bnbench.models), as Lightning's style guide keeps them apart."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.plugins.precision import MixedPrecision, Precision
from pytorch_lightning.strategies import SingleDeviceStrategy
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from bnbench.keys import EVAL_SETS, LR, TRAIN_LOSS
from bnbench.recipe import Recipe


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """L2 on weight matrices and kernels only (ndim > 1); biases and BN's gamma/beta are exempt."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


class Classifier(pl.LightningModule):
    """Cross-entropy classification with SGD and an exponentially decaying learning rate.

    Divergence: every `check_every` steps the training loss (averaged over ranks) is checked;
    a non-finite loss or one above `max_loss` nats (chance is ln(classes): 2.3 for 10, 6.9 for 1000) stops the
    run, and `diverged_at` holds the step.

    `steps_per_batch` k > 1 (one process only): each Lightning batch holds k consecutive batches
    (bnbench/data/groups.py) and the system takes one optimizer step on each, by Lightning's
    manual optimization, with the same arithmetic, random draws and schedule as k = 1: Lightning's
    per-batch work is paid once per k steps. `global_step` still counts optimizer steps.
    """

    def __init__(
        self,
        model: nn.Module,
        recipe: Recipe,
        num_classes: int,
        distortion: nn.Module | None = None,
        max_loss: float = 100.0,
        check_every: int = 10,
        channels_last: bool = False,
        steps_per_batch: int = 1,
    ):
        super().__init__()
        self.steps_per_batch = steps_per_batch
        self.automatic_optimization = steps_per_batch == 1
        self.model, self.recipe, self.distortion = model, recipe, distortion
        self.channels_last = channels_last
        self.max_loss, self.check_every = max_loss, check_every
        # one accuracy per evaluation set, in EVAL_SETS order: validation, test
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.diverged_at: int | None = None
        self.last_loss: torch.Tensor | None = None
        # Whether this evaluation also covers the test set, asked once its validation accuracy
        # is known (train.py sets RunTracker.wants_test); `tested` says what was decided.
        self.test_gate: Callable[[float], bool] = lambda val_acc: True
        self.tested = False

    def __setattr__(self, name: str, value) -> None:
        # Lightning sets bookkeeping attributes (`_current_fx_name`, ...) around each of the
        # dozen hooks it calls per step; nn.Module.__setattr__'s parameter/module/buffer checks
        # are needless for a plain attribute that exists already. This fast path made the
        # paper-MLP step ~9% faster (make bench).
        if name in self.__dict__ and not isinstance(value, (torch.Tensor, nn.Module)):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x):
        return self.model(x)

    def setup(self, stage: str) -> None:
        if self.channels_last:  # NHWC: faster convolutions (oneDNN on CPU, tensor cores on GPUs)
            self.model.to(memory_format=torch.channels_last)

    def model_input(self, x: torch.Tensor, distort: bool = False) -> torch.Tensor:
        """A batch of inputs as the model takes them, on its device: uint8 images (ImageFolder data
        sends them so: a quarter of float32's bytes through the loader's workers and to the device)
        as float32 in [0, 1], distorted if asked (Sec. 4.2.1, modification 7), NHWC where the run
        asks for it. Lightning's batches arrive on the device already; the population pass, its
        accuracies and the activation probe pass CPU batches."""
        x = x.to(self.device)  # no copy where it is there already
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        if distort and self.distortion is not None:
            x = self.distortion(x)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def on_after_batch_transfer(self, batch, dataloader_idx):
        x, y = batch
        # a group of batches is distorted batch by batch in training_step: the same random draws, in
        # the same order, as k = 1
        return self.model_input(x, distort=self.trainer.training and self.steps_per_batch == 1), y

    def training_step(self, batch, batch_idx):
        if self.steps_per_batch > 1:
            return self._grouped_steps(batch)
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        self._check_and_log(loss, self.global_step)
        return loss

    def _check_and_log(self, loss: torch.Tensor, step: int) -> None:
        """Divergence check and training-loss logging for the step `step` (before its update)."""
        self.last_loss = loss.detach()
        if step % self.check_every == 0:
            # Every rank must take the same decision (a rank stopping alone would leave the others
            # waiting in a collective): judge the sum of the ranks' losses, which is non-finite
            # when any of them is. One process: the loss itself.
            value = self.trainer.strategy.reduce(loss.detach().clone(), reduce_op="sum").item() / self.trainer.world_size
            if not math.isfinite(value) or value > self.max_loss:
                self.diverged_at = step
                self.trainer.should_stop = True
        if (step + 1) % self.trainer.log_every_n_steps == 0:
            self.log(TRAIN_LOSS, self.last_loss)
            self.log(LR, self.lr_schedulers().get_last_lr()[0])

    def _grouped_steps(self, batch) -> None:
        """k optimizer steps, one per batch of the group, as automatic optimization takes them
        (a diverged step too, then the run stops)."""
        optimizer, schedule, trainer = self.optimizers(), self.lr_schedulers(), self.trainer
        check, log = self.check_every, trainer.log_every_n_steps
        backward = self.manual_backward if self._hooked_backward() else torch.Tensor.backward
        start = self.global_step  # each optimizer.step() below advances it by one
        for step, (x, y) in enumerate(zip(*(part.chunk(self.steps_per_batch) for part in batch)), start):
            if self.distortion is not None:
                x = self.model_input(x, distort=True)
            loss = F.cross_entropy(self.model(x), y)
            if step % check == 0 or (step + 1) % log == 0:
                self._check_and_log(loss, step)
            optimizer.zero_grad(set_to_none=True)
            backward(loss)
            optimizer.step()
            schedule.step()
            if trainer.should_stop:
                break
        self.last_loss = loss.detach()
        # Lightning counts batches for its loggers: the W&B step and `log_every_n_steps`. The group
        # was k steps; counting them keeps both in optimizer steps, as for k = 1 (Lightning adds
        # the last one itself after this hook, and keeps the count in checkpoints).
        trainer.fit_loop.epoch_loop._batches_that_stepped += step - start

    def on_validation_epoch_start(self) -> None:
        self.tested = False

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        # the data modules' val_dataloader() lists [validation, test] (bnbench.keys.EVAL_SETS);
        # Lightning runs them in turn, so the validation accuracy is complete when the test set
        # starts (compute() sums it over ranks: every rank takes the same decision)
        if dataloader_idx == 1:
            if batch_idx == 0:
                self.tested = self.test_gate(round(float(self.val_acc.compute()), 6))
            if not self.tested:
                return
        x, y = batch
        metric = (self.val_acc, self.test_acc)[dataloader_idx]
        metric.update(self.model(x), y)
        self.log(EVAL_SETS[dataloader_idx], metric, on_step=False, on_epoch=True, add_dataloader_idx=False)

    def _hooked_backward(self) -> bool:
        """Whether a grouped step's backward must go through Lightning (`manual_backward`): under
        a loss scaler (16-mixed), a multi-process strategy or a precision plugin of its own. Else it
        is `loss.backward()`, as Lightning's would be but for its on_before/after_backward hooks,
        which neither bnbench's callbacks nor this module implement (~10 us a step, make bench)."""
        plugin = self.trainer.precision_plugin
        plain = type(plugin) is Precision or (type(plugin) is MixedPrecision and plugin.scaler is None)
        return not (plain and type(self.trainer.strategy) is SingleDeviceStrategy)

    def configure_optimizers(self):
        r = self.recipe
        optimizer = torch.optim.SGD(
            parameter_groups(self.model, r.weight_decay), lr=r.lr, momentum=r.momentum, nesterov=r.nesterov
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: r.decay_gamma ** (step / r.decay_every)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


# Lightning asks each step hook's signature on every batch (is_param_in_hook_signature:
# inspect.getfullargspec, ~50 us a call, 5% of a paper-MLP step, make bench). `__signature__` is
# inspect's own override: computed once here, read thereafter.
for _hook in (Classifier.training_step, Classifier.validation_step):
    _hook.__signature__ = inspect.signature(_hook)
