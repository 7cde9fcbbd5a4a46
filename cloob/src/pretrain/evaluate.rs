//! Evaluation of a model on the sets of a [`DataBundle`]: zero-shot accuracy per task (class names ×
//! templates), image↔text retrieval, the embedding analysis of the CLOOB paper (covariance eigenvalues
//! reaching 99 % of the variance, Ajne's statistic, Wang–Isola alignment and uniformity) and, when the
//! source has labels, a linear probe.
//!
//! The embedding analysis and the probe are diagnostics: one that fails (an eigen-solver that does not
//! converge, a probe that cannot fit) is reported as failed, with its error, in the report's `failed` list,
//! and the other figures still come. Zero-shot accuracy and retrieval are not: their failure is the
//! evaluation's.

use super::Result;
use crate::data::{DataBundle, EvalSet};
use crate::eval::{self, ProbeConfig};
use crate::model::ClipModel;
use crate::tokenizer::ClipTokenizer;
use hopfield::Backend;
use ndarray::{s, Array2, Array3, Axis};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Images or texts embedded per forward pass.
const CHUNK: usize = 250;

/// Zero-shot accuracy of one task.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskScore {
    /// Top-1 accuracy.
    pub top1: f64,
    /// Top-5 accuracy.
    pub top5: f64,
    /// Chance level, 1 / classes.
    pub chance: f64,
    /// Images scored.
    pub n: usize,
    /// Images of the set outside this task (for the user's own classes: captions naming no class).
    #[serde(default)]
    pub unlabelled: usize,
}

/// Zero-shot accuracy on the images of one class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    /// The class name.
    pub class: String,
    /// Images of this class scored.
    pub n: usize,
    /// Top-1 accuracy on them (`None` when `n` is 0).
    pub top1: Option<f64>,
    /// Top-5 accuracy on them.
    pub top5: Option<f64>,
}

/// Retrieval in both directions, one caption per image.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Retrieval {
    /// Image→text R@1, R@5, R@10.
    pub image_to_text: [f64; 3],
    /// Text→image R@1, R@5, R@10.
    pub text_to_image: [f64; 3],
    /// Image→text median rank.
    pub image_to_text_median_rank: f64,
    /// Text→image median rank.
    pub text_to_image_median_rank: f64,
}

/// Geometry of the embeddings. Each figure is `None` (the spectra empty) when its diagnostic failed; the
/// failure is in the set's [`SetReport::failed`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingAnalysis {
    /// Covariance eigenvalues of the image embeddings reaching 99 % of the variance.
    pub image_eigen_99: Option<usize>,
    /// ... of the text embeddings.
    pub text_eigen_99: Option<usize>,
    /// Image covariance eigenvalues, largest first.
    pub image_spectrum: Vec<f64>,
    /// Text covariance eigenvalues, largest first.
    pub text_spectrum: Vec<f64>,
    /// Ajne's statistic of the image embeddings (1/4 under uniformity; larger is less uniform).
    pub image_ajne: Option<f64>,
    /// ... of the text embeddings.
    pub text_ajne: Option<f64>,
    /// Wang–Isola uniformity (t = 2) of the image embeddings (lower is more uniform).
    pub image_uniformity: Option<f64>,
    /// ... of the text embeddings.
    pub text_uniformity: Option<f64>,
    /// Wang–Isola alignment (α = 2) of matching pairs.
    pub alignment: Option<f64>,
}

/// The diagnostics an evaluation survives the failure of, by the names its reports give them.
pub const DIAGNOSTICS: [&str; 8] = [
    "image-eigenvalues",
    "text-eigenvalues",
    "image-ajne",
    "text-ajne",
    "image-uniformity",
    "text-uniformity",
    "alignment",
    "linear-probe",
];

/// A diagnostic that failed: the evaluation went on without its figure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosticFailure {
    /// Which one (one of [`DIAGNOSTICS`]).
    pub diagnostic: String,
    /// Its error.
    pub error: String,
}

/// How to evaluate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EvalOptions {
    /// Fit the linear probe (when the data has a probe task).
    pub with_probe: bool,
    /// For tests of failure handling: the diagnostic of this name (one of [`DIAGNOSTICS`]) fails as if its
    /// computation had.
    pub fail_diagnostic: Option<String>,
}

/// Run diagnostic `name`: its value, or `None` with the failure recorded in `failed`.
fn diagnostic<T, E: std::fmt::Display>(
    name: &str,
    opts: &EvalOptions,
    failed: &mut Vec<DiagnosticFailure>,
    compute: impl FnOnce() -> std::result::Result<T, E>,
) -> Option<T> {
    let result = match opts.fail_diagnostic.as_deref() == Some(name) {
        true => Err("failing as asked (a test)".to_string()),
        false => compute().map_err(|e| e.to_string()),
    };
    result.map_err(|error| failed.push(DiagnosticFailure { diagnostic: name.into(), error })).ok()
}

/// Everything measured on one evaluation set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetReport {
    /// The set's name.
    pub set: String,
    /// Images.
    pub n: usize,
    /// Zero-shot accuracy per task.
    pub zero_shot: BTreeMap<String, TaskScore>,
    /// Per-class accuracy of the tasks that ask for it (the user's own classes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_class: BTreeMap<String, Vec<ClassScore>>,
    /// Rows and images of the source skipped while the set was read.
    #[serde(default)]
    pub skipped: crate::data::DataIssues,
    /// Retrieval.
    pub retrieval: Retrieval,
    /// Embedding geometry.
    pub embedding: EmbeddingAnalysis,
    /// The diagnostics of this set that failed (their figures are `None`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<DiagnosticFailure>,
}

/// Linear probe result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The task it fits.
    pub task: String,
    /// The chosen inverse regularisation.
    pub c: f64,
    /// Test accuracy.
    pub test_accuracy: f64,
}

/// All sets, and the probe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// One report per set.
    pub sets: Vec<SetReport>,
    /// The linear probe, when the source has labels and it was asked for (and did not fail).
    pub probe: Option<ProbeReport>,
    /// The diagnostics outside the sets that failed (the linear probe).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<DiagnosticFailure>,
}

impl EvalReport {
    /// Mean top-1 over the first set's zero-shot tasks except the `pair-*` compositional ones (the
    /// headline number of the progress bar and the plots).
    pub fn headline(&self) -> Option<f64> {
        let set = self.sets.first()?;
        let v: Vec<f64> = set.zero_shot.iter().filter(|(k, _)| !k.starts_with("pair")).map(|(_, s)| s.top1).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// Every failed diagnostic, with the set it failed on (`None`: the probe), in report order.
    pub fn failures(&self) -> Vec<(Option<&str>, &DiagnosticFailure)> {
        let sets = self.sets.iter().flat_map(|s| s.failed.iter().map(|f| (Some(s.set.as_str()), f)));
        sets.chain(self.failed.iter().map(|f| (None, f))).collect()
    }

    /// A plain-text table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for s in &self.sets {
            out += &format!(
                "{} ({} images)\n  {:<16} {:>7} {:>7} {:>7}\n",
                s.set, s.n, "zero-shot task", "top-1", "top-5", "chance"
            );
            for (name, t) in &s.zero_shot {
                out += &format!("  {:<16} {:>7.3} {:>7.3} {:>7.3}\n", name, t.top1, t.top5, t.chance);
            }
            for (name, classes) in &s.per_class {
                let t = &s.zero_shot[name];
                out += &format!(
                    "  {name}: {} images scored, {} with a caption naming no class left out\n  {:<24} {:>6} {:>7} {:>7}\n",
                    t.n, t.unlabelled, "class", "images", "top-1", "top-5"
                );
                let pct = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
                for c in classes {
                    out += &format!("  {:<24} {:>6} {:>7} {:>7}\n", c.class, c.n, pct(c.top1), pct(c.top5));
                }
            }
            if s.skipped.total() > 0 {
                out += &format!("  skipped while reading: {}\n", s.skipped.summary());
            }
            let r = &s.retrieval;
            out += &format!(
                "  retrieval i→t R@1/5/10 {:.3}/{:.3}/{:.3}  t→i {:.3}/{:.3}/{:.3}\n",
                r.image_to_text[0],
                r.image_to_text[1],
                r.image_to_text[2],
                r.text_to_image[0],
                r.text_to_image[1],
                r.text_to_image[2]
            );
            let e = &s.embedding;
            let (n, f) = (
                |v: Option<usize>| v.map_or("failed".into(), |v| v.to_string()),
                |v: Option<f64>, d| v.map_or("failed".into(), |v| format!("{v:.d$}")),
            );
            out += &format!(
                "  eigenvalues for 99%: image {} text {}; Ajne image {} text {}; \
                 uniformity image {} text {}; alignment {}\n",
                n(e.image_eigen_99),
                n(e.text_eigen_99),
                f(e.image_ajne, 2),
                f(e.text_ajne, 2),
                f(e.image_uniformity, 3),
                f(e.text_uniformity, 3),
                f(e.alignment, 3)
            );
            for x in &s.failed {
                out += &format!("  failed: {}: {}\n", x.diagnostic, x.error);
            }
        }
        if let Some(p) = &self.probe {
            out += &format!("linear probe ({}): test accuracy {:.3} (C = {:.0e})\n", p.task, p.test_accuracy, p.c);
        }
        for x in &self.failed {
            out += &format!("failed: {}: {}\n", x.diagnostic, x.error);
        }
        out
    }
}

/// Normalised image embeddings of a set, `[N, d]` on the host.
pub fn embed_images<B: Backend>(backend: &B, model: &ClipModel<B>, set: &EvalSet) -> Result<Array2<f64>> {
    let mut rows = Vec::new();
    for start in (0..set.len()).step_by(CHUNK) {
        let n = CHUNK.min(set.len() - start);
        let data: Vec<B::Elem> = set.pixels_of(start, n).iter().map(|&v| hopfield::Element::of(v as f64)).collect();
        let t = backend.from_vec(data, &[n, 3, set.size, set.size]);
        rows.push(eval::host_matrix(backend, &model.encode_image(backend, &t)?)?);
    }
    stack(rows)
}

/// Normalised text embeddings, `[N, d]` on the host.
pub fn embed_texts<B: Backend>(backend: &B, model: &ClipModel<B>, texts: &[String]) -> Result<Array2<f64>> {
    let tok = ClipTokenizer::with_context_length(model.config.text.context_length)?;
    let mut rows = Vec::new();
    for chunk in texts.chunks(CHUNK) {
        rows.push(eval::host_matrix(backend, &model.encode_text(backend, &tok.tokenize(chunk))?)?);
    }
    stack(rows)
}

fn stack(rows: Vec<Array2<f64>>) -> Result<Array2<f64>> {
    let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
    ndarray::concatenate(Axis(0), &views).map_err(|e| super::err("stacking embeddings", e))
}

/// Score one set.
pub fn evaluate_set<B: Backend>(backend: &B, model: &ClipModel<B>, set: &EvalSet) -> Result<SetReport> {
    evaluate_set_with(backend, model, set, &EvalOptions::default())
}

/// [`evaluate_set`] with `opts` (its `fail_diagnostic`; the probe is [`evaluate_with`]'s).
pub fn evaluate_set_with<B: Backend>(
    backend: &B,
    model: &ClipModel<B>,
    set: &EvalSet,
    opts: &EvalOptions,
) -> Result<SetReport> {
    let images = embed_images(backend, model, set)?;
    let texts = embed_texts(backend, model, &set.captions)?;
    let (mut zero_shot, mut per_class) = (BTreeMap::new(), BTreeMap::new());
    for task in &set.tasks {
        let (idx, labels): (Vec<usize>, Vec<usize>) =
            task.labels.iter().enumerate().filter_map(|(i, l)| l.map(|l| (i, l))).unzip();
        if idx.is_empty() {
            continue;
        }
        let prompts: Vec<String> =
            task.classes.iter().flat_map(|c| task.templates.iter().map(move |t| t.replace("{}", c))).collect();
        let d = images.ncols();
        let p = embed_texts(backend, model, &prompts)?;
        let p = Array3::from_shape_vec((task.classes.len(), task.templates.len(), d), p.into_raw_vec_and_offset().0)
            .expect("classes × templates prompts");
        let classifier = eval::zero_shot_classifier(p.view())?;
        let acc = eval::zero_shot_accuracy(classifier.view(), images.select(Axis(0), &idx).view(), &labels)?;
        let (n, unlabelled) = (idx.len(), set.len() - idx.len());
        let chance = 1.0 / task.classes.len() as f64;
        zero_shot.insert(task.name.clone(), TaskScore { top1: acc.top1, top5: acc.top5, chance, n, unlabelled });
        if task.per_class {
            let mut rows = Vec::with_capacity(task.classes.len());
            for (k, class) in task.classes.iter().enumerate() {
                let of_k: Vec<usize> = idx.iter().zip(&labels).filter(|(_, &l)| l == k).map(|(&i, _)| i).collect();
                let (top1, top5) = if of_k.is_empty() {
                    (None, None)
                } else {
                    let a = eval::zero_shot_accuracy(
                        classifier.view(),
                        images.select(Axis(0), &of_k).view(),
                        &vec![k; of_k.len()],
                    )?;
                    (Some(a.top1), Some(a.top5))
                };
                rows.push(ClassScore { class: class.clone(), n: of_k.len(), top1, top5 });
            }
            per_class.insert(task.name.clone(), rows);
        }
    }
    let r = eval::retrieval_metrics(images.view(), texts.view(), &(0..set.len()).collect::<Vec<_>>())?;
    let three = |m: &eval::RetrievalMetrics| [m.r_at_1, m.r_at_5, m.r_at_10];
    let retrieval = Retrieval {
        image_to_text: three(&r.image_to_text),
        text_to_image: three(&r.text_to_image),
        image_to_text_median_rank: r.image_to_text.median_rank,
        text_to_image_median_rank: r.text_to_image.median_rank,
    };
    let mut failed = Vec::new();
    let mut run =
        |name: &str, compute: &dyn Fn() -> hopfield::Result<f64>| diagnostic(name, opts, &mut failed, compute);
    let (image, text) = (images.view(), texts.view());
    let image_ajne = run("image-ajne", &|| eval::ajne_statistic(image));
    let text_ajne = run("text-ajne", &|| eval::ajne_statistic(text));
    let image_uniformity = run("image-uniformity", &|| eval::uniformity(image, 2.0));
    let text_uniformity = run("text-uniformity", &|| eval::uniformity(text, 2.0));
    let alignment = run("alignment", &|| eval::alignment(image, text, 2.0));
    let spectrum = |name: &str, x, failed: &mut Vec<_>| {
        diagnostic(name, opts, failed, || eval::explained_variance_count(x, 0.99)).unzip()
    };
    let (image_eigen_99, image_spectrum) = spectrum("image-eigenvalues", image, &mut failed);
    let (text_eigen_99, text_spectrum) = spectrum("text-eigenvalues", text, &mut failed);
    let embedding = EmbeddingAnalysis {
        image_eigen_99,
        text_eigen_99,
        image_spectrum: image_spectrum.unwrap_or_default(),
        text_spectrum: text_spectrum.unwrap_or_default(),
        image_ajne,
        text_ajne,
        image_uniformity,
        text_uniformity,
        alignment,
    };
    Ok(SetReport {
        set: set.name.clone(),
        n: set.len(),
        zero_shot,
        per_class,
        skipped: set.skipped.clone(),
        retrieval,
        embedding,
        failed,
    })
}

/// Linear probe on frozen image embeddings: the probe's training set split 80/20 into train and
/// validation (for C), scored on its test set.
pub fn probe<B: Backend>(
    backend: &B,
    model: &ClipModel<B>,
    train: &EvalSet,
    test: &EvalSet,
    task: &str,
) -> Result<ProbeReport> {
    let labels = |set: &EvalSet| -> Result<(Vec<usize>, usize)> {
        let t = set
            .tasks
            .iter()
            .find(|t| t.name == task)
            .ok_or_else(|| super::PretrainError(format!("no task {task} in {}", set.name)))?;
        Ok((t.labels.iter().map(|l| l.unwrap_or(0)).collect(), t.classes.len()))
    };
    let (train_labels, classes) = labels(train)?;
    let (test_labels, _) = labels(test)?;
    let x = embed_images(backend, model, train)?;
    let xt = embed_images(backend, model, test)?;
    let cut = x.nrows() * 4 / 5;
    let config = ProbeConfig { grid: eval::log_grid(-2, 4, 1), ..ProbeConfig::default() };
    let p = eval::linear_probe(
        (x.slice(s![..cut, ..]), &train_labels[..cut]),
        (x.slice(s![cut.., ..]), &train_labels[cut..]),
        (xt.view(), &test_labels),
        classes,
        &config,
    )?;
    Ok(ProbeReport { task: task.into(), c: p.c, test_accuracy: p.test_accuracy })
}

/// Every set of the bundle, and the probe when `with_probe`.
pub fn evaluate<B: Backend>(
    backend: &B,
    model: &ClipModel<B>,
    data: &DataBundle,
    with_probe: bool,
) -> Result<EvalReport> {
    evaluate_with(backend, model, data, &EvalOptions { with_probe, ..EvalOptions::default() })
}

/// [`evaluate`] with `opts`. A diagnostic that fails is in the report's `failed` lists, not an error.
pub fn evaluate_with<B: Backend>(
    backend: &B,
    model: &ClipModel<B>,
    data: &DataBundle,
    opts: &EvalOptions,
) -> Result<EvalReport> {
    let sets = data.eval.iter().map(|s| evaluate_set_with(backend, model, s, opts)).collect::<Result<Vec<_>>>()?;
    let mut failed = Vec::new();
    let probe = match (&data.probe, opts.with_probe) {
        (Some((train, test, task)), true) => {
            diagnostic("linear-probe", opts, &mut failed, || probe(backend, model, train, test, task))
        }
        _ => None,
    };
    Ok(EvalReport { sets, probe, failed })
}
