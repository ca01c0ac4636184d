"""Records what a run's report needs, at every evaluation: the accuracy curves (`acc`, the
validation accuracy that all selection reads, and `test_acc` beside it), the training time
spent so far (evaluation excluded), and the activation probe of Fig. 1(b, c).

The probe is taken before any update (step 0) and at every evaluation (`curves["probe_step"]`
says when). It looks at the network as training computes it: normalization layers normalize
over the probe batch itself (this process's batch statistics, their running estimates left
untouched), dropout is off. In inference mode, a BN network at step 0 would use its initial
running estimates (mean 0, variance 1), i.e. not normalize at all, and the first probe would
show the normalization switching on rather than any drift."""

from __future__ import annotations

import contextlib
import logging
import time

import pytorch_lightning as pl
import torch

from bnbench.keys import TEST_ACC, VAL_ACC

log = logging.getLogger("bnbench")

QUANTILES = (0.15, 0.50, 0.85)  # Fig. 1(b, c): the 15th, 50th and 85th percentiles


def unit_quantiles(activations: torch.Tensor) -> torch.Tensor:
    """(3, units): QUANTILES of each unit (channel) over the batch (and positions)."""
    per_unit = activations.transpose(0, 1).flatten(1).float()
    q = torch.tensor(QUANTILES, device=per_unit.device)
    return torch.quantile(per_unit, q, dim=1)


class TrainingClock:
    """Seconds of training so far on one clock (`now`: the wall clock, or this process's CPU
    time), evaluations excluded and earlier attempts of a resumed run included."""

    def __init__(self, now):
        self.now = now
        self.before = 0.0  # training seconds of the attempts before this one
        self.eval_s = 0.0  # evaluation seconds, all attempts
        self._t0 = None
        self._eval_before = self._v0 = 0.0

    def start(self) -> None:
        self._t0, self._eval_before = self.now(), self.eval_s

    def start_eval(self) -> None:
        self._v0 = self.now()

    def end_eval(self) -> None:
        self.eval_s += self.now() - self._v0

    @property
    def train_s(self) -> float:
        if self._t0 is None:
            return self.before
        return self.before + self.now() - self._t0 - (self.eval_s - self._eval_before)


class RunTracker(pl.Callback):
    """Curves and timing, plus a progress line per evaluation when no progress bar is shown.

    `probe_batch`: a fixed batch of inputs; at every evaluation the model (in eval mode) runs
    on it and the input to the nonlinearity at `model.probe_point` is summarised per unit.
    Curves: `acc` is the validation accuracy (selection: best step, targets), `test_acc` the
    test accuracy at the same evaluation (reported, never selected on), None where the test set
    was not evaluated (`test_at`: see `wants_test`).
    """

    def __init__(self, label: str, probe_batch: torch.Tensor | None = None, progress_lines: bool = False,
                 test_at: str = "best"):
        self.label, self.probe_batch, self.progress_lines = label, probe_batch, progress_lines
        self.test_at = test_at
        self._trainer = None
        self.curve: dict[str, list] = {"step": [], "acc": [], "test_acc": [], "train_s": [], "loss": []}
        self.probe: list[list[list[float]]] = []
        self.probe_step: list[int] = []
        # wall seconds (train_s, eval_s: what time-to-target reads) and this process's CPU seconds
        # beside them (train_cpu_s): on CPU their ratio says whether the run had its cores to itself
        self.wall, self.cpu = TrainingClock(time.perf_counter), TrainingClock(time.process_time)
        self._next_line = 0  # progress lines about every 10% of the run
        self.record_validate = False  # also record `trainer.validate` runs (train.py's evaluation after fit)

    @property
    def last_step(self) -> int | None:
        """The step of the last evaluation recorded (None before the first)."""
        return self.curve["step"][-1] if self.curve["step"] else None

    @staticmethod
    def _sync(pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def state_dict(self) -> dict:
        """What a checkpoint carries (bnbench/checkpoint.py): the curves, probes and clocks so far."""
        return {"curve": self.curve, "probe": self.probe, "probe_step": self.probe_step, "train_s": self.train_s,
                "eval_s": self.eval_s, "train_cpu_s": self.train_cpu_s, "eval_cpu_s": self.cpu.eval_s,
                "next_line": self._next_line}

    def load_state_dict(self, state: dict) -> None:
        self.curve = {k: list(v) for k, v in state["curve"].items()}
        self.probe, self.probe_step = [*state["probe"]], [*state["probe_step"]]
        self.wall.before, self.wall.eval_s = state["train_s"], state["eval_s"]
        self.cpu.before, self.cpu.eval_s = state["train_cpu_s"], state["eval_cpu_s"]
        self._next_line = state["next_line"]

    def on_train_start(self, trainer, pl_module):
        if self.probe_batch is not None and trainer.global_step == 0:  # before any update (not on resume)
            self._record_probe(pl_module, 0)
        self._sync(pl_module)
        self.wall.start()
        self.cpu.start()

    def wants_test(self, val_acc: float) -> bool:
        """Whether the evaluation under way, whose validation accuracy is `val_acc`, also covers the
        test set. `every`: always. `best`: where the record reads test accuracy, i.e. at a new best
        validation accuracy (strictly above every earlier one, as the best step is the first
        maximum: test_acc_at_best is exact) and at the last evaluation (final_test_acc), or in
        a `trainer.validate` run. The test set is 10,000 of the 14,000 images evaluated, so
        this cuts an evaluation's work ~2.5x once the curve has plateaued."""
        trainer = self._trainer
        if self.test_at == "every" or trainer is None or trainer.state.fn != "fit" or trainer.should_stop:
            return True
        if 0 < trainer.max_steps <= trainer.global_step:
            return True
        best = max((a for a in self.curve["acc"] if a is not None), default=None)
        return best is None or val_acc > best

    def on_validation_start(self, trainer, pl_module):
        self._trainer = trainer
        self._sync(pl_module)
        self.wall.start_eval()
        self.cpu.start_eval()

    @property
    def train_s(self) -> float:
        """Seconds of training so far, evaluation excluded (and earlier attempts included)."""
        return self.wall.train_s

    @property
    def eval_s(self) -> float:
        return self.wall.eval_s

    @property
    def train_cpu_s(self) -> float:
        """This process's CPU seconds over the same stretches as train_s (all its threads)."""
        return self.cpu.train_s

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or not (trainer.state.fn == "fit" or self.record_validate):
            return
        acc = round(float(trainer.callback_metrics[VAL_ACC]), 6)  # float32 noise off
        test_acc = round(float(trainer.callback_metrics[TEST_ACC]), 6) if pl_module.tested else None
        if self.probe_batch is not None:
            self._record_probe(pl_module, trainer.global_step)
        self._sync(pl_module)
        self.wall.end_eval()
        self.cpu.end_eval()
        loss = pl_module.last_loss
        step = trainer.global_step
        for key, value in (("step", step), ("acc", acc), ("test_acc", test_acc), ("train_s", self.train_s),
                           ("loss", float(loss) if loss is not None else None)):
            self.curve[key].append(value)
        if self.progress_lines and step >= self._next_line:
            self._next_line = step + max(trainer.max_steps // 10, 1)
            test = "" if test_acc is None else f"  test acc {test_acc:.4f}"
            log.info("[%s] step %d/%d  val acc %.4f%s  loss %.4f  train %.0fs  eval %.0fs", self.label,
                     step, trainer.max_steps, acc, test, self.curve["loss"][-1] or float("nan"), self.train_s,
                     self.eval_s)

    def _record_probe(self, pl_module, step: int) -> None:
        self.probe.append(self._probe(pl_module).tolist())
        self.probe_step.append(step)

    @torch.no_grad()
    def _probe(self, pl_module) -> torch.Tensor:
        model = pl_module.model
        seen = []
        handle = model.probe_point.register_forward_hook(lambda m, i, out: seen.append(out))
        was_training = model.training
        model.eval()
        try:
            with batch_statistics(model):
                model(pl_module.model_input(self.probe_batch))  # as in evaluation: scaled, NHWC where the run is
        finally:
            handle.remove()
            model.train(was_training)
        return unit_quantiles(seen[0])


@contextlib.contextmanager
def batch_statistics(model: torch.nn.Module):
    """Normalization layers (those keeping running estimates) normalize over the batch in hand,
    this process's alone (bnbench's own BN with `global` or `ghost` statistics is switched to
    `device` for the while: no collective from the one rank that probes), and their running
    estimates are put back afterwards. Everything else stays as it is (dropout: off in eval)."""
    layers = [m for m in model.modules() if isinstance(getattr(m, "running_mean", None), torch.Tensor)]
    saved = [({k: b.clone() for k, b in m.named_buffers(recurse=False)}, m.training,
              getattr(m, "stats", None), getattr(m, "ghost_size", None)) for m in layers]
    try:
        for m in layers:
            m.train()
            if hasattr(m, "stats"):
                m.stats, m.ghost_size = "device", None
        yield
    finally:
        for m, (buffers, training, stats, ghost) in zip(layers, saved):
            for k, b in buffers.items():
                getattr(m, k).copy_(b)
            m.train(training)
            if stats is not None:
                m.stats, m.ghost_size = stats, ghost
