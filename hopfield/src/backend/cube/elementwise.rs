//! Element-wise kernels: fill, binary ops, `αx + βy`, bias add, activations and their derivatives,
//! the fused Adam/AdamW update. One unit per element, `ABSOLUTE_POS` guarded by the length.

use super::{grid_1d, Cube, CubeRuntime, CubeTensor};
use crate::activation::Activation;
use crate::backend::AdamStep;
use cubecl::prelude::*;

/// The binary operation of [`binary`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
}

#[cube(launch)]
fn fill_kernel(out: &mut [f32], value: f32, n: usize) {
    if ABSOLUTE_POS < n {
        out[ABSOLUTE_POS] = value;
    }
}

#[cube(launch)]
fn binary_kernel(a: &[f32], b: &[f32], out: &mut [f32], n: usize, #[comptime] op: u32) {
    let i = ABSOLUTE_POS;
    if i < n {
        if comptime![op == 0] {
            out[i] = a[i] + b[i];
        } else if comptime![op == 1] {
            out[i] = a[i] - b[i];
        } else {
            out[i] = a[i] * b[i];
        }
    }
}

/// `out = α x + β y` (or `β y` without `x`).
#[cube(launch)]
fn axpby_kernel(x: &[f32], y: &[f32], out: &mut [f32], alpha: f32, beta: f32, n: usize, #[comptime] with_x: bool) {
    let i = ABSOLUTE_POS;
    if i < n {
        if comptime![with_x] {
            out[i] = alpha * x[i] + beta * y[i];
        } else {
            out[i] = beta * y[i];
        }
    }
}

#[cube(launch)]
fn add_bias_kernel(x: &[f32], bias: &[f32], out: &mut [f32], cols: usize, n: usize) {
    let i = ABSOLUTE_POS;
    if i < n {
        out[i] = x[i] + bias[i % cols];
    }
}

// Activation codes (comptime): the kernel is specialised per activation.
const IDENTITY: u32 = 0;
const RELU: u32 = 1;
const TANH: u32 = 2;
const SIGMOID: u32 = 3;
const GELU: u32 = 4;
const GELU_TANH: u32 = 5;
const QUICK_GELU: u32 = 6;
const SILU: u32 = 7;
const ELU: u32 = 8;
const SELU: u32 = 9;
const SOFTPLUS: u32 = 10;

fn code(act: Activation) -> u32 {
    match act {
        Activation::Identity => IDENTITY,
        Activation::Relu => RELU,
        Activation::Tanh => TANH,
        Activation::Sigmoid => SIGMOID,
        Activation::Gelu => GELU,
        Activation::GeluTanh => GELU_TANH,
        Activation::QuickGelu => QUICK_GELU,
        Activation::Silu => SILU,
        Activation::Elu => ELU,
        Activation::Selu => SELU,
        Activation::Softplus => SOFTPLUS,
    }
}

/// Overflow-free logistic function.
#[cube]
fn sigmoid(x: f32) -> f32 {
    let e = (-x.abs()).exp();
    if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

/// `tanh` on a clamped argument (some drivers compute it from `exp(2x)`, which overflows to NaN).
#[cube]
fn tanh_safe(x: f32) -> f32 {
    max(min(x, 15.0), -15.0).tanh()
}

#[cube]
fn act_forward(x: f32, #[comptime] act: u32) -> f32 {
    let mut y = x;
    if comptime![act == RELU] {
        y = max(x, 0.0);
    } else if comptime![act == TANH] {
        y = tanh_safe(x);
    } else if comptime![act == SIGMOID] {
        y = sigmoid(x);
    } else if comptime![act == GELU] {
        y = 0.5 * x * (1.0 + Erf::erf(x * 0.707_106_77));
    } else if comptime![act == GELU_TANH] {
        y = 0.5 * x * (1.0 + tanh_safe(0.797_884_6 * (x + 0.044715 * x * x * x)));
    } else if comptime![act == QUICK_GELU] {
        y = x * sigmoid(1.702 * x);
    } else if comptime![act == SILU] {
        y = x * sigmoid(x);
    } else if comptime![act == ELU] {
        y = if x > 0.0 { x } else { x.exp_m1() };
    } else if comptime![act == SELU] {
        let z = if x > 0.0 { x } else { 1.673_263_2 * x.exp_m1() };
        y = 1.050_701 * z;
    } else if comptime![act == SOFTPLUS] {
        y = if x > 20.0 { x } else { x.exp().log1p() };
    }
    y
}

#[cube]
fn act_derivative(x: f32, #[comptime] act: u32) -> f32 {
    let mut d = 1.0f32;
    if comptime![act == RELU] {
        d = if x > 0.0 { 1.0f32 } else { 0.0f32 };
    } else if comptime![act == TANH] {
        let t = tanh_safe(x);
        d = 1.0 - t * t;
    } else if comptime![act == SIGMOID] {
        let s = sigmoid(x);
        d = s * (1.0 - s);
    } else if comptime![act == GELU] {
        let cdf = 0.5 * (1.0 + Erf::erf(x * 0.707_106_77));
        let pdf = (x * x * -0.5f32).exp() * 0.398_942_3;
        d = cdf + x * pdf;
    } else if comptime![act == GELU_TANH] {
        let t = tanh_safe(0.797_884_6 * (x + 0.044715 * x * x * x));
        d = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * 0.797_884_6 * (1.0 + 0.134_145 * x * x);
    } else if comptime![act == QUICK_GELU] {
        let s = sigmoid(1.702 * x);
        d = s + 1.702 * x * s * (1.0 - s);
    } else if comptime![act == SILU] {
        let s = sigmoid(x);
        d = s + x * s * (1.0 - s);
    } else if comptime![act == ELU] {
        d = if x > 0.0 { 1.0f32 } else { x.exp() };
    } else if comptime![act == SELU] {
        let z = if x > 0.0 { 1.0f32 } else { 1.673_263_2 * x.exp() };
        d = 1.050_701 * z;
    } else if comptime![act == SOFTPLUS] {
        d = sigmoid(x);
    }
    d
}

#[cube(launch)]
fn activation_kernel(x: &[f32], out: &mut [f32], n: usize, #[comptime] act: u32) {
    let i = ABSOLUTE_POS;
    if i < n {
        out[i] = act_forward(x[i], act);
    }
}

/// `op(x)`: 0 exp, 1 ln, 2 rsqrt (the order of [`Unary`](crate::backend::Unary)).
#[cube(launch)]
fn unary_kernel(x: &[f32], out: &mut [f32], n: usize, #[comptime] op: u32) {
    let i = ABSOLUTE_POS;
    if i < n {
        let v = x[i];
        if comptime![op == 0] {
            out[i] = v.exp();
        } else if comptime![op == 1] {
            out[i] = v.ln();
        } else {
            out[i] = 1.0f32 / v.sqrt();
        }
    }
}

#[cube(launch)]
fn activation_backward_kernel(x: &[f32], dy: &[f32], out: &mut [f32], n: usize, #[comptime] act: u32) {
    let i = ABSOLUTE_POS;
    if i < n {
        out[i] = dy[i] * act_derivative(x[i], act);
    }
}

/// One Adam/AdamW step; same formula, same order of operations as `Cpu::adam_step`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn adam_kernel(
    p: &[f32],
    g: &[f32],
    m: &[f32],
    v: &[f32],
    p_out: &mut [f32],
    m_out: &mut [f32],
    v_out: &mut [f32],
    hp: &[f32],
    n: usize,
) {
    let i = ABSOLUTE_POS;
    if i < n {
        // hp = [β₁, β₂, step size lr/bc1, sqrt(bc2), ε, l2, decay 1 − lr·decoupled]
        let b1 = hp[0];
        let b2 = hp[1];
        let step_size = hp[2];
        let bc2_sqrt = hp[3];
        let eps = hp[4];
        let l2 = hp[5];
        let decay = hp[6];
        let gi = g[i] + l2 * p[i];
        let pi = p[i] * decay;
        let mi = b1 * m[i] + (1.0 - b1) * gi;
        let vi = b2 * v[i] + (1.0 - b2) * gi * gi;
        m_out[i] = mi;
        v_out[i] = vi;
        p_out[i] = pi - step_size * mi / (vi.sqrt() / bc2_sqrt + eps);
    }
}

// ---- host wrappers -----------------------------------------------------------------------------------

pub(crate) fn fill<R: CubeRuntime>(g: &Cube<R>, shape: &[usize], value: f32) -> CubeTensor {
    let out = g.alloc(shape);
    let n = out.len();
    if n > 0 {
        let (count, dim) = grid_1d(n);
        fill_kernel::launch(&g.client, count, dim, out.arg(), value, n);
    }
    out
}

pub(crate) fn binary<R: CubeRuntime>(g: &Cube<R>, a: &CubeTensor, b: &CubeTensor, op: Op) -> CubeTensor {
    debug_assert_eq!(a.shape, b.shape, "{op:?}: shapes");
    let out = g.alloc(&a.shape);
    let n = out.len();
    if n > 0 {
        let (count, dim) = grid_1d(n);
        binary_kernel::launch(&g.client, count, dim, a.arg(), b.arg(), out.arg(), n, op as u32);
    }
    out
}

/// `α x + β y`; with `alpha == 0` the `x` term is left out entirely (so `0 · ∞` does not make NaN).
pub(crate) fn axpby<R: CubeRuntime>(g: &Cube<R>, alpha: f32, x: &CubeTensor, beta: f32, y: &CubeTensor) -> CubeTensor {
    debug_assert_eq!(x.shape, y.shape, "axpby: shapes");
    // Argument order mirrors `Backend::axpy(y, α, x)`: here `x` is the tensor scaled by `alpha`.
    let out = g.alloc(&x.shape);
    let n = out.len();
    if n > 0 {
        let (count, dim) = grid_1d(n);
        let with = alpha != 0.0;
        axpby_kernel::launch(&g.client, count, dim, x.arg(), y.arg(), out.arg(), alpha, beta, n, with);
    }
    out
}

pub(crate) fn add_bias<R: CubeRuntime>(g: &Cube<R>, x: &CubeTensor, bias: &CubeTensor) -> CubeTensor {
    let cols = *x.shape.last().expect("add_bias: x has a last axis");
    debug_assert_eq!(bias.len(), cols, "add_bias: bias {:?} for x {:?}", bias.shape, x.shape);
    let out = g.alloc(&x.shape);
    let n = out.len();
    if n > 0 {
        let (count, dim) = grid_1d(n);
        add_bias_kernel::launch(&g.client, count, dim, x.arg(), bias.arg(), out.arg(), cols, n);
    }
    out
}

pub(crate) fn activation<R: CubeRuntime>(g: &Cube<R>, x: &CubeTensor, act: Activation) -> CubeTensor {
    let out = g.alloc(&x.shape);
    let n = out.len();
    if n > 0 {
        let (count, dim) = grid_1d(n);
        activation_kernel::launch(&g.client, count, dim, x.arg(), out.arg(), n, code(act));
    }
    out
}

pub(crate) fn unary<R: CubeRuntime>(g: &Cube<R>, x: &CubeTensor, op: crate::backend::Unary) -> CubeTensor {
    use crate::backend::Unary;
    let out = g.alloc(&x.shape);
    let n = out.len();
    if n > 0 {
        let (count, dim) = grid_1d(n);
        let code = match op {
            Unary::Exp => 0,
            Unary::Ln => 1,
            Unary::Rsqrt => 2,
        };
        unary_kernel::launch(&g.client, count, dim, x.arg(), out.arg(), n, code);
    }
    out
}

pub(crate) fn activation_backward<R: CubeRuntime>(
    g: &Cube<R>,
    x: &CubeTensor,
    dy: &CubeTensor,
    act: Activation,
) -> CubeTensor {
    debug_assert_eq!(x.shape, dy.shape, "activation_backward: shapes");
    let out = g.alloc(&x.shape);
    let n = out.len();
    if n > 0 {
        let (count, dim) = grid_1d(n);
        activation_backward_kernel::launch(&g.client, count, dim, x.arg(), dy.arg(), out.arg(), n, code(act));
    }
    out
}

pub(crate) fn adam_step<R: CubeRuntime>(
    g: &Cube<R>,
    p: &CubeTensor,
    grad: &CubeTensor,
    m: &CubeTensor,
    v: &CubeTensor,
    hp: AdamStep,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    debug_assert!(p.shape == grad.shape && p.shape == m.shape && p.shape == v.shape, "adam_step: shapes");
    let bc1 = 1.0 - hp.beta1.powi(hp.step as i32);
    let bc2 = 1.0 - hp.beta2.powi(hp.step as i32);
    let consts = [
        hp.beta1 as f32,
        hp.beta2 as f32,
        (hp.lr / bc1) as f32,
        bc2.sqrt() as f32,
        hp.eps as f32,
        hp.l2 as f32,
        (1.0 - hp.lr * hp.decoupled) as f32,
    ];
    let (po, mo, vo) = (g.alloc(&p.shape), g.alloc(&p.shape), g.alloc(&p.shape));
    let n = p.len();
    if n > 0 {
        let (count, dim) = grid_1d(n);
        adam_kernel::launch(
            &g.client,
            count,
            dim,
            p.arg(),
            grad.arg(),
            m.arg(),
            v.arg(),
            po.arg(),
            mo.arg(),
            vo.arg(),
            g.upload_f32(&consts),
            n,
        );
    }
    (po, mo, vo)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::backend::{AdamStep, Backend};
    use crate::Activation;

    #[test]
    fn elementwise_ops_match_cpu() {
        let (g, c, mut r) = (gpu(), cpu(), rng(1));
        for shape in [vec![1], vec![7, 13], vec![3, 5, 257], vec![2, 70_001]] {
            let (ag, ac) = pair(&g, &mut r, &shape);
            let (bg, bc) = pair(&g, &mut r, &shape);
            assert_close("add", &g, &g.add(&ag, &bg), &c.add(&ac, &bc), 1e-6);
            assert_close("sub", &g, &g.sub(&ag, &bg), &c.sub(&ac, &bc), 1e-6);
            assert_close("mul", &g, &g.mul(&ag, &bg), &c.mul(&ac, &bc), 1e-6);
            assert_close("scale", &g, &g.scale(&ag, -1.7), &c.scale(&ac, -1.7), 1e-6);
            assert_close("full", &g, &g.full(&shape, 0.25), &c.full(&shape, 0.25), 0.0);
            let (mut yg, mut yc) = (ag.clone(), ac.clone());
            g.axpy(&mut yg, 0.3, &bg);
            c.axpy(&mut yc, 0.3, &bc);
            assert_close("axpy", &g, &yg, &yc, 1e-6);
            // axpy is out of place: the clone it came from is unchanged.
            assert_close("axpy leaves clones alone", &g, &ag, &ac, 0.0);
            let cols = *shape.last().unwrap();
            let (biasg, biasc) = pair(&g, &mut r, &[cols]);
            assert_close("add_bias", &g, &g.add_bias(&ag, &biasg), &c.add_bias(&ac, &biasc), 1e-6);
        }
    }

    #[test]
    fn unary_ops_match_cpu() {
        use crate::backend::Unary;
        let (g, c) = (gpu(), cpu());
        let v: Vec<f32> = vec![0.0, 1e-30, 0.25, 1.0, 2.5, 80.0, -3.0, f32::NEG_INFINITY, f32::INFINITY, 7.0];
        for op in [Unary::Exp, Unary::Ln, Unary::Rsqrt] {
            let (tg, tc) = (g.from_vec(v.clone(), &[2, 5]), c.from_vec(v.clone(), &[2, 5]));
            let (a, b) = (g.to_vec(&g.unary(&tg, op)), c.to_vec(&c.unary(&tc, op)));
            for (i, (&a, &b)) in a.iter().zip(&b).enumerate() {
                let same = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 2e-6 * b.abs().max(1e-30);
                assert!(same, "{op:?}({}) = {a} on the device, {b} on the CPU", v[i]);
            }
        }
    }

    #[test]
    fn activations_and_derivatives_match_cpu() {
        let (g, c, mut r) = (gpu(), cpu(), rng(2));
        let v: Vec<f32> = (0..1001).map(|i| (i as f32 - 500.0) / 60.0).collect();
        let (xg, xc) = (g.from_vec(v.clone(), &[7, 143]), c.from_vec(v, &[7, 143]));
        let (dyg, dyc) = pair(&g, &mut r, &[7, 143]);
        for name in Activation::NAMES {
            let act: Activation = name.parse().unwrap();
            assert_close(name, &g, &g.activation(&xg, act), &c.activation(&xc, act), 1e-5);
            assert_close(
                &format!("{name}'"),
                &g,
                &g.activation_backward(&xg, &dyg, act),
                &c.activation_backward(&xc, &dyc, act),
                1e-5,
            );
        }
    }

    #[test]
    fn adam_step_matches_cpu() {
        let (g, c, mut r) = (gpu(), cpu(), rng(3));
        let shape = [33, 17];
        let (mut pg, mut pc) = pair(&g, &mut r, &shape);
        let (gg, gc) = pair(&g, &mut r, &shape);
        let (mut mg, mut mc) = (g.zeros(&shape), c.zeros(&shape));
        let (mut vg, mut vc) = (g.zeros(&shape), c.zeros(&shape));
        for step in 1..4 {
            let hp = AdamStep { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, l2: 0.01, decoupled: 0.1, step };
            g.adam_step(&mut pg, &gg, &mut mg, &mut vg, hp);
            c.adam_step(&mut pc, &gc, &mut mc, &mut vc, hp);
        }
        assert_close("param", &g, &pg, &pc, 1e-5);
        assert_close("m", &g, &mg, &mc, 1e-5);
        assert_close("v", &g, &vg, &vc, 1e-5);
    }
}
