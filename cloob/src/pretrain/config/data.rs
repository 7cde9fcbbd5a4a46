//! `--data`: where the training pairs come from.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the training pairs come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataSpec {
    /// The generated captioned scenes ([`crate::data::scenes`]).
    Embedded,
    /// Fashion-MNIST from Debian's IDX files.
    FashionMnist,
    /// An open_clip CSV file.
    Csv(PathBuf),
    /// WebDataset tar shards, a path pattern with braces (`shards/{00000..00099}.tar`).
    Wds(String),
    /// A torchvision ImageFolder tree ([`crate::data::imagefolder`]), captioned by open_clip's templates.
    ImageFolder(PathBuf),
}

impl std::str::FromStr for DataSpec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "embedded" => Ok(DataSpec::Embedded),
            "fashion-mnist" => Ok(DataSpec::FashionMnist),
            _ => match (s.strip_prefix("csv:"), s.strip_prefix("wds:")) {
                (Some(p), _) if !p.is_empty() => Ok(DataSpec::Csv(PathBuf::from(p))),
                _ if s.strip_prefix("imagefolder:").is_some_and(|p| !p.is_empty()) => {
                    Ok(DataSpec::ImageFolder(PathBuf::from(&s["imagefolder:".len()..])))
                }
                (_, Some(p)) if !p.is_empty() => {
                    crate::data::wds::expand_braces(p).map_err(|e| format!("--data wds:{p}: {e}"))?;
                    Ok(DataSpec::Wds(p.to_string()))
                }
                _ => Err(format!(
                    "unknown data source {s:?}: use embedded, fashion-mnist, csv:PATH, wds:PATTERN \
                     (e.g. wds:shards/{{00000..00099}}.tar) or imagefolder:DIR"
                )),
            },
        }
    }
}

impl std::fmt::Display for DataSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSpec::Embedded => f.write_str("embedded"),
            DataSpec::FashionMnist => f.write_str("fashion-mnist"),
            DataSpec::Csv(p) => write!(f, "csv:{}", p.display()),
            DataSpec::Wds(p) => write!(f, "wds:{p}"),
            DataSpec::ImageFolder(p) => write!(f, "imagefolder:{}", p.display()),
        }
    }
}
