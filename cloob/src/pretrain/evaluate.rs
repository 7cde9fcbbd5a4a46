//! Evaluation of a model on the sets of a [`DataBundle`]: zero-shot accuracy per task (class names ×
//! templates), image↔text retrieval, the embedding analysis of the CLOOB paper (covariance eigenvalues
//! reaching 99 % of the variance, Ajne's statistic, Wang–Isola alignment and uniformity) and, when the
//! source has labels, a linear probe.

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

/// Geometry of the embeddings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingAnalysis {
    /// Covariance eigenvalues of the image embeddings reaching 99 % of the variance.
    pub image_eigen_99: usize,
    /// ... of the text embeddings.
    pub text_eigen_99: usize,
    /// Image covariance eigenvalues, largest first.
    pub image_spectrum: Vec<f64>,
    /// Text covariance eigenvalues, largest first.
    pub text_spectrum: Vec<f64>,
    /// Ajne's statistic of the image embeddings (1/4 under uniformity; larger is less uniform).
    pub image_ajne: f64,
    /// ... of the text embeddings.
    pub text_ajne: f64,
    /// Wang–Isola uniformity (t = 2) of the image embeddings (lower is more uniform).
    pub image_uniformity: f64,
    /// ... of the text embeddings.
    pub text_uniformity: f64,
    /// Wang–Isola alignment (α = 2) of matching pairs.
    pub alignment: f64,
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
    /// The linear probe, when the source has labels and it was asked for.
    pub probe: Option<ProbeReport>,
}

impl EvalReport {
    /// Mean top-1 over the first set's zero-shot tasks except the `pair-*` compositional ones (the
    /// headline number of the progress bar and the plots).
    pub fn headline(&self) -> Option<f64> {
        let set = self.sets.first()?;
        let v: Vec<f64> = set.zero_shot.iter().filter(|(k, _)| !k.starts_with("pair")).map(|(_, s)| s.top1).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
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
            out += &format!(
                "  eigenvalues for 99%: image {} text {}; Ajne image {:.2} text {:.2}; \
                 uniformity image {:.3} text {:.3}; alignment {:.3}\n",
                e.image_eigen_99,
                e.text_eigen_99,
                e.image_ajne,
                e.text_ajne,
                e.image_uniformity,
                e.text_uniformity,
                e.alignment
            );
        }
        if let Some(p) = &self.probe {
            out += &format!("linear probe ({}): test accuracy {:.3} (C = {:.0e})\n", p.task, p.test_accuracy, p.c);
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
    let (image_eigen_99, image_spectrum) = eval::explained_variance_count(images.view(), 0.99)?;
    let (text_eigen_99, text_spectrum) = eval::explained_variance_count(texts.view(), 0.99)?;
    let embedding = EmbeddingAnalysis {
        image_eigen_99,
        text_eigen_99,
        image_spectrum,
        text_spectrum,
        image_ajne: eval::ajne_statistic(images.view())?,
        text_ajne: eval::ajne_statistic(texts.view())?,
        image_uniformity: eval::uniformity(images.view(), 2.0)?,
        text_uniformity: eval::uniformity(texts.view(), 2.0)?,
        alignment: eval::alignment(images.view(), texts.view(), 2.0)?,
    };
    Ok(SetReport {
        set: set.name.clone(),
        n: set.len(),
        zero_shot,
        per_class,
        skipped: set.skipped.clone(),
        retrieval,
        embedding,
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
    let sets = data.eval.iter().map(|s| evaluate_set(backend, model, s)).collect::<Result<Vec<_>>>()?;
    let probe = match (&data.probe, with_probe) {
        (Some((train, test, task)), true) => Some(probe(backend, model, train, test, task)?),
        _ => None,
    };
    Ok(EvalReport { sets, probe })
}
