//! CLIP's byte-level BPE tokenizer, giving the ids of open_clip's `SimpleTokenizer` (`clean='lower'`).
//!
//! The BPE (`bpe.rs`) merges a word of `n` bytes in `O(n log n)`, with OpenAI's vocabulary compiled into the
//! binary: nothing is read or downloaded at run time. A row holds only `context_length` ids, so
//! [`ClipTokenizer::tokenize_one`] stops merging there. Before the BPE, the text is cleaned as open_clip does
//! (`ftfy.fix_text`, `html.unescape` twice, whitespace collapsed, lowercased), in time linear in its length:
//! see [`clean`] for what of ftfy is reproduced.
//!
//! A tokenized text is `[<start_of_text>, BPE ids…, <end_of_text>]`, zero-padded to the context length.
//! Longer texts are cut to the context length; the two tokenizers this crate follows differ there:
//! - open_clip (the default, [`Truncation::KeepEndOfText`]) overwrites the last kept id with
//!   `<end_of_text>`, so every row ends its text with the token the text tower pools;
//! - cloob (`clip.tokenize` in ml-jku/cloob, [`Truncation::DropEndOfText`]) only cuts, so a truncated
//!   row has no `<end_of_text>`; the text tower, which pools at the largest id, then pools
//!   `<start_of_text>` (49406 exceeds every BPE id), which under the causal mask sees only itself: every
//!   truncated caption gets the same feature.
//!
//! ```
//! use cloob::tokenizer::ClipTokenizer;
//! let tokens = ClipTokenizer::new().tokenize(&["a photo of a cat"]);
//! assert_eq!(&tokens.row(0)[..7], &[49406, 320, 1125, 539, 320, 2368, 49407]);
//! assert_eq!(tokens.row(0).len(), 77);
//! ```

use hopfield::{HopfieldError, Result};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

mod bpe;
mod clean;
pub use clean::clean;

/// Id of `<start_of_text>`.
pub const START_OF_TEXT: u32 = 49406;
/// Id of `<end_of_text>`.
pub const END_OF_TEXT: u32 = 49407;
/// Number of ids (the text tower's embedding rows).
pub const VOCAB_SIZE: usize = 49408;
/// CLIP's context length.
pub const DEFAULT_CONTEXT_LENGTH: usize = 77;

/// What happens to a text longer than the context length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// open_clip: keep the first `context_length − 1` ids and end with `<end_of_text>`.
    #[default]
    KeepEndOfText,
    /// cloob: keep the first `context_length` ids (no `<end_of_text>` in a cut row).
    DropEndOfText,
}

/// Tokenized texts: `batch` rows of `context_length` ids, zero-padded.
///
/// # Shapes
/// `ids`: `[batch, context_length]`, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBatch {
    /// Row-major ids.
    pub ids: Vec<u32>,
    /// Number of texts.
    pub batch: usize,
    /// Ids per text.
    pub context_length: usize,
}

impl TokenBatch {
    /// Wrap row-major ids, checking their number.
    pub fn new(ids: Vec<u32>, batch: usize, context_length: usize) -> Result<Self> {
        if ids.len() != batch * context_length || context_length == 0 {
            return Err(HopfieldError::shape("token_batch", format!("{batch} × {context_length} ids"), &[ids.len()]));
        }
        Ok(TokenBatch { ids, batch, context_length })
    }
    /// The ids of text `i`.
    pub fn row(&self, i: usize) -> &[u32] {
        &self.ids[i * self.context_length..(i + 1) * self.context_length]
    }
    /// Per text, the position of its largest id (the first one on ties, as `torch.argmax`): the
    /// `<end_of_text>` position of an untruncated text, where CLIP's text tower reads its feature.
    pub fn eot_positions(&self) -> Vec<usize> {
        (0..self.batch)
            .map(|i| {
                let row = self.row(i);
                let max = *row.iter().max().expect("rows are non-empty");
                row.iter().position(|&t| t == max).unwrap()
            })
            .collect()
    }
    /// Rows `start..start + len`.
    pub fn rows(&self, start: usize, len: usize) -> TokenBatch {
        let c = self.context_length;
        TokenBatch { ids: self.ids[start * c..(start + len) * c].to_vec(), batch: len, context_length: c }
    }
}

/// The vocabulary is parsed once per process (it is 49 k merge rules).
fn bpe() -> &'static bpe::Bpe {
    static BPE: OnceLock<bpe::Bpe> = OnceLock::new();
    BPE.get_or_init(bpe::Bpe::new)
}

/// CLIP's tokenizer with a context length and a truncation rule. Cheap to build and copy: the BPE tables
/// are shared by all instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClipTokenizer {
    /// Ids per text, including `<start_of_text>` and `<end_of_text>`.
    pub context_length: usize,
    /// What happens to longer texts.
    pub truncation: Truncation,
}

impl Default for ClipTokenizer {
    fn default() -> Self {
        ClipTokenizer { context_length: DEFAULT_CONTEXT_LENGTH, truncation: Truncation::KeepEndOfText }
    }
}

impl ClipTokenizer {
    /// Context length 77, open_clip's truncation.
    pub fn new() -> Self {
        Self::default()
    }
    /// With another context length (at least 2: `<start_of_text>` and `<end_of_text>`).
    pub fn with_context_length(context_length: usize) -> Result<Self> {
        if context_length < 2 {
            return Err(HopfieldError::config("context_length", format!("must be at least 2, got {context_length}")));
        }
        Ok(ClipTokenizer { context_length, ..Self::default() })
    }
    /// With cloob's or open_clip's truncation.
    pub fn truncation(self, truncation: Truncation) -> Self {
        ClipTokenizer { truncation, ..self }
    }

    /// The BPE ids of `text` after cleaning, without `<start_of_text>`/`<end_of_text>` and untruncated.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        bpe().encode(&clean(text), usize::MAX, &mut ids);
        ids
    }

    /// One row: `[<start_of_text>, ids…, <end_of_text>]`, truncated and zero-padded to the context length.
    pub fn tokenize_one(&self, text: &str) -> Vec<u32> {
        let n = self.context_length;
        let mut row = Vec::with_capacity(n.max(2));
        row.push(START_OF_TEXT);
        // Ids past the row's n are cut below (with either truncation), so they are not merged.
        bpe().encode(&clean(text), n, &mut row);
        row.push(END_OF_TEXT);
        if row.len() > n {
            row.truncate(n);
            if self.truncation == Truncation::KeepEndOfText {
                row[n - 1] = END_OF_TEXT;
            }
        }
        row.resize(n, 0);
        row
    }

    /// Tokenize a batch of texts.
    pub fn tokenize<S: AsRef<str>>(&self, texts: &[S]) -> TokenBatch {
        let ids = texts.iter().flat_map(|t| self.tokenize_one(t.as_ref())).collect();
        TokenBatch { ids, batch: texts.len(), context_length: self.context_length }
    }

    /// Text of BPE ids (for debugging: words end with a space, special tokens are spelt out).
    pub fn decode(&self, ids: &[u32]) -> String {
        bpe().decode(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(text, context length, open_clip's ids without the padding)`, printed by
    /// `scripts/open_clip_token_ids.py` from open_clip's own `tokenizer.py` (ftfy 6.3.1).
    const OPEN_CLIP: &[(&str, usize, &[u32])] = &[
        ("a photo of a cat", 77, &[49406, 320, 1125, 539, 320, 2368, 49407]),
        ("", 77, &[49406, 49407]),
        ("   ", 77, &[49406, 49407]),
        ("  Hello,   World!  ", 77, &[49406, 3306, 267, 1002, 256, 49407]),
        ("A PHOTO of a Dog.", 77, &[49406, 320, 1125, 539, 320, 1929, 269, 49407]),
        (
            "Caf\u{e9} na\u{ef}ve r\u{e9}sum\u{e9} Stra\u{df}e",
            77,
            &[49406, 15304, 1097, 35689, 563, 29106, 7054, 4166, 1894, 127, 253, 324, 49407],
        ),
        ("Cafe\u{301} vs Caf\u{e9}", 77, &[49406, 15304, 1547, 15304, 49407]),
        (
            "\u{6771}\u{4eac}\u{30bf}\u{30ef}\u{30fc}\u{306e}\u{5199}\u{771f}",
            77,
            &[49406, 48338, 21078, 105, 34941, 2429, 107, 13457, 21575, 44653, 33440, 509, 49407],
        ),
        (
            "a photo of a \u{1f431} and a \u{1f680}!",
            77,
            &[49406, 320, 1125, 539, 320, 22979, 537, 320, 22400, 256, 49407],
        ),
        (
            "\u{dc}n\u{ef}c\u{f6}d\u{e9} \u{3a3}\u{38a}\u{3a3}\u{3a5}\u{3a6}\u{39f}\u{3a3} \u{130}stanbul",
            77,
            &[
                49406, 6522, 77, 35689, 66, 7255, 67, 4166, 139, 225, 138, 107, 139, 225, 139, 227, 139, 228, 138, 123,
                139, 480, 328, 16384, 11231, 49407,
            ],
        ),
        (
            "\u{201c}quoted\u{201d} and it\u{2019}s \u{2018}fine\u{2019}",
            77,
            &[49406, 257, 27706, 257, 537, 585, 568, 262, 3797, 262, 49407],
        ),
        ("\u{fb01}ne \u{fb02}ower of\u{fb00}ice", 77, &[49406, 3797, 4055, 892, 69, 733, 49407]),
        (
            "\u{ff21}\u{ff22}\u{ff23}\u{ff11}\u{ff12}\u{ff13} \u{3000}wide",
            77,
            &[49406, 5334, 272, 273, 274, 3184, 49407],
        ),
        (
            "Tom &amp; Jerry &lt;3 &#39;hi&#39; &amp;amp; &eacute;",
            77,
            &[49406, 2435, 261, 9164, 283, 274, 262, 1883, 262, 261, 4166, 49407],
        ),
        (
            "I'm sure they'll've done it, 'twas",
            77,
            &[49406, 328, 880, 1650, 889, 1342, 1200, 1700, 585, 267, 713, 739, 49407],
        ),
        (
            "in 2023 we had 3.14 apples",
            77,
            &[49406, 530, 273, 271, 273, 274, 649, 1100, 274, 269, 272, 275, 14032, 49407],
        ),
        ("<start_of_text>hi<end_of_text> there", 77, &[49406, 49406, 1883, 49407, 997, 49407]),
        ("a\u{0}b\u{b}c\u{7f}d", 77, &[49406, 596, 4480, 49407]),
        ("line1\nline2\tTab\r\nend\u{a0}nbsp", 77, &[49406, 1148, 272, 1148, 273, 14724, 806, 6459, 4393, 49407]),
        ("a photo of a cat", 5, &[49406, 320, 1125, 539, 49407]),
        (
            "donaudampfschifffahrtsgesellschaftskapit\u{e4}nsm\u{fc}tze",
            77,
            &[
                49406, 1067, 627, 1880, 16680, 13731, 1021, 778, 4810, 2290, 619, 10279, 45588, 83, 909, 688, 529,
                42787, 978, 6522, 83, 1298, 49407,
            ],
        ),
    ];

    #[test]
    fn ids_equal_open_clip() {
        for &(text, context, expected) in OPEN_CLIP {
            let tok = ClipTokenizer::with_context_length(context).unwrap();
            let row = tok.tokenize_one(text);
            assert_eq!(row.len(), context, "{text:?}: row length");
            assert_eq!(&row[..expected.len()], expected, "{text:?}");
            assert!(row[expected.len()..].iter().all(|&t| t == 0), "{text:?}: zero padding");
        }
    }

    #[test]
    fn long_captions_truncate_as_open_clip_or_cloob() {
        let long = "a photo of a cat ".repeat(30);
        // open_clip at 77 and 16: the photo-of-a-cat cycle, cut, then <end_of_text>.
        let cycle = [320u32, 1125, 539, 320, 2368];
        for context in [77, 16] {
            let row = ClipTokenizer::with_context_length(context).unwrap().tokenize_one(&long);
            assert_eq!(row.len(), context);
            assert_eq!(row[0], START_OF_TEXT);
            for (i, &t) in row[1..context - 1].iter().enumerate() {
                assert_eq!(t, cycle[i % 5], "context {context}, position {}", i + 1);
            }
            assert_eq!(row[context - 1], END_OF_TEXT);
            let batch = TokenBatch { ids: row, batch: 1, context_length: context };
            assert_eq!(batch.eot_positions(), vec![context - 1]);
        }
        // cloob: the same ids without the final <end_of_text>; the pooled position is then
        // <start_of_text>'s, the largest id left.
        let tok = ClipTokenizer::with_context_length(16).unwrap().truncation(Truncation::DropEndOfText);
        let row = tok.tokenize_one(&long);
        assert_eq!(row[15], cycle[14 % 5]);
        assert!(!row.contains(&END_OF_TEXT));
        assert_eq!(tok.tokenize(&[long.as_str()]).eot_positions(), vec![0]);
        // A text that fits is unaffected by the rule.
        assert_eq!(tok.tokenize_one("a photo of a cat")[..7], [49406, 320, 1125, 539, 320, 2368, 49407]);
    }

    #[test]
    fn empty_strings_batches_and_errors() {
        let tok = ClipTokenizer::with_context_length(8).unwrap();
        let b = tok.tokenize(&["", "a cat", ""]);
        assert_eq!(b.batch, 3);
        assert_eq!(b.row(0), &[START_OF_TEXT, END_OF_TEXT, 0, 0, 0, 0, 0, 0]);
        assert_eq!(b.row(1), &[START_OF_TEXT, 320, 2368, END_OF_TEXT, 0, 0, 0, 0]);
        assert_eq!(b.eot_positions(), vec![1, 3, 1]);
        assert_eq!(b.rows(1, 1).ids, b.row(1));
        assert!(tok.encode("").is_empty());
        assert!(tok.encode(" \t\n ").is_empty());
        // Context 2 holds only the markers.
        assert_eq!(ClipTokenizer::with_context_length(2).unwrap().tokenize_one("a cat"), [START_OF_TEXT, END_OF_TEXT]);
        assert!(ClipTokenizer::with_context_length(1).is_err());
        assert!(TokenBatch::new(vec![1, 2, 3], 2, 2).is_err());
    }

    #[test]
    fn cleaning_matches_open_clip_pieces() {
        // Control characters go (ftfy) before whitespace is collapsed.
        assert_eq!(clean("  Hello,\u{3000}WORLD\u{1c}x  "), "hello, worldx");
        assert_eq!(clean("&amp;amp;amp;amp;lt;"), "<");
        assert_eq!(clean("\u{1b}[31mred\u{1b}[0m text"), "red text");
        assert_eq!(clean("&amp;lt;b&amp;gt; &#x41;&#66 &unknown; & x"), "<b> ab &unknown; & x");
        // With a '<' ftfy leaves entities alone, html.unescape still decodes them twice.
        assert_eq!(clean("<p>&amp;amp;</p>"), "<p>&</p>");
        assert_eq!(clean("ﬁ ＨＡＬＦ ｶ"), "fi half カ");
        assert_eq!(tok_decode(&ClipTokenizer::new().encode("a photo of a cat")), "a photo of a cat ");
    }

    #[test]
    fn ids_equal_instant_clip_tokenizer_on_mixed_texts() {
        // Pseudo-random texts over letters, digits, punctuation, markers, spaces and multi-byte letters, and
        // long words: every id equal to the port of CLIP's own merge rounds.
        let reference = instant_clip_tokenizer::Tokenizer::new();
        let pieces = [
            "a",
            "e",
            "th",
            "ing",
            " ",
            "  ",
            "\n",
            "'s",
            "'ll",
            "0",
            "42",
            "!",
            "?!",
            "...",
            "<end_of_text>",
            "<b>",
            "&amp;",
            "é",
            "ß",
            "東京",
            "🐱",
            "ﬁ",
            "Ａ",
            "\u{301}",
            "straße",
            "hopfield",
            "x",
            "q",
            "-",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut texts: Vec<String> = (0..400)
            .map(|len| {
                (0..len % 60)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        pieces[(state % pieces.len() as u64) as usize]
                    })
                    .collect()
            })
            .collect();
        texts.extend(["a".repeat(3000), "ab".repeat(700), "東京タワー".repeat(100), "xyzzy".repeat(400)]);
        let tok = ClipTokenizer::new();
        for text in &texts {
            let mut expected = Vec::new();
            reference.encode(&clean(text), &mut expected);
            let expected: Vec<u32> = expected.into_iter().map(|t| u32::from(t.to_u16())).collect();
            assert_eq!(tok.encode(text), expected, "{text:?}");
            assert_eq!(
                tok.decode(&expected),
                reference.decode(
                    expected
                        .iter()
                        .map(|&t| { instant_clip_tokenizer::Token::from_u16(t as u16, &reference).unwrap() })
                )
            );
        }
    }

    #[test]
    fn rows_of_long_texts_merge_only_what_they_keep() {
        // The row of a long text equals the first ids of the whole encoding, whatever follows them.
        let tok = ClipTokenizer::with_context_length(16).unwrap();
        let text = format!("a photo of {} cat", "hopfield ".repeat(50_000));
        let all = tok.encode(&text);
        let row = tok.tokenize_one(&text);
        assert_eq!(row[1..15], all[..14]);
        assert_eq!(row[15], END_OF_TEXT);
        let cut = tok.truncation(Truncation::DropEndOfText).tokenize_one(&text);
        assert_eq!(cut[1..], all[..15]);
    }

    fn tok_decode(ids: &[u32]) -> String {
        ClipTokenizer::new().decode(ids)
    }
}
