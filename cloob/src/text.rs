//! The text tower: CLIP's causal text transformer with Hopfield encoder layers.
//!
//! ids → token embedding + positional embedding → pre-LN blocks with a causal association mask →
//! the feature at each text's `<end_of_text>` (the position of its largest id, as CLIP's `argmax`) →
//! `ln_final` → `@ text_projection`. Names and shapes follow open_clip's `CLIP` text side
//! (`token_embedding.weight [vocab, width]`, `positional_embedding [context, width]`, `ln_final`,
//! `text_projection [width, output_dim]`).

use crate::blocks::{broadcast_batch, one, project, project_backward, BlockInit, StackShape, Transformer};
use crate::lock::{first_kept_block, transformer_group, LockableTower, TowerLock};
use crate::tokenizer::{TokenBatch, DEFAULT_CONTEXT_LENGTH, VOCAB_SIZE};
use hopfield::init;
use hopfield::layers::encoder::EncoderCache;
use hopfield::layers::norm::{layer_norm_backward, layer_norm_forward};
use hopfield::layers::{EncoderInput, Layer, LayerNormCache, LayerNormParams, Mask, Mode};
use hopfield::{Backend, HopfieldError, Parameters, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Shape of the text tower. Plain data with serde; presets by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    /// Longest token sequence (rows of the positional embedding).
    pub context_length: usize,
    /// Token embedding rows (49408 for CLIP's tokenizer).
    pub vocab_size: usize,
    /// Transformer width.
    pub width: usize,
    /// Attention heads; divide `width`.
    pub heads: usize,
    /// Number of blocks.
    pub layers: usize,
    /// MLP hidden size / width.
    pub mlp_ratio: f64,
    /// MLP activation: `quick_gelu` (OpenAI CLIP, cloob) or `gelu`.
    pub activation: String,
    /// Embedding size after `text_projection`.
    pub output_dim: usize,
    /// ε of every layer norm.
    pub layer_norm_eps: f64,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self::tiny()
    }
}

impl TextConfig {
    /// Trains on two CPU cores in minutes: context 32, width 64, 2 blocks of 4 heads, 64-dim embeddings.
    pub fn tiny() -> Self {
        TextConfig {
            context_length: 32,
            vocab_size: VOCAB_SIZE,
            width: 64,
            heads: 4,
            layers: 2,
            mlp_ratio: 4.0,
            activation: "quick_gelu".into(),
            output_dim: 64,
            layer_norm_eps: 1e-5,
        }
    }
    /// Context 77, width 256, 6 blocks of 8 heads, 256-dim embeddings.
    pub fn small() -> Self {
        TextConfig {
            context_length: DEFAULT_CONTEXT_LENGTH,
            width: 256,
            heads: 8,
            layers: 6,
            output_dim: 256,
            ..Self::tiny()
        }
    }
    /// The paper's text transformer: context 77, width 512, 8 heads, 12 blocks, 512-dim embeddings.
    pub fn paper() -> Self {
        TextConfig {
            context_length: DEFAULT_CONTEXT_LENGTH,
            width: 512,
            heads: 8,
            layers: 12,
            output_dim: 512,
            ..Self::tiny()
        }
    }

    fn stack(&self) -> StackShape<'_> {
        StackShape {
            width: self.width,
            layers: self.layers,
            heads: self.heads,
            mlp_ratio: self.mlp_ratio,
            activation: &self.activation,
            layer_norm_eps: self.layer_norm_eps,
        }
    }

    /// Check the sizes.
    pub fn validate(&self) -> Result<()> {
        if self.context_length == 0 || self.vocab_size == 0 || self.output_dim == 0 {
            return Err(HopfieldError::config(
                "text.context_length",
                "context_length, vocab_size and output_dim must be positive",
            ));
        }
        if !(self.layer_norm_eps > 0.0) {
            return Err(HopfieldError::config("text.layer_norm_eps", "must be positive"));
        }
        self.stack().validate("text").map(|_| ())
    }

    /// Validate and draw a tower with CLIP's initialisation: token embedding N(0, 0.02²), positional
    /// N(0, 0.01²), blocks by width and depth (see `BlockInit::WidthDepth`), `text_projection`
    /// N(0, width⁻¹), norms one/zero.
    pub fn init<B: Backend>(&self, backend: &B, rng: &mut impl Rng) -> Result<TextTransformer<B>> {
        self.validate()?;
        let w = self.width;
        Ok(TextTransformer {
            token_embedding: init::normal(backend, &[self.vocab_size, w], 0.02, rng),
            positional_embedding: init::normal(backend, &[self.context_length, w], 0.01, rng),
            transformer: Transformer::init(backend, &self.stack(), "text", BlockInit::WidthDepth, rng)?,
            ln_final: LayerNormParams::new(backend, w),
            text_projection: init::normal(backend, &[w, self.output_dim], (w as f64).powf(-0.5), rng),
            config: self.clone(),
        })
    }
}

/// The text tower and its tensors (a zeroed copy holds its gradients, see [`Layer::zero_grads`]).
///
/// # Shapes
/// tokens `[B, L]` with `L ≤ context_length` → features `[B, output_dim]` (not normalised).
#[derive(Clone, Debug, Parameters)]
pub struct TextTransformer<B: Backend> {
    /// Its shape.
    #[param(skip)]
    pub config: TextConfig,
    /// `token_embedding.weight`, `[vocab_size, width]`.
    #[param(rename = "token_embedding.weight")]
    pub token_embedding: B::Tensor,
    /// `positional_embedding`, `[context_length, width]`.
    pub positional_embedding: B::Tensor,
    /// `transformer.resblocks.*`.
    pub transformer: Transformer<B>,
    /// `ln_final.*`.
    pub ln_final: LayerNormParams<B>,
    /// `text_projection`, `[width, output_dim]`, no bias.
    pub text_projection: B::Tensor,
}

/// What [`TextTransformer`]'s backward needs: of the groups from `first_trainable` on only (see
/// [`LockableTower::forward_locked`]).
#[derive(Clone, Debug)]
pub struct TextCache<B: Backend> {
    first_trainable: usize,
    ids: Vec<usize>,
    pooled_rows: Vec<usize>,
    len: usize,
    blocks: Vec<EncoderCache<B>>,
    ln_final: Option<LayerNormCache<B>>,
    pooled: B::Tensor,
}

/// The causal association mask `[L, L]`: position `i` sees positions `j ≤ i`.
pub fn causal_mask(len: usize) -> Mask {
    Mask::bool((0..len * len).map(|k| k % len > k / len).collect(), &[len, len])
}

impl<B: Backend> TextTransformer<B> {
    fn check(&self, tokens: &TokenBatch) -> Result<Vec<usize>> {
        let c = &self.config;
        if tokens.batch == 0
            || tokens.context_length == 0
            || tokens.context_length > c.context_length
            || tokens.ids.len() != tokens.batch * tokens.context_length
        {
            return Err(HopfieldError::shape(
                "text.forward(tokens)",
                format!("[B > 0, 0 < L ≤ {}] ids", c.context_length),
                &[tokens.batch, tokens.context_length],
            ));
        }
        if let Some(&bad) = tokens.ids.iter().find(|&&i| i as usize >= c.vocab_size) {
            let reason = format!("token id {bad} ≥ vocab_size {}", c.vocab_size);
            return Err(HopfieldError::input("text.forward(tokens)", reason));
        }
        Ok(tokens.ids.iter().map(|&i| i as usize).collect())
    }
}

impl<B: Backend> LockableTower<B> for TextTransformer<B> {
    /// `layers + 2`: `[token_embedding, positional_embedding]`, blocks 0 … layers−2, `[the last block,
    /// ln_final]`, `[text_projection]` (open_clip's `lock_text_tower`).
    fn lock_groups(&self) -> usize {
        self.config.layers + 2
    }
    fn lock_group_of(&self, name: &str) -> Option<usize> {
        let stem = ["token_embedding.weight", "positional_embedding"];
        transformer_group(name, self.config.layers, &stem, "ln_final", "text_projection")
    }
    fn forward_locked(
        &self,
        backend: &B,
        p: &Self,
        tokens: &TokenBatch,
        mode: Mode,
        lock: TowerLock,
    ) -> Result<(B::Tensor, TextCache<B>)> {
        let ids = self.check(tokens)?;
        let c = &self.config;
        let (b, l, w) = (tokens.batch, tokens.context_length, c.width);
        let x = backend.reshape(&backend.gather_rows(&p.token_embedding, &ids), &[b, l, w]);
        let pos = backend.slice(&p.positional_embedding, 0, 0, l);
        let x = backend.add(&x, &broadcast_batch(backend, &pos, b));
        let input = EncoderInput::new(x).mask(causal_mask(l));
        let first = lock.first_trainable;
        let keep_from = first_kept_block(first, c.layers);
        let (x, blocks) = self.transformer.forward_keeping(backend, &p.transformer, &input, mode, keep_from)?;
        // ln_final is per row, so normalising only the pooled rows equals CLIP's normalise-then-pool.
        let pooled_rows: Vec<usize> = tokens.eot_positions().iter().enumerate().map(|(i, &p)| i * l + p).collect();
        let eot = backend.gather_rows(&backend.reshape(&x, &[b * l, w]), &pooled_rows);
        let (pooled, ln_final) = layer_norm_forward(backend, &p.ln_final, c.layer_norm_eps, &eot);
        let features = project(backend, &pooled, &p.text_projection);
        let ln_final = (first <= c.layers).then_some(ln_final);
        let ids = if first == 0 { ids } else { Vec::new() };
        let cache = TextCache { first_trainable: first, ids, pooled_rows, len: l, blocks, ln_final, pooled };
        Ok((features, cache))
    }
}

impl<B: Backend> Layer<B> for TextTransformer<B> {
    type Params = TextTransformer<B>;
    type Input = TokenBatch;
    type Output = B::Tensor;
    type Cache = TextCache<B>;
    type OutputGrad = B::Tensor;
    type InputGrad = ();

    fn params(&self) -> &Self {
        self
    }
    fn params_mut(&mut self) -> &mut Self {
        self
    }

    /// Text features `[B, output_dim]` and the cache for backward.
    fn forward(&self, backend: &B, p: &Self, tokens: &TokenBatch, mode: Mode) -> Result<(B::Tensor, TextCache<B>)> {
        self.forward_locked(backend, p, tokens, mode, TowerLock::OPEN)
    }

    /// Backward from d loss / d features `[B, output_dim]`: accumulates every parameter gradient into
    /// `grads`.
    fn backward(
        &self,
        backend: &B,
        p: &Self,
        cache: &TextCache<B>,
        d_features: &B::Tensor,
        grads: &mut Self,
    ) -> Result<()> {
        let c = &self.config;
        let (b, l, w) = (cache.pooled_rows.len(), cache.len, c.width);
        let shape = backend.shape(d_features);
        if shape != [b, c.output_dim] {
            return Err(HopfieldError::shape("text.backward(d_features)", format!("[{b}, {}]", c.output_dim), &shape));
        }
        let first = cache.first_trainable;
        if first > c.layers {
            // Only `text_projection` trains (or nothing): its gradient is all that is needed.
            if first == c.layers + 1 {
                let d_proj = backend.matmul(&cache.pooled, d_features, true, false);
                backend.axpy(&mut grads.text_projection, one::<B>(), &d_proj);
            }
            return Ok(());
        }
        let ln_final = cache
            .ln_final
            .as_ref()
            .ok_or(HopfieldError::Missing { op: "text.backward", name: "ln_final cache".into() })?;
        let d_pooled =
            project_backward(backend, &cache.pooled, &p.text_projection, d_features, &mut grads.text_projection);
        let d_eot = layer_norm_backward(backend, &p.ln_final, ln_final, &d_pooled, &mut grads.ln_final);
        let mut dx = backend.zeros(&[b * l, w]);
        backend.scatter_add_rows(&mut dx, &cache.pooled_rows, &d_eot);
        let dx = backend.reshape(&dx, &[b, l, w]);
        let dx = self.transformer.backward(backend, &p.transformer, &cache.blocks, &dx, &mut grads.transformer)?;
        if first > 0 {
            return Ok(()); // the embeddings are frozen
        }
        let d_pos = backend.reshape(&backend.sum_axis(&dx, 0), &[l, w]);
        backend.slice_add(&mut grads.positional_embedding, 0, 0, &d_pos);
        backend.scatter_add_rows(&mut grads.token_embedding, &cache.ids, &backend.reshape(&dx, &[b * l, w]));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::ClipTokenizer;
    use hopfield::Cpu;
    use rand::SeedableRng;

    #[test]
    fn causal_mask_hides_the_future() {
        let Mask::Bool { values, shape } = causal_mask(3) else { panic!("boolean mask") };
        assert_eq!(shape, [3, 3]);
        assert_eq!(values, [false, true, true, false, false, true, false, false, false]);
    }

    #[test]
    fn features_ignore_tokens_after_end_of_text_and_ids_are_checked() {
        let cpu = Cpu::<f64>::new();
        let text = TextConfig::tiny().init(&cpu, &mut rand::rngs::StdRng::seed_from_u64(2)).unwrap();
        let tok = ClipTokenizer::with_context_length(12).unwrap();
        let mut tokens = tok.tokenize(&["a red square", "a photo of a blue circle"]);
        let f1 = text.infer(&cpu, &tokens).unwrap();
        // The padding after <end_of_text> is invisible to the causal pooled feature.
        tokens.ids[10] = 320;
        tokens.ids[11] = 1125;
        let f2 = text.infer(&cpu, &tokens).unwrap();
        assert!(f1.iter().zip(f2.iter()).all(|(a, b)| (a - b).abs() < 1e-12));
        // Shorter sequences than the context work; longer ones and unknown ids are errors.
        assert!(text.infer(&cpu, &ClipTokenizer::with_context_length(40).unwrap().tokenize(&["x"])).is_err());
        tokens.ids[0] = 60000;
        assert!(text.infer(&cpu, &tokens).unwrap_err().to_string().contains("60000"));
        for c in [TextConfig::tiny(), TextConfig::small(), TextConfig::paper()] {
            c.validate().unwrap();
        }
        assert_eq!(text.names()[..2], ["token_embedding.weight", "positional_embedding"]);
    }
}
