//! Each kernel against an f64 oracle on shapes that cross every tile, block and panel edge, under every
//! operand layout; the split invariance the thread-count guarantee rests on; BLAS's β = 0 convention.

use super::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

/// The kernels this processor can run (each test forces each of them).
fn kernels() -> Vec<SgemmKernel> {
    [SgemmKernel::Avx512, SgemmKernel::Matrixmultiply].into_iter().filter(|k| k.available()).collect()
}

/// A `rows × cols` matrix stored row-major, or transposed (column-major) when `t`: (data, rs, cs).
fn matrix(rng: &mut StdRng, rows: usize, cols: usize, t: bool) -> (Vec<f32>, isize, isize) {
    // Multiples of 1/8 in [-2, 2]: products and short sums are exact in f32, long ones close.
    let data = (0..rows * cols).map(|_| rng.gen_range(-16i32..=16) as f32 / 8.0).collect();
    if t {
        (data, 1, rows as isize)
    } else {
        (data, cols as isize, 1)
    }
}

fn at(d: &[f32], rs: isize, cs: isize, i: usize, j: usize) -> f64 {
    d[(i as isize * rs + j as isize * cs) as usize] as f64
}

/// Runs `kernel` on `c` (row stride `ldc ≥ n`) and checks against the f64 oracle.
#[allow(clippy::too_many_arguments)]
fn check(kernel: SgemmKernel, m: usize, k: usize, n: usize, ta: bool, tb: bool, alpha: f32, beta: f32, ldc: usize) {
    let mut rng = StdRng::seed_from_u64((m * 131 + k * 17 + n) as u64);
    let (a, rsa, csa) = matrix(&mut rng, m, k, ta);
    let (b, rsb, csb) = matrix(&mut rng, k, n, tb);
    let c0: Vec<f32> = (0..m * ldc).map(|i| if beta == 0.0 { f32::NAN } else { (i % 7) as f32 - 3.0 }).collect();
    let mut c = c0.clone();
    // SAFETY: the vectors hold the matrices under these strides; `c` is distinct.
    unsafe {
        sgemm_with(
            kernel,
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        )
    };
    for i in 0..m {
        for j in 0..ldc {
            let got = c[i * ldc + j];
            if j >= n {
                assert!(got.to_bits() == c0[i * ldc + j].to_bits(), "{kernel:?}: wrote past n at ({i},{j})");
                continue;
            }
            let dot: f64 = (0..k).map(|p| at(&a, rsa, csa, i, p) * at(&b, rsb, csb, p, j)).sum();
            let prior = if beta == 0.0 { 0.0 } else { beta as f64 * c0[i * ldc + j] as f64 };
            let want = alpha as f64 * dot + prior;
            let tol =
                1e-5 * (1.0 + (0..k).map(|p| (at(&a, rsa, csa, i, p) * at(&b, rsb, csb, p, j)).abs()).sum::<f64>());
            assert!(
                (got as f64 - want).abs() <= tol,
                "{kernel:?} {m}x{k}x{n} ta={ta} tb={tb} α={alpha} β={beta}: ({i},{j}) {got} vs {want}"
            );
        }
    }
}

#[test]
fn every_kernel_matches_the_f64_oracle_across_tile_and_block_edges() {
    let shapes = [
        (1, 1, 1),
        (14, 32, 32),
        (15, 7, 33),
        (13, 385, 17),
        (29, 100, 47),
        (3, 769, 530),
        (65, 32, 65),
        (40, 5, 1030),
    ];
    for kernel in kernels() {
        for &(m, k, n) in &shapes {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                check(kernel, m, k, n, ta, tb, 1.0, 0.0, n);
            }
        }
    }
}

#[test]
fn alpha_beta_and_a_wider_output_stride_follow_blas() {
    for kernel in kernels() {
        for &(alpha, beta) in &[(0.5f32, 0.0f32), (1.0, 1.0), (-2.0, 0.25)] {
            check(kernel, 17, 400, 35, false, true, alpha, beta, 41);
            check(kernel, 30, 9, 18, true, false, alpha, beta, 18);
        }
    }
}

#[test]
fn an_empty_inner_dimension_scales_c_by_beta() {
    for kernel in kernels() {
        let mut c = vec![f32::NAN; 6];
        // SAFETY: k = 0 reads nothing from a or b; c holds 2 × 3.
        unsafe { sgemm_with(kernel, 2, 0, 3, 1.0, [].as_ptr(), 0, 1, [].as_ptr(), 3, 1, 0.0, c.as_mut_ptr(), 3, 1) };
        assert!(c.iter().all(|&x| x == 0.0), "{kernel:?}: {c:?}");
        let mut c = vec![2.0f32; 6];
        unsafe { sgemm_with(kernel, 2, 0, 3, 1.0, [].as_ptr(), 0, 1, [].as_ptr(), 3, 1, 0.5, c.as_mut_ptr(), 3, 1) };
        assert!(c.iter().all(|&x| x == 1.0), "{kernel:?}: {c:?}");
    }
}

/// The thread-count guarantee: a product computed in row parts or column parts (as the backend splits
/// it over threads) equals the whole product bit for bit, under every layout, with a `k` that needs two
/// blocks and values whose sums round.
#[test]
fn parts_of_a_product_equal_the_whole_bit_for_bit() {
    let (m, k, n) = (77, 500, 70);
    let mut rng = StdRng::seed_from_u64(7);
    for kernel in kernels() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
            let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
            let run = |rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, c: &mut [f32]| unsafe {
                // SAFETY: the sub-matrices lie inside `a`, `b` and the m × n `c`.
                let ap = a.as_ptr().offset(rows.start as isize * rsa);
                let bp = b.as_ptr().offset(cols.start as isize * csb);
                let cp = c.as_mut_ptr().add(rows.start * n + cols.start);
                sgemm_with(kernel, rows.len(), k, cols.len(), 1.0, ap, rsa, csa, bp, rsb, csb, 0.0, cp, n as isize, 1)
            };
            let mut whole = vec![0.0f32; m * n];
            run(0..m, 0..n, &mut whole);
            let mut by_rows = vec![0.0f32; m * n];
            run(0..32, 0..n, &mut by_rows);
            run(32..m, 0..n, &mut by_rows);
            let mut by_cols = vec![0.0f32; m * n];
            run(0..m, 0..32, &mut by_cols);
            run(0..m, 32..n, &mut by_cols);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&whole), bits(&by_rows), "{kernel:?} ta={ta} tb={tb}: row parts");
            assert_eq!(bits(&whole), bits(&by_cols), "{kernel:?} ta={ta} tb={tb}: column parts");
        }
    }
}

#[test]
fn the_chosen_kernel_runs_here_and_names_its_width() {
    let kernel = sgemm_kernel();
    assert!(kernel.available());
    assert!(kernel.vector_bits() >= 128);
    if is_intel() && SgemmKernel::Avx512.available() && std::env::var(SGEMM_KERNEL_ENV).is_err() {
        assert_eq!(kernel, SgemmKernel::Avx512);
    }
}
