//! A planted-cluster MIL task: a bag is positive iff it holds an instance drawn from a hidden cluster.
//! Small enough to learn in a test, hard enough that the pooling has to find the one instance that matters.

use super::data::{Bag, MilDataset};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// Settings of [`planted_cluster`].
#[derive(Clone, Debug)]
pub struct PlantedCluster {
    /// Number of bags (half of them positive, rounded down).
    pub bags: usize,
    /// Features per instance.
    pub features: usize,
    /// Bag lengths are uniform in `min_len..=max_len`.
    pub min_len: usize,
    pub max_len: usize,
    /// Distance of the cluster centre from the origin, in units of the background's σ = 1.
    pub separation: f64,
    /// σ of the planted instances around the centre.
    pub spread: f64,
}

impl Default for PlantedCluster {
    fn default() -> Self {
        PlantedCluster { bags: 200, features: 8, min_len: 4, max_len: 12, separation: 4.0, spread: 0.5 }
    }
}

/// Draw a data set: background instances ~ N(0, I); each positive bag has one to three of its instances
/// replaced by draws from N(c, spread²·I) with a fixed random centre `c` of norm `separation`.
pub fn planted_cluster(cfg: &PlantedCluster, seed: u64) -> MilDataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0, 1.0).expect("unit normal");
    let mut centre: Vec<f64> = (0..cfg.features).map(|_| normal.sample(&mut rng)).collect();
    let norm = centre.iter().map(|c| c * c).sum::<f64>().sqrt();
    centre.iter_mut().for_each(|c| *c *= cfg.separation / norm);
    let bags = (0..cfg.bags)
        .map(|b| {
            let label = b % 2 == 0;
            let len = rng.gen_range(cfg.min_len..=cfg.max_len);
            let mut instances: Vec<f64> = (0..len * cfg.features).map(|_| normal.sample(&mut rng)).collect();
            if label {
                let planted = rng.gen_range(1..=3.min(len));
                for _ in 0..planted {
                    let row = rng.gen_range(0..len);
                    for (x, c) in instances[row * cfg.features..(row + 1) * cfg.features].iter_mut().zip(&centre) {
                        *x = c + cfg.spread * normal.sample(&mut rng);
                    }
                }
            }
            Bag { id: format!("b{b}"), label, instances, len, first_line: b + 1 }
        })
        .collect();
    MilDataset { name: "planted_cluster".into(), n_features: cfg.features, bags }
}
