//! The MIL model of the paper's appendix A.5.2: instance embedding (linear + ReLU, 1–3 layers) →
//! HopfieldPooling over the bag (one learned state pattern, `heads` heads of size `head_dim`, β, dropout on
//! the association = "bag dropout") → ReLU → linear → one logit.
//!
//! Bags of a batch have different lengths. The embedding runs on all instances packed together (no
//! padding work); only the pooling sees a padded `[B, L_max, width]` tensor, with a padding mask.

use super::error::{MilError, Result};
use hopfield::layers::linear::{linear_backward, linear_forward};
use hopfield::layers::{
    HopfieldConfig, HopfieldPooling, HopfieldPoolingConfig, HopfieldPoolingParams, Linear, LinearParams, Mask,
    PoolingCache, PoolingInput, Retrieval,
};
use hopfield::layers::{Layer, Mode};
use hopfield::{Activation, Backend, Element, HopfieldError, Parameters};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The architecture: sizes of the embedding and of the pooling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MilModelConfig {
    /// Features per instance.
    pub input_size: usize,
    /// Linear + ReLU layers before the pooling (the paper: 1–3).
    pub embedding_layers: usize,
    /// Width of each embedding layer (= the pooled pattern size).
    pub width: usize,
    /// Association heads.
    pub heads: usize,
    /// Size of each head in the Hopfield space (hflayers' `hidden_size`).
    pub head_dim: usize,
    /// β, the inverse temperature of the association softmax.
    pub beta: f64,
    /// Dropout on the association matrix while training: each instance of a bag is dropped from a head's
    /// pooling with this probability.
    pub bag_dropout: f64,
    /// The pooling's retrieval.
    #[serde(default)]
    pub retrieval: Retrieval,
}

impl MilModelConfig {
    /// Validate and initialise the model.
    pub fn init<B: Backend>(&self, backend: &B, rng: &mut impl Rng) -> Result<MilModel<B>> {
        if !(1..=8).contains(&self.embedding_layers) {
            return Err(MilError::setting(
                "embedding_layers",
                format!("must lie in 1..=8, got {}", self.embedding_layers),
            ));
        }
        let mut embed = Vec::with_capacity(self.embedding_layers);
        let mut fan_in = self.input_size;
        for _ in 0..self.embedding_layers {
            embed.push(Linear::new(backend, fan_in, self.width, true, rng)?);
            fan_in = self.width;
        }
        let hopfield = HopfieldConfig::new(self.width)
            .hidden_size(self.head_dim)
            .num_heads(self.heads)
            .scaling(self.beta)
            .dropout(self.bag_dropout)
            .retrieval(self.retrieval);
        let pooling = HopfieldPoolingConfig::new(self.width).hopfield(hopfield).quantity(1).init(backend, rng)?;
        let head = Linear::new(backend, pooling.spec.dims.output, 1, true, rng)?;
        Ok(MilModel { config: self.clone(), embed, pooling, head })
    }
}

/// The model; also its own gradient struct ([`Layer::zero_grads`]), so the optimiser sees one type.
#[derive(Clone, Debug, Parameters)]
pub struct MilModel<B: Backend> {
    /// Its configuration.
    #[param(skip)]
    pub config: MilModelConfig,
    /// `embed.{i}`: instance embedding layers.
    pub embed: Vec<Linear<B>>,
    /// `pooling`: the bag pooling.
    pub pooling: HopfieldPooling<B>,
    /// `head`: pooled bag → logit.
    pub head: Linear<B>,
}

/// A batch of bags: instances packed row after row, and each bag's length.
#[derive(Clone, Debug)]
pub struct BagBatch<E> {
    /// `[Σ len, features]`, row-major.
    pub instances: Vec<E>,
    /// Instances per bag (each ≥ 1).
    pub lens: Vec<usize>,
}

impl<E: Copy> BagBatch<E> {
    /// Pack bags given as `(instances, len)`.
    pub fn pack<'a>(bags: impl IntoIterator<Item = (&'a [E], usize)>) -> Self
    where
        E: 'a,
    {
        let mut b = BagBatch { instances: Vec::new(), lens: Vec::new() };
        for (x, len) in bags {
            b.instances.extend_from_slice(x);
            b.lens.push(len);
        }
        b
    }
}

/// What [`MilModel`]'s backward needs.
#[derive(Clone, Debug)]
pub struct MilCache<B: Backend> {
    /// Input of each embedding layer (`[N, ·]`), then the last embedding output.
    embed_inputs: Vec<B::Tensor>,
    /// Pre-activation of each embedding layer.
    embed_pre: Vec<B::Tensor>,
    lens: Vec<usize>,
    max_len: usize,
    pooling: PoolingCache<B>,
    /// Pooling output before the ReLU, `[B, width]`.
    pooled: B::Tensor,
    /// ReLU of it: the head's input.
    head_input: B::Tensor,
}

impl<B: Backend> Layer<B> for MilModel<B> {
    type Params = MilModel<B>;
    type Input = BagBatch<B::Elem>;
    type Output = B::Tensor;
    type Cache = MilCache<B>;
    type OutputGrad = B::Tensor;
    type InputGrad = ();

    fn params(&self) -> &Self {
        self
    }
    fn params_mut(&mut self) -> &mut Self {
        self
    }

    /// Logits `[B, 1]` for a batch; training switches on bag dropout.
    fn forward(
        &self,
        backend: &B,
        p: &Self,
        batch: &BagBatch<B::Elem>,
        mode: Mode,
    ) -> hopfield::Result<(B::Tensor, MilCache<B>)> {
        let d = self.config.input_size;
        let n: usize = batch.lens.iter().sum();
        if batch.lens.is_empty() || batch.lens.contains(&0) || batch.instances.len() != n * d {
            return Err(HopfieldError::shape(
                "mil_model.forward(batch)",
                format!("{n} · {d} values in bags of length ≥ 1"),
                &[batch.lens.len(), batch.instances.len()],
            ));
        }
        let mut h = backend.from_vec(batch.instances.clone(), &[n, d]);
        let (mut embed_inputs, mut embed_pre) = (Vec::new(), Vec::new());
        for layer in &p.embed {
            let z = linear_forward(backend, &h, &layer.params.weight, layer.params.bias.as_ref());
            embed_inputs.push(h);
            h = backend.activation(&z, Activation::Relu);
            embed_pre.push(z);
        }
        let (padded, mask, max_len) = pad(backend, &h, &batch.lens);
        embed_inputs.push(h);
        let input = PoolingInput::single(padded).padding_mask(mask);
        let mode = if self.config.bag_dropout > 0.0 { mode } else { Mode::Eval };
        let (pooled, pooling) = self.pooling.forward(backend, &p.pooling.params, &input, mode)?;
        let head_input = backend.activation(&pooled, Activation::Relu);
        let logits = linear_forward(backend, &head_input, &p.head.params.weight, p.head.params.bias.as_ref());
        let cache =
            MilCache { embed_inputs, embed_pre, lens: batch.lens.clone(), max_len, pooling, pooled, head_input };
        Ok((logits, cache))
    }

    /// Backward from `d_logits` `[B, 1]`: accumulates into `grads`.
    fn backward(
        &self,
        backend: &B,
        p: &Self,
        cache: &MilCache<B>,
        d_logits: &B::Tensor,
        grads: &mut Self,
    ) -> hopfield::Result<()> {
        let hp = &p.head.params;
        let d_head_in = linear_backward(
            backend,
            &cache.head_input,
            &hp.weight,
            d_logits,
            &mut grads.head.params.weight,
            grads.head.params.bias.as_mut(),
        );
        let d_pooled = backend.activation_backward(&cache.pooled, &d_head_in, Activation::Relu);
        let g =
            self.pooling.backward(backend, &p.pooling.params, &cache.pooling, &d_pooled, &mut grads.pooling.params)?;
        let mut dh = unpad(backend, &g.single(backend), &cache.lens, cache.max_len);
        for (i, layer) in p.embed.iter().enumerate().rev() {
            let dz = backend.activation_backward(&cache.embed_pre[i], &dh, Activation::Relu);
            let gl = &mut grads.embed[i].params;
            dh = linear_backward(
                backend,
                &cache.embed_inputs[i],
                &layer.params.weight,
                &dz,
                &mut gl.weight,
                gl.bias.as_mut(),
            );
        }
        Ok(())
    }
}

impl<B: Backend> MilModel<B> {
    /// Logits of bags (evaluation mode), `chunk` bags of similar length at a time, in the order given.
    pub fn predict(&self, backend: &B, bags: &[(&[B::Elem], usize)], chunk: usize) -> Result<Vec<f64>> {
        predict_by_length(bags, chunk, |batch| {
            Ok(backend.to_vec(&self.infer(backend, batch)?).into_iter().map(Element::f64).collect())
        })
    }

    /// The pooling's parameters (e.g. to inspect the learned state pattern).
    pub fn pooling_params(&self) -> &HopfieldPoolingParams<B> {
        &self.pooling.params
    }
    /// The head's parameters.
    pub fn head_params(&self) -> &LinearParams<B> {
        &self.head.params
    }
}

/// One logit per bag of `bags`, in the order given, from `logits` (a packed batch → one logit per bag) run on
/// `chunk` bags of similar length at a time, so that padding to a chunk's longest bag wastes little. The
/// prediction of [`MilModel::predict`], for any model.
pub fn predict_by_length<E: Copy>(
    bags: &[(&[E], usize)],
    chunk: usize,
    mut logits: impl FnMut(&BagBatch<E>) -> Result<Vec<f64>>,
) -> Result<Vec<f64>> {
    let mut by_len: Vec<usize> = (0..bags.len()).collect();
    by_len.sort_by_key(|&i| bags[i].1);
    let mut out = vec![0.0; bags.len()];
    for part in by_len.chunks(chunk.max(1)) {
        let batch = BagBatch::pack(part.iter().map(|&i| bags[i]));
        let values = logits(&batch)?;
        if values.len() != part.len() {
            return Err(MilError::setting("predict", format!("{} logits for {} bags", values.len(), part.len())));
        }
        part.iter().zip(values).for_each(|(&i, l)| out[i] = l);
    }
    Ok(out)
}

/// Scatter packed rows `[N, w]` into `[B, L_max, w]` (zeros after each bag's end) and the padding mask, on
/// the device: one row gather from the packed rows and a zero row.
fn pad<B: Backend>(backend: &B, packed: &B::Tensor, lens: &[usize]) -> (B::Tensor, Mask, usize) {
    let (n, w) = (backend.shape(packed)[0], backend.shape(packed)[1]);
    let max_len = *lens.iter().max().expect("non-empty batch");
    let mut ids = vec![n; lens.len() * max_len];
    let mut mask = vec![true; lens.len() * max_len];
    let mut src = 0;
    for (b, &len) in lens.iter().enumerate() {
        ids[b * max_len..b * max_len + len].iter_mut().zip(src..).for_each(|(id, s)| *id = s);
        mask[b * max_len..b * max_len + len].iter_mut().for_each(|m| *m = false);
        src += len;
    }
    let table = backend.concat(packed, &backend.zeros(&[1, w]), 0);
    let padded = backend.reshape(&backend.gather_rows(&table, &ids), &[lens.len(), max_len, w]);
    (padded, Mask::bool(mask, &[lens.len(), max_len]), max_len)
}

/// Gather the rows of `[B, L_max, w]` that belong to bags back into `[N, w]` (the backward of [`pad`]), on
/// the device.
fn unpad<B: Backend>(backend: &B, padded: &B::Tensor, lens: &[usize], max_len: usize) -> B::Tensor {
    let w = *backend.shape(padded).last().expect("rank 3");
    let ids: Vec<usize> = lens.iter().enumerate().flat_map(|(b, &len)| b * max_len..b * max_len + len).collect();
    backend.gather_rows(&backend.reshape(padded, &[lens.len() * max_len, w]), &ids)
}
