//! MNIST-bags with HopfieldPooling (hflayers' third notebook, after Ilse et al. 2018): a bag is a random
//! set of images, positive when it holds an image of the target class. Bag length ~ N(10, 2), 200 training
//! bags drawn from the training images, 50 test bags from the test images; an MLP instance encoder,
//! HopfieldPooling, a linear head; AdamW.
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
use hopfield_mil::{MilDataset, Standardizer};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "MNIST-bags (Fashion-MNIST by default) with HopfieldPooling")]
struct Args {
    /// Folder with `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]` (MNIST or Fashion-MNIST).
    #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
    dir: PathBuf,
    /// Class whose presence makes a bag positive (9 = ankle boot in Fashion-MNIST, the digit 9 in MNIST).
    #[arg(long, default_value_t = 9)]
    target: u8,
    #[arg(long, default_value_t = 10.0)]
    mean_len: f64,
    #[arg(long, default_value_t = 2.0)]
    var_len: f64,
    #[arg(long, default_value_t = 200)]
    train_bags: usize,
    #[arg(long, default_value_t = 50)]
    test_bags: usize,
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    #[arg(long, default_value_t = 5e-4)]
    lr: f64,
    #[arg(long, default_value_t = 1)]
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

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let (train_images, test_images) = (load(&args.dir, "train")?, load(&args.dir, "t10k")?);
    let bags = |n| MnistBagsConfig { target: args.target, mean_len: args.mean_len, var_len: args.var_len, bags: n };
    let train_set = mnist_bags(&train_images, &bags(args.train_bags), args.seed);
    let test_set = mnist_bags(&test_images, &bags(args.test_bags), args.seed.wrapping_add(1));
    let describe =
        |d: &MilDataset| format!("{} bags ({} positive), {} images", d.bags.len(), d.num_positive(), d.num_instances());
    eprintln!("train: {}; test: {}", describe(&train_set), describe(&test_set));

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
        let auc = roc_auc(&logits, &test_bags.labels).unwrap_or(f64::NAN);
        println!("final test ROC-AUC {auc:.3} on {} bags (target class {})", test_bags.len(), self.target);
        Ok(())
    }
}
