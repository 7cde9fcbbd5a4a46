//! The two toy data sets of hflayers' demos (`hflayers/auxiliary/data.py`). The bit pattern set is
//! regenerated with torch's own integer stream ([`TorchRng`]), so it is the notebook's data set bit for bit;
//! the latch set uses `rand`'s `StdRng` from the same seed and distribution (its draws differ from torch's).

use super::torch_rng::TorchRng;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A data set of binary-labelled bags (or sequences) of fixed-size instances, for the demo harness.
pub trait BagDataset {
    /// Number of bags.
    fn len(&self) -> usize;
    /// Whether there are no bags.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `(instances per bag, features per instance)`.
    fn bag_shape(&self) -> (usize, usize);
    /// Write bag `index` row-major `[instances, features]` into `out` (its length is the product of
    /// [`BagDataset::bag_shape`]).
    fn write_bag(&self, index: usize, out: &mut [f64]);
    /// The label of bag `index`.
    fn target(&self, index: usize) -> bool;
}

/// Which bags train and which evaluate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Training bag indices.
    pub train: Vec<usize>,
    /// Evaluation bag indices.
    pub eval: Vec<usize>,
}

impl Split {
    /// The notebooks' split: the middle bags train, `edge` bags at each end evaluate. The targets are
    /// sorted (positives first), so this keeps both parts balanced.
    pub fn edges(len: usize, edge: usize) -> Split {
        assert!(2 * edge <= len, "split: 2·{edge} edge bags exceed {len} bags");
        Split { train: (edge..len - edge).collect(), eval: (0..edge).chain(len - edge..len).collect() }
    }
}

/// Multiple-instance bags of random bit patterns; positive bags carry planted signal patterns that never
/// occur elsewhere (hflayers' `BitPatternSet`).
///
/// Signals are drawn from `seed_signals`: random bit rows, made unique and non-zero (sorted, as
/// `torch.unique` returns them). Bags are drawn from `seed_data`: random bits, where any all-zero instance
/// or instance equal to a signal is redrawn; the first `ceil(num_bags · fraction_targets)` bags are
/// positive and get `num_signals_per_bag` random signals planted at distinct random positions.
#[derive(Clone, Debug)]
pub struct BitPatternSet {
    num_instances: usize,
    num_bits: usize,
    /// `[bags, instances, bits]`, 0 or 1.
    data: Vec<u8>,
    targets: Vec<bool>,
    /// `[signals, bits]`.
    signals: Vec<Vec<u8>>,
}

/// The arguments of [`BitPatternSet::new`] (hflayers' names and defaults).
#[derive(Clone, Debug)]
pub struct BitPatternConfig {
    pub num_bags: usize,
    pub num_instances: usize,
    pub num_signals: usize,
    pub num_signals_per_bag: usize,
    pub fraction_targets: f64,
    pub num_bits: usize,
    pub seed_signals: u64,
    pub seed_data: u64,
}

impl BitPatternConfig {
    /// The bit pattern demo: 2048 bags × 16 instances × 8 bits, 8 signals, one per positive bag.
    pub fn demo() -> Self {
        BitPatternConfig {
            num_bags: 2048,
            num_instances: 16,
            num_signals: 8,
            num_signals_per_bag: 1,
            fraction_targets: 0.5,
            num_bits: 8,
            seed_signals: 43,
            seed_data: 44,
        }
    }
}

fn random_bits(rng: &mut TorchRng, n: usize) -> Vec<u8> {
    rng.randint_vec(0, 2, n).into_iter().map(|b| b as u8).collect()
}

impl BitPatternSet {
    /// Generate the set, draw for draw as `data.py` does under torch's CPU generator. Panics on arguments
    /// hflayers asserts against (demo code, fixed arguments).
    pub fn new(cfg: &BitPatternConfig) -> Self {
        let &BitPatternConfig { num_bags, num_instances, num_signals, num_signals_per_bag, num_bits, .. } = cfg;
        assert!(num_bags > 0 && num_instances > 0 && num_signals > 0 && num_bits > 0, "sizes must be positive");
        assert!(num_signals_per_bag <= num_instances, "more signals per bag than instances");
        assert!(cfg.fraction_targets > 0.0 && cfg.fraction_targets < 1.0, "fraction_targets must be in (0, 1)");
        assert!(num_bits < 32 && (1usize << num_bits) - 1 > num_signals, "num_signals must be < 2^num_bits − 1");

        // torch.randint(0, 2, (num_signals, num_bits)); torch.unique(dim=0) sorts; all-zero rows go; the
        // missing rows are drawn and appended, and the loop repeats.
        let mut rng = TorchRng::manual_seed(cfg.seed_signals);
        let mut signals: Vec<Vec<u8>> = (0..num_signals).map(|_| random_bits(&mut rng, num_bits)).collect();
        loop {
            signals.sort();
            signals.dedup();
            signals.retain(|s| s.contains(&1));
            let missing = num_signals - signals.len();
            if missing == 0 {
                break;
            }
            signals.extend((0..missing).map(|_| random_bits(&mut rng, num_bits)));
        }

        let mut rng = TorchRng::manual_seed(cfg.seed_data);
        let mut data = random_bits(&mut rng, num_bags * num_instances * num_bits);
        let num_targets = ((num_bags as f64 * cfg.fraction_targets).ceil() as usize).clamp(1, num_bags);
        let targets = (0..num_bags).map(|i| i < num_targets).collect();

        // Every invalid instance (all zero, or equal to a signal) is redrawn at once, in row-major order
        // (`data[invalid] = torch.randint(0, 2, (invalid.sum(), num_bits))`), until none is left.
        let invalid = |row: &[u8]| row.iter().all(|&b| b == 0) || signals.iter().any(|s| s == row);
        loop {
            let rows: Vec<usize> =
                data.chunks(num_bits).enumerate().filter(|(_, r)| invalid(r)).map(|(i, _)| i).collect();
            if rows.is_empty() {
                break;
            }
            let fresh = random_bits(&mut rng, rows.len() * num_bits);
            for (row, bits) in rows.iter().zip(fresh.chunks(num_bits)) {
                data[row * num_bits..(row + 1) * num_bits].copy_from_slice(bits);
            }
        }

        for bag in 0..num_targets {
            let mut positions: Vec<usize> = Vec::with_capacity(num_signals_per_bag);
            for _ in 0..num_signals_per_bag {
                let position = loop {
                    let p = rng.randint(0, num_instances as i64) as usize;
                    if !positions.contains(&p) {
                        break p;
                    }
                };
                positions.push(position);
                let signal = &signals[rng.randint(0, signals.len() as i64) as usize];
                let start = (bag * num_instances + position) * num_bits;
                data[start..start + num_bits].copy_from_slice(signal);
            }
        }
        BitPatternSet { num_instances, num_bits, data, targets, signals }
    }

    /// The planted signal patterns, sorted.
    pub fn signals(&self) -> &[Vec<u8>] {
        &self.signals
    }

    /// Instance `i` of bag `bag`.
    pub fn instance(&self, bag: usize, i: usize) -> &[u8] {
        let start = (bag * self.num_instances + i) * self.num_bits;
        &self.data[start..start + self.num_bits]
    }

    /// The distinct instances occurring in `bags`, sorted (the lookup demo's initial stored patterns).
    pub fn unique_instances(&self, bags: &[usize]) -> Vec<Vec<u8>> {
        let mut rows: Vec<Vec<u8>> = bags
            .iter()
            .flat_map(|&b| (0..self.num_instances).map(move |i| (b, i)))
            .map(|(b, i)| self.instance(b, i).to_vec())
            .collect();
        rows.sort();
        rows.dedup();
        rows
    }
}

impl BagDataset for BitPatternSet {
    fn len(&self) -> usize {
        self.targets.len()
    }
    fn bag_shape(&self) -> (usize, usize) {
        (self.num_instances, self.num_bits)
    }
    fn write_bag(&self, index: usize, out: &mut [f64]) {
        let n = self.num_instances * self.num_bits;
        for (o, &b) in out.iter_mut().zip(&self.data[index * n..(index + 1) * n]) {
            *o = b as f64;
        }
    }
    fn target(&self, index: usize) -> bool {
        self.targets[index]
    }
}

/// Latch sequences (hflayers' `LatchSequenceSet`): one-hot characters, where the first character is the
/// label (0 or 1) and the rest are drawn uniformly from characters `2..num_characters`.
#[derive(Clone, Debug)]
pub struct LatchSequenceSet {
    num_instances: usize,
    num_characters: usize,
    /// `[samples, instances]` character indices.
    data: Vec<u8>,
}

impl LatchSequenceSet {
    /// 4096 sequences of 32 steps over 20 characters, seed 43 (the latch demo).
    pub fn demo() -> Self {
        Self::new(4096, 32, 20, 43)
    }

    /// Generate `num_samples` sequences. Panics on non-positive sizes or more than 256 characters.
    pub fn new(num_samples: usize, num_instances: usize, num_characters: usize, seed: u64) -> Self {
        assert!(num_samples > 0 && num_instances > 0, "sizes must be positive");
        assert!((3..=256).contains(&num_characters), "num_characters must be in 3..=256");
        let mut rng = StdRng::seed_from_u64(seed);
        let mut data: Vec<u8> =
            (0..num_samples * num_instances).map(|_| rng.gen_range(2..num_characters) as u8).collect();
        for sample in 0..num_samples {
            data[sample * num_instances] = rng.gen_range(0..2u8);
        }
        LatchSequenceSet { num_instances, num_characters, data }
    }

    /// Character index at step `i` of sequence `sample`.
    pub fn character(&self, sample: usize, i: usize) -> usize {
        self.data[sample * self.num_instances + i] as usize
    }

    /// The distinct one-hot instances occurring in `samples`, sorted as `torch.unique` sorts them (the
    /// one-hot row of a higher character compares lower).
    pub fn unique_instances(&self, samples: &[usize]) -> Vec<Vec<u8>> {
        let mut seen = vec![false; self.num_characters];
        for &s in samples {
            for i in 0..self.num_instances {
                seen[self.character(s, i)] = true;
            }
        }
        (0..self.num_characters)
            .rev()
            .filter(|&c| seen[c])
            .map(|c| (0..self.num_characters).map(|k| (k == c) as u8).collect())
            .collect()
    }
}

impl BagDataset for LatchSequenceSet {
    fn len(&self) -> usize {
        self.data.len() / self.num_instances
    }
    fn bag_shape(&self) -> (usize, usize) {
        (self.num_instances, self.num_characters)
    }
    fn write_bag(&self, index: usize, out: &mut [f64]) {
        out.fill(0.0);
        for i in 0..self.num_instances {
            out[i * self.num_characters + self.character(index, i)] = 1.0;
        }
    }
    fn target(&self, index: usize) -> bool {
        self.character(index, 0) == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_bits(seed_data: u64) -> BitPatternSet {
        BitPatternSet::new(&BitPatternConfig { num_bags: 64, seed_data, ..BitPatternConfig::demo() })
    }

    #[test]
    fn bit_pattern_demo_shapes_and_balance() {
        let set = BitPatternSet::new(&BitPatternConfig::demo());
        assert_eq!(set.len(), 2048);
        assert_eq!(set.bag_shape(), (16, 8));
        assert_eq!(set.signals().len(), 8);
        assert_eq!((0..2048).filter(|&i| set.target(i)).count(), 1024);
        let split = Split::edges(2048, 256);
        assert_eq!((split.train.len(), split.eval.len()), (1536, 512));
        assert_eq!(split.eval.iter().filter(|&&i| set.target(i)).count(), 256);
        assert_eq!(split.train.iter().filter(|&&i| set.target(i)).count(), 768);
    }

    #[test]
    fn bit_pattern_signals_are_distinct_nonzero_and_sorted() {
        let set = BitPatternSet::new(&BitPatternConfig::demo());
        let s = set.signals();
        assert!(s.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
        assert!(s.iter().all(|r| r.len() == 8 && r.contains(&1) && r.iter().all(|&b| b <= 1)));
    }

    #[test]
    fn bit_pattern_signal_planted_exactly_once_per_positive_bag() {
        let set = BitPatternSet::new(&BitPatternConfig::demo());
        for bag in 0..set.len() {
            let hits = (0..16).filter(|&i| set.signals().iter().any(|s| s == set.instance(bag, i))).count();
            assert_eq!(hits, set.target(bag) as usize, "bag {bag}");
            assert!((0..16).all(|i| set.instance(bag, i).contains(&1)), "bag {bag} has an all-zero instance");
        }
    }

    #[test]
    fn bit_pattern_several_signals_per_bag_at_distinct_positions() {
        let cfg = BitPatternConfig { num_bags: 32, num_signals_per_bag: 3, ..BitPatternConfig::demo() };
        let set = BitPatternSet::new(&cfg);
        for bag in 0..32 {
            let hits = (0..16).filter(|&i| set.signals().iter().any(|s| s == set.instance(bag, i))).count();
            assert_eq!(hits, if set.target(bag) { 3 } else { 0 }, "bag {bag}");
        }
    }

    #[test]
    fn bit_pattern_is_deterministic_by_seed() {
        let (a, b, c) = (small_bits(44), small_bits(44), small_bits(45));
        assert_eq!(a.data, b.data);
        assert_ne!(a.data, c.data);
        assert_eq!(a.signals, c.signals, "signals depend on seed_signals only");
        let mut bag = vec![0.0; 128];
        a.write_bag(3, &mut bag);
        assert_eq!(bag[..8].iter().map(|&x| x as u8).collect::<Vec<_>>(), a.instance(3, 0));
    }

    #[test]
    fn bit_pattern_unique_instances_cover_signals_and_are_sorted() {
        let set = BitPatternSet::new(&BitPatternConfig::demo());
        let unique = set.unique_instances(&Split::edges(2048, 256).train);
        assert!(unique.windows(2).all(|w| w[0] < w[1]));
        // 255 non-zero 8-bit rows exist; the training bags see nearly all of them, signals included.
        assert!(unique.len() > 240 && unique.len() <= 255, "{}", unique.len());
        assert!(set.signals().iter().all(|s| unique.contains(s)));
    }

    #[test]
    fn latch_shapes_labels_and_balance() {
        let set = LatchSequenceSet::demo();
        assert_eq!(set.len(), 4096);
        assert_eq!(set.bag_shape(), (32, 20));
        let mut seq = vec![0.0; 32 * 20];
        for s in 0..set.len() {
            set.write_bag(s, &mut seq);
            let rows: Vec<usize> = seq.chunks(20).map(|r| r.iter().position(|&x| x == 1.0).unwrap()).collect();
            assert!(seq.chunks(20).all(|r| r.iter().sum::<f64>() == 1.0), "one-hot");
            assert_eq!(rows[0] == 1, set.target(s));
            assert!(rows[0] <= 1 && rows[1..].iter().all(|&c| (2..20).contains(&c)), "sample {s}");
        }
        let positives = (0..4096).filter(|&i| set.target(i)).count();
        assert!((1900..2200).contains(&positives), "{positives} positives of 4096");
        let split = Split::edges(4096, 512);
        assert_eq!((split.train.len(), split.eval.len()), (3072, 1024));
    }

    #[test]
    fn latch_is_deterministic_by_seed_and_unique_is_sorted_like_torch() {
        let (a, b, c) = (
            LatchSequenceSet::new(50, 8, 6, 1),
            LatchSequenceSet::new(50, 8, 6, 1),
            LatchSequenceSet::new(50, 8, 6, 2),
        );
        assert_eq!(a.data, b.data);
        assert_ne!(a.data, c.data);
        let unique = a.unique_instances(&(0..50).collect::<Vec<_>>());
        assert_eq!(unique.len(), 6);
        assert!(unique.windows(2).all(|w| w[0] < w[1]));
    }
}
