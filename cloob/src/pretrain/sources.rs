//! The data of a run: its training source and evaluation sets, opened from the run's settings.

use super::{PretrainError, Result, RunConfig};
use crate::data::csv::{CsvConfig, CsvSource};
use crate::data::imagefolder::ImageFolder;
use crate::data::wds::{WdsConfig, WdsSource};
use crate::data::{fashion, scenes, DataBundle, TrainData};
use crate::pretrain::config::DataSpec;
use std::path::Path;
use std::sync::Arc;

/// Open the data source of `cfg`, with its evaluation sets when `with_eval` (rank 0 alone evaluates, so
/// the other ranks read no evaluation image); `--imagenet-val` adds its set after the source's own.
pub fn open_data(cfg: &RunConfig, image_size: usize, with_eval: bool) -> Result<DataBundle> {
    let mut bundle = open_source(cfg, image_size, with_eval)?;
    if let Some(dir) = cfg.zero_shot.imagenet_val.as_deref().filter(|_| with_eval) {
        let folder = ImageFolder::open(dir, cfg.zero_shot.class_names.as_deref(), image_size)?;
        bundle.eval.push(folder.eval_set(cfg.eval_size, "imagenet-val", "imagenet")?);
    }
    Ok(bundle)
}

fn open_source(cfg: &RunConfig, image_size: usize, with_eval: bool) -> Result<DataBundle> {
    let need = |have: usize, what: &str| {
        if have == image_size {
            Ok(())
        } else {
            Err(PretrainError(format!(
                "{what} has {have}×{have} images but the model takes {image_size}×{image_size}; use the tiny preset"
            )))
        }
    };
    // A CSV file (training data or `--val-data`) with the run's `--csv-*` layout.
    let mk = |p: &Path| {
        let mut c = CsvConfig::new(p, image_size);
        c.img_key.clone_from(&cfg.csv.img_key);
        c.caption_key.clone_from(&cfg.csv.caption_key);
        c.separator = u8::try_from(cfg.csv.separator)
            .map_err(|_| PretrainError("--csv-separator must be one ASCII character".into()))?;
        Ok::<_, PretrainError>(CsvSource::open(c)?)
    };
    Ok(match &cfg.data {
        DataSpec::Embedded => {
            need(scenes::IMAGE_SIZE, "the embedded set")?;
            DataBundle {
                train: TrainData::Indexed(Arc::new(scenes::SceneSource { len: cfg.embedded_len })),
                eval: if with_eval { vec![scenes::eval_set(cfg.eval_size)] } else { Vec::new() },
                probe: None,
            }
        }
        DataSpec::FashionMnist => {
            need(fashion::IMAGE_SIZE, "Fashion-MNIST")?;
            let train = fashion::load_split(&cfg.fashion_dir, "train")?;
            let (eval, probe) = if with_eval {
                let test = fashion::load_split(&cfg.fashion_dir, "t10k")?;
                let eval = fashion::eval_set(&test, cfg.eval_size, "fashion-mnist-test");
                let probe = (
                    fashion::eval_set(&train, 2 * cfg.eval_size, "fashion-mnist-train"),
                    eval.clone(),
                    "fashion".to_string(),
                );
                (vec![eval], Some(probe))
            } else {
                (Vec::new(), None)
            };
            DataBundle { train: TrainData::Indexed(Arc::new(fashion::FashionSource { train })), eval, probe }
        }
        DataSpec::Csv(path) => {
            let train = mk(path)?;
            let eval = match (with_eval, &cfg.csv.val) {
                (false, _) => Vec::new(),
                (true, Some(v)) => vec![mk(v)?.eval_set(cfg.eval_size, "csv-val")],
                (true, None) => vec![train.eval_set(cfg.eval_size, "csv-val")],
            };
            DataBundle { train: TrainData::Indexed(Arc::new(train)), eval, probe: None }
        }
        DataSpec::Wds(pattern) => {
            let caption = cfg.wds.caption.parse().map_err(PretrainError)?;
            let train = WdsSource::open(WdsConfig {
                pattern: pattern.clone(),
                image_size,
                caption,
                shuffle_buffer: cfg.wds.shuffle_buffer,
                train_num_samples: cfg.wds.train_num_samples,
            })?;
            let eval = match (with_eval, &cfg.csv.val) {
                (false, _) => Vec::new(),
                (true, Some(v)) => vec![mk(v)?.eval_set(cfg.eval_size, "csv-val")],
                (true, None) => vec![train.eval_set(cfg.eval_size, "wds-first-samples")],
            };
            DataBundle { train: TrainData::Streamed(Arc::new(train)), eval, probe: None }
        }
        DataSpec::ImageFolder(dir) => {
            let folder = ImageFolder::open(dir, cfg.zero_shot.class_names.as_deref(), image_size)?;
            let eval = match with_eval {
                true => vec![folder.eval_set(cfg.eval_size, "imagefolder", "classes")?],
                false => Vec::new(),
            };
            DataBundle { train: TrainData::Indexed(Arc::new(folder)), eval, probe: None }
        }
    })
}
