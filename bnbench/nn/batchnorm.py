"""Batch Normalization as the paper defines it (Sec. 3, Algorithms 1 and 2).

Training (Alg. 1), per feature over the m values of a mini-batch (for convolutions, over the
batch and every spatial position, Sec. 3.2, so m' = m * p * q):

    mu_B  = mean(x)            var_B = mean((x - mu_B)^2)      (biased)
    x_hat = (x - mu_B) / sqrt(var_B + eps)                     y = gamma * x_hat + beta

The backward pass is Sec. 3's chain rule, simplified:

    dl/dbeta = sum(g)     dl/dgamma = sum(g * x_hat)
    dl/dx    = gamma / sqrt(var_B + eps) * (g - mean(g) - x_hat * mean(g * x_hat))

(`_BatchNormTrain`, tested against torch.nn.functional.batch_norm).

Four kernels compute that training step, chosen with `BatchNorm(kernel=...)`; they give the
same results to rounding (tests/test_batchnorm.py, tests/test_bn_stats.py, tests/test_bn_cpp.py):

* ``reference``: `_BatchNormTrain`, the formulas above line by line. It defines the results;
  the other two are tested against it.
* ``fast`` (default): `_BatchNormTrainFast`, the same algorithm arranged for speed: mu_B and
  var_B in two passes of plain sums (torch.var_mean is a slow Welford loop on CPU), x - mu_B
  formed once and turned into y in place, x_hat not stored (the backward recomputes x - mu_B
  from the saved input: it keeps what torch's BN keeps), the running estimates updated inside,
  a half-precision input converted to float32 once and the result rounded once. Plain tensor
  ops, so any device. Each op costs ~1-2 us of dispatch on CPU whatever its size: on a small
  input (the paper's MLP layer, (60, 100)) that, not arithmetic, sets the time (~2.3x torch's
  two fused kernels); on a conv layer's (32, 64, 7, 7) float32 it is ~1.2x.
* ``compiled``: the fast kernel's forward and backward through torch.compile (Inductor fuses
  each into a few loops), with dynamic shapes: one compilation (~3-4 s on CPU) per dtype and
  memory layout serves every layer and batch size. It gains on large inputs, most in bfloat16
  (ours (32, 64, 7, 7): ~1.5x torch's against ~1.8x for ``fast``), and loses on small ones, as
  a compiled call costs ~20 us. Where torch.compile cannot build (no C++ compiler) it warns
  once and runs ``fast``; ``global`` statistics, whose collectives sit between the kernels,
  always run ``fast``.
* ``cpp``: the same algorithm as hand-written C++ CPU loops (csrc/batchnorm.cpp, built on
  first use by bnbench/nn/cpp.py, ~20-40 s once per machine and kind of CPU, then cached): the
  statistics in two passes and y in a third, the backward's two sums in one pass and dx in
  another, in float32 for bfloat16 inputs, with C++ autograd nodes, so no per-op dispatch and
  no Python in the backward. Inference uses it too: Alg. 2's map in one pass, and with gradients
  (evaluation mode while training, e.g. a frozen BN) one C++ node for x, gamma and beta. It is
  the kernel that matches torch's speed on CPU (README "Speed"). CPU only: GPU inputs, and
  ``ghost`` and ``global`` statistics, run ``fast``; where it cannot be built (no C++ compiler
  or ninja) it warns once and runs ``fast``.

Every kernel returns the input's dtype, as torch's BN does (under autocast the parameters and
running estimates stay float32).

Inference uses one fixed affine map (Alg. 2, step 11)

    y = gamma / sqrt(Var + eps) * x + (beta - gamma * E[x] / sqrt(Var + eps))

with E[x], Var[x] held in `running_mean`, `running_var`. How they are estimated:

* momentum = a float: an exponential moving average in **PyTorch's convention**
      running = (1 - momentum) * running + momentum * batch_statistic
  so momentum=0.1 weighs the newest batch by 0.1. (TensorFlow/Keras call the weight of the
  *old* value "momentum": their 0.99 is 0.01 here. Mixing the two up is a classic bug.)
* momentum = None: a cumulative average over every batch seen since the last reset. After
  K batches of size m this is Alg. 2 exactly: E[x] = E_B[mu_B] and
  Var[x] = E_B[m/(m-1) var_B], because each batch contributes its unbiased variance.
  `bnbench.nn.population` uses this to estimate population statistics after training.

Both conventions match `torch.nn.BatchNorm*d`, so the two implementations are
interchangeable (`norm.impl=torch|bnbench`).

Which values form "the mini-batch" B is an ablation axis, `stats` (the paper does not say
how its distributed training shared BN statistics between workers):

* ``device`` (default): this process's batch. Under plain DDP each rank normalizes its own
  slice of the global batch, exactly as in one process.
* ``global``: the batches of every process in a torch.distributed group (the world by
  default), as torch.nn.SyncBatchNorm does -- but with our own collectives, because
  SyncBatchNorm refuses CPU/gloo. Forward: ONE all_gather of each process's packed
  (count, mean, M2), combined with Chan et al.'s parallel formula; backward: ONE
  all_reduce(SUM) of the packed per-feature [sum(g), sum(g * x_hat)]. Without an initialized
  process group, or with one process, it is ``device``.
* ``ghost``: every run of `ghost_size` consecutive examples of this process's batch is its own
  B ("ghost batch normalization", Hoffer et al. 2017, "Train longer, generalize better").

Inference (Alg. 2) is the same affine map in every mode. Running statistics: ``device`` and
``global`` update from their B as above (``global``: the global mean and unbiased variance
M/(M-1) * var, identical on every rank); ``ghost`` from the average over its ghost batches,
see `BatchNorm`. `bnbench.nn.sync.average_running_stats` averages the ranks' estimates.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
from torch import nn

from bnbench.nn.cpp import kernel as cpp_kernel

STATS = ("device", "global", "ghost")
KERNELS = ("fast", "reference", "compiled", "cpp")


def _wide(dtype: torch.dtype) -> torch.dtype:
    """float32 for half/bfloat16 (a count of 1e6 values has no exact bf16), else `dtype`."""
    return torch.promote_types(dtype, torch.float32)


def _global_moments(mu: torch.Tensor, var: torch.Tensor, m: int, group):
    """Mean, biased variance and count over the union of the batches of all processes in `group`.

    Chan, Golub & LeVeque's parallel formula, for all P parts at once (M2 = m * var):

        M = sum_p m_p     mean = sum_p m_p mean_p / M     M2 = sum_p M2_p + sum_p m_p (mean_p - mean)^2

    Unlike all-reducing sum(x) and sum(x^2), nothing subtracts two large, nearly equal numbers
    (E[x^2] - E[x]^2 loses every digit when |mean| >> std). Processes may hold batches of
    different sizes, even empty ones, hence the counts. ONE all_gather of the packed
    [m, mean, M2]; every process then combines the same numbers in the same order, so mean and
    variance -- and the running statistics updated from them -- are bitwise equal on all ranks.
    The count stays a tensor: reading it on the host would stall a GPU once per layer.
    """
    dtype = _wide(mu.dtype)
    if m == 0:  # var_mean of nothing is NaN; an empty batch contributes nothing
        mu, var = torch.zeros_like(mu), torch.zeros_like(var)
    count = torch.full((1,), float(m), dtype=dtype, device=mu.device)
    local = torch.cat([count, mu.to(dtype), var.to(dtype) * m])
    gathered = local.new_empty(dist.get_world_size(group), local.numel())
    # A list of views into one tensor: works on gloo and NCCL alike.
    dist.all_gather(list(gathered.unbind(0)), local, group=group)
    counts, means, m2s = gathered.split([1, mu.numel(), mu.numel()], dim=1)
    total = counts.sum()
    mean = (counts * means).sum(0) / total
    m2 = m2s.sum(0) + (counts * (means - mean) ** 2).sum(0)
    return mean.to(mu.dtype), (m2 / total).to(var.dtype), total


class _BatchNormTrain(torch.autograd.Function):
    """Alg. 1's transform with the paper's gradients (Sec. 3) as its backward, for every `stats` mode.

    The modes differ only in which values form B, and so in where mu_B, var_B and the
    backward's two means over B come from; x_hat, y and dl/dx = gamma * rstd * (g - mean_B(g)
    - x_hat * mean_B(g * x_hat)) are Alg. 1 / Sec. 3 unchanged. Hence one Function:

    * device (ghost=None, group=None): B = the local batch; statistics of shape (C,).
    * ghost=g: x is viewed as (N/g, g, C, *S) and each of the N/g ghost batches is a B;
      statistics (N/g, C), broadcast over their ghost batch. gamma and beta are shared by all
      ghost batches, so their gradients are summed over them.
    * group (global): B = the batches of every process in `group` (`_global_moments`). The
      backward all-reduces the two per-feature sums and divides by the global count M.
      dgamma/dbeta stay this process's own sums, as in torch.nn.SyncBatchNorm: DDP averages
      parameter gradients itself, and so sees the same per-rank contributions as for `device`.

    Returns y, mu_B and the unbiased m/(m-1) * var_B that the running estimates use, per B.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float, ghost: int | None, group):
        c = x.shape[1]
        if ghost is not None:
            x = x.unflatten(0, (x.shape[0] // ghost, ghost))  # a view: dim 0 indexes ghost batches
            dims = [1, *range(3, x.dim())]
            stat_shape = (x.shape[0], 1, c) + (1,) * (x.dim() - 3)
            param_shape = (1, 1, c) + (1,) * (x.dim() - 3)
        else:
            dims = [0, *range(2, x.dim())]
            stat_shape = param_shape = (1, c) + (1,) * (x.dim() - 2)
        var_b, mu_b = torch.var_mean(x, dim=dims, unbiased=False)
        m = x.numel() // mu_b.numel()  # values per B: examples x positions (Sec. 3.2)
        if group is not None:
            mu_b, var_b, m = _global_moments(mu_b, var_b, m, group)
        rstd = torch.rsqrt(var_b + eps)
        x_hat = (x - mu_b.view(stat_shape)) * rstd.view(stat_shape)
        y = torch.addcmul(bias.view(param_shape), x_hat, weight.view(param_shape))
        ctx.save_for_backward(x_hat, weight, rstd)
        ctx.dims, ctx.stat_shape, ctx.ghost, ctx.group, ctx.m = dims, stat_shape, ghost, group, m
        var_unbiased = var_b * (m / (m - 1))
        ctx.mark_non_differentiable(mu_b, var_unbiased)
        return (y if ghost is None else y.flatten(0, 1)), mu_b, var_unbiased

    @staticmethod
    def backward(ctx, g, _g_mu, _g_var):
        x_hat, weight, rstd = ctx.saved_tensors
        dims, shape, m = ctx.dims, ctx.stat_shape, ctx.m
        if ctx.ghost is not None:
            g = g.unflatten(0, x_hat.shape[:2])
        sum_g = g.sum(dims)
        sum_gx = (g * x_hat).sum(dims)
        dbeta, dgamma = (sum_g, sum_gx) if ctx.ghost is None else (sum_g.sum(0), sum_gx.sum(0))
        if ctx.group is not None:
            packed = torch.cat([sum_g, sum_gx]).to(_wide(sum_g.dtype))  # a new tensor: dgamma, dbeta stay local
            dist.all_reduce(packed, group=ctx.group)
            sum_g, sum_gx = packed.to(sum_g.dtype).chunk(2)
        dx = (weight * rstd).view(shape) * (g - (sum_g / m).view(shape) - x_hat * (sum_gx / m).view(shape))
        return (dx if ctx.ghost is None else dx.flatten(0, 1)), dgamma, dbeta, None, None, None


# --------------------------------------------------------------------------- the fast kernel


def _as(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """t.to(dtype), without the call where it would change nothing (a call costs ~1 us of a ~50 us step)."""
    return t if t.dtype == dtype else t.to(dtype)


def _batches(x: torch.Tensor, ghost: int | None):
    """x viewed as its B's, the dimensions a statistic reduces over, and the parameters' shape.

    device/global: x itself, reducing all but dim 1. ghost: (N/g, g, C, *S), each row one B.
    """
    if ghost is not None:
        x = x.unflatten(0, (x.shape[0] // ghost, ghost))
    lead = 0 if ghost is None else 1
    dims = [lead, *range(lead + 2, x.dim())]
    param_shape = (1,) * (lead + 1) + (x.shape[lead + 1],) + (1,) * (x.dim() - lead - 2)
    return x, dims, param_shape


def _per_feature(t: torch.Tensor, ghost: int | None) -> torch.Tensor:
    """A per-B statistic of shape (C,) (device) or summed over the ghost batches."""
    return t.flatten() if ghost is None else t.sum(0).flatten()


def _fast_forward(x, weight, bias, eps: float, ghost: int | None, group):
    """Alg. 1: y, mu_B, rstd = 1/sqrt(var_B + eps), gamma * rstd, m (a tensor for `global`) and var_B."""
    xb, dims, shape = _batches(_as(x, _wide(x.dtype)), ghost)  # one conversion (CPU ops would convert per op)
    mu = xb.sum(dims, keepdim=True)
    m = xb.numel() // mu.numel()  # values per B: examples x positions (Sec. 3.2)
    mu = mu.div_(m)
    d = xb - mu
    var = torch.mul(d, d).sum(dims, keepdim=True).div_(m)
    if group is not None:
        mean, var_g, m = _global_moments(mu.flatten(), var.flatten(), m, group)
        mu, var = mean.view_as(mu), var_g.view_as(var)
        d = xb - mu
    rstd = torch.rsqrt(var + eps)
    scale = weight.view(shape) * rstd
    y = d.mul_(scale).add_(bias.view(shape))  # gamma * x_hat + beta, in d's memory
    return _as(y if ghost is None else y.flatten(0, 1), x.dtype), mu, rstd, scale, m, var


def _fast_backward(g, x, mu, rstd, scale, m, ghost: int | None, group, need_dx: bool):
    """Sec. 3's gradients (as `_BatchNormTrain.backward`), with x_hat = (x - mu_B) * rstd recomputed."""
    gb, _, _ = _batches(_as(g, mu.dtype), ghost)
    xb, dims, _ = _batches(_as(x, mu.dtype), ghost)
    d = xb - mu
    sum_g = gb.sum(dims, keepdim=True)
    sum_gd = torch.mul(gb, d).sum(dims, keepdim=True)  # sum(g * x_hat) = rstd * sum_gd
    dgamma, dbeta = _per_feature(sum_gd * rstd, ghost), _per_feature(sum_g, ghost)
    if group is not None:  # the two means over the global B; dgamma, dbeta stay this process's
        packed = torch.cat([sum_g.flatten(), sum_gd.flatten()])
        dist.all_reduce(packed, group=group)
        sum_g, sum_gd = (t.view_as(mu) for t in packed.chunk(2))
    dx = None
    if need_dx:
        # gamma * rstd * (g - mean(g) - x_hat * mean(g * x_hat)), the bracket's subtrahend in d's memory
        d.mul_(rstd * rstd * sum_gd / m).add_(sum_g / m)
        dx = (gb - d).mul_(scale)
        dx = _as(dx if ghost is None else dx.flatten(0, 1), g.dtype)
    return dx, dgamma, dbeta


_COMPILED: dict = {}  # kernel -> its torch.compile'd twin, or the kernel itself where compiling failed


def _call(kernel, compiled: bool, *args):
    """kernel(*args), through torch.compile if `compiled` (compiled on first use, then cached)."""
    if compiled:
        twin = _COMPILED.get(kernel)
        if twin is None:
            twin = _COMPILED[kernel] = torch.compile(kernel, fullgraph=True, dynamic=True)
        if twin is not kernel:
            try:
                return twin(*args)
            except torch._dynamo.exc.BackendCompilerFailed as err:  # e.g. no C++ compiler for Inductor on CPU
                cause = err.inner_exception
                warnings.warn(f"BatchNorm kernel='compiled': torch.compile failed ({type(cause).__name__}: "
                              f"{cause}); running kernel='fast' instead", RuntimeWarning, stacklevel=2)
                _COMPILED.update({k: k for k in (_fast_forward, _fast_backward)})
    return kernel(*args)


class _BatchNormTrainFast(torch.autograd.Function):
    """`_BatchNormTrain`'s training step, faster (the module docstring's ``fast`` and ``compiled``).

    Updates the running estimates itself (with weight `w`; see `BatchNorm`) and returns y alone.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, w: float, eps: float, ghost: int | None,
                group, compiled: bool):
        compiled = compiled and group is None
        y, mu, rstd, scale, m, var = _call(_fast_forward, compiled, x, weight, bias, eps, ghost, group)
        # Running estimates: mu_B and the unbiased m/(m-1) var_B, averaged over ghost batches.
        mean_b, var_b = mu, var * (m / (m - 1))
        if ghost is not None:
            mean_b, var_b = mean_b.mean(0), var_b.mean(0)
        torch._foreach_lerp_((running_mean, running_var),
                             (_as(mean_b.flatten(), running_mean.dtype), _as(var_b.flatten(), running_var.dtype)), w)
        ctx.save_for_backward(x, mu, rstd, scale)
        ctx.weight_dtype = weight.dtype
        ctx.m, ctx.ghost, ctx.group, ctx.compiled = m, ghost, group, compiled
        return y

    @staticmethod
    def backward(ctx, g):
        x, mu, rstd, scale = ctx.saved_tensors
        dx, dgamma, dbeta = _call(_fast_backward, ctx.compiled, g, x, mu, rstd, scale, ctx.m,
                                  ctx.ghost, ctx.group, ctx.needs_input_grad[0])
        dtype = ctx.weight_dtype
        return dx, _as(dgamma, dtype), _as(dbeta, dtype), None, None, None, None, None, None, None


class BatchNorm(nn.Module):
    """Batch Normalization over dimension 1 of (N, C) or (N, C, *spatial) inputs.

    `stats` picks the values each feature is normalized over in training (module docstring):
    "device", "global" (optionally over `process_group` instead of the world) or "ghost" with
    `ghost_size` >= 2 examples per ghost batch; the batch size must be a multiple of it.

    Running statistics under ``ghost``: each forward pass moves them towards the average over
    its ghost batches of mu_B and of the unbiased m/(m-1) * var_B (m = ghost_size x positions).
    That is what `device` gives for batches of ghost_size examples, and with momentum=None
    (the population pass) it is Alg. 2 with ghost batches as its mini-batches: the statistics
    the network was trained with. It is not the variance of the whole batch, which would also
    count the spread between the ghost batches' means.

    `kernel` ("fast", "reference", "compiled" or "cpp") picks the implementation of the training
    step (and for "cpp" of inference too), not its results (module docstring); `stats` and
    `ghost_size` may change between calls.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 stats: str = "device", ghost_size: int | None = None, process_group=None, kernel: str = "fast"):
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if momentum is not None and not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must be in (0, 1] (PyTorch convention) or None, got {momentum}")
        if stats not in STATS:
            raise ValueError(f"stats must be one of {STATS}, got {stats!r}")
        if stats == "ghost" and (isinstance(ghost_size, bool) or not isinstance(ghost_size, int) or ghost_size < 2):
            raise ValueError(f"stats='ghost' needs an integer ghost_size >= 2, got {ghost_size!r}")
        if stats != "ghost" and ghost_size is not None:
            raise ValueError(f"ghost_size={ghost_size} is only used with stats='ghost', got stats={stats!r}")
        if stats != "global" and process_group is not None:
            raise ValueError(f"process_group is only used with stats='global', got stats={stats!r}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.stats, self.ghost_size, self.process_group = stats, ghost_size, process_group
        self.kernel = kernel  # the implementation of the training step (module docstring); same results
        self.weight = nn.Parameter(torch.ones(num_features))  # gamma
        self.bias = nn.Parameter(torch.zeros(num_features))  # beta
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self._affine_cache: tuple | None = None  # Alg. 2's (scale, shift) under no_grad: `_inference_affine`

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def _inference_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Alg. 2's map y = scale * x + shift: scale = gamma / sqrt(Var + eps), shift = beta - E[x] * scale.

        Where no gradient is wanted (evaluation, under no_grad or inference_mode) the pair is kept
        and reused until gamma, beta or a running estimate changes: the same tensor with the same
        version counter (bumped by every in-place write: an optimizer step, the moving averages,
        the population pass, load_state_dict) and the same storage (`.to()` swaps a parameter's
        data). Its four small ops were 20% of the layer's inference time on (32, 64, 7, 7) and 38%
        on (60, 100)."""
        if torch.is_grad_enabled():
            # gradients may flow to gamma and beta through the pair, or be saved through it for x's
            # (a pair made under Lightning's inference_mode could not be saved for backward)
            return self._affine()
        p, b = self._parameters, self._buffers  # not self.weight etc.: Module.__getattr__ is ~0.4 us a name
        w, beta, mean, var = tensors = (p["weight"], p["bias"], b["running_mean"], b["running_var"])
        try:
            # the identities hold while the cache keeps the tensors alive (no id is reused meanwhile)
            key = (id(w), w._version, w.data_ptr(), id(beta), beta._version, beta.data_ptr(), id(mean), mean._version,
                   mean.data_ptr(), id(var), var._version, var.data_ptr(), self.eps)
        except RuntimeError:  # a module made under torch.inference_mode: no version counters
            return self._affine()
        cache = self._affine_cache
        if cache is None or cache[2] != key:
            cache = self._affine_cache = (*self._affine(), key, tensors)
        return cache[0], cache[1]

    def _affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        return scale, torch.addcmul(self.bias, self.running_mean, scale, value=-1)  # beta - E[x] * scale

    def _shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return (1, self.num_features) + (1,) * (x.dim() - 2)

    def _sync_group(self):
        """The group `global` statistics span, or None where they are this process's own."""
        if self.stats != "global" or not (dist.is_available() and dist.is_initialized()):
            return None
        group = self.process_group if self.process_group is not None else dist.group.WORLD
        return group if dist.get_world_size(group) > 1 else None

    def _cpp(self, x: torch.Tensor):
        """The C++ kernels (bnbench/nn/cpp.py) where this call can use them: kernel="cpp" and a CPU
        input (training also needs statistics over this batch alone: the caller checks); else None."""
        return cpp_kernel() if self.kernel == "cpp" and x.device.type == "cpu" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            # Alg. 2, step 11: a fixed affine map, in the parameters' precision (as few ops as possible).
            ext = self._cpp(x)
            if ext is not None and torch.is_grad_enabled():  # gradients for x, gamma, beta: one C++ node
                return ext.bn_eval(x, self.weight, self.bias, self.running_mean, self.running_var, self.eps)
            scale, shift = self._inference_affine()
            if ext is not None:
                return ext.channel_affine(x, scale, shift)
            if x.dim() == 2:
                return _as(torch.addcmul(shift, x, scale), x.dtype)
            shape = self._shape(x)
            if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
                # NHWC (CPU runs' layout, run.channels_last): C is innermost, one fused pass
                return _as(torch.addcmul(shift.view(shape), x, scale.view(shape)), x.dtype)
            # (addcmul with two per-feature operands takes a slow path on CPU when C is not innermost)
            return _as(x.mul(scale.view(shape)).add_(shift.view(shape)), x.dtype)

        group = self._sync_group()
        if self.ghost_size is not None:
            n, g = x.shape[0], self.ghost_size
            if n == 0 or n % g:
                raise ValueError(
                    f"BatchNorm with stats='ghost' needs a batch size that is a positive multiple of "
                    f"ghost_size: got a batch of {n} examples and ghost_size={g}"
                )
        elif group is None:
            # Across processes only the global count matters: a rank may hold a single example.
            m = x.numel() // self.num_features
            if m < 2:
                raise ValueError(
                    f"BatchNorm needs more than one value per feature in training (got a batch of shape "
                    f"{tuple(x.shape)}): the variance of a single value is zero"
                )
        # The weight of this batch in the running estimates (see the module docstring).
        w = 1.0 / (self.num_batches_tracked.item() + 1) if self.momentum is None else self.momentum
        ext = self._cpp(x) if self.ghost_size is None and group is None else None
        if ext is not None:
            y = ext.bn_train(x, self.weight, self.bias, self.running_mean, self.running_var, w, self.eps)
            self.num_batches_tracked.add_(1)
            return y
        if self.kernel != "reference":
            y = _BatchNormTrainFast.apply(x, self.weight, self.bias, self.running_mean, self.running_var, w,
                                          self.eps, self.ghost_size, group, self.kernel == "compiled")
            self.num_batches_tracked.add_(1)
            return y
        y, mu_b, var_b = _BatchNormTrain.apply(x, self.weight, self.bias, self.eps, self.ghost_size, group)
        with torch.no_grad():
            if self.ghost_size is not None:  # one estimate per ghost batch: their average (class docstring)
                mu_b, var_b = mu_b.mean(0), var_b.mean(0)
            self.num_batches_tracked.add_(1)
            # Under autocast x may be bf16/fp16; the estimates stay in the buffers' dtype.
            self.running_mean.lerp_(mu_b.to(self.running_mean.dtype), w)
            self.running_var.lerp_(var_b.to(self.running_var.dtype), w)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        s = f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
        if self.stats != "device":
            s += f", stats={self.stats}" + (f", ghost_size={self.ghost_size}" if self.ghost_size else "")
        if self.kernel != "fast":
            s += f", kernel={self.kernel}"
        return s
