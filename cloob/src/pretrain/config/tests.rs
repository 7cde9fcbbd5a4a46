//! Checks of [`RunConfig`]'s validation and derived settings.

use super::*;

#[test]
fn validate_names_the_flag_of_a_bad_setting() {
    RunConfig::default().validate().unwrap();
    let d = RunConfig::default;
    let cases = [
        (RunConfig { batch_size: 1, ..d() }, "--batch-size"),
        (RunConfig { accum_freq: 0, ..d() }, "--accum-freq"),
        (RunConfig { batch_size: usize::MAX, accum_freq: 2, ..d() }, "--batch-size"),
        (RunConfig { eval_size: 1, ..d() }, "--eval-size"),
        (RunConfig { lr: f64::NAN, ..d() }, "--lr"),
        (RunConfig { hopfield_beta: 0.0, ..d() }, "--scale-hopfield"),
        (RunConfig { init_inv_tau: 0.5, ..d() }, "--init-inv-tau"),
        (RunConfig { beta1: 1.0, ..d() }, "--beta1"),
        (RunConfig { eps: 0.0, ..d() }, "--eps"),
        (RunConfig { warmup_fraction: Some(1.5), ..d() }, "--recipe"),
        (RunConfig { epochs: Some(f64::INFINITY), ..d() }, "--epochs"),
        (RunConfig { grad_clip_norm: Some(-1.0), ..d() }, "--grad-clip-norm"),
        (RunConfig { cycles: 0, ..d() }, "--restart-cycles"),
        (
            RunConfig { model_preset: "huge".into(), ..d() },
            "--model huge: invalid config `model_config`: unknown model",
        ),
    ];
    for (cfg, needle) in cases {
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn a_warmup_as_long_as_the_run_ends_before_its_last_step() {
    let cfg = RunConfig { warmup: 30, ..RunConfig::default() };
    assert_eq!(cfg.effective_warmup(20), 19);
    assert_eq!(cfg.effective_warmup(100), 30);
    assert_eq!(cfg.effective_warmup(1), 0);
    cfg.train_config(20).validate().unwrap();
    cfg.train_config(1).validate().unwrap();
}
