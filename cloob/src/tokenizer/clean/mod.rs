//! open_clip's text cleaning before the BPE: `ftfy.fix_text` (6.3.1, its default configuration),
//! `html.unescape` twice, whitespace collapsed, lowercased.
//!
//! `html.rs` decodes character references as Python's `html.unescape` and ftfy's `unescape_html` do;
//! `mojibake.rs` ports ftfy's `fix_encoding`; this file runs ftfy's loop of fixes and open_clip's steps.

use regex::Regex;
use std::sync::OnceLock;
use unicode_normalization::UnicodeNormalization;

mod html;
mod mojibake;

/// open_clip's `_clean_lower`: `whitespace_clean(basic_clean(text)).lower()`, where `basic_clean` is
/// `ftfy.fix_text` then `html.unescape` twice.
///
/// Of `ftfy.fix_text` this reproduces, line by line and iterated to a fixed point as ftfy does: HTML entity
/// decoding (ftfy's: `;` required, HTML5's names and ftfy's upper-case ones) while no line so far had a
/// `<`, repair of mojibake (`cafÃ©` → `café`, ftfy's `fix_encoding`), Windows-1252 for C1 controls
/// (`don\x92t` → `don’t`), Latin ligatures (`ﬁ` → `fi`), full- and half-width forms (`ＡＢＣ` → `ABC`),
/// curly quotes, line breaks, ANSI terminal escapes, control characters, NFC. `html.unescape` is
/// Python's: every HTML5 name, the legacy ones without `;`, Python's table for numeric references.
///
/// ftfy's loop runs until nothing changes, one round per level of nested escapes (`&amp;amp;…`), so a text of
/// `n` such levels costs `n` rounds over the whole text; here at most `MAX_ROUNDS` rounds are run (and at
/// most as many steps of mojibake repair in each), which keeps the cost linear in the text's length. A
/// text nested deeper keeps its remaining escapes as text (less the two levels `html.unescape` takes off
/// after the loop).
pub fn clean(text: &str) -> String {
    clean_counting_rounds(text).0
}

/// Rounds of ftfy's fixes [`clean`] runs at most on a line: captions escaped a few times over need 2–6.
pub const MAX_ROUNDS: usize = 16;

/// ftfy's `max_decode_length`: a line longer than this many characters is fixed in pieces of this length.
const MAX_SEGMENT_CHARS: usize = 1_000_000;

/// [`clean`] and the most rounds of ftfy's fixes it ran on one line.
fn clean_counting_rounds(text: &str) -> (String, usize) {
    let (fixed, rounds) = fix_text(text);
    let t = html::python_unescape(&html::python_unescape(&fixed));
    // Python's str.split() also splits at U+001C..U+001F, which Rust does not count as whitespace.
    let words: Vec<&str> =
        t.split(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)).filter(|w| !w.is_empty()).collect();
    (words.join(" ").to_lowercase(), rounds)
}

/// `ftfy.fix_text`: each line (with its `\n`) fixed on its own; entities are left alone from the first
/// line holding a `<` on, as ftfy turns `unescape_html` off for the rest of the text there.
fn fix_text(text: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut unescape = true;
    let mut most_rounds = 0;
    for segment in segments(text) {
        unescape &= !segment.contains('<');
        let (fixed, rounds) = fix_segment(segment, unescape);
        out.push_str(&fixed);
        most_rounds = most_rounds.max(rounds);
    }
    (out, most_rounds)
}

/// The pieces `ftfy.fix_text` fixes one at a time: up to and including each `\n`, at most
/// [`MAX_SEGMENT_CHARS`] characters.
fn segments(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let end = rest.char_indices().nth(MAX_SEGMENT_CHARS).map_or(line_end, |(i, _)| i.min(line_end));
        let (segment, tail) = rest.split_at(end);
        rest = tail;
        Some(segment)
    })
}

/// ftfy's `fix_and_explain` loop on one segment, at most `MAX_ROUNDS` rounds; the text and the rounds run.
fn fix_segment(segment: &str, unescape: bool) -> (String, usize) {
    let mut t = segment.to_string();
    let mut rounds = 0;
    while rounds < MAX_ROUNDS {
        rounds += 1;
        let before = t.clone();
        if unescape {
            t = html::ftfy_unescape(&t);
        }
        t = mojibake::fix_encoding(&t, MAX_ROUNDS);
        t = mojibake::fix_c1_controls(&t);
        t = fix_characters(&t);
        t = remove_terminal_escapes(&t);
        t = t.chars().filter(|&c| !is_removed_control(c)).collect();
        t = t.nfc().collect();
        if t == before {
            break;
        }
    }
    (t, rounds)
}

/// ftfy's `fix_latin_ligatures`, `fix_character_width`, `uncurl_quotes` and `fix_line_breaks`, in that
/// order, in one pass.
fn fix_characters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        for l in ligature(c) {
            for w in width(l) {
                let q = uncurl(w);
                match q {
                    '\r' if chars.peek() == Some(&'\n') => {}
                    '\r' | '\u{2028}' | '\u{2029}' | '\u{85}' => out.push('\n'),
                    q => out.push(q),
                }
            }
        }
    }
    out
}

/// ftfy's `LIGATURES`.
fn ligature(c: char) -> Vec<char> {
    let s = match c {
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'ŉ' => "ʼn",
        'Ǳ' => "DZ",
        'ǲ' => "Dz",
        'ǳ' => "dz",
        'Ǆ' => "DŽ",
        'ǅ' => "Dž",
        'ǆ' => "dž",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff",
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "ſt",
        'ﬆ' => "st",
        _ => return vec![c],
    };
    s.chars().collect()
}

/// ftfy's `WIDTH_MAP`: the ideographic space, and U+FF01–U+FFEF as NFKC writes them.
fn width(c: char) -> Vec<char> {
    match c {
        '\u{3000}' => vec![' '],
        '\u{ff01}'..='\u{ffef}' => std::iter::once(c).nfkc().collect(),
        _ => vec![c],
    }
}

/// ftfy's `uncurl_quotes`.
fn uncurl(c: char) -> char {
    match c {
        '\u{02bc}' | '\u{2018}'..='\u{201b}' => '\'',
        '\u{201c}'..='\u{201f}' => '"',
        c => c,
    }
}

/// ftfy's `CONTROL_CHARS`, which `remove_control_chars` deletes.
fn is_removed_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{e}'..='\u{1f}' | '\u{7f}' | '\u{206a}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffc}')
}

/// ftfy's `remove_terminal_escapes`: its `ANSI_RE`, `ESC [ (digits or ;)* letter` (Unicode digits, as
/// Python's `\d`).
fn remove_terminal_escapes(text: &str) -> String {
    static ANSI: OnceLock<Regex> = OnceLock::new();
    if !text.contains('\u{1b}') {
        return text.to_string();
    }
    ANSI.get_or_init(|| Regex::new(r"\x1b\[(?:\d|;)*[a-zA-Z]").expect("ANSI_RE")).replace_all(text, "").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_are_bounded_by_max_rounds() {
        // Each round of ftfy's loop takes one `amp;` off; html.unescape then takes two more.
        let nested = |levels: usize| format!("&{}lt;", "amp;".repeat(levels));
        for levels in [0, 1, 5, MAX_ROUNDS - 1] {
            let (cleaned, rounds) = clean_counting_rounds(&nested(levels));
            assert_eq!(cleaned, "<", "{levels} levels");
            // One round per level, one more to see that nothing changes.
            assert!(rounds <= levels + 2, "{levels} levels took {rounds} rounds");
        }
        let (cleaned, rounds) = clean_counting_rounds(&nested(10_000));
        assert_eq!(rounds, MAX_ROUNDS);
        assert_eq!(cleaned, nested(10_000 - MAX_ROUNDS - 2));
    }

    #[test]
    fn lines_are_fixed_one_at_a_time() {
        // The first line's entity is decoded by ftfy (and its `&lt;` left to html.unescape); from the line
        // with the `<` on, ftfy decodes no entity, so html.unescape's two levels are all there are.
        assert_eq!(clean("a &amp;amp;amp;lt;\n<b> &amp;amp;amp;lt;"), "a < <b> &amp;lt;");
        let lines: Vec<&str> = segments("ab\ncd\n\ne").collect();
        assert_eq!(lines, ["ab\n", "cd\n", "\n", "e"]);
        assert_eq!(segments("").count(), 0);
    }

    #[test]
    fn fixers_run_in_ftfy_s_order() {
        // The width fix makes the `[` of a terminal escape, which is then removed whole.
        assert_eq!(clean("red\u{1b}\u{ff3b}31mtext"), "redtext");
        // The ligature's `ʼ` is uncurled in the same round.
        assert_eq!(fix_characters("ŉ\r\n\r\u{2028}"), "'n\n\n\n");
        assert_eq!(clean("don\u{92}t wait\u{85}"), "don't wait…");
    }
}
