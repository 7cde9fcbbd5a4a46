//! Parameters saved with safetensors load back exactly, under hflayers' state_dict names; bad files are
//! errors that change nothing.

use hopfield_layers::io::{load_params, load_state_dict, read_safetensors, save_params, state_dict};
use hopfield_layers::layers::{HopfieldConfig, HopfieldInput, HopfieldPoolingConfig, PoolingInput};
use hopfield_layers::layers::{Layer, Mode};
use hopfield_layers::params::Parameters;
use hopfield_layers::{Backend, Cpu, HopfieldError};
use rand::{rngs::StdRng, SeedableRng};

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hopfield-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn save_then_load_reproduces_the_module() {
    let be = Cpu::<f32>::new();
    let cfg = HopfieldPoolingConfig::new(6)
        .hopfield(HopfieldConfig::new(6).num_heads(2).concat_bias_pattern(true))
        .quantity(2);
    let a = cfg.init(&be, &mut StdRng::seed_from_u64(1)).unwrap();
    let mut b = cfg.init(&be, &mut StdRng::seed_from_u64(2)).unwrap();
    let path = tmp("pool.safetensors");
    save_params(&be, &a.params, &path).unwrap();
    let names: Vec<String> = read_safetensors(&path).unwrap().keys().cloned().collect();
    assert!(names.contains(&"pooling_weights".to_string()));
    assert!(names.contains(&"hopfield.association_core.in_proj_weight".to_string()));
    assert!(names.contains(&"hopfield.association_core.bias_k".to_string()));
    load_params(&be, &mut b.params, &path).unwrap();
    let x = be.from_vec((0..2 * 5 * 6).map(|i| (i as f32 * 0.37).sin()).collect(), &[2, 5, 6]);
    let ya = a.forward(&be, a.params(), &PoolingInput::single(x.clone()), Mode::Eval).unwrap().0;
    let yb = b.forward(&be, b.params(), &PoolingInput::single(x), Mode::Eval).unwrap().0;
    assert_eq!(ya, yb);
}

#[test]
fn bad_files_are_errors_and_load_nothing() {
    let be = Cpu::<f64>::new();
    let cfg = HopfieldConfig::new(4);
    let mut layer = cfg.init(&be, &mut StdRng::seed_from_u64(3)).unwrap();
    let before = state_dict(&be, &layer.params, "");
    // Truncated file.
    let path = tmp("trunc.safetensors");
    save_params(&be, &layer.params, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(load_params(&be, &mut layer.params, &path), Err(HopfieldError::Format { .. })));
    // Missing, misshapen and unexpected tensors.
    let mut missing = before.clone();
    missing.remove("association_core.out_proj.bias");
    assert!(matches!(load_state_dict(&be, &mut layer.params, &missing, "", true), Err(HopfieldError::Missing { .. })));
    let mut wrong = before.clone();
    wrong.get_mut("association_core.in_proj_weight").unwrap().shape = vec![4, 12];
    assert!(matches!(load_state_dict(&be, &mut layer.params, &wrong, "", true), Err(HopfieldError::Shape { .. })));
    let mut extra = before.clone();
    extra.insert("association_core.bias_k".into(), before["association_core.out_proj.bias"].clone());
    assert!(load_state_dict(&be, &mut layer.params, &extra, "", true).is_err());
    assert!(load_state_dict(&be, &mut layer.params, &extra, "", false).is_ok());
    assert_eq!(state_dict(&be, &layer.params, ""), before);
    // A missing file names its path.
    let err = load_params(&be, &mut layer.params, tmp("nope.safetensors")).unwrap_err();
    assert!(err.to_string().contains("nope.safetensors"), "{err}");
}

#[test]
fn f64_weights_load_into_f32_modules() {
    let b64 = Cpu::<f64>::new();
    let b32 = Cpu::<f32>::new();
    let cfg = HopfieldConfig::new(4).num_heads(2);
    let l64 = cfg.init(&b64, &mut StdRng::seed_from_u64(4)).unwrap();
    let mut l32 = cfg.init(&b32, &mut StdRng::seed_from_u64(5)).unwrap();
    let path = tmp("f64.safetensors");
    save_params(&b64, &l64.params, &path).unwrap();
    load_params(&b32, &mut l32.params, &path).unwrap();
    let x: Vec<f64> = (0..24).map(|i| (i as f64).cos()).collect();
    let y64 = l64
        .forward(&b64, l64.params(), &HopfieldInput::single(b64.from_vec(x.clone(), &[1, 6, 4])), Mode::Eval)
        .unwrap()
        .0
        .output;
    let y32 = l32
        .forward(
            &b32,
            l32.params(),
            &HopfieldInput::single(b32.from_vec(x.iter().map(|&v| v as f32).collect(), &[1, 6, 4])),
            Mode::Eval,
        )
        .unwrap()
        .0
        .output;
    for (a, b) in y64.iter().zip(y32.iter()) {
        assert!((a - *b as f64).abs() < 1e-5);
    }
    assert_eq!(l32.params.names(), l64.params.names());
}
