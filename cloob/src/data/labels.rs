//! Zero-shot classification on the user's own classes: a class list (one name a line), prompt templates
//! (one a line, each with `{}` where the class name goes; open_clip's 80 ImageNet templates by default)
//! and an evaluation set whose caption column holds each image's class, by name or by index.
//!
//! As CLIP does, a class's classifier weight averages the embeddings of all its prompts (see
//! [`crate::eval::zero_shot_classifier`]).

use super::{DataError, EvalSet, ZeroShotTask};
use std::path::Path;

/// The 80 prompt templates of OpenAI's ImageNet zero-shot evaluation, as open_clip lists them
/// (`OPENAI_IMAGENET_TEMPLATES` in `open_clip/zero_shot_metadata.py`), in the same order.
pub const IMAGENET_TEMPLATES: [&str; 80] = [
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
];

/// The non-blank lines of a text file, trimmed, with their line numbers.
fn lines_of(path: &Path, what: &str) -> Result<Vec<(usize, String)>, DataError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| DataError(format!("cannot read the {what} file {}: {e}", path.display())))?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim().trim_start_matches('\u{feff}').to_string()))
        .filter(|(_, l)| !l.is_empty())
        .collect())
}

/// Class names from a file, one a line (blank lines skipped): at least two, no name twice.
pub fn read_classes(path: &Path) -> Result<Vec<String>, DataError> {
    let lines = lines_of(path, "classes")?;
    let mut classes: Vec<String> = Vec::with_capacity(lines.len());
    for (line, name) in lines {
        if let Some(first) = classes.iter().position(|c| c.to_lowercase() == name.to_lowercase()) {
            return Err(DataError(format!(
                "{} line {line}: class {name:?} is listed twice (first as {:?}; names are matched ignoring case)",
                path.display(),
                classes[first]
            )));
        }
        classes.push(name);
    }
    if classes.len() < 2 {
        return Err(DataError(format!(
            "{}: {} class name(s); zero-shot classification needs at least two, one per line",
            path.display(),
            classes.len()
        )));
    }
    Ok(classes)
}

/// Prompt templates from a file, one a line, each holding `{}` once (where the class name goes).
pub fn read_templates(path: &Path) -> Result<Vec<String>, DataError> {
    let lines = lines_of(path, "templates")?;
    if lines.is_empty() {
        return Err(DataError(format!("{}: no template; write one a line, like `a photo of a {{}}.`", path.display())));
    }
    lines
        .into_iter()
        .map(|(line, t)| match t.matches("{}").count() {
            1 => Ok(t),
            n => Err(DataError(format!(
                "{} line {line}: template {t:?} has {n} `{{}}`; each needs exactly one, where the class name goes",
                path.display()
            ))),
        })
        .collect()
}

/// The class a caption names: the class name itself (ignoring case and surrounding spaces), or its
/// index (`0` is the first line of the class file).
pub fn label_of(caption: &str, classes: &[String]) -> Option<usize> {
    let c = caption.trim();
    let lower = c.to_lowercase();
    classes
        .iter()
        .position(|name| name.to_lowercase() == lower)
        .or_else(|| c.parse::<usize>().ok().filter(|&i| i < classes.len()))
}

/// A zero-shot task `name` over `set`, labelled from its captions; images whose caption names no class
/// take no part (their count is `labels.iter().filter(is_none)`). The task reports a per-class table.
pub fn class_task(set: &EvalSet, name: &str, classes: Vec<String>, templates: Vec<String>) -> ZeroShotTask {
    let labels = set.captions.iter().map(|c| label_of(c, &classes)).collect();
    ZeroShotTask { name: name.into(), classes, templates, labels, per_class: true }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("cloob-labels-{name}-{}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn classes_templates_and_labels() {
        let c = read_classes(&file("c", "\u{feff}cat\n\n  dog  \nsea lion\n")).unwrap();
        assert_eq!(c, ["cat", "dog", "sea lion"]);
        assert_eq!(label_of(" Dog ", &c), Some(1));
        assert_eq!(label_of("2", &c), Some(2));
        assert_eq!(label_of("3", &c), None);
        assert_eq!(label_of("a photo of a cat", &c), None);
        let e = read_classes(&file("dup", "cat\nCat\n")).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("twice"), "{e}");
        assert!(read_classes(&file("one", "cat\n")).unwrap_err().to_string().contains("at least two"));
        assert!(read_classes(Path::new("/nonexistent/classes.txt")).unwrap_err().to_string().contains("classes file"));
        assert_eq!(read_templates(&file("t", "a {}.\nart of {}\n")).unwrap(), ["a {}.", "art of {}"]);
        let e = read_templates(&file("t2", "a {}.\nno slot\n")).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("has 0"), "{e}");
        assert!(read_templates(&file("t3", "\n")).is_err());
        assert!(IMAGENET_TEMPLATES.iter().all(|t| t.matches("{}").count() == 1));
        let set = EvalSet { captions: vec!["cat".into(), "1".into(), "bird".into()], ..Default::default() };
        let task = class_task(&set, "pets", c, vec!["a {}".into()]);
        assert_eq!(task.labels, [Some(0), Some(1), None]);
    }
}
