//! The AVX-512 single-precision GEMM: BLIS's loops around a 14 × 32 register-blocked micro-kernel.
//!
//! The output is row-major, so the vectors run along `n`: a tile is 14 rows × two 16-lane vectors, 28
//! accumulators in zmm registers, two for the row of `b` and one broadcast of `a` — 31 of the 32. Each step
//! of `k` is 2 loads, 14 broadcasts and 28 FMAs, so two FMA ports stay busy and the loads fit the load ports.
//!
//! Loops, outside in: `k` in blocks of [`KC`] (one block for the layers' inner sizes up to 384), `n` in
//! blocks of [`NC`] whose packed `b` (`KC × NC`, 768 KiB) stays in L2, then `m` in panels of [`MR`] rows
//! whose packed `a` (at most 21 KiB) stays in L1 while the `b` panels of the block stream past it.
//!
//! Every output element is the same sum in the same order whatever the tile, block or thread it lands in:
//! FMAs over `p` ascending within a `k` block, then `c = α·acc (+ β·c)` for the first block and
//! `c += α·acc` for the next ones. So splitting a product over threads (by rows or columns) never changes a
//! bit.

#![allow(clippy::missing_safety_doc)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Rows of a micro-tile.
pub(super) const MR: usize = 14;
/// Columns of a micro-tile (two 16-lane vectors).
pub(super) const NR: usize = 32;
/// Inner-dimension block: the packed `a` panel of `MR × KC` floats (21 KiB) stays in L1.
pub(super) const KC: usize = 384;
/// Columns of one packed `b` block (`KC × NC` floats, 768 KiB: in L2 with room for `c`'s lines).
pub(super) const NC: usize = 512;

thread_local! {
    /// Packing buffers reused by every product on this thread: `a`'s panel and `b`'s block.
    static PACKS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `c ← α·a·b + β·c` (`c` read only when `β ≠ 0`) with `a` m×k and `b` k×n under any strides and `c`
/// row-major with row stride `rsc`.
///
/// # Safety
/// The CPU must have AVX-512F; pointers and strides must describe valid matrices of those sizes, `c`
/// writable and not aliasing `a` or `b`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    (rsa, csa): (isize, isize),
    b: *const f32,
    (rsb, csb): (isize, isize),
    beta: f32,
    c: *mut f32,
    rsc: isize,
) {
    PACKS.with(|packs| {
        let mut packs = packs.borrow_mut();
        let (apack, bpack) = &mut *packs;
        // `a` columns-contiguous (a transposed operand) is packed p-major, otherwise row-major.
        let a_pmajor = rsa == 1 && csa != 1;
        reserve(apack, MR * KC + 16);
        reserve(bpack, KC * NC.min(n.next_multiple_of(NR)));
        let (ap, bp) = (apack.as_mut_ptr(), bpack.as_mut_ptr());
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            let first = k0 == 0;
            for n0 in (0..n).step_by(NC) {
                let nc = NC.min(n - n0);
                pack_b(bp, b.offset(k0 as isize * rsb + n0 as isize * csb), kc, nc, rsb, csb);
                for i0 in (0..m).step_by(MR) {
                    let mr = MR.min(m - i0);
                    let a0 = a.offset(i0 as isize * rsa + k0 as isize * csa);
                    if a_pmajor {
                        pack_a_pmajor(ap, a0, mr, kc, csa);
                    } else {
                        pack_a_rows(ap, a0, mr, kc, rsa, csa);
                    }
                    for j0 in (0..nc).step_by(NR) {
                        let cols = NR.min(nc - j0);
                        let tile = Tile {
                            c: c.offset(i0 as isize * rsc + (n0 + j0) as isize),
                            rsc,
                            rows: mr,
                            cols,
                            alpha,
                            beta: if first { Some(beta) } else { None },
                        };
                        let bpanel = bp.add(j0 * kc);
                        match (a_pmajor, cols > 16) {
                            (false, true) => kernel::<2, false>(kc, ap, bpanel, &tile),
                            (false, false) => kernel::<1, false>(kc, ap, bpanel, &tile),
                            (true, true) => kernel::<2, true>(kc, ap, bpanel, &tile),
                            (true, false) => kernel::<1, true>(kc, ap, bpanel, &tile),
                        }
                    }
                }
            }
        }
    })
}

/// Capacity for `len` floats (the contents are written before they are read).
fn reserve(v: &mut Vec<f32>, len: usize) {
    if v.capacity() < len {
        *v = Vec::with_capacity(len);
    }
}

/// Where one micro-tile's results go and how they combine with `c`.
struct Tile {
    c: *mut f32,
    rsc: isize,
    rows: usize,
    cols: usize,
    alpha: f32,
    /// `Some(β)` for the first `k` block (`c = α·acc + β·c`, `c` unread when β = 0), `None` after
    /// (`c += α·acc`).
    beta: Option<f32>,
}

/// Lanes `0..n` of a 16-lane mask (`n ≥ 16`: all).
#[inline(always)]
fn lanes(n: usize) -> u16 {
    if n >= 16 {
        u16::MAX
    } else {
        (1u16 << n) - 1
    }
}

/// The micro-kernel: `NV` vectors of 16 columns (the `b` panel is 32 floats wide either way) by [`MR`]
/// rows, `a` packed row-major (`[MR][KC]`) or, with `PMAJOR`, p-major (`[kc][MR]`).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn kernel<const NV: usize, const PMAJOR: bool>(kc: usize, a: *const f32, b: *const f32, t: &Tile) {
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    for p in 0..kc {
        let mut bv = [_mm512_setzero_ps(); NV];
        for (v, bv) in bv.iter_mut().enumerate() {
            *bv = _mm512_loadu_ps(b.add(p * NR + 16 * v));
        }
        for (i, row) in acc.iter_mut().enumerate() {
            let x = if PMAJOR { *a.add(p * MR + i) } else { *a.add(i * KC + p) };
            let av = _mm512_set1_ps(x);
            for v in 0..NV {
                row[v] = _mm512_fmadd_ps(av, bv[v], row[v]);
            }
        }
    }
    let alpha = _mm512_set1_ps(t.alpha);
    for (i, row) in acc.iter().enumerate().take(t.rows) {
        let crow = t.c.offset(i as isize * t.rsc);
        for (v, &r) in row.iter().enumerate() {
            let mask = lanes(t.cols.saturating_sub(16 * v));
            let cp = crow.add(16 * v);
            let y = match t.beta {
                Some(0.0) => _mm512_mul_ps(alpha, r),
                Some(beta) => {
                    _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mask, cp), _mm512_mul_ps(alpha, r))
                }
                None => _mm512_fmadd_ps(alpha, r, _mm512_maskz_loadu_ps(mask, cp)),
            };
            _mm512_mask_storeu_ps(cp, mask, y);
        }
    }
}

/// `b`'s `kc × nc` block into panels of [`NR`] columns, each `[kc][NR]`, the columns past `nc` zero.
#[target_feature(enable = "avx512f")]
unsafe fn pack_b(dst: *mut f32, b: *const f32, kc: usize, nc: usize, rsb: isize, csb: isize) {
    for (panel, j0) in (0..nc).step_by(NR).enumerate() {
        let cols = NR.min(nc - j0);
        let out = dst.add(panel * kc * NR);
        let src = b.offset(j0 as isize * csb);
        if csb == 1 {
            let (m0, m1) = (lanes(cols), lanes(cols.saturating_sub(16)));
            for p in 0..kc {
                let s = src.offset(p as isize * rsb);
                _mm512_storeu_ps(out.add(p * NR), _mm512_maskz_loadu_ps(m0, s));
                _mm512_storeu_ps(out.add(p * NR + 16), _mm512_maskz_loadu_ps(m1, s.add(16)));
            }
        } else if rsb == 1 && csb <= i32::MAX as isize / 32 {
            // A transposed operand: column j is contiguous, so each 16-lane row piece is a gather.
            let idx = _mm512_mullo_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                _mm512_set1_epi32(csb as i32),
            );
            let (m0, m1) = (lanes(cols) as __mmask16, lanes(cols.saturating_sub(16)) as __mmask16);
            let src1 = src.offset(16 * csb);
            for p in 0..kc {
                let g0 = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m0, idx, src.add(p));
                _mm512_storeu_ps(out.add(p * NR), g0);
                let g1 = if m1 == 0 {
                    _mm512_setzero_ps()
                } else {
                    _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m1, idx, src1.add(p))
                };
                _mm512_storeu_ps(out.add(p * NR + 16), g1);
            }
        } else {
            for p in 0..kc {
                for j in 0..NR {
                    *out.add(p * NR + j) =
                        if j < cols { *src.offset(p as isize * rsb + j as isize * csb) } else { 0.0 };
                }
            }
        }
    }
}

/// `a`'s `mr × kc` panel row-major into `[MR][KC]`, the rows past `mr` zero (over `kc`).
#[target_feature(enable = "avx512f")]
unsafe fn pack_a_rows(dst: *mut f32, a: *const f32, mr: usize, kc: usize, rsa: isize, csa: isize) {
    for i in 0..MR {
        let out = dst.add(i * KC);
        if i >= mr {
            std::ptr::write_bytes(out, 0, kc);
        } else if csa == 1 {
            std::ptr::copy_nonoverlapping(a.offset(i as isize * rsa), out, kc);
        } else {
            for p in 0..kc {
                *out.add(p) = *a.offset(i as isize * rsa + p as isize * csa);
            }
        }
    }
}

/// `a`'s `mr × kc` panel, whose rows are contiguous in memory along `m` (`rsa = 1`), p-major into
/// `[kc][MR]`, the rows past `mr` zero. `dst` has 16 − [`MR`] floats of slack past the panel.
#[target_feature(enable = "avx512f")]
unsafe fn pack_a_pmajor(dst: *mut f32, a: *const f32, mr: usize, kc: usize, csa: isize) {
    let mask = lanes(mr);
    for p in 0..kc {
        let v = _mm512_maskz_loadu_ps(mask, a.offset(p as isize * csa));
        // Lanes MR..16 land on the next step's first lanes, which that step then overwrites.
        _mm512_storeu_ps(dst.add(p * MR), v);
    }
}
