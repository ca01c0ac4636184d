"""Batch Normalization as the paper defines it (Sec. 3, Algorithms 1 and 2).

Training (Alg. 1), per feature over the m values of a mini-batch (for convolutions, over the
batch and every spatial position, Sec. 3.2, so m' = m * p * q):

    mu_B  = mean(x)            var_B = mean((x - mu_B)^2)      (biased)
    x_hat = (x - mu_B) / sqrt(var_B + eps)                     y = gamma * x_hat + beta

The backward pass is Sec. 3's chain rule, simplified:

    dl/dbeta = sum(g)     dl/dgamma = sum(g * x_hat)
    dl/dx    = gamma / sqrt(var_B + eps) * (g - mean(g) - x_hat * mean(g * x_hat))

(`_BatchNormTrain`; ~1.6x faster than autograd on the paper's MLP layer, and tested against
torch.nn.functional.batch_norm).

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
"""

from __future__ import annotations

import torch
from torch import nn


class _BatchNormTrain(torch.autograd.Function):
    """Alg. 1's transform with the paper's gradients (Sec. 3) as its backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float, dims: list[int], shape: tuple[int, ...]):
        var_b, mu_b = torch.var_mean(x, dim=dims, unbiased=False)
        rstd = torch.rsqrt(var_b + eps)
        x_hat = (x - mu_b.view(shape)) * rstd.view(shape)
        ctx.save_for_backward(x_hat, weight, rstd)
        ctx.dims, ctx.shape = dims, shape
        ctx.mark_non_differentiable(mu_b, var_b)
        return torch.addcmul(bias.view(shape), x_hat, weight.view(shape)), mu_b, var_b

    @staticmethod
    def backward(ctx, g, _g_mu, _g_var):
        x_hat, weight, rstd = ctx.saved_tensors
        dims, shape = ctx.dims, ctx.shape
        m = x_hat.numel() // x_hat.shape[1]
        dbeta = g.sum(dims)
        dgamma = (g * x_hat).sum(dims)
        dx = (weight * rstd).view(shape) * (g - (dbeta / m).view(shape) - x_hat * (dgamma / m).view(shape))
        return dx, dgamma, dbeta, None, None, None


class BatchNorm(nn.Module):
    """Batch Normalization over dimension 1 of (N, C) or (N, C, *spatial) inputs."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__()
        if momentum is not None and not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must be in (0, 1] (PyTorch convention) or None, got {momentum}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))  # gamma
        self.bias = nn.Parameter(torch.zeros(num_features))  # beta
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def _shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return (1, self.num_features) + (1,) * (x.dim() - 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = self._shape(x)
        if not self.training:
            # Alg. 2, step 11: a fixed affine map.
            scale = self.weight * torch.rsqrt(self.running_var + self.eps)
            shift = self.bias - self.running_mean * scale
            return x * scale.view(shape) + shift.view(shape)

        dims = [0, *range(2, x.dim())]
        m = x.numel() // self.num_features
        if m < 2:
            raise ValueError(
                f"BatchNorm needs more than one value per feature in training (got a batch of shape "
                f"{tuple(x.shape)}): the variance of a single value is zero"
            )
        y, mu_b, var_b = _BatchNormTrain.apply(x, self.weight, self.bias, self.eps, dims, shape)
        with torch.no_grad():
            self.num_batches_tracked += 1
            w = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
            # Under autocast x may be bf16/fp16; the estimates stay in the buffers' dtype.
            self.running_mean.lerp_(mu_b.to(self.running_mean.dtype), w)
            self.running_var.lerp_((var_b * (m / (m - 1))).to(self.running_var.dtype), w)
        return y

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
