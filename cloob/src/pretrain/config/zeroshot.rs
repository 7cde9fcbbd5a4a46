//! open_clip's `--imagenet-val`: zero-shot classification on an ImageFolder tree at each evaluation.

use super::{DataSpec, PretrainError, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `--imagenet-val DIR` and `--class-names FILE`. May change on resume (they change what is evaluated,
/// not the training).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct ZeroShotOptions {
    /// An ImageFolder tree (one sub-folder per class, sorted; torchvision's layout) scored zero-shot at each
    /// evaluation with open_clip's 80 ImageNet templates: top-1 and top-5 (open_clip's flag). --eval-size
    /// images are used, taken class by class in turn.
    #[arg(long = "imagenet-val", value_name = "DIR")]
    pub imagenet_val: Option<PathBuf>,
    /// The class names of --imagenet-val (or --data imagefolder:DIR), one a line in the sorted order of the
    /// folders (default: the folder names, `_` read as a space).
    #[arg(long = "class-names", value_name = "FILE")]
    pub class_names: Option<PathBuf>,
}

impl ZeroShotOptions {
    /// `--class-names` needs a tree to name: `--imagenet-val` or `--data imagefolder:DIR`.
    pub fn validate(&self, data: &DataSpec) -> Result<()> {
        let tree = self.imagenet_val.is_some() || matches!(data, DataSpec::ImageFolder(_));
        match (&self.class_names, tree) {
            (Some(f), false) => Err(PretrainError(format!(
                "--class-names {} names the classes of --imagenet-val DIR or --data imagefolder:DIR; give one of them",
                f.display()
            ))),
            _ => Ok(()),
        }
    }

    /// These options with their paths made absolute by `abs`.
    pub(crate) fn with_absolute_paths(&self, abs: &dyn Fn(&Path) -> Result<PathBuf>) -> Result<ZeroShotOptions> {
        Ok(ZeroShotOptions {
            imagenet_val: self.imagenet_val.as_deref().map(abs).transpose()?,
            class_names: self.class_names.as_deref().map(abs).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_need_a_tree() {
        let names = ZeroShotOptions { class_names: Some("names.txt".into()), ..Default::default() };
        let e = names.validate(&DataSpec::Embedded).unwrap_err().to_string();
        assert!(e.contains("--class-names names.txt"), "{e}");
        names.validate(&DataSpec::ImageFolder("val".into())).unwrap();
        ZeroShotOptions { imagenet_val: Some("val".into()), ..names }.validate(&DataSpec::Embedded).unwrap();
        ZeroShotOptions::default().validate(&DataSpec::Embedded).unwrap();
    }
}
