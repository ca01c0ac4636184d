// bnbench's own Batch Normalization as hand-written CPU kernels (kernel="cpp", see
// bnbench/nn/batchnorm.py and bnbench/nn/cpp.py, which builds this file on first use).
//
// bn_train: Alg. 1 for stats="device" -- mu_B and var_B in two passes (the mean first, then the
// squared deviations from it), y = gamma * x_hat + beta in one more pass, the running estimates
// moved towards mu_B and the unbiased m/(m-1) var_B; its backward is Sec. 3's
//     dl/dbeta = sum(g)   dl/dgamma = sum(g * x_hat)
//     dl/dx    = gamma * rstd * (g - mean(g) - x_hat * mean(g * x_hat))
// in two passes (the two sums, then dl/dx), x_hat recomputed from the saved input.
//
// bn_eval: Alg. 2's inference map y = gamma * (x - E[x]) / sqrt(Var[x] + eps) + beta (evaluation
// mode with gradients wanted, e.g. a frozen BN in fine-tuning), with its backward
//     dl/dx = gamma / sqrt(Var[x] + eps) * g   dl/dgamma = sum(g * x_hat)   dl/dbeta = sum(g)
//
// channel_affine: y = scale[c] * x + shift[c], the same map with scale and shift precomputed by
// the caller (inference without gradients, where the layer keeps them between calls); its backward
// (dl/dx = scale * g, dl/dscale = sum(g * x), dl/dshift = sum(g)) is there for completeness.
//
// Layouts: x is (N, C, *S) either contiguous ("planes": each (n, c) a run of L = prod(S) values)
// or, for 2-d and 4-d channels_last inputs, C innermost ("rows": N * L rows of C values, also
// what a contiguous (N, C) is). Arithmetic in at::opmath_type (float for float, bfloat16 and
// half: the input is read once and the result rounded once; double for double); the per-feature
// sums are added in double across blocks of rows. Autograd nodes are C++ (torch::autograd::
// Function): no Python in the backward. Single-threaded: bnbench runs one torch thread per job.

#include <torch/extension.h>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kBlockRows = 256;  // rows summed in opmath precision before adding into double

struct Layout {
  int64_t outer;  // rows (C innermost) or N (planes)
  int64_t channels;
  int64_t inner;  // 1 for rows, L for planes
  bool channels_last;
  int64_t count() const { return outer * inner; }  // values per feature: m in Alg. 1
};

bool is_channels_last(const at::Tensor& x) {
  return x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

Layout layout_of(const at::Tensor& x) {
  const int64_t n = x.size(0), c = x.size(1), l = c == 0 || n == 0 ? 0 : x.numel() / (n * c);
  if (is_channels_last(x)) return {n * l, c, 1, true};
  if (l == 1) return {n, c, 1, false};
  return {n, c, l, false};
}

// x (or a gradient shaped like it) in the layout the kernels read
at::Tensor dense(const at::Tensor& t, bool channels_last) {
  return channels_last ? t.contiguous(at::MemoryFormat::ChannelsLast) : t.contiguous();
}

// out[c] += sum over the layout's values of feature c of f(value, c); f sees opmath values
template <typename scalar_t, typename acc_t, typename F>
void per_feature_sum(const scalar_t* x, const Layout& v, double* out, F f) {
  if (v.inner == 1) {
    std::vector<acc_t> acc(v.channels);
    for (int64_t r0 = 0; r0 < v.outer; r0 += kBlockRows) {
      std::fill(acc.begin(), acc.end(), acc_t(0));
      const int64_t r1 = std::min(v.outer, r0 + kBlockRows);
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* row = x + r * v.channels;
        acc_t* a = acc.data();
        for (int64_t c = 0; c < v.channels; ++c) a[c] += f(acc_t(row[c]), c);
      }
      for (int64_t c = 0; c < v.channels; ++c) out[c] += double(acc[c]);
    }
    return;
  }
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t c = 0; c < v.channels; ++c) {
      const scalar_t* plane = x + (o * v.channels + c) * v.inner;
      acc_t a = 0;
#pragma omp simd reduction(+ : a)
      for (int64_t i = 0; i < v.inner; ++i) a += f(acc_t(plane[i]), c);
      out[c] += double(a);
    }
}

// two per-feature sums in one pass over x and g (the backward's sum(g), sum(g * h(x)))
template <typename scalar_t, typename acc_t, typename H>
void per_feature_sums2(const scalar_t* g, const scalar_t* x, const Layout& v, double* sum_g, double* sum_gh, H h) {
  if (v.inner == 1) {
    std::vector<acc_t> a(v.channels), b(v.channels);
    for (int64_t r0 = 0; r0 < v.outer; r0 += kBlockRows) {
      std::fill(a.begin(), a.end(), acc_t(0));
      std::fill(b.begin(), b.end(), acc_t(0));
      const int64_t r1 = std::min(v.outer, r0 + kBlockRows);
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t *gr = g + r * v.channels, *xr = x + r * v.channels;
        acc_t *pa = a.data(), *pb = b.data();
        for (int64_t c = 0; c < v.channels; ++c) {
          const acc_t gi = acc_t(gr[c]);
          pa[c] += gi;
          pb[c] += gi * h(acc_t(xr[c]), c);
        }
      }
      for (int64_t c = 0; c < v.channels; ++c) {
        sum_g[c] += double(a[c]);
        sum_gh[c] += double(b[c]);
      }
    }
    return;
  }
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t c = 0; c < v.channels; ++c) {
      const int64_t base = (o * v.channels + c) * v.inner;
      acc_t a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
      for (int64_t i = 0; i < v.inner; ++i) {
        const acc_t gi = acc_t(g[base + i]);
        a += gi;
        b += gi * h(acc_t(x[base + i]), c);
      }
      sum_g[c] += double(a);
      sum_gh[c] += double(b);
    }
}

// out = f(in values, c) elementwise (out may be a second input's layout twin)
template <typename scalar_t, typename acc_t, typename F>
void per_value(const scalar_t* in, scalar_t* out, const Layout& v, F f) {
  if (v.inner == 1) {
    for (int64_t r = 0; r < v.outer; ++r) {
      const scalar_t* row = in + r * v.channels;
      scalar_t* dst = out + r * v.channels;
      for (int64_t c = 0; c < v.channels; ++c) dst[c] = scalar_t(f(acc_t(row[c]), r * v.channels + c, c));
    }
    return;
  }
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t c = 0; c < v.channels; ++c) {
      const int64_t base = (o * v.channels + c) * v.inner;
      for (int64_t i = 0; i < v.inner; ++i) out[base + i] = scalar_t(f(acc_t(in[base + i]), base + i, c));
    }
}

template <typename acc_t>
std::vector<acc_t> as_vector(const at::Tensor& t) {
  const at::Tensor d = t.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
  return std::vector<acc_t>(d.data_ptr<acc_t>(), d.data_ptr<acc_t>() + d.numel());
}

template <typename acc_t>
at::Tensor from_doubles(const std::vector<double>& v, const at::TensorOptions& opts) {
  at::Tensor t = at::empty({int64_t(v.size())}, opts.dtype(c10::CppTypeToScalarType<acc_t>::value));
  std::copy(v.begin(), v.end(), t.data_ptr<acc_t>());
  return t;
}

struct BatchNormTrain : public torch::autograd::Function<BatchNormTrain> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& bias, at::Tensor running_mean, at::Tensor running_var,
                            double momentum, double eps) {
    const Layout v = layout_of(input);
    const at::Tensor x = dense(input, v.channels_last);
    at::Tensor y = at::empty_like(x);
    at::Tensor mean, rstd;
    const double m = double(v.count());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "bnbench_bn_train", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const scalar_t* px = x.data_ptr<scalar_t>();
      std::vector<double> sum(v.channels, 0.0), sq(v.channels, 0.0);
      per_feature_sum<scalar_t, acc_t>(px, v, sum.data(), [](acc_t a, int64_t) { return a; });
      std::vector<acc_t> mu(v.channels);
      for (int64_t c = 0; c < v.channels; ++c) mu[c] = acc_t(sum[c] / m);
      const acc_t* pmu = mu.data();
      per_feature_sum<scalar_t, acc_t>(px, v, sq.data(), [pmu](acc_t a, int64_t c) {
        const acc_t d = a - pmu[c];
        return d * d;
      });
      std::vector<double> var(v.channels), inv(v.channels);
      for (int64_t c = 0; c < v.channels; ++c) {
        var[c] = sq[c] / m;
        inv[c] = 1.0 / std::sqrt(double(acc_t(var[c])) + eps);
      }
      const std::vector<acc_t> gamma = as_vector<acc_t>(weight), beta = as_vector<acc_t>(bias);
      std::vector<acc_t> scale(v.channels), shift(v.channels);
      for (int64_t c = 0; c < v.channels; ++c) {
        scale[c] = gamma[c] * acc_t(inv[c]);
        shift[c] = beta[c] - mu[c] * scale[c];
      }
      const acc_t *ps = scale.data(), *pt = shift.data();
      per_value<scalar_t, acc_t>(px, y.data_ptr<scalar_t>(), v,
                                 [ps, pt](acc_t a, int64_t, int64_t c) { return a * ps[c] + pt[c]; });
      std::vector<double> mu_d(mu.begin(), mu.end()), unbiased(var);
      for (auto& u : unbiased) u *= m / (m - 1);
      mean = from_doubles<acc_t>(mu_d, x.options());
      rstd = from_doubles<acc_t>(inv, x.options());
      at::NoGradGuard no_grad;
      running_mean.lerp_(mean.to(running_mean.dtype()), momentum);
      running_var.lerp_(from_doubles<acc_t>(unbiased, x.options()).to(running_var.dtype()), momentum);
    });
    ctx->save_for_backward({x, weight, mean, rstd});
    ctx->saved_data["channels_last"] = v.channels_last;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &mean = saved[2], &rstd = saved[3];
    const bool channels_last = ctx->saved_data["channels_last"].toBool();
    const Layout v = layout_of(x);
    const at::Tensor g = dense(grads[0], channels_last).to(x.scalar_type());
    const double m = double(v.count());
    at::Tensor dx, dgamma, dbeta;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "bnbench_bn_train_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const scalar_t *px = x.data_ptr<scalar_t>(), *pg = g.data_ptr<scalar_t>();
      const std::vector<acc_t> mu = as_vector<acc_t>(mean), inv = as_vector<acc_t>(rstd), gamma = as_vector<acc_t>(weight);
      std::vector<double> sum_g(v.channels, 0.0), sum_gd(v.channels, 0.0);  // sum(g), sum(g * (x - mu))
      const acc_t* pmu = mu.data();
      per_feature_sums2<scalar_t, acc_t>(pg, px, v, sum_g.data(), sum_gd.data(),
                                         [pmu](acc_t a, int64_t c) { return a - pmu[c]; });
      std::vector<double> dgamma_d(v.channels);
      std::vector<acc_t> k_scale(v.channels), k_mean_g(v.channels), k_xhat(v.channels);
      for (int64_t c = 0; c < v.channels; ++c) {
        dgamma_d[c] = sum_gd[c] * double(inv[c]);
        k_scale[c] = gamma[c] * inv[c];                                  // gamma * rstd
        k_mean_g[c] = acc_t(sum_g[c] / m);                               // mean(g)
        k_xhat[c] = acc_t(sum_gd[c] / m * double(inv[c]) * double(inv[c]));  // mean(g * x_hat) * rstd
      }
      dgamma = from_doubles<acc_t>(dgamma_d, x.options()).to(weight.scalar_type());
      dbeta = from_doubles<acc_t>(sum_g, x.options()).to(weight.scalar_type());
      if (ctx->needs_input_grad(0)) {
        dx = at::empty_like(x);
        const acc_t *ks = k_scale.data(), *kg = k_mean_g.data(), *kx = k_xhat.data();
        per_value<scalar_t, acc_t>(pg, dx.data_ptr<scalar_t>(), v, [=](acc_t gi, int64_t i, int64_t c) {
          return ks[c] * (gi - kg[c] - (acc_t(px[i]) - pmu[c]) * kx[c]);
        });
      }
    });
    return {dx, dgamma, dbeta, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

struct ChannelAffine : public torch::autograd::Function<ChannelAffine> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& scale,
                            const at::Tensor& shift) {
    const Layout v = layout_of(input);
    const at::Tensor x = dense(input, v.channels_last);
    at::Tensor y = at::empty_like(x);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "bnbench_channel_affine", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const std::vector<acc_t> a = as_vector<acc_t>(scale), b = as_vector<acc_t>(shift);
      const acc_t *pa = a.data(), *pb = b.data();
      per_value<scalar_t, acc_t>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), v,
                                 [pa, pb](acc_t xv, int64_t, int64_t c) { return xv * pa[c] + pb[c]; });
    });
    ctx->save_for_backward({x, scale});
    ctx->saved_data["channels_last"] = v.channels_last;
    ctx->saved_data["shift_dtype"] = shift.scalar_type();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &scale = saved[1];
    const Layout v = layout_of(x);
    const at::Tensor g = dense(grads[0], ctx->saved_data["channels_last"].toBool()).to(x.scalar_type());
    at::Tensor dx, dscale, dshift;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "bnbench_channel_affine_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      if (ctx->needs_input_grad(1) || ctx->needs_input_grad(2)) {
        std::vector<double> sum_g(v.channels, 0.0), sum_gx(v.channels, 0.0);
        per_feature_sums2<scalar_t, acc_t>(g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), v, sum_g.data(),
                                           sum_gx.data(), [](acc_t a, int64_t) { return a; });
        dscale = from_doubles<acc_t>(sum_gx, x.options()).to(scale.scalar_type());
        dshift = from_doubles<acc_t>(sum_g, x.options()).to(ctx->saved_data["shift_dtype"].toScalarType());
      }
      if (ctx->needs_input_grad(0)) {
        dx = at::empty_like(x);
        const std::vector<acc_t> a = as_vector<acc_t>(scale);
        const acc_t* pa = a.data();
        per_value<scalar_t, acc_t>(g.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(), v,
                                   [pa](acc_t gi, int64_t, int64_t c) { return gi * pa[c]; });
      }
    });
    return {dx, dscale, dshift};
  }
};

struct BatchNormEval : public torch::autograd::Function<BatchNormEval> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& bias, const at::Tensor& running_mean, const at::Tensor& running_var,
                            double eps) {
    const Layout v = layout_of(input);
    const at::Tensor x = dense(input, v.channels_last);
    at::Tensor y = at::empty_like(x);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "bnbench_bn_eval", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const std::vector<acc_t> gamma = as_vector<acc_t>(weight), beta = as_vector<acc_t>(bias),
                               mean = as_vector<acc_t>(running_mean), var = as_vector<acc_t>(running_var);
      std::vector<acc_t> scale(v.channels), shift(v.channels);
      for (int64_t c = 0; c < v.channels; ++c) {
        scale[c] = gamma[c] / std::sqrt(var[c] + acc_t(eps));
        shift[c] = beta[c] - mean[c] * scale[c];
      }
      const acc_t *ps = scale.data(), *pt = shift.data();
      per_value<scalar_t, acc_t>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), v,
                                 [ps, pt](acc_t a, int64_t, int64_t c) { return a * ps[c] + pt[c]; });
    });
    ctx->save_for_backward({x, weight, running_mean, running_var});
    ctx->saved_data["channels_last"] = v.channels_last;
    ctx->saved_data["eps"] = eps;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &running_mean = saved[2], &running_var = saved[3];
    const double eps = ctx->saved_data["eps"].toDouble();
    const Layout v = layout_of(x);
    const at::Tensor g = dense(grads[0], ctx->saved_data["channels_last"].toBool()).to(x.scalar_type());
    at::Tensor dx, dgamma, dbeta;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "bnbench_bn_eval_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const std::vector<acc_t> gamma = as_vector<acc_t>(weight), mean = as_vector<acc_t>(running_mean),
                               var = as_vector<acc_t>(running_var);
      std::vector<acc_t> inv(v.channels);
      for (int64_t c = 0; c < v.channels; ++c) inv[c] = acc_t(1) / std::sqrt(var[c] + acc_t(eps));
      if (ctx->needs_input_grad(1) || ctx->needs_input_grad(2)) {
        std::vector<double> sum_g(v.channels, 0.0), sum_gd(v.channels, 0.0);  // sum(g), sum(g * (x - E[x]))
        const acc_t* pm = mean.data();
        per_feature_sums2<scalar_t, acc_t>(g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), v, sum_g.data(),
                                           sum_gd.data(), [pm](acc_t a, int64_t c) { return a - pm[c]; });
        for (int64_t c = 0; c < v.channels; ++c) sum_gd[c] *= double(inv[c]);  // sum(g * x_hat)
        dgamma = from_doubles<acc_t>(sum_gd, x.options()).to(weight.scalar_type());
        dbeta = from_doubles<acc_t>(sum_g, x.options()).to(weight.scalar_type());
      }
      if (ctx->needs_input_grad(0)) {
        dx = at::empty_like(x);
        std::vector<acc_t> scale(v.channels);
        for (int64_t c = 0; c < v.channels; ++c) scale[c] = gamma[c] * inv[c];
        const acc_t* ps = scale.data();
        per_value<scalar_t, acc_t>(g.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(), v,
                                   [ps](acc_t gi, int64_t, int64_t c) { return gi * ps[c]; });
      }
    });
    return {dx, dgamma, dbeta, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor bn_eval(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                   const at::Tensor& running_mean, const at::Tensor& running_var, double eps) {
  return BatchNormEval::apply(x, weight, bias, running_mean, running_var, eps);
}

at::Tensor bn_train(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::Tensor running_mean,
                    at::Tensor running_var, double momentum, double eps) {
  return BatchNormTrain::apply(x, weight, bias, running_mean, running_var, momentum, eps);
}

at::Tensor channel_affine(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift) {
  return ChannelAffine::apply(x, scale, shift);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("bn_train", &bn_train, "Alg. 1 training step, stats='device' (y; running estimates updated in place)");
  m.def("bn_eval", &bn_eval, "Alg. 2's inference map with gradients for x, gamma and beta (evaluation mode)");
  m.def("channel_affine", &channel_affine, "y = scale[c] * x + shift[c] (Alg. 2's inference map)");
}
