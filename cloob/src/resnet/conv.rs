//! 2-D convolution and average pooling on channels-last (NHWC) tensors, built from the backend's row
//! operations so that every backend runs them without a kernel of its own.
//!
//! A convolution is im2col + matmul: the input's pixels are the rows of a table `[B·H·W + 1, C]` whose
//! last row is zero (the padding), [`Backend::gather_rows`] lays each output pixel's `k×k` neighbourhood
//! out as one row `[k·k·C]`, and one matmul with the kernel `[O, k·k·C]` gives the output. Its backward is
//! the transposed matmul and col2im, [`Backend::scatter_add_rows`] back into the table. A 1×1 convolution
//! of stride 1 is a plain matmul over channels.

use hopfield::{Backend, HopfieldError, Result};

/// The geometry of a square convolution without bias (PyTorch's `nn.Conv2d(.., bias=False)`).
///
/// # Shapes
/// input `[B, H, W, in]` (NHWC) → output `[B, H', W', out]` with `H' = (H + 2·padding − kernel) / stride + 1`;
/// weight `[out, in, kernel, kernel]` (PyTorch's layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Square kernel side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
}

impl Conv2d {
    /// A `kernel × kernel` convolution.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize, stride: usize, padding: usize) -> Self {
        Conv2d { in_channels, out_channels, kernel, stride, padding }
    }

    /// The weight's shape, `[out, in, kernel, kernel]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.out_channels, self.in_channels, self.kernel, self.kernel]
    }

    /// Output side for an input side `n`, or `None` when the kernel does not fit.
    pub fn out_size(&self, n: usize) -> Option<usize> {
        (n + 2 * self.padding).checked_sub(self.kernel).map(|r| r / self.stride + 1)
    }

    fn pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.padding == 0
    }

    fn check(&self, op: &'static str, x: &[usize], weight: &[usize]) -> Result<()> {
        if weight != self.weight_shape() {
            return Err(HopfieldError::shape(op, format!("weight {:?}", self.weight_shape()), weight));
        }
        let fits = x.len() == 4 && x[3] == self.in_channels && self.out_size(x[1]).is_some_and(|n| n > 0);
        if !fits || self.out_size(x[2]).is_none_or(|n| n == 0) {
            return Err(HopfieldError::shape(op, format!("[B, H ≥ {}, W, {}]", self.kernel, self.in_channels), x));
        }
        Ok(())
    }

    /// For each output pixel (row-major over `[B, H', W']`) and kernel offset `(u, v)`, the table row of
    /// the input pixel it reads, `B·H·W` (the zero row) where it falls into the padding.
    fn im2col_ids(&self, b: usize, h: usize, w: usize) -> Vec<usize> {
        let (oh, ow, k) = (self.out_size(h).unwrap_or(0), self.out_size(w).unwrap_or(0), self.kernel);
        let zero = b * h * w;
        let mut ids = Vec::with_capacity(b * oh * ow * k * k);
        for n in 0..b {
            for i in 0..oh {
                for j in 0..ow {
                    for u in 0..k {
                        for v in 0..k {
                            let (y, x) = ((i * self.stride + u) as isize, (j * self.stride + v) as isize);
                            let (y, x) = (y - self.padding as isize, x - self.padding as isize);
                            let inside = y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w;
                            ids.push(if inside { (n * h + y as usize) * w + x as usize } else { zero });
                        }
                    }
                }
            }
        }
        ids
    }

    /// The kernel as a matrix `[out, k·k·in]`, its columns ordered `(u, v, c)` like the im2col rows.
    fn kernel_matrix<B: Backend>(&self, backend: &B, weight: &B::Tensor) -> B::Tensor {
        let w = backend.permute(weight, &[0, 2, 3, 1]);
        backend.reshape(&w, &[self.out_channels, self.kernel * self.kernel * self.in_channels])
    }

    /// im2col: `[B·H'·W', k·k·in]`.
    fn columns<B: Backend>(&self, backend: &B, x: &B::Tensor, s: &[usize]) -> B::Tensor {
        let (b, h, w, c) = (s[0], s[1], s[2], s[3]);
        let table = backend.concat(&backend.reshape(x, &[b * h * w, c]), &backend.zeros(&[1, c]), 0);
        let ids = self.im2col_ids(b, h, w);
        let rows = ids.len() / (self.kernel * self.kernel);
        backend.reshape(&backend.gather_rows(&table, &ids), &[rows, self.kernel * self.kernel * c])
    }

    /// `y = conv(x, weight)`.
    ///
    /// # Shapes
    /// `x: [B, H, W, in]`, `weight: [out, in, k, k]` → `[B, H', W', out]`.
    pub fn forward<B: Backend>(&self, backend: &B, weight: &B::Tensor, x: &B::Tensor) -> Result<B::Tensor> {
        let s = backend.shape(x);
        self.check("conv2d.forward", &s, &backend.shape(weight))?;
        let (oh, ow) = (self.out_size(s[1]).unwrap_or(0), self.out_size(s[2]).unwrap_or(0));
        let y = if self.pointwise() {
            let w = backend.reshape(weight, &[self.out_channels, self.in_channels]);
            backend.matmul(&backend.reshape(x, &[s[0] * s[1] * s[2], s[3]]), &w, false, true)
        } else {
            backend.matmul(&self.columns(backend, x, &s), &self.kernel_matrix(backend, weight), false, true)
        };
        Ok(backend.reshape(&y, &[s[0], oh, ow, self.out_channels]))
    }

    /// Backward of [`Conv2d::forward`] at input `x`: `d_weight += ∂/∂weight`, returns `dx`.
    ///
    /// # Shapes
    /// `x: [B, H, W, in]`, `dy: [B, H', W', out]`, `d_weight` like `weight` → `dx: [B, H, W, in]`.
    pub fn backward<B: Backend>(
        &self,
        backend: &B,
        weight: &B::Tensor,
        x: &B::Tensor,
        dy: &B::Tensor,
        d_weight: &mut B::Tensor,
    ) -> Result<B::Tensor> {
        let s = backend.shape(x);
        self.check("conv2d.backward(x)", &s, &backend.shape(weight))?;
        let (b, h, w, c) = (s[0], s[1], s[2], s[3]);
        let (oh, ow) = (self.out_size(h).unwrap_or(0), self.out_size(w).unwrap_or(0));
        let ds = backend.shape(dy);
        if ds != [b, oh, ow, self.out_channels] {
            return Err(HopfieldError::shape(
                "conv2d.backward(dy)",
                format!("[{b}, {oh}, {ow}, {}]", self.out_channels),
                &ds,
            ));
        }
        let one = <B::Elem as num_traits::One>::one();
        let dy2 = backend.reshape(dy, &[b * oh * ow, self.out_channels]);
        if self.pointwise() {
            let x2 = backend.reshape(x, &[b * h * w, c]);
            // y = x · Wᵀ
            let dw = backend.matmul(&dy2, &x2, true, false);
            backend.axpy(d_weight, one, &backend.reshape(&dw, &self.weight_shape()));
            let w2 = backend.reshape(weight, &[self.out_channels, c]);
            return Ok(backend.reshape(&backend.matmul(&dy2, &w2, false, false), &s));
        }
        // y = cols · Kᵀ, cols = gather(table, ids)
        let k = self.kernel;
        let cols = self.columns(backend, x, &s);
        let dk = backend.matmul(&dy2, &cols, true, false);
        let dk = backend.permute(&backend.reshape(&dk, &[self.out_channels, k, k, c]), &[0, 3, 1, 2]);
        backend.axpy(d_weight, one, &dk);
        let d_cols = backend.matmul(&dy2, &self.kernel_matrix(backend, weight), false, false);
        let ids = self.im2col_ids(b, h, w);
        let mut d_table = backend.zeros(&[b * h * w + 1, c]);
        backend.scatter_add_rows(&mut d_table, &ids, &backend.reshape(&d_cols, &[ids.len(), c]));
        Ok(backend.reshape(&backend.slice(&d_table, 0, 0, b * h * w), &s))
    }
}

/// `nn.AvgPool2d(k)` (kernel = stride = `k`, no padding) on `[B, H, W, C]` with `k` dividing `H` and `W`
/// → `[B, H/k, W/k, C]`.
///
/// # Shapes
/// As stated; an input whose sides `k` does not divide is a shape error.
pub fn avg_pool<B: Backend>(backend: &B, x: &B::Tensor, k: usize) -> Result<B::Tensor> {
    let s = backend.shape(x);
    if s.len() != 4 || k == 0 || !s[1].is_multiple_of(k) || !s[2].is_multiple_of(k) || s[1] == 0 || s[2] == 0 {
        return Err(HopfieldError::shape("avg_pool", format!("[B, H, W, C] with H, W multiples of {k}"), &s));
    }
    if k == 1 {
        return Ok(x.clone());
    }
    let (b, oh, ow, c) = (s[0], s[1] / k, s[2] / k, s[3]);
    let windows = backend.permute(&backend.reshape(x, &[b, oh, k, ow, k, c]), &[0, 1, 3, 2, 4, 5]);
    let sum = backend.sum_axis(&backend.reshape(&windows, &[b * oh * ow, k * k, c]), 1);
    let mean = backend.scale(&sum, <B::Elem as hopfield::Element>::of(1.0 / (k * k) as f64));
    Ok(backend.reshape(&mean, &[b, oh, ow, c]))
}

/// Backward of [`avg_pool`]: each input pixel gets `1/k²` of its window's gradient.
///
/// # Shapes
/// `dy: [B, H/k, W/k, C]` → `[B, H, W, C]`.
pub fn avg_pool_backward<B: Backend>(backend: &B, dy: &B::Tensor, k: usize) -> B::Tensor {
    if k == 1 {
        return dy.clone();
    }
    let s = backend.shape(dy);
    let (b, oh, ow, c) = (s[0], s[1], s[2], s[3]);
    let d = backend.expand(&backend.reshape(dy, &[b * oh * ow, 1, c]), 1, k * k);
    let d = backend.scale(&d, <B::Elem as hopfield::Element>::of(1.0 / (k * k) as f64));
    let d = backend.permute(&backend.reshape(&d, &[b, oh, ow, k, k, c]), &[0, 1, 3, 2, 4, 5]);
    backend.reshape(&d, &[b, oh * k, ow * k, c])
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopfield::Cpu;

    /// The convolution by its definition, NHWC.
    fn direct(x: &[f64], s: [usize; 4], w: &[f64], c: &Conv2d) -> Vec<f64> {
        let (b, h, wd, ci) = (s[0], s[1], s[2], s[3]);
        let (oh, ow, k, o) = (c.out_size(h).unwrap(), c.out_size(wd).unwrap(), c.kernel, c.out_channels);
        let mut y = vec![0.0; b * oh * ow * o];
        for (n, i, j, oc) in (0..b)
            .flat_map(|n| (0..oh).flat_map(move |i| (0..ow).flat_map(move |j| (0..o).map(move |oc| (n, i, j, oc)))))
        {
            let mut acc = 0.0;
            for (cc, u, v) in (0..ci).flat_map(|cc| (0..k).flat_map(move |u| (0..k).map(move |v| (cc, u, v)))) {
                let (yy, xx) = (
                    (i * c.stride + u) as isize - c.padding as isize,
                    (j * c.stride + v) as isize - c.padding as isize,
                );
                if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < wd {
                    acc +=
                        w[((oc * ci + cc) * k + u) * k + v] * x[((n * h + yy as usize) * wd + xx as usize) * ci + cc];
                }
            }
            y[((n * oh + i) * ow + j) * o + oc] = acc;
        }
        y
    }

    #[test]
    fn im2col_convolution_is_the_definition_and_its_backward_the_adjoint() {
        let cpu = Cpu::<f64>::new();
        for conv in [
            Conv2d::new(3, 4, 3, 2, 1),
            Conv2d::new(2, 5, 3, 1, 1),
            Conv2d::new(3, 2, 1, 1, 0),
            Conv2d::new(2, 3, 2, 1, 0),
        ] {
            let s = [2, 5, 6, conv.in_channels];
            // Values k/4 keep every sum exact.
            let x: Vec<f64> = (0..s.iter().product()).map(|k| (k % 11) as f64 / 4.0 - 1.0).collect();
            let w: Vec<f64> = (0..conv.weight_shape().iter().product()).map(|k| (k % 7) as f64 / 4.0 - 0.75).collect();
            let (xt, wt) = (cpu.from_vec(x.clone(), &s), cpu.from_vec(w.clone(), &conv.weight_shape()));
            let y = conv.forward(&cpu, &wt, &xt).unwrap();
            assert_eq!(cpu.to_vec(&y), direct(&x, s, &w, &conv), "{conv:?}");
            // ⟨conv(x), dy⟩ is linear in x and in w: its gradients are the adjoints, checked on unit vectors.
            let dy: Vec<f64> = (0..cpu.shape(&y).iter().product()).map(|k| (k % 5) as f64 / 4.0 - 0.5).collect();
            let dyt = cpu.from_vec(dy.clone(), &cpu.shape(&y));
            let mut dw = cpu.zeros(&conv.weight_shape());
            let dx = cpu.to_vec(&conv.backward(&cpu, &wt, &xt, &dyt, &mut dw).unwrap());
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
            for i in (0..x.len()).step_by(7) {
                let mut e = vec![0.0; x.len()];
                e[i] = 1.0;
                assert_eq!(dx[i], dot(&direct(&e, s, &w, &conv), &dy), "{conv:?} dx[{i}]");
            }
            let dw = cpu.to_vec(&dw);
            for i in 0..w.len() {
                let mut e = vec![0.0; w.len()];
                e[i] = 1.0;
                assert_eq!(dw[i], dot(&direct(&x, s, &e, &conv), &dy), "{conv:?} dw[{i}]");
            }
        }
        let conv = Conv2d::new(3, 4, 3, 1, 1);
        let err = conv.forward(&cpu, &cpu.zeros(&[4, 3, 3, 3]), &cpu.zeros(&[1, 4, 4, 2])).unwrap_err();
        assert!(err.to_string().contains("[1, 4, 4, 2]"), "{err}");
    }

    #[test]
    fn avg_pool_averages_windows_and_spreads_the_gradient() {
        let cpu = Cpu::<f64>::new();
        let x = cpu.from_vec((0..2 * 4 * 6 * 3).map(|k| k as f64).collect(), &[2, 4, 6, 3]);
        let y = avg_pool(&cpu, &x, 2).unwrap();
        assert_eq!(cpu.shape(&y), [2, 2, 3, 3]);
        // Window (1, 2) of sample 1, channel 2: pixels (2..4, 4..6).
        let at = |n: usize, i: usize, j: usize, c: usize| ((n * 4 + i) * 6 + j) * 3 + c;
        let want = [(2, 4), (2, 5), (3, 4), (3, 5)].iter().map(|&(i, j)| at(1, i, j, 2) as f64).sum::<f64>() / 4.0;
        assert_eq!(y[[1, 1, 2, 2]], want);
        let dx = avg_pool_backward(&cpu, &cpu.full(&[2, 2, 3, 3], 1.0), 2);
        assert!(cpu.to_vec(&dx).iter().all(|&v| v == 0.25));
        assert!(avg_pool(&cpu, &cpu.zeros(&[1, 5, 4, 1]), 2).is_err());
    }
}
