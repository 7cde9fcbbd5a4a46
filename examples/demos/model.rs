//! The demo networks of hflayers' notebooks: a Hopfield module (association, pooling or lookup) followed by a
//! linear read-out to one logit per bag, in the plain (defaults) and adapted settings.

use hopfield::layers::{
    Hopfield, HopfieldCache, HopfieldConfig, HopfieldInput, HopfieldLayer, HopfieldLayerConfig, HopfieldPooling,
    HopfieldPoolingConfig, Layer, Linear, LinearCache, LookupCache, LookupInput, Mode, PoolingCache, PoolingInput,
};
use hopfield::params::{visit_child, visit_child_mut};
use hopfield::{Backend, Element, HopfieldError, Parameters, Result};
use rand::Rng;
use std::fmt;
use std::str::FromStr;

/// The six model variants of the notebooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// `Hopfield(input_size)`: self-association over the bag, then a linear read-out of all instances.
    Hopfield,
    /// The same with 8 heads of size 8, up to 3 further update steps, β = 0.25 and dropout 0.5.
    HopfieldAdapted,
    /// `HopfieldPooling(input_size)`: one learned state pattern pools the bag.
    Pooling,
    /// Pooling with the adapted association settings.
    PoolingAdapted,
    /// `HopfieldLayer(input_size, quantity)`: each instance queries learned stored patterns.
    Lookup,
    /// Lookup with separated, frozen targets and the stored patterns set to the distinct training instances.
    LookupAdapted,
}

impl Variant {
    /// All variants in notebook order.
    pub const ALL: [Variant; 6] = [
        Variant::Hopfield,
        Variant::HopfieldAdapted,
        Variant::Pooling,
        Variant::PoolingAdapted,
        Variant::Lookup,
        Variant::LookupAdapted,
    ];

    /// Name used on the command line, in the metrics and in the table.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Hopfield => "hopfield",
            Variant::HopfieldAdapted => "hopfield_adapted",
            Variant::Pooling => "pooling",
            Variant::PoolingAdapted => "pooling_adapted",
            Variant::Lookup => "lookup",
            Variant::LookupAdapted => "lookup_adapted",
        }
    }

    /// The notebooks' adapted association: 8 heads of size 8, up to 3 further update steps, β = 0.25,
    /// dropout 0.5 on the association matrix.
    fn adapted(config: HopfieldConfig) -> HopfieldConfig {
        config.hidden_size(8).num_heads(8).update_steps_max(Some(3)).scaling(0.25).dropout(0.5)
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Variant::ALL.into_iter().find(|v| v.name() == s).ok_or_else(|| {
            let names: Vec<_> = Variant::ALL.iter().map(|v| v.name()).collect();
            format!("unknown model `{s}`, expected one of {}", names.join(", "))
        })
    }
}

/// The Hopfield part of a [`DemoNet`].
#[derive(Clone, Debug)]
pub enum Body<B: Backend> {
    /// Self-association, `[n, L, d] → [n, L, out]`.
    Hopfield(Hopfield<B>),
    /// `[n, L, d] → [n, out]`.
    Pooling(HopfieldPooling<B>),
    /// `[n, L, d] → [n, L, out]`.
    Lookup(HopfieldLayer<B>),
}

/// What [`DemoNet`]'s backward needs.
pub struct DemoCache<B: Backend> {
    body: BodyCache<B>,
    /// The read-out's cache (its input `[n, features]`).
    head: LinearCache<B>,
    /// The body output's shape, to unflatten its gradient.
    body_shape: Vec<usize>,
}

enum BodyCache<B: Backend> {
    Hopfield(HopfieldCache<B>),
    Pooling(PoolingCache<B>),
    Lookup(LookupCache<B>),
}

/// A Hopfield body and a linear read-out to one logit per bag, as the notebooks'
/// `Sequential(body, Flatten(), Linear(·, 1), Flatten(0))`.
///
/// Its parameters are named as that `Sequential`'s `state_dict` (`0.association_core.…`, `2.weight`), and
/// the same type holds the gradients (a zeroed clone), which is what the optimiser takes.
///
/// # Shapes
/// bags `[n, instances, features]` → logits `[n]`.
#[derive(Clone, Debug)]
pub struct DemoNet<B: Backend> {
    /// The Hopfield module.
    pub body: Body<B>,
    /// `Linear(body output size, 1)`.
    pub head: Linear<B>,
}

impl<B: Backend> DemoNet<B> {
    /// Build `variant` for bags of `instances × features`, drawing every initial weight from `rng` (body first,
    /// then the read-out, as the notebooks construct them). `lookup_patterns` are the distinct training
    /// instances: their count is the lookup quantity, and the adapted lookup starts from them.
    pub fn new(
        backend: &B,
        variant: Variant,
        (instances, features): (usize, usize),
        lookup_patterns: &[Vec<u8>],
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let plain = HopfieldConfig::new(features);
        let body = match variant {
            Variant::Hopfield => Body::Hopfield(plain.init(backend, rng)?),
            Variant::HopfieldAdapted => Body::Hopfield(Variant::adapted(plain).init(backend, rng)?),
            Variant::Pooling => Body::Pooling(HopfieldPoolingConfig::new(features).init(backend, rng)?),
            Variant::PoolingAdapted => Body::Pooling(
                HopfieldPoolingConfig::new(features).hopfield(Variant::adapted(plain)).init(backend, rng)?,
            ),
            Variant::Lookup | Variant::LookupAdapted => {
                let quantity = lookup_patterns.len();
                let mut config = HopfieldLayerConfig::new(features).quantity(quantity);
                if variant == Variant::LookupAdapted {
                    // The notebooks also pass normalize_{stored_pattern,pattern_projection}_affine=True: the defaults.
                    config = config.lookup_weights_as_separated(true).lookup_targets_as_trainable(false);
                }
                let mut layer = config.init(backend, rng)?;
                if variant == Variant::LookupAdapted {
                    if lookup_patterns.iter().any(|p| p.len() != features) {
                        return Err(HopfieldError::shape(
                            "demo_net.lookup_patterns",
                            format!("rows of {features}"),
                            &[quantity],
                        ));
                    }
                    let flat = lookup_patterns.iter().flatten().map(|&b| B::Elem::of(b as f64)).collect();
                    layer.params.lookup_weights = backend.from_vec(flat, &[1, quantity, features]);
                }
                Body::Lookup(layer)
            }
        };
        let read_in = match &body {
            Body::Hopfield(h) => instances * h.spec.dims.output,
            Body::Pooling(p) => p.config.quantity * p.spec.dims.output,
            Body::Lookup(l) => instances * l.spec.dims.output,
        };
        let head = Linear::new(backend, read_in, 1, true, rng)?;
        Ok(DemoNet { body, head })
    }

    /// Number of trainable scalars.
    pub fn num_trainable(&self, backend: &B) -> usize {
        let mut n = 0;
        self.visit(&mut |_, t, trainable| {
            if trainable {
                n += backend.shape(t).iter().product::<usize>();
            }
        });
        n
    }

    /// The read-out's index in the notebooks' `Sequential` (pooling has no `Flatten` before it).
    fn head_prefix(&self) -> &'static str {
        match self.body {
            Body::Pooling(_) => "1",
            _ => "2",
        }
    }
}

impl<B: Backend> Layer<B> for DemoNet<B> {
    type Params = DemoNet<B>;
    type Input = B::Tensor;
    type Output = B::Tensor;
    type Cache = DemoCache<B>;
    type OutputGrad = B::Tensor;
    type InputGrad = ();

    fn params(&self) -> &Self {
        self
    }
    fn params_mut(&mut self) -> &mut Self {
        self
    }

    /// Logits `[n]` for bags `x: [n, instances, features]`; training switches on dropout on the association
    /// matrix.
    fn forward(&self, backend: &B, p: &Self, x: &B::Tensor, mode: Mode) -> Result<(B::Tensor, DemoCache<B>)> {
        let (out, body) = match (&self.body, &p.body) {
            (Body::Hopfield(h), Body::Hopfield(hp)) => {
                let (out, cache) = h.forward(backend, &hp.params, &HopfieldInput::single(x.clone()), mode)?;
                (out.output, BodyCache::Hopfield(cache))
            }
            (Body::Pooling(l), Body::Pooling(lp)) => {
                let (out, cache) = l.forward(backend, &lp.params, &PoolingInput::single(x.clone()), mode)?;
                (out, BodyCache::Pooling(cache))
            }
            (Body::Lookup(l), Body::Lookup(lp)) => {
                let (out, cache) = l.forward(backend, &lp.params, &LookupInput::new(x.clone()), mode)?;
                (out, BodyCache::Lookup(cache))
            }
            _ => return Err(HopfieldError::config("demo_net.forward", "parameters of another variant")),
        };
        let body_shape = backend.shape(&out);
        let n = body_shape[0];
        let features = backend.reshape(&out, &[n, body_shape[1..].iter().product()]);
        let (logits, head) = self.head.forward(backend, &p.head.params, &features, mode)?;
        Ok((backend.reshape(&logits, &[n]), DemoCache { body, head, body_shape }))
    }

    /// Backward from `d_logits: [n]`, accumulating into `grads`.
    fn backward(
        &self,
        backend: &B,
        p: &Self,
        cache: &DemoCache<B>,
        d_logits: &B::Tensor,
        grads: &mut Self,
    ) -> Result<()> {
        let n = cache.body_shape[0];
        let d_logits = backend.reshape(d_logits, &[n, 1]);
        let d_features = self.head.backward(backend, &p.head.params, &cache.head, &d_logits, &mut grads.head.params)?;
        let d_out = backend.reshape(&d_features, &cache.body_shape);
        match (&self.body, &p.body, &cache.body, &mut grads.body) {
            (Body::Hopfield(h), Body::Hopfield(hp), BodyCache::Hopfield(c), Body::Hopfield(g)) => {
                h.backward(backend, &hp.params, c, &d_out, &mut g.params)?;
            }
            (Body::Pooling(l), Body::Pooling(lp), BodyCache::Pooling(c), Body::Pooling(g)) => {
                l.backward(backend, &lp.params, c, &d_out, &mut g.params)?;
            }
            (Body::Lookup(l), Body::Lookup(lp), BodyCache::Lookup(c), Body::Lookup(g)) => {
                l.backward(backend, &lp.params, c, &d_out, &mut g.params)?;
            }
            _ => return Err(HopfieldError::config("demo_net.backward", "cache or gradients of another variant")),
        }
        Ok(())
    }
}

impl<B: Backend> Parameters<B> for DemoNet<B> {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&str, &'a B::Tensor, bool)) {
        match &self.body {
            Body::Hopfield(h) => visit_child(&h.params, "0", f),
            Body::Pooling(p) => visit_child(&p.params, "0", f),
            Body::Lookup(l) => visit_child(&l.params, "0", f),
        }
        visit_child(&self.head.params, self.head_prefix(), f);
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, &mut B::Tensor, bool)) {
        let prefix = self.head_prefix();
        match &mut self.body {
            Body::Hopfield(h) => visit_child_mut(&mut h.params, "0", f),
            Body::Pooling(p) => visit_child_mut(&mut p.params, "0", f),
            Body::Lookup(l) => visit_child_mut(&mut l.params, "0", f),
        }
        visit_child_mut(&mut self.head.params, prefix, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopfield::testing::{check_gradients, GradCheck};
    use hopfield::Cpu;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const SHAPE: (usize, usize) = (4, 3);

    fn patterns() -> Vec<Vec<u8>> {
        vec![vec![0, 0, 1], vec![0, 1, 0], vec![1, 0, 1], vec![1, 1, 1], vec![0, 1, 1]]
    }

    fn net(variant: Variant) -> DemoNet<Cpu<f64>> {
        DemoNet::new(&Cpu::new(), variant, SHAPE, &patterns(), &mut StdRng::seed_from_u64(5)).unwrap()
    }

    fn bags(cpu: &Cpu<f64>, n: usize, seed: u64) -> hopfield::backend::CpuTensor<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        cpu.from_vec((0..n * SHAPE.0 * SHAPE.1).map(|_| rng.gen_range(0..2) as f64).collect(), &[n, SHAPE.0, SHAPE.1])
    }

    #[test]
    fn names_follow_the_notebooks_sequential() {
        for variant in Variant::ALL {
            let names = net(variant).names();
            let head = if matches!(variant, Variant::Pooling | Variant::PoolingAdapted) { "1" } else { "2" };
            assert_eq!(names[names.len() - 2..], [format!("{head}.weight"), format!("{head}.bias")], "{variant}");
            assert!(names[..names.len() - 2].iter().all(|n| n.starts_with("0.")), "{variant}: {names:?}");
        }
        let lookup = net(Variant::LookupAdapted);
        let mut frozen = Vec::new();
        lookup.visit(&mut |n, _, trainable| {
            if !trainable {
                frozen.push(n.to_string())
            }
        });
        assert_eq!(frozen, ["0.target_weights"]);
    }

    #[test]
    fn adapted_lookup_starts_from_the_given_patterns() {
        let cpu = Cpu::<f64>::new();
        let Body::Lookup(layer) = &net(Variant::LookupAdapted).body else { panic!("lookup body") };
        assert_eq!(cpu.shape(&layer.params.lookup_weights), [1, 5, 3]);
        let flat: Vec<f64> = patterns().concat().into_iter().map(f64::from).collect();
        assert_eq!(cpu.to_vec(&layer.params.lookup_weights), flat);
        let Body::Lookup(plain) = &net(Variant::Lookup).body else { panic!("lookup body") };
        assert_eq!(cpu.shape(&plain.params.lookup_weights), [1, 5, 3], "quantity = number of patterns");
        assert!(
            DemoNet::new(&cpu, Variant::LookupAdapted, SHAPE, &[vec![1, 0]], &mut StdRng::seed_from_u64(0)).is_err()
        );
    }

    /// The composition (flatten, read-out, gradient routing into the body) against central differences of
    /// `L = Σ w ⊙ logits`, in train mode with a fixed dropout seed so that the adapted variants are covered.
    #[test]
    fn gradients_match_finite_differences() {
        let cpu = Cpu::<f64>::new();
        let x = bags(&cpu, 2, 9);
        let w = cpu.from_vec(vec![0.7, -1.3], &[2]);
        let loss = |net: &DemoNet<Cpu<f64>>| {
            let (z, _) = net.forward(&cpu, net.params(), &x, Mode::Train { seed: 11 }).unwrap();
            cpu.sum(&cpu.mul(&z, &w))
        };
        for variant in Variant::ALL {
            let net = net(variant);
            let (_, cache) = net.forward(&cpu, net.params(), &x, Mode::Train { seed: 11 }).unwrap();
            let mut grads = net.zero_grads(&cpu);
            net.backward(&cpu, net.params(), &cache, &w, &mut grads).unwrap();
            // A few entries per tensor keep the test fast; the layers have their own exhaustive checks.
            let opts = GradCheck::default().entries(4, 3).tolerance(1e-5);
            check_gradients(&cpu, &net, &grads, &opts, loss).unwrap_or_else(|e| panic!("{variant}: {e}"));
        }
    }

    #[test]
    fn eval_forward_is_deterministic_and_train_forward_follows_the_seed() {
        let cpu = Cpu::<f64>::new();
        let x = bags(&cpu, 3, 2);
        let net = net(Variant::HopfieldAdapted);
        let run = |seed| cpu.to_vec(&net.forward(&cpu, net.params(), &x, Mode::from_seed(seed)).unwrap().0);
        assert_eq!(run(None), run(None));
        assert_eq!(run(Some(1)), run(Some(1)));
        assert_ne!(run(Some(1)), run(Some(2)), "dropout 0.5 changes the logits");
        assert_eq!(run(None).len(), 3);
    }

    #[test]
    fn variants_parse_from_their_names() {
        for v in Variant::ALL {
            assert_eq!(v.name().parse::<Variant>(), Ok(v));
        }
        assert!("lstm".parse::<Variant>().unwrap_err().contains("pooling_adapted"));
    }
}
