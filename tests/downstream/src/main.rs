//! A model of our own from hopfield-layers, as a crate on crates.io would write it: the dependency renamed
//! to `hl`, rand 0.9 for the data, `hl::seeded_rng` (hopfield-layers' rand) for the initialisation.
//! Exits non-zero unless the training loss decreases.
use hl::layers::{HopfieldPooling, HopfieldPoolingConfig, Layer, Linear, Mode, PoolingInput};
use hl::optim::{AdamConfig, AdamW, Optimizer};
use hl::{loss, seeded_rng, Activation, Backend, Cpu, Parameters, Result};
use rand::{Rng, SeedableRng};

/// Instances `[bags, instances, features]` → one logit per bag `[bags, 1]`: Linear → ReLU →
/// HopfieldPooling → Linear. The derive finds hopfield-layers under the key `hl`.
#[derive(Clone, Parameters)]
struct BagClassifier<B: Backend> {
    embed: Linear<B>,
    pool: HopfieldPooling<B>,
    head: Linear<B>,
}

/// The layers crate reached through a path of our own: `#[parameters(crate = "...")]`.
mod reexport {
    pub use hl as layers;
}

/// A temperature next to the classifier, named through the explicit crate path.
#[derive(Clone, Parameters)]
#[parameters(crate = "crate::reexport::layers")]
struct WithTemperature<B: Backend> {
    model: BagClassifier<B>,
    #[param(trainable = false)]
    temperature: B::Tensor,
}

impl<B: Backend> BagClassifier<B> {
    fn new(backend: &B, features: usize, width: usize) -> Result<Self> {
        let mut rng = seeded_rng(0);
        Ok(BagClassifier {
            embed: Linear::new(backend, features, width, true, &mut rng)?,
            pool: HopfieldPoolingConfig::new(width).quantity(2).init(backend, &mut rng)?,
            head: Linear::new(backend, 2 * width, 1, true, &mut rng)?,
        })
    }

    /// The loss on `(x, y)`, its gradients accumulated into `grads`.
    fn loss_and_grads(&self, b: &B, x: &B::Tensor, y: &B::Tensor, grads: &mut Self) -> Result<f64> {
        let (h, embed_cache) = self.embed.forward(b, &self.embed.params, x, Mode::Eval)?;
        let r = b.activation(&h, Activation::Relu);
        let (pooled, pool_cache) = self.pool.forward(b, &self.pool.params, &PoolingInput::single(r), Mode::Eval)?;
        let (logits, head_cache) = self.head.forward(b, &self.head.params, &pooled, Mode::Eval)?;
        let (loss, d_logits) = loss::bce_with_logits(b, &logits, y, None)?;
        let d_pooled = self.head.backward(b, &self.head.params, &head_cache, &d_logits, &mut grads.head.params)?;
        let d_in = self.pool.backward(b, &self.pool.params, &pool_cache, &d_pooled, &mut grads.pool.params)?;
        let d_h = b.activation_backward(&h, &d_in.single(b), Activation::Relu);
        self.embed.backward(b, &self.embed.params, &embed_cache, &d_h, &mut grads.embed.params)?;
        Ok(loss)
    }
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let (bags, instances, features, width, steps) = (32, 6, 4, 16, 30);
    // The data with rand 0.9's own API (`random_range`); a bag is positive when one of its instances has a
    // large first feature.
    let mut data_rng = rand::rngs::StdRng::seed_from_u64(7);
    let x: Vec<f32> = (0..bags * instances * features).map(|_| data_rng.random_range(-1.0..1.0)).collect();
    let y: Vec<f32> =
        x.chunks(instances * features).map(|bag| bag.chunks(features).any(|i| i[0] > 0.7) as u8 as f32).collect();
    let positives = y.iter().filter(|&&v| v == 1.0).count();
    let cpu = Cpu::<f32>::new();
    let (x, y) = (cpu.from_vec(x, &[bags, instances, features]), cpu.from_vec(y, &[bags, 1]));

    let mut model = BagClassifier::new(&cpu, features, width)?;
    let wrapped = WithTemperature { model: model.clone(), temperature: cpu.full(&[], 1.0) };
    let names = wrapped.names();
    if names.first().map(String::as_str) != Some("model.embed.weight")
        || names.last().map(String::as_str) != Some("temperature")
    {
        return Err(format!("unexpected parameter names {names:?}").into());
    }
    let mut opt = AdamW::new(AdamConfig::torch_adamw())?;
    let mut losses = Vec::with_capacity(steps);
    for _ in 0..steps {
        let mut grads = model.zeros_like(&cpu);
        losses.push(model.loss_and_grads(&cpu, &x, &y, &mut grads)?);
        opt.step(&cpu, &mut model, &grads, 1e-2)?;
    }
    let (first, last) = (losses[0], losses[steps - 1]);
    println!(
        "downstream: {} parameters in {} tensors, {bags} bags ({positives} positive), BCE {first:.4} → {last:.4} in {steps} AdamW steps",
        model.num_scalars(&cpu),
        model.names().len()
    );
    if !(last < 0.8 * first) || losses.iter().any(|l| !l.is_finite()) {
        return Err(format!("the loss did not decrease by 20%: {losses:?}").into());
    }
    Ok(())
}
