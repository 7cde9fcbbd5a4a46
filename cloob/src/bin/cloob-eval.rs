//! Evaluate a `cloob-pretrain` checkpoint, or open_clip weights (`--pretrained FILE --model NAME`), on any
//! data source: zero-shot per task (and on the user's own classes with `--classes`), retrieval, embedding
//! analysis and (with labels) the linear probe; prints a table and writes JSON.

use clap::Parser;
use cloob::data::labels::{class_task, read_classes, read_templates, IMAGENET_TEMPLATES};
use cloob::pretrain::checkpoint::load_model;
use cloob::pretrain::config::ModelSource;
use cloob::pretrain::evaluate::{evaluate_with, EvalOptions, DIAGNOSTICS};
use cloob::pretrain::run::open_data;
use cloob::pretrain::{print_or_quit, DataSpec, PretrainError, RunConfig};
use cloob::pretrained::load_pretrained;
use hopfield::backend::{Device, OnBackend};
use hopfield::Backend;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "cloob-eval", about = "Zero-shot, retrieval, linear probe and embedding analysis of a checkpoint")]
struct Args {
    /// The checkpoint's JSON (`logs/<run>/checkpoints/step_NNNNNNN.json`); or give --pretrained.
    #[arg(required_unless_present = "pretrained", conflicts_with = "pretrained")]
    checkpoint: Option<PathBuf>,
    /// Evaluate open_clip weights instead of a checkpoint: open_clip_model.safetensors or a PyTorch
    /// .pt/.bin checkpoint as open_clip or ml-jku/cloob save it, of the model --model or --model-config.
    #[arg(long, value_name = "FILE")]
    pretrained: Option<PathBuf>,
    /// The model of --pretrained: tiny, small, vit-b32, ViT-B-32, ViT-B-16, ViT-L-14 or a -quickgelu variant.
    #[arg(long, value_name = "MODEL", requires = "pretrained")]
    model: Option<String>,
    /// The model of --pretrained as an open_clip model-config JSON.
    #[arg(long = "model-config", value_name = "FILE.json", requires = "pretrained", conflicts_with = "model")]
    model_config: Option<PathBuf>,
    /// With --pretrained: load the tensors that fit, keep fresh values for the rest and say which.
    #[arg(long, requires = "pretrained")]
    pretrained_partial: bool,
    /// Data source to score (default: the checkpoint's own validation data; with --pretrained the embedded
    /// scenes): embedded, fashion-mnist, csv:PATH, wds:PATTERN or imagefolder:DIR (one sub-folder per class).
    #[arg(long)]
    data: Option<DataSpec>,
    /// Zero-shot top-1/top-5 on an ImageFolder tree (one sub-folder per class, torchvision's layout) with
    /// open_clip's 80 ImageNet templates, as open_clip's --imagenet-val; alone, it is the only set scored.
    #[arg(long = "imagenet-val", value_name = "DIR")]
    imagenet_val: Option<PathBuf>,
    /// Class names of --imagenet-val or --data imagefolder:DIR, one a line in the sorted order of the folders
    /// (default: the folder names, `_` read as a space).
    #[arg(long = "class-names", value_name = "FILE")]
    class_names: Option<PathBuf>,
    /// CSV image path column (default: the checkpoint's).
    #[arg(long = "csv-img-key", value_name = "CSV_IMG_KEY")]
    csv_img_key: Option<String>,
    /// CSV caption column (default: the checkpoint's); with --classes it holds each image's class.
    #[arg(long = "csv-caption-key", value_name = "CSV_CAPTION_KEY")]
    csv_caption_key: Option<String>,
    /// CSV separator, one character or `\t` / `tab` (default: the checkpoint's).
    #[arg(long = "csv-separator", value_name = "CSV_SEPARATOR", value_parser = cloob::pretrain::config::separator)]
    csv_separator: Option<char>,
    /// Zero-shot classification on your own classes: a file with one class name a line. The CSV's caption
    /// column holds each image's class, by name or by index (0 is the first line).
    #[arg(long)]
    classes: Option<PathBuf>,
    /// Prompt templates for --classes, one a line with `{}` for the class name (default: open_clip's 80
    /// ImageNet templates, averaged as CLIP does).
    #[arg(long, requires = "classes")]
    templates: Option<PathBuf>,
    /// Images per evaluation set (as `cloob-pretrain --eval-size`); at least 2.
    #[arg(long, default_value_t = 1000, value_parser = cloob::pretrain::config::at_least_two)]
    eval_size: usize,
    /// Skip the linear probe.
    #[arg(long)]
    no_probe: bool,
    /// Write the report here (default: next to the checkpoint, `eval-<data>.json`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where the encoders run: cpu (default), wgpu (a Vulkan, Metal or DX12 GPU, or Mesa's lavapipe: apt
    /// install mesa-vulkan-drivers) or `cuda[:N]` (a build with --features cuda). Any checkpoint, from any
    /// device.
    #[arg(long, default_value = "cpu", value_parser = Device::parse_flag)]
    device: Device,
    /// Testing aid: this diagnostic fails as if its computation had (image-eigenvalues, linear-probe, …).
    #[arg(long, hide = true, value_parser = clap::builder::PossibleValuesParser::new(DIAGNOSTICS))]
    fail_diagnostic: Option<String>,
}

type Outcome = Result<(), Box<dyn std::error::Error>>;

struct OnDevice<'a>(&'a Args);

impl OnBackend for OnDevice<'_> {
    type Output = Outcome;
    fn run<B: Backend<Elem = f32>>(self, backend: B) -> Outcome {
        run_on(&backend, self.0)
    }
}

fn run(a: &Args) -> Outcome {
    hopfield::backend::cpu::tune_allocator();
    a.device.run(OnDevice(a))?
}

fn run_on<B: Backend<Elem = f32>>(backend: &B, a: &Args) -> Outcome {
    let (model, what, mut cfg, beside) = match (&a.checkpoint, &a.pretrained) {
        (Some(ckpt), _) => {
            let (model, state) = load_model(backend, ckpt)?;
            let what = format!("checkpoint {} (step {}, {:?} loss)", ckpt.display(), state.step, state.config.loss);
            (model, what, state.config, ckpt.clone())
        }
        (None, Some(file)) => {
            let source = ModelSource { model_config: a.model_config.clone(), ..ModelSource::default() };
            let name = a.model.clone().or_else(|| source.config_stem()).ok_or_else(|| {
                PretrainError("--pretrained needs the model: --model NAME or --model-config FILE.json".into())
            })?;
            let cfg = RunConfig { model_preset: name.clone(), source, ..RunConfig::default() };
            let (model, report) = load_pretrained(backend, file, &cfg.clip_config()?, a.pretrained_partial)?;
            for line in report.describe() {
                eprintln!("note: --pretrained-partial {}: {line} (left at fresh values or ignored)", file.display());
            }
            (model, format!("pretrained {} (model {name})", file.display()), cfg, file.clone())
        }
        (None, None) => return Err(PretrainError("give a checkpoint or --pretrained FILE".into()).into()),
    };
    if let Some(d) = &a.data {
        // The given source is what is scored: not the training run's validation file.
        cfg.data = d.clone();
        cfg.csv.val = None;
    }
    if let Some(k) = &a.csv_img_key {
        cfg.csv.img_key.clone_from(k);
    }
    if let Some(k) = &a.csv_caption_key {
        cfg.csv.caption_key.clone_from(k);
    }
    if let Some(s) = a.csv_separator {
        cfg.csv.separator = s;
    }
    match (&a.data, &a.imagenet_val) {
        // --imagenet-val alone scores that tree only (as --data imagefolder:DIR).
        (None, Some(dir)) => {
            cfg.data = DataSpec::ImageFolder(dir.clone());
            cfg.csv.val = None;
            cfg.zero_shot.imagenet_val = None;
        }
        (_, Some(dir)) => cfg.zero_shot.imagenet_val = Some(dir.clone()),
        (_, None) => {}
    }
    if let Some(names) = &a.class_names {
        cfg.zero_shot.class_names = Some(names.clone());
    }
    cfg.zero_shot.validate(&cfg.data)?;
    cfg.eval_size = a.eval_size;
    let cfg = cfg.with_absolute_paths()?;
    let mut data = open_data(&cfg, model.config.vision.image_size(), true)?;
    let set = data.eval.first_mut().ok_or_else(|| PretrainError("the data source has no evaluation set".into()))?;
    if let Some(path) = &a.classes {
        let csv = match (&cfg.data, &cfg.csv.val) {
            (_, Some(val)) => val.clone(),
            (DataSpec::Csv(p), None) => p.clone(),
            _ => {
                return Err(PretrainError(
                    "--classes needs --data csv:FILE whose caption column holds each image's class".into(),
                )
                .into())
            }
        };
        let classes = read_classes(path)?;
        let templates = match &a.templates {
            Some(t) => read_templates(t)?,
            None => IMAGENET_TEMPLATES.iter().map(|t| t.to_string()).collect(),
        };
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("classes");
        let task = class_task(set, name, classes, templates);
        if task.labels.iter().all(Option::is_none) {
            return Err(PretrainError(format!(
                "no caption of {} names a class of {} (by name or index); is --csv-caption-key the class column?",
                csv.display(),
                path.display()
            ))
            .into());
        }
        set.tasks.push(task);
    }
    if set.len() < 2 {
        return Err(PretrainError(format!(
            "the evaluation set {} has {} readable image(s); evaluation needs at least 2 ({})",
            set.name,
            set.len(),
            set.skipped.summary()
        ))
        .into());
    }
    let opts = EvalOptions { with_probe: !a.no_probe, fail_diagnostic: a.fail_diagnostic.clone() };
    let report = evaluate_with(backend, &model, &data, &opts)?;
    for (set, f) in report.failures() {
        let on = set.map_or(String::new(), |s| format!(" on {s}"));
        eprintln!("diagnostic {}{on} failed ({}); reported as failed", f.diagnostic, f.error);
    }
    // The report is written before anything is printed: a closed pipe on stdout loses nothing.
    let out = a.out.clone().unwrap_or_else(|| {
        let data = match &cfg.data {
            DataSpec::Csv(p) => format!("csv-{}", p.file_stem().and_then(|s| s.to_str()).unwrap_or("data")),
            DataSpec::ImageFolder(p) => {
                format!("imagefolder-{}", p.file_name().and_then(|s| s.to_str()).unwrap_or("images"))
            }
            d => d.to_string(),
        };
        beside.with_file_name(format!("eval-{data}.json"))
    });
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)
        .map_err(|e| PretrainError(format!("cannot write the report {}: {e}", out.display())))?;
    print_or_quit(&format!("{what}, data {}\n{}report: {}\n", cfg.data, report.table(), out.display()));
    Ok(())
}

fn main() {
    if let Err(e) = run(&Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
