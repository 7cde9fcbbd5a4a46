//! Every web-caption string of `fixtures/tokenizer/open_clip_ids.json` (written by
//! `scripts/fixtures/tokenizer_cases.py` from open_clip's own tokenizer and ftfy) gets open_clip's text
//! cleaning and ids here, less the rows of [`EXCEPTIONS`].

use cloob::tokenizer::{clean, ClipTokenizer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    versions: serde_json::Value,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    context_length: usize,
    /// open_clip's `_clean_lower(text)`.
    cleaned: String,
    /// open_clip's row without its zero padding.
    ids: Vec<u32>,
}

/// Texts whose cleaning differs from open_clip's, each with the reason.
const EXCEPTIONS: &[(&str, &str)] = &[];

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tokenizer/open_clip_ids.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn cleaning_and_ids_equal_open_clip_on_web_captions() {
    let fixture = fixture();
    assert!(fixture.cases.len() >= 100, "{} cases", fixture.cases.len());
    assert_eq!(fixture.versions["ftfy"], "6.3.1", "the ftfy version clean() ports");
    let mut failures = Vec::new();
    let mut excepted = 0;
    for case in &fixture.cases {
        let tokenizer = ClipTokenizer::with_context_length(case.context_length).unwrap();
        let cleaned = clean(&case.text);
        let row = tokenizer.tokenize_one(&case.text);
        let mut ids = row.clone();
        while ids.last() == Some(&0) {
            ids.pop();
        }
        let equal = cleaned == case.cleaned && ids == case.ids && row.len() == case.context_length;
        match EXCEPTIONS.iter().find(|(text, _)| *text == case.text) {
            Some((text, reason)) => {
                // An exception that no longer differs is taken off the list.
                assert!(!equal, "{text:?} is listed as an exception ({reason}) but equals open_clip");
                excepted += 1;
            }
            None if !equal => failures.push(format!(
                "{:?}\n  cleaned {cleaned:?}\n  open_clip {:?}\n  ids {ids:?}\n  open_clip {:?}",
                case.text, case.cleaned, case.ids
            )),
            None => {}
        }
    }
    assert_eq!(excepted, EXCEPTIONS.len(), "every exception is a row of the fixture");
    assert!(failures.is_empty(), "{} of {} rows differ:\n{}", failures.len(), fixture.cases.len(), failures.join("\n"));
}
