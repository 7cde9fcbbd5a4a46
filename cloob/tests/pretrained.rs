//! open_clip weights in and out, against open_clip itself: a tiny random open_clip model saved as
//! `open_clip_model.safetensors`, as open_clip's training checkpoint (`module.` keys under `state_dict`)
//! and as a bare `torch.save`d state dict, with open_clip's embeddings and zero-shot logits on fixed
//! inputs (`scripts/fixtures/open_clip_cases.py` writes `tests/fixtures/pretrained/`).

mod common;

use cloob::model::{ClipConfig, ClipModel};
use cloob::model_config::OpenClipConfig;
use cloob::pretrained::load_pretrained;
use cloob::tokenizer::{ClipTokenizer, TokenBatch};
use common::*;
use hopfield::io::{encode_safetensors, read_safetensors};
use hopfield::{Backend, Cpu, Element};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pretrained")
}

/// The fixture `name`, un-gzipped into `dir` when it is stored gzipped.
fn fixture(dir: &Path, name: &str) -> PathBuf {
    let plain = fixtures().join(name);
    if plain.exists() {
        return plain;
    }
    let mut bytes = Vec::new();
    let gz = std::fs::File::open(fixtures().join(format!("{name}.gz"))).unwrap();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut bytes).unwrap();
    let out = dir.join(name);
    std::fs::write(&out, bytes).unwrap();
    out
}

fn expected_in(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn config() -> ClipConfig {
    OpenClipConfig::from_file(&fixtures().join("tiny-test.json")).unwrap().to_clip_config().unwrap()
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs() / w.abs().max(1.0)).fold(0.0, f64::max);
    assert!(worst <= tol, "{what}: largest error {worst:e} > {tol:e}");
    println!("{what}: largest error {worst:.2e}");
}

/// open_clip's embeddings and logits from `model`, within `tol`.
fn check_against_open_clip<B: Backend>(backend: &B, model: &ClipModel<B>, e: &Value, tol: f64) {
    let shape: Vec<usize> = e["image_shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
    let images = backend.from_vec(floats(&e["images"]).into_iter().map(B::Elem::of).collect(), &shape);
    let texts: Vec<String> = e["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().into()).collect();
    let tokens = ClipTokenizer::with_context_length(model.config.text.context_length).unwrap().tokenize(&texts);
    let open_clip_ids: Vec<u32> = e["tokens"].as_array().unwrap().iter().flat_map(floats).map(|x| x as u32).collect();
    let context = model.config.text.context_length;
    assert_eq!(tokens, TokenBatch::new(open_clip_ids, texts.len(), context).unwrap(), "open_clip's token ids");
    let img = model.encode_image(backend, &images).unwrap();
    let txt = model.encode_text(backend, &tokens).unwrap();
    let host = |t: &B::Tensor| backend.to_vec(t).iter().map(|x| x.f64()).collect::<Vec<_>>();
    assert_close("image embeddings", &host(&img), &floats(&e["image_embeddings"]), tol);
    assert_close("text embeddings", &host(&txt), &floats(&e["text_embeddings"]), tol);
    assert_close("logit scale", &[model.inv_tau(backend).ln()], &[e["logit_scale"].as_f64().unwrap()], tol);
    let (i, t, d) = (host(&img), host(&txt), model.config.embed_dim);
    let logits: Vec<f64> = (0..i.len() / d)
        .flat_map(|a| (0..t.len() / d).map(move |b| (a, b)))
        .map(|(a, b)| model.inv_tau(backend) * (0..d).map(|k| i[a * d + k] * t[b * d + k]).sum::<f64>())
        .collect();
    assert_close("zero-shot logits", &logits, &floats(&e["zero_shot_logits"]), tol);
}

#[test]
fn every_open_clip_format_gives_open_clips_embeddings_and_logits() {
    let d = scratch("pretrained-formats");
    for name in ["model.safetensors", "model_ddp.pt", "model_bare.pt"] {
        let path = fixture(&d, name);
        let (model, report) = load_pretrained(&Cpu::<f32>::new(), &path, &config(), false).unwrap();
        assert!(report.is_complete(), "{name}: {report:?}");
        check_against_open_clip(&Cpu::<f32>::new(), &model, &expected_in(&fixtures()), 1e-5);
        // In f64 the only differences left are open_clip's f32 rounding.
        let (model, _) = load_pretrained(&Cpu::<f64>::new(), &path, &config(), false).unwrap();
        check_against_open_clip(&Cpu::<f64>::new(), &model, &expected_in(&fixtures()), 1e-5);
    }
    std::fs::remove_dir_all(&d).ok();
}

/// The fixture's tensors, changed by `edit`, written as safetensors at `path`.
fn edited(src: &Path, path: &Path, edit: impl FnOnce(&mut hopfield::io::TensorMap)) -> PathBuf {
    let mut map = read_safetensors(src).unwrap();
    edit(&mut map);
    let cpu = Cpu::<f32>::new();
    let tensors: Vec<(String, _)> = map
        .iter()
        .map(|(k, h)| (k.clone(), cpu.from_vec(h.values.iter().map(|&v| v as f32).collect(), &h.shape)))
        .collect();
    let named: Vec<(String, &_)> = tensors.iter().map(|(k, t)| (k.clone(), t)).collect();
    std::fs::write(path, encode_safetensors(&cpu, &named).unwrap()).unwrap();
    path.to_path_buf()
}

#[test]
fn mismatched_refused_and_truncated_files_are_one_clear_error() {
    let d = scratch("pretrained-errors");
    let cpu = Cpu::<f32>::new();
    let cfg = config();
    let load = |p: &Path| load_pretrained(&cpu, p, &cfg, false).map(|_| ()).unwrap_err().to_string();
    let src = fixture(&d, "model.safetensors");

    let e = load(&fixtures().join("missing_key.pt"));
    assert!(e.contains(" missing: ") && e.contains("more)") && e.contains("--pretrained-partial"), "{e}");
    let extra = edited(&src, &d.join("extra.safetensors"), |m| {
        m.insert("logit_bias".into(), m["logit_scale"].clone());
    });
    assert!(load(&extra).contains("1 unexpected: logit_bias"), "{}", load(&extra));
    let misshaped = edited(&src, &d.join("misshaped.safetensors"), |m| {
        m.get_mut("visual.conv1.weight").unwrap().shape.reverse();
    });
    let e = load(&misshaped);
    assert!(e.contains("1 with another shape: visual.conv1.weight (file [8, 8, 3, 16], model [16, 3, 8, 8])"), "{e}");
    // Partial: the rest loads, the misfit keeps its fresh value and is reported.
    let (_, report) = load_pretrained(&cpu, &misshaped, &cfg, true).unwrap();
    let all = hopfield::params::named_tensors(&config().init(&cpu, &mut rng()).unwrap()).len();
    assert_eq!((report.misshaped.len(), report.loaded), (1, all - 1));

    let e = load(&fixtures().join("evil.pt"));
    assert!(e.contains("refusing") && (e.contains("posix.system") || e.contains("nt.system")), "{e}");
    for name in ["model.safetensors", "model_ddp.pt"] {
        let bytes = std::fs::read(fixture(&d, name)).unwrap();
        let cut = d.join(format!("cut-{name}"));
        std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let e = load(&cut);
        assert!(e.contains("truncated"), "{name}: {e}");
    }
    std::fs::remove_dir_all(&d).ok();
}

fn rng() -> rand::rngs::StdRng {
    rand::SeedableRng::seed_from_u64(0)
}

fn export(cwd: &Path, args: &[&str]) -> std::process::Output {
    run(env!("CARGO_BIN_EXE_cloob-export"), cwd, args)
}

/// The binaries: `cloob-eval --pretrained` on each format, `cloob-pretrain --pretrained` (a fine-tuning
/// start; with `--lr 0` its checkpoint holds the file's weights) and `cloob-export` back to open_clip keys.
#[test]
fn the_binaries_read_and_write_open_clip_files() {
    let d = scratch("pretrained-cli");
    csv(&d.join("pairs.csv"), &captioned(&images(&d, "p", 8)));
    let cfg_json = fixtures().join("tiny-test.json");
    let cfg_arg = cfg_json.to_str().unwrap();
    for name in ["model.safetensors", "model_ddp.pt", "model_bare.pt"] {
        let path = fixture(&d, name);
        let out = d.join(format!("eval-{name}.json"));
        let args = ["--pretrained", path.to_str().unwrap(), "--model-config", cfg_arg, "--eval-size", "4"];
        let args = [&args[..], &["--data", "csv:pairs.csv"]].concat();
        let o = ok(eval(&d, &[&args[..], &["--no-probe", "--out", out.to_str().unwrap()]].concat()));
        assert!(text(&o).contains("(model tiny-test)"), "{}", text(&o));
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(report["sets"][0]["n"], 4);
    }
    let missing = fixtures().join("missing_key.pt");
    failed(eval(&d, &["--pretrained", missing.to_str().unwrap(), "--model-config", cfg_arg]), " missing: ");
    failed(eval(&d, &["--pretrained", missing.to_str().unwrap()]), "--model NAME or --model-config");
    let evil = fixtures().join("evil.pt");
    failed(eval(&d, &["--pretrained", evil.to_str().unwrap(), "--model", "tiny"]), "refusing");

    let src = fixture(&d, "model_ddp.pt");
    let flags = ["--pretrained", src.to_str().unwrap(), "--model-config", cfg_arg, "--lr", "0", "--steps", "1"];
    let flags = [&flags[..], &["--data", "csv:pairs.csv"]].concat();
    ok(pretrain(&d, &[&flags[..], &["--name", "ft"]].concat()));
    let ckpt = d.join("logs/ft/checkpoints/step_0000001.json");
    assert!(std::fs::read_to_string(&ckpt).unwrap().contains("\"architecture\""));
    let out = d.join("back.safetensors");
    let o = ok(export(&d, &[ckpt.to_str().unwrap(), "--format", "open_clip", "--out", out.to_str().unwrap()]));
    assert!(text(&o).contains("add_model_config"), "{}", text(&o));
    let (back, orig) = (read_safetensors(&out).unwrap(), read_safetensors(fixture(&d, "model.safetensors")).unwrap());
    assert_eq!(back.keys().collect::<Vec<_>>(), orig.keys().collect::<Vec<_>>(), "open_clip's keys, all of them");
    for (k, v) in &orig {
        if k != "logit_scale" {
            assert_eq!(&back[k], v, "{k}: with --lr 0 the weights are the file's");
        }
    }
    // τ⁻¹ is the run's (--init-inv-tau 30), as --init-from.
    assert!((back["logit_scale"].values[0] - 30f64.ln()).abs() < 1e-6);
    let written: Value = serde_json::from_str(&std::fs::read_to_string(d.join("back.json")).unwrap()).unwrap();
    let again = OpenClipConfig::from_json(&written.to_string(), "back.json").unwrap().to_clip_config().unwrap();
    assert_eq!(again, config(), "the exported model config is the architecture");
    std::fs::remove_dir_all(&d).ok();
}

/// `scripts/open_clip_roundtrip.sh`: a full-size random open_clip model (`open_clip_cases.py MODEL DIR`) in
/// `$CLOOB_OPEN_CLIP_CASE`, each file checked as the fixtures; prints the largest errors.
#[test]
#[ignore = "needs $CLOOB_OPEN_CLIP_CASE from scripts/open_clip_roundtrip.sh"]
fn a_full_size_open_clip_model_from_the_roundtrip_script() {
    let dir = PathBuf::from(std::env::var("CLOOB_OPEN_CLIP_CASE").expect("CLOOB_OPEN_CLIP_CASE"));
    let e = expected_in(&dir);
    let cfg = cloob::model_config::named_clip_config(e["model"].as_str().unwrap()).unwrap();
    for name in ["model.safetensors", "model_ddp.pt", "model_bare.pt"] {
        let (model, report) = load_pretrained(&Cpu::<f32>::new(), &dir.join(name), &cfg, false).unwrap();
        assert!(report.is_complete(), "{name}: {report:?}");
        check_against_open_clip(&Cpu::<f32>::new(), &model, &e, 1e-5);
        println!("{name}: embeddings and zero-shot logits within 1e-5 of open_clip's");
    }
}
