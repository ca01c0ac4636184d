"""The progress bar on a terminal (`trainer.enable_progress_bar`, null: on a terminal only):
Lightning's, counting what bnbench counts, optimizer steps out of `trainer.max_steps`, in one
bar for the run. Lightning's counts its batches per epoch; a Lightning batch may hold several
steps (`run.steps_per_batch`), and a grouped run has no epochs of Lightning's."""

from __future__ import annotations

from pytorch_lightning.callbacks import TQDMProgressBar


class StepProgressBar(TQDMProgressBar):
    def __init__(self, refresh_rate: int = 25):
        super().__init__(refresh_rate=refresh_rate)
        self._shown = 0  # the step the bar shows
        self._started = False

    def on_train_epoch_start(self, trainer, *args) -> None:
        if self._started:  # one bar for the run: Lightning's would start again each epoch
            return
        self._started = True
        super().on_train_epoch_start(trainer, *args)
        bar = self.train_progress_bar
        bar.total = trainer.max_steps if trainer.max_steps > 0 else None
        bar.set_description("Training steps")
        self._show(trainer.global_step)  # a resumed run starts where it was

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.is_enabled and (step - self._shown >= self.refresh_rate or step == self.train_progress_bar.total):
            self._show(step)
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def _show(self, step: int) -> None:
        self._shown = step
        if not self.train_progress_bar.disable:
            self.train_progress_bar.n = step
            self.train_progress_bar.refresh()
