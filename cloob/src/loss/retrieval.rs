//! Hopfield retrieval `R(Q; M) = rownorm(softmax(β Q Mᵀ) M)` with the parameter-free static [`Hopfield`]
//! of the `hopfield` crate (cloob's `hopfield_retrieval`), and the four retrieved sets of CLOOB.

use super::normalize::{l2_normalize, l2_normalize_backward, L2NormCache};
use hopfield::layers::{Hopfield, HopfieldCache, HopfieldConfig, HopfieldInput, Layer, Mode};
use hopfield::{Backend, HopfieldError, Result};
use rand::{rngs::StdRng, SeedableRng};

/// The static retrieval module: stored pattern = pattern projection = memory `M`, state pattern = `Q`,
/// no projections, no norms, one head, scaling β.
#[derive(Clone, Debug)]
pub struct Retrieval<B: Backend> {
    hopfield: Hopfield<B>,
}

/// What [`Retrieval::backward`] needs.
#[derive(Clone, Debug)]
pub struct RetrievalCache<B: Backend> {
    hopfield: HopfieldCache<B>,
    norm: L2NormCache<B>,
    n: usize,
}

impl<B: Backend> Retrieval<B> {
    /// Retrieval in `dim` features with inverse temperature `beta` (cloob's `scale_hopfield`).
    pub fn new(backend: &B, dim: usize, beta: f64) -> Result<Self> {
        Self::with(backend, dim, beta, hopfield::layers::Retrieval::Softmax)
    }

    /// The same with another row normaliser than softmax (`R(Q; M) = rownorm(p(β Q Mᵀ) M)`). A learnable
    /// entmax α is refused: this retrieval has no parameters to learn.
    pub fn with(backend: &B, dim: usize, beta: f64, retrieval: hopfield::layers::Retrieval) -> Result<Self> {
        if let hopfield::layers::Retrieval::Entmax { learnable: true, .. } = retrieval {
            return Err(HopfieldError::config(
                "retrieval",
                "CLOOB's retrieval is parameter-free: use entmax with a fixed α (entmax:ALPHA)",
            ));
        }
        // A static module draws no parameters; the generator is never used.
        let hopfield = HopfieldConfig::static_retrieval(dim, beta)
            .retrieval(retrieval)
            .init(backend, &mut StdRng::seed_from_u64(0))?;
        Ok(Retrieval { hopfield })
    }

    /// `R(Q; M) = rownorm(softmax(β Q Mᵀ) M)`.
    ///
    /// # Shapes
    /// `state: [L, d]` (queries), `memory: [S, d]` → `[L, d]`.
    pub fn forward(
        &self,
        backend: &B,
        state: &B::Tensor,
        memory: &B::Tensor,
    ) -> Result<(B::Tensor, RetrievalCache<B>)> {
        let (qs, ms) = (backend.shape(state), backend.shape(memory));
        if qs.len() != 2 || ms.len() != 2 || qs[1] != ms[1] {
            return Err(HopfieldError::shape(
                "retrieval.forward(memory)",
                format!("[S, d] with d of the state {qs:?}"),
                &ms,
            ));
        }
        let batched = |t: &B::Tensor, s: &[usize]| backend.reshape(t, &[1, s[0], s[1]]);
        let m = batched(memory, &ms);
        let input = HopfieldInput::new(m.clone(), batched(state, &qs), m);
        let (out, hopfield) = self.hopfield.forward(backend, &self.hopfield.params, &input, Mode::Eval)?;
        let s = backend.shape(&out.output);
        let (n, d) = (s[1], s[2]);
        let (y, norm) = l2_normalize(backend, &backend.reshape(&out.output, &[n, d]))?;
        Ok((y, RetrievalCache { hopfield, norm, n }))
    }

    /// Backward of [`Retrieval::forward`]: returns `(d_state, d_memory)`.
    ///
    /// # Shapes
    /// `dy: [L, d]` → `([L, d], [S, d])`.
    pub fn backward(&self, backend: &B, cache: &RetrievalCache<B>, dy: &B::Tensor) -> Result<(B::Tensor, B::Tensor)> {
        let d_out = l2_normalize_backward(backend, &cache.norm, dy);
        let d = backend.shape(&d_out)[1];
        let mut no_params = self.hopfield.zero_grads(backend);
        let d_out = backend.reshape(&d_out, &[1, cache.n, d]);
        let g = self.hopfield.backward(backend, &self.hopfield.params, &cache.hopfield, &d_out, &mut no_params)?;
        let flat = |t: &B::Tensor| {
            let s = backend.shape(t);
            backend.reshape(t, &[s[1], s[2]])
        };
        // M is both the stored patterns and the pattern projections.
        Ok((flat(&g.state), flat(&backend.add(&g.stored, &g.projection))))
    }
}

/// CLOOB's four retrieved sets (state → memory): `xx = R(X; X)`, `xy = R(Y; X)` (texts from the image
/// memory), `yx = R(X; Y)` (images from the text memory), `yy = R(Y; Y)`. In the paper's notation
/// `U_x = xx`, `U_y = xy`, `V_x = yx`, `V_y = yy`. [`retrieve_all_backward`] takes their gradients in
/// the same struct.
///
/// # Shapes
/// Each `[N, d]`.
#[derive(Clone, Debug)]
pub struct Retrieved<B: Backend> {
    /// Images retrieved from the image memory, `U_x`.
    pub xx: B::Tensor,
    /// Texts retrieved from the image memory, `U_y`.
    pub xy: B::Tensor,
    /// Images retrieved from the text memory, `V_x`.
    pub yx: B::Tensor,
    /// Texts retrieved from the text memory, `V_y`.
    pub yy: B::Tensor,
}

/// Caches of the four retrievals of [`retrieve_all`].
#[derive(Clone, Debug)]
pub struct RetrievedCache<B: Backend> {
    xx: RetrievalCache<B>,
    xy: RetrievalCache<B>,
    yx: RetrievalCache<B>,
    yy: RetrievalCache<B>,
}

/// The four retrievals of CLOOB from normalised image embeddings `x` and text embeddings `y`.
///
/// # Shapes
/// `x, y: [N, d]` → four `[N, d]`.
pub fn retrieve_all<B: Backend>(
    backend: &B,
    r: &Retrieval<B>,
    x: &B::Tensor,
    y: &B::Tensor,
) -> Result<(Retrieved<B>, RetrievedCache<B>)> {
    let (xx, cxx) = r.forward(backend, x, x)?;
    let (xy, cxy) = r.forward(backend, y, x)?;
    let (yx, cyx) = r.forward(backend, x, y)?;
    let (yy, cyy) = r.forward(backend, y, y)?;
    Ok((Retrieved { xx, xy, yx, yy }, RetrievedCache { xx: cxx, xy: cxy, yx: cyx, yy: cyy }))
}

/// Backward of [`retrieve_all`]: the gradients of the four sets → `(dx, dy)`.
pub fn retrieve_all_backward<B: Backend>(
    backend: &B,
    r: &Retrieval<B>,
    cache: &RetrievedCache<B>,
    d: &Retrieved<B>,
) -> Result<(B::Tensor, B::Tensor)> {
    let one = <B::Elem as num_traits::One>::one();
    // xx = R(x; x)
    let (mut dx, dm) = r.backward(backend, &cache.xx, &d.xx)?;
    backend.axpy(&mut dx, one, &dm);
    // xy = R(y; x)
    let (mut dy, dm) = r.backward(backend, &cache.xy, &d.xy)?;
    backend.axpy(&mut dx, one, &dm);
    // yx = R(x; y)
    let (dq, dm) = r.backward(backend, &cache.yx, &d.yx)?;
    backend.axpy(&mut dx, one, &dq);
    backend.axpy(&mut dy, one, &dm);
    // yy = R(y; y)
    let (dq, dm) = r.backward(backend, &cache.yy, &d.yy)?;
    backend.axpy(&mut dy, one, &dq);
    backend.axpy(&mut dy, one, &dm);
    Ok((dx, dy))
}
