//! Central finite differences (f64) against the explicit backward of each tower end to end (every
//! parameter tensor, at random entries) and of the two-tower model through the L2 normalisation and τ⁻¹.

use cloob::model::{ClipConfig, ClipInput, ClipOutputGrads};
use cloob::text::TextConfig;
use cloob::tokenizer::TokenBatch;
use cloob::vit::VisionConfig;
use hopfield::backend::CpuTensor;
use hopfield::layers::{Layer, Mode};
use hopfield::params::Parameters;
use hopfield::testing::{check_gradients, GradCheck};
use hopfield::{Backend, Cpu};

use rand::{rngs::StdRng, Rng, SeedableRng};

type B = Cpu<f64>;

fn rand_tensor(rng: &mut StdRng, shape: &[usize]) -> CpuTensor<f64> {
    let n = shape.iter().product();
    B::new().from_vec((0..n).map(|_| rng.gen_range(-1.0..1.0)).collect(), shape)
}

/// Move every parameter away from its initialisation (norm gains of one, zero biases) so that no
/// gradient is trivially zero.
fn randomise<P: Parameters<B>>(p: &mut P, rng: &mut StdRng) {
    p.visit_mut(&mut |_, t, _| t.mapv_inplace(|v| v + rng.gen_range(-0.3..0.3)));
}

fn dot(a: &CpuTensor<f64>, b: &CpuTensor<f64>) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn tensor<P: Parameters<B>>(p: &P, name: &str) -> CpuTensor<f64> {
    let mut out = None;
    p.visit(&mut |n, t, _| {
        if n == name {
            out = Some(t.clone())
        }
    });
    out.unwrap_or_else(|| panic!("no tensor {name}"))
}

/// Every tensor of `model` at `k` random entries (rows of the token embedding that the batch uses).
fn check_all<P: Parameters<B> + Clone>(
    what: &str,
    model: &P,
    grads: &P,
    k: usize,
    rng: &mut StdRng,
    used_rows: &[usize],
    loss: impl FnMut(&P) -> f64,
) -> usize {
    let opts = GradCheck::default().entries(k, rng.gen()).rows("token_embedding.weight", used_rows.to_vec());
    check_gradients(&B::new(), model, grads, &opts, loss).unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn small_vision(activation: &str) -> VisionConfig {
    VisionConfig {
        image_size: 8,
        patch_size: 4,
        channels: 3,
        width: 8,
        layers: 2,
        heads: 2,
        mlp_ratio: 2.0,
        activation: activation.into(),
        output_dim: 6,
        layer_norm_eps: 1e-5,
    }
}

fn small_text(activation: &str) -> TextConfig {
    TextConfig {
        context_length: 7,
        vocab_size: 30,
        width: 8,
        heads: 2,
        layers: 2,
        mlp_ratio: 2.0,
        activation: activation.into(),
        output_dim: 6,
        layer_norm_eps: 1e-5,
    }
}

/// Rows padded with zeros after an end-of-text id 29 (the largest), one row without it.
fn small_tokens(rng: &mut StdRng, batch: usize, len: usize) -> TokenBatch {
    let mut ids = Vec::new();
    for b in 0..batch {
        let n = if b == batch - 1 { len } else { rng.gen_range(2..len) };
        let mut row: Vec<u32> = (0..n).map(|_| rng.gen_range(1..29)).collect();
        if b != batch - 1 {
            row.push(29);
        }
        row.resize(len, 0);
        ids.extend(row);
    }
    TokenBatch::new(ids, batch, len).unwrap()
}

#[test]
fn vision_transformer_backward_matches_finite_differences() {
    let backend = B::new();
    let mut rng = StdRng::seed_from_u64(21);
    for act in ["quick_gelu", "gelu"] {
        let mut vit = small_vision(act).init(&backend, &mut rng).unwrap();
        randomise(&mut vit, &mut rng);
        let images = rand_tensor(&mut rng, &[3, 3, 8, 8]);
        let (y, cache) = vit.forward(&backend, vit.params(), &images, Mode::Eval).unwrap();
        let g = rand_tensor(&mut rng, &backend.shape(&y));
        let mut grads = vit.zero_grads(&backend);
        vit.backward(&backend, vit.params(), &cache, &g, &mut grads).unwrap();
        let n = check_all(&format!("vit {act}"), &vit, &grads, 3, &mut rng, &[], |m| {
            dot(&m.forward(&backend, m, &images, Mode::Eval).unwrap().0, &g)
        });
        assert!(n > 60, "{n} entries checked");
    }
}

#[test]
fn text_transformer_backward_matches_finite_differences() {
    let backend = B::new();
    let mut rng = StdRng::seed_from_u64(22);
    for (act, len) in [("quick_gelu", 7), ("gelu", 5)] {
        let mut text = small_text(act).init(&backend, &mut rng).unwrap();
        randomise(&mut text, &mut rng);
        let tokens = small_tokens(&mut rng, 4, len);
        let (y, cache) = text.forward(&backend, text.params(), &tokens, Mode::Eval).unwrap();
        let g = rand_tensor(&mut rng, &backend.shape(&y));
        let mut grads = text.zero_grads(&backend);
        text.backward(&backend, text.params(), &cache, &g, &mut grads).unwrap();
        let used: Vec<usize> = tokens.ids.iter().map(|&i| i as usize).collect();
        let n = check_all(&format!("text {act}"), &text, &grads, 3, &mut rng, &used, |m| {
            dot(&m.forward(&backend, m, &tokens, Mode::Eval).unwrap().0, &g)
        });
        assert!(n > 60, "{n} entries checked");
        // Rows of the embedding that no token uses get no gradient, nor does the padding id 0, which only
        // stands after <end_of_text> where the causal pooled feature cannot see it; positions past the
        // sequence given get none either.
        let emb = tensor(&grads, "token_embedding.weight");
        assert!(emb.index_axis(ndarray::Axis(0), 0).iter().all(|&v| v == 0.0));
        assert!(emb.index_axis(ndarray::Axis(0), 29).iter().any(|&v| v != 0.0));
        let unused = (0..30).find(|r| !used.contains(r)).expect("an unused id");
        assert!(emb.index_axis(ndarray::Axis(0), unused).iter().all(|&v| v == 0.0));
        if len < 7 {
            assert!(tensor(&grads, "positional_embedding").index_axis(ndarray::Axis(0), 6).iter().all(|&v| v == 0.0));
        }
    }
}

#[test]
fn two_tower_backward_matches_finite_differences_through_normalisation_and_temperature() {
    let backend = B::new();
    let mut rng = StdRng::seed_from_u64(23);
    let config = ClipConfig {
        embed_dim: 6,
        vision: small_vision("quick_gelu").into(),
        text: small_text("quick_gelu"),
        init_inv_tau: 10.0,
        learnable_inv_tau: true,
    };
    let mut model = config.init(&backend, &mut rng).unwrap();
    randomise(&mut model, &mut rng);
    let images = rand_tensor(&mut rng, &[3, 3, 8, 8]);
    let tokens = small_tokens(&mut rng, 3, 7);
    let (gi, gt) = (rand_tensor(&mut rng, &[3, 6]), rand_tensor(&mut rng, &[3, 6]));
    let g_tau = 0.37;
    // loss = ⟨image, Gi⟩ + ⟨text, Gt⟩ + g_tau·τ⁻¹
    let input = ClipInput { images, tokens: tokens.clone() };
    let loss = |m: &cloob::model::ClipModel<B>| {
        let (out, _) = m.forward(&backend, m, &input, Mode::Eval).unwrap();
        dot(&out.image, &gi) + dot(&out.text, &gt) + g_tau * out.inv_tau
    };
    let (_, cache) = model.forward(&backend, &model, &input, Mode::Eval).unwrap();
    let mut grads = model.zero_grads(&backend);
    let d = ClipOutputGrads { image: gi.clone(), text: gt.clone(), inv_tau: g_tau };
    model.backward(&backend, &model, &cache, &d, &mut grads).unwrap();
    let used: Vec<usize> = tokens.ids.iter().map(|&i| i as usize).collect();
    let n = check_all("clip", &model, &grads, 2, &mut rng, &used, loss);
    assert!(n > 80, "{n} entries checked");
    assert!(model.names().iter().any(|n| n == "logit_scale"));
}
