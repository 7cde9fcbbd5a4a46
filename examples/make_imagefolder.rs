//! Write a synthetic ImageFolder tree (torchvision's layout: one sub-folder per class) whose classes a
//! model trained on the embedded captioned scenes can tell apart zero-shot: one folder per colour (`red`,
//! `green`, `blue`, `yellow`, `purple`, `orange`) of 32×32 PNG scenes with one object of that colour.
//!
//! ```sh
//! cargo run --release --example make_imagefolder -- --out /tmp/colours --per-class 50
//! target/release/cloob-pretrain --steps 300 --name colours
//! target/release/cloob-eval logs/colours/checkpoints/step_0000300.json --imagenet-val /tmp/colours
//! ```

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "make_imagefolder", about = "Write a synthetic ImageFolder tree of coloured shapes")]
struct Args {
    /// The tree's root (created; class folders inside).
    #[arg(long)]
    out: PathBuf,
    /// Images per class.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    per_class: u64,
    /// Seed of the scenes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() {
    let a = Args::parse();
    match cloob::data::scenes::write_image_folder(&a.out, a.per_class as usize, a.seed) {
        Ok(n) => {
            println!("{n} images in {} class folders under {}", cloob::data::scenes::COLOURS.len(), a.out.display())
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
