//! What a cross-validation run writes: one JSON line per outer fold, and a summary table.

use super::metrics::mean_std;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The outcome of one outer fold (one JSONL line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FoldRecord {
    /// Data set name.
    pub dataset: String,
    /// Repetition, from 0.
    pub repeat: usize,
    /// Fold within the repetition, from 0.
    pub fold: usize,
    /// The seed this fold's model selection and training used.
    pub seed: u64,
    /// Bags trained on / tested on.
    pub n_train: usize,
    pub n_test: usize,
    /// ROC-AUC on the test fold.
    pub test_auc: f64,
    /// Validation AUC of the chosen grid point (the inner hold-out), `None` with a single grid point.
    pub val_auc: Option<f64>,
    /// Index of the chosen grid point and its settings.
    pub grid_index: usize,
    pub config: serde_json::Value,
    /// Wall time of this fold (selection and final training), seconds.
    pub seconds: f64,
}

/// Summary of a repeated cross-validation on one data set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Data set name.
    pub dataset: String,
    /// Bags in the data set.
    pub bags: usize,
    /// Folds × repeats that were run.
    pub folds: usize,
    pub repeats: usize,
    /// Mean over repetitions of the repetition's mean fold AUC.
    pub auc_mean: f64,
    /// Standard deviation over repetitions of the repetition's mean fold AUC (the paper's ±).
    pub auc_std_repeats: f64,
    /// Standard deviation over all folds.
    pub auc_std_folds: f64,
    /// Wall time of the whole run, seconds.
    pub wall_seconds: f64,
}

impl Summary {
    /// Summarise fold records of one data set.
    pub fn from_records(dataset: &str, bags: usize, records: &[FoldRecord], wall_seconds: f64) -> Self {
        let repeats = records.iter().map(|r| r.repeat + 1).max().unwrap_or(0);
        let per_repeat: Vec<f64> = (0..repeats)
            .map(|rep| mean_std(&records.iter().filter(|r| r.repeat == rep).map(|r| r.test_auc).collect::<Vec<_>>()).0)
            .collect();
        let (auc_mean, auc_std_repeats) = mean_std(&per_repeat);
        let all: Vec<f64> = records.iter().map(|r| r.test_auc).collect();
        let folds = records.iter().map(|r| r.fold + 1).max().unwrap_or(0);
        Summary {
            dataset: dataset.to_string(),
            bags,
            folds,
            repeats,
            auc_mean,
            auc_std_repeats,
            auc_std_folds: mean_std(&all).1,
            wall_seconds,
        }
    }
}

/// A Markdown table of summaries (AUC in percent, as the paper reports it).
pub fn table(rows: &[Summary]) -> String {
    let mut out = String::from(
        "| data set | bags | CV | ROC-AUC (%) mean ± std over repeats | std over folds | wall time |\n\
         |---|---:|---|---|---:|---:|\n",
    );
    for s in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {}×{} | {:.1} ± {:.1} | {:.1} | {} |",
            s.dataset,
            s.bags,
            s.repeats,
            s.folds,
            100.0 * s.auc_mean,
            100.0 * s.auc_std_repeats,
            100.0 * s.auc_std_folds,
            format_seconds(s.wall_seconds),
        );
    }
    out
}

/// `75 s`, `4 min 05 s`.
pub fn format_seconds(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.0} s")
    } else {
        let s = s.round() as u64;
        format!("{} min {:02} s", s / 60, s % 60)
    }
}
