//! The bodies of the fuzz targets, one function per target, shared by the libFuzzer binaries in
//! `fuzz_targets/` and by the workspace test `tests/fuzz_corpus.rs`, which replays every committed corpus
//! and crash file through them on stable Rust. A body returns normally for any input it rejects with an
//! error; it panics only when a parser or loader panics or breaks one of the invariants asserted here.

use cloob::data::csv::{rows, Layout};
use cloob::pretrain::checkpoint::read_state;
use cloob::pretrain::RunConfig;
use cloob::tokenizer::{ClipTokenizer, END_OF_TEXT, START_OF_TEXT, VOCAB_SIZE};
use hopfield::io::{decode_safetensors, load_state_dict, state_dict};
use hopfield::layers::{HopfieldPoolingConfig, Layer, PoolingInput};
use hopfield::optim::{AdamConfig, AdamW, Optimizer, OptimizerState};
use hopfield::{Backend, Cpu};
use hopfield_mil::folds::repeated_stratified_splits;
use hopfield_mil::{MilDataset, Standardizer};
use rand::SeedableRng;
use std::io::Write;
use std::path::PathBuf;

/// A file of this process under the system's temporary folder, holding `bytes`, for loaders that take a path.
fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("hopfield-fuzz-{}-{name}", std::process::id()));
    let mut f = std::fs::File::create(&path).expect("the temporary folder is writable");
    f.write_all(bytes).expect("the temporary folder is writable");
    path
}

/// The `n`-byte field at the front of `data` whose length is the little-endian `u16` before it, and the rest.
fn field(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else { return (&[], &[]) };
    rest.split_at(usize::from(u16::from_le_bytes(*len)).min(rest.len()))
}

/// The tokenizer: the first byte picks a context length, the rest is the text (lossy UTF-8). A row is
/// `<start_of_text>`, the first ids of the whole encoding, `<end_of_text>` and zeros; every id is in the
/// vocabulary; the ids equal those of `instant_clip_tokenizer` (CLIP's merge rounds) on the cleaned text.
pub fn tokenizer(data: &[u8]) {
    let Some((&first, text)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(text);
    let context = 2 + usize::from(first % 80);
    let tok = ClipTokenizer::with_context_length(context).expect("context length ≥ 2");
    let ids = tok.encode(&text);
    assert!(ids.iter().all(|&id| (id as usize) < VOCAB_SIZE), "{ids:?}");
    let row = tok.tokenize_one(&text);
    assert_eq!(row.len(), context);
    assert_eq!(row[0], START_OF_TEXT);
    if ids.len() + 2 <= context {
        assert_eq!(row[1..=ids.len()], ids[..]);
        assert_eq!(row[ids.len() + 1], END_OF_TEXT);
        assert!(row[ids.len() + 2..].iter().all(|&t| t == 0));
    } else {
        assert_eq!(row[1..context - 1], ids[..context - 2]);
        assert_eq!(row[context - 1], END_OF_TEXT);
    }
    let reference = reference_tokenizer();
    let mut expected = Vec::new();
    reference.encode(&cloob::tokenizer::clean(&text), &mut expected);
    let expected: Vec<u32> = expected.into_iter().map(|t| u32::from(t.to_u16())).collect();
    assert_eq!(ids, expected, "{text:?}");
    let _ = tok.decode(&ids);
}

fn reference_tokenizer() -> &'static instant_clip_tokenizer::Tokenizer {
    static REFERENCE: std::sync::OnceLock<instant_clip_tokenizer::Tokenizer> = std::sync::OnceLock::new();
    REFERENCE.get_or_init(instant_clip_tokenizer::Tokenizer::new)
}

/// A checkpoint: three length-prefixed fields (`u16` little-endian lengths): the JSON state, the weights
/// (safetensors) and the optimiser state (safetensors). The state goes through `read_state` and the run
/// config's methods; the weights are decoded and loaded into a small `HopfieldPooling`, which then runs;
/// the optimiser state is decoded, imported into AdamW and stepped.
pub fn checkpoint(data: &[u8]) {
    let (json, rest) = field(data);
    let (weights, optimizer) = field(rest);
    let path = scratch_file("checkpoint.json", json);
    if let Ok(state) = read_state(&path) {
        run_config_methods(&state.config);
        if state.schedule.validate().is_ok() {
            assert!(state.schedule.lr_at(state.step).is_finite(), "{:?} at {}", state.schedule, state.step);
        }
    }
    let backend = Cpu::<f32>::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut pool = HopfieldPoolingConfig::new(4).quantity(2).init(&backend, &mut rng).expect("a valid config");
    if let Ok(map) = decode_safetensors(weights, "fuzz weights") {
        let before = state_dict(&backend, &pool.params, "");
        match load_state_dict(&backend, &mut pool.params, &map, "", true) {
            Ok(()) => {
                let out = pool.infer(&backend, &PoolingInput::single(backend.zeros(&[2, 3, 4])));
                assert_eq!(backend.shape(&out.expect("loaded weights of the right shapes run"))[0], 2);
            }
            // A failed load changes nothing.
            Err(_) => assert_eq!(state_dict(&backend, &pool.params, ""), before),
        }
    }
    if let Ok(state) = OptimizerState::<f32>::from_safetensors(optimizer) {
        let mut adam = AdamW::new(AdamConfig::torch_adamw()).expect("a valid config");
        if adam.import_state(&backend, &state).is_ok() {
            let grads = pool.zero_grads(&backend);
            let _ = adam.step(&backend, &mut pool.params, &grads, 1e-3);
        }
    }
    let _ = std::fs::remove_file(path);
}

/// The run config: JSON through serde, or (when that fails) NUL-separated `cloob-pretrain` flags through
/// clap, then every method of the config. A config itself resumes; one that validates gives a valid training
/// step for any number of steps, and valid schedules give finite, non-negative rates.
pub fn run_config(data: &[u8]) {
    if let Ok(config) = serde_json::from_slice::<RunConfig>(data) {
        run_config_methods(&config);
        return;
    }
    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        run: RunConfig,
    }
    let args = String::from_utf8_lossy(data);
    let argv = std::iter::once("cloob-pretrain").chain(args.split('\0').filter(|a| !a.is_empty()));
    if let Ok(flags) = <Flags as clap::Parser>::try_parse_from(argv) {
        run_config_methods(&flags.run);
    }
}

fn run_config_methods(config: &RunConfig) {
    let _ = config.default_name();
    let _ = config.clip_config().map(|c| c.validate());
    let defaults = RunConfig::default();
    config.check_resumable(config).expect("a config resumes itself");
    let _ = config.check_resumable(&defaults);
    let _ = defaults.check_resumable(config);
    let valid = config.validate().is_ok();
    for epoch_len in [None, Some(0), Some(1), Some(60_000), Some(usize::MAX)] {
        if let Ok(total) = config.total_steps(epoch_len) {
            let train = config.train_config(total);
            // A config that validates gives a training step that does, whatever the run's length.
            assert!(!valid || train.validate().is_ok(), "{config:?} for {total} steps: {:?}", train.validate());
            if train.validate().is_ok() {
                for step in [0, total / 2, total.saturating_sub(1), total] {
                    let lr = train.schedule.lr_at(step);
                    assert!(lr.is_finite() && lr >= 0.0, "lr {lr} at step {step} of {total}: {:?}", train.schedule);
                }
            }
        }
    }
}

/// A MIL data set file (CSV, or gzipped CSV when it starts with gzip's magic bytes) through
/// `MilDataset::read`: bags are non-empty, hold `len × n_features` finite values, standardise to finite
/// values, and split into stratified folds that partition them.
pub fn mil_csv(data: &[u8]) {
    let path = scratch_file("mil.csv", data);
    let read = MilDataset::read(&path);
    let _ = std::fs::remove_file(&path);
    let Ok(set) = read else { return };
    assert!(set.n_features >= 1 && !set.bags.is_empty());
    for bag in &set.bags {
        assert!(bag.len >= 1 && bag.instances.len() == bag.len * set.n_features, "{bag:?}");
        assert!(bag.instances.iter().all(|x| x.is_finite()));
    }
    let all: Vec<usize> = (0..set.bags.len()).collect();
    let scaler = Standardizer::fit(&set, &all);
    for bag in &set.bags {
        let z = scaler.apply::<f64>(bag);
        assert!(z.iter().all(|x| x.is_finite()), "bag {} standardises to {z:?} with {scaler:?}", bag.id);
    }
    for k in 2..=3 {
        if let Ok(splits) = repeated_stratified_splits(&set.labels(), k, 1, 0) {
            assert_eq!(splits.len(), k);
            let mut seen: Vec<usize> = splits.iter().flat_map(|s| s.test.iter().copied()).collect();
            seen.sort_unstable();
            assert_eq!(seen, all);
        }
    }
}

/// An open_clip CSV text through `cloob::data::csv::rows`: the first byte picks the separator (`,`, tab, `;`
/// or `|`), the rest is the file. Line numbers increase and stay within the file's lines; a usable row has a
/// non-blank image path without surrounding spaces and a non-blank caption.
pub fn csv(data: &[u8]) {
    let Some((&first, text)) = data.split_first() else { return };
    let separator = [b',', b'\t', b';', b'|'][usize::from(first % 4)];
    let layout = Layout { img_key: "filepath".into(), caption_key: "title".into(), separator };
    let Ok(lines) = rows(text, &layout, "fuzz.csv") else { return };
    let physical = text.split(|&b| b == b'\n').count() as u64;
    let mut last = 0;
    for line in lines {
        assert!(line.line > last && line.line <= physical, "line {} after {last} of {physical}", line.line);
        last = line.line;
        if let Ok(pair) = &line.row {
            assert!(!pair.image.is_empty() && pair.image.trim() == pair.image, "{pair:?}");
            assert!(!pair.caption.trim().is_empty(), "{pair:?}");
        }
    }
}
