//! MNIST-bags with HopfieldPooling (hflayers' third notebook, after Ilse et al. 2018): a bag is a random
//! set of images, positive when it holds an image of the target class. Bag length ~ N(10, 2), 200 training
//! bags drawn from the training images, 50 test bags from the test images; an MLP instance encoder,
//! HopfieldPooling, a linear head; AdamW.
//!
//! Every flag is checked before any file is read, each bad value an error naming the flag: a target class
//! 0–9, bag lengths of mean 1–1000 and spread 0–1000, 2–100000 bags of each set and at most 500000 images
//! expected per set (`MnistBagsConfig::validate`); a set drawn without both classes is an error too.
//!
//! ```text
//! apt-get install dataset-fashion-mnist      # Debian's Fashion-MNIST IDX files
//! cargo run --release --example mnist_bags
//! cargo run --release --example mnist_bags -- --dir /path/to/mnist --target 7 --epochs 30
//! ```

use clap::Parser;
use hopfield::backend::{Device, OnBackend};
use hopfield::layers::Retrieval;
use hopfield::Backend;
use hopfield_mil::metrics::roc_auc;
use hopfield_mil::mnist_bags::{mnist_bags, IdxImages, MnistBagsConfig};
use hopfield_mil::train::{predict, train_with, MilConfig, PreparedBags};
use hopfield_mil::{MilDataset, MilError, Standardizer};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "MNIST-bags (Fashion-MNIST by default) with HopfieldPooling")]
struct Args {
    /// Folder with `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]` (MNIST or Fashion-MNIST).
    #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
    dir: PathBuf,
    /// Class whose presence makes a bag positive, 0–9 (9 = ankle boot in Fashion-MNIST, the digit 9 in MNIST).
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u8).range(0..=9))]
    target: u8,
    /// Mean bag length, in [1, 1000].
    #[arg(long, default_value_t = 10.0, value_parser = mean_len)]
    mean_len: f64,
    /// Spread (standard deviation) of the bag length, in [0, 1000].
    #[arg(long, default_value_t = 2.0, value_parser = var_len)]
    var_len: f64,
    /// Training bags, in 2..=100000 (and at most 500000 images expected in all).
    #[arg(long, default_value_t = 200, value_parser = bags)]
    train_bags: usize,
    /// Test bags, in 2..=100000 (and at most 500000 images expected in all).
    #[arg(long, default_value_t = 50, value_parser = bags)]
    test_bags: usize,
    /// Passes over the training bags, in 1..=100000.
    #[arg(long, default_value_t = 20, value_parser = count)]
    epochs: usize,
    /// Learning rate, a finite number > 0.
    #[arg(long, default_value_t = 5e-4, value_parser = lr)]
    lr: f64,
    /// Bags per optimiser step, in 1..=100000.
    #[arg(long, default_value_t = 1, value_parser = count)]
    batch_size: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The pooling's retrieval: softmax (the notebook's), sparsemax, softmax1, entmax15, entmax:ALPHA or
    /// entmax:ALPHA:learnable.
    #[arg(long, default_value_t = Retrieval::Softmax)]
    retrieval: Retrieval,
    /// Where to train: cpu (default), wgpu (a Vulkan, Metal or DX12 GPU; without one, Mesa's lavapipe: apt
    /// install mesa-vulkan-drivers) or cuda[:N] (NVIDIA GPU N; a build with --features cuda).
    #[arg(long, default_value = "cpu", value_parser = Device::parse_flag)]
    device: Device,
}

// Flag parsers: clap prints their message after `invalid value 'V' for '--flag <FLAG>':`.

/// A finite number in `lo..=hi`.
fn finite_in(s: &str, lo: f64, hi: f64) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|e| format!("not a number ({e})"))?;
    if !x.is_finite() || !(lo..=hi).contains(&x) {
        return Err(format!("must be a finite number in [{lo}, {hi}]"));
    }
    Ok(x)
}

fn mean_len(s: &str) -> Result<f64, String> {
    finite_in(s, 1.0, MnistBagsConfig::MAX_LEN)
}

fn var_len(s: &str) -> Result<f64, String> {
    finite_in(s, 0.0, MnistBagsConfig::MAX_LEN)
}

fn lr(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(_) => Err("must be a finite number > 0".into()),
        Err(e) => Err(format!("not a number ({e})")),
    }
}

/// A whole number in `lo..=hi`.
fn whole_in(s: &str, lo: usize, hi: usize) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("not a whole number ({e})"))?;
    if !(lo..=hi).contains(&n) {
        return Err(format!("must lie in {lo}..={hi}"));
    }
    Ok(n)
}

fn bags(s: &str) -> Result<usize, String> {
    whole_in(s, 2, MnistBagsConfig::MAX_BAGS)
}

fn count(s: &str) -> Result<usize, String> {
    whole_in(s, 1, 100_000)
}

/// `dir/name` or `dir/name.gz`, whichever exists.
fn idx_file(dir: &Path, name: &str) -> PathBuf {
    let plain = dir.join(name);
    if plain.exists() {
        plain
    } else {
        dir.join(format!("{name}.gz"))
    }
}

fn load(dir: &Path, split: &str) -> Result<IdxImages, Box<dyn std::error::Error>> {
    let images = idx_file(dir, &format!("{split}-images-idx3-ubyte"));
    let labels = idx_file(dir, &format!("{split}-labels-idx1-ubyte"));
    IdxImages::read(&images, &labels).map_err(|e| {
        format!("{e}\n(install Debian's Fashion-MNIST with `apt-get install dataset-fashion-mnist`, or pass --dir)")
            .into()
    })
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// The bag settings of one set, checked before any file is read; an error names the flags.
fn bag_settings(args: &Args, bags: usize, bags_flag: &str) -> Result<MnistBagsConfig, String> {
    let cfg = MnistBagsConfig { target: args.target, mean_len: args.mean_len, var_len: args.var_len, bags };
    cfg.validate().map_err(|e| match e {
        MilError::Setting { what: "bags", reason } => format!("{bags_flag} with --mean-len and --var-len: {reason}"),
        MilError::Setting { what, reason } => format!("--{}: {reason}", what.replace('_', "-")),
        other => other.to_string(),
    })?;
    Ok(cfg)
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let train_cfg = bag_settings(&args, args.train_bags, "--train-bags")?;
    let test_cfg = bag_settings(&args, args.test_bags, "--test-bags")?;
    let (train_images, test_images) = (load(&args.dir, "train")?, load(&args.dir, "t10k")?);
    let train_set = mnist_bags(&train_images, &train_cfg, args.seed)?;
    let test_set = mnist_bags(&test_images, &test_cfg, args.seed.wrapping_add(1))?;
    let describe =
        |d: &MilDataset| format!("{} bags ({} positive), {} images", d.bags.len(), d.num_positive(), d.num_instances());
    eprintln!("train: {}; test: {}", describe(&train_set), describe(&test_set));
    // An AUC needs both classes; without them the run would end in `AUC NaN`.
    for (set, flag) in [(&train_set, "--train-bags"), (&test_set, "--test-bags")] {
        if set.num_positive() == 0 || set.num_positive() == set.bags.len() {
            return Err(format!(
                "{flag}: the {} bags drawn are all {}; draw more bags or change --mean-len or --target",
                set.bags.len(),
                if set.num_positive() == 0 { "negative" } else { "positive" },
            )
            .into());
        }
    }

    // Pixels are already in [0, 1], as Ilse's loader feeds them.
    let identity = Standardizer::identity(train_set.n_features);
    let all = |d: &MilDataset| (0..d.bags.len()).collect::<Vec<_>>();
    let train_bags = PreparedBags::<f32>::new(&train_set, &all(&train_set), &identity);
    let test_bags = PreparedBags::<f32>::new(&test_set, &all(&test_set), &identity);

    // The notebook's HopfieldPooling (hidden_size 32) after a 784 → 256 → 128 MLP encoder; its AdamW
    // (lr 5e-4, weight decay 1e-4), batch size 1 and gradient clipping at 1.
    let cfg = MilConfig {
        lr: args.lr,
        lr_decay: 1.0,
        weight_decay: 1e-4,
        embedding_layers: 2,
        width: 128,
        heads: 4,
        head_dim: 32,
        beta: 1.0 / (32f64).sqrt(),
        bag_dropout: 0.1,
        epochs: args.epochs,
        batch_size: args.batch_size,
        grad_clip: Some(1.0),
        retrieval: args.retrieval,
    };
    hopfield::backend::cpu::tune_allocator();
    args.device.run(Train { cfg: &cfg, train: &train_bags, test: &test_bags, seed: args.seed, target: args.target })?
}

/// Training and evaluation on the device's backend.
struct Train<'a> {
    cfg: &'a MilConfig,
    train: &'a PreparedBags<f32>,
    test: &'a PreparedBags<f32>,
    seed: u64,
    target: u8,
}

impl OnBackend for Train<'_> {
    type Output = Result<(), Box<dyn std::error::Error>>;
    fn run<B: Backend<Elem = f32>>(self, backend: B) -> Self::Output {
        let (cfg, train_bags, test_bags) = (self.cfg, self.train, self.test);
        let start = Instant::now();
        println!("epoch  train loss  test AUC  test acc   time");
        let model = train_with(&backend, cfg, train_bags, self.seed, &mut |epoch, model, loss| {
            let logits = predict(&backend, model, test_bags)?;
            let auc = roc_auc(&logits, &test_bags.labels).unwrap_or(f64::NAN);
            let acc = logits.iter().zip(&test_bags.labels).filter(|(l, y)| (**l > 0.0) == **y).count() as f64
                / test_bags.len() as f64;
            println!("{epoch:>5}  {loss:>10.4}  {auc:>8.3}  {acc:>8.3}  {:>5.1} s", start.elapsed().as_secs_f64());
            Ok(())
        })?;
        let logits = predict(&backend, &model, test_bags)?;
        let auc = roc_auc(&logits, &test_bags.labels).ok_or("the test bags lack a class")?;
        println!("final test ROC-AUC {auc:.3} on {} bags (target class {})", test_bags.len(), self.target);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flags: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(["mnist_bags"].iter().chain(flags))
    }

    #[test]
    fn flags_out_of_range_are_refused_naming_the_flag() {
        let bad = [
            ("--target", "10"),
            ("--target", "-1"),
            ("--mean-len", "0"),
            ("--mean-len", "1e6"),
            ("--mean-len", "NaN"),
            ("--var-len", "-1"),
            ("--var-len", "inf"),
            ("--train-bags", "1"),
            ("--train-bags", "100001"),
            ("--test-bags", "0"),
            ("--epochs", "0"),
            ("--batch-size", "0"),
            ("--lr", "0"),
            ("--lr", "nan"),
        ];
        for (flag, value) in bad {
            let err = parse(&[&format!("{flag}={value}")]).expect_err(&format!("{flag} {value} accepted")).to_string();
            assert!(err.contains(flag) && err.contains(&format!("'{value}'")), "{flag} {value}: {err}");
        }
        for (flag, value) in [("--target", "0"), ("--mean-len", "1"), ("--var-len", "0"), ("--train-bags", "2")] {
            parse(&[flag, value]).unwrap_or_else(|e| panic!("{flag} {value}: {e}"));
        }
    }

    #[test]
    fn too_many_images_are_refused_naming_the_flags_before_any_file_is_read() {
        let args = parse(&["--dir", "/nonexistent", "--train-bags", "100000", "--mean-len", "10"]).unwrap();
        let err = run(args).unwrap_err().to_string();
        assert!(err.starts_with("--train-bags with --mean-len and --var-len: 100000 bags"), "{err}");
        let args = parse(&["--dir", "/nonexistent", "--test-bags", "1000", "--mean-len", "1000"]).unwrap();
        let err = run(args).unwrap_err().to_string();
        assert!(err.starts_with("--test-bags with --mean-len and --var-len: 1000 bags"), "{err}");
    }
}
