//! CLIP's byte-level BPE tokenizer, giving the ids of open_clip's `SimpleTokenizer` (`clean='lower'`).
//!
//! The BPE itself is [`instant_clip_tokenizer`] with OpenAI's vocabulary compiled into the binary (its
//! `openai-vocabulary-file` feature): nothing is read or downloaded at run time. Before the BPE, the text is
//! cleaned as open_clip does (`ftfy.fix_text`, `html.unescape` twice, whitespace collapsed, lowercased):
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
use instant_clip_tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use unicode_normalization::UnicodeNormalization;

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
fn bpe() -> &'static Tokenizer {
    static BPE: OnceLock<Tokenizer> = OnceLock::new();
    BPE.get_or_init(Tokenizer::new)
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
        let mut tokens = Vec::new();
        bpe().encode(&clean(text), &mut tokens);
        tokens.into_iter().map(|t| u32::from(t.to_u16())).collect()
    }

    /// One row: `[<start_of_text>, ids…, <end_of_text>]`, truncated and zero-padded to the context length.
    pub fn tokenize_one(&self, text: &str) -> Vec<u32> {
        let n = self.context_length;
        let mut row = Vec::with_capacity(n.max(2));
        row.push(START_OF_TEXT);
        row.extend(self.encode(text));
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
        let tokens = ids
            .iter()
            .filter_map(|&i| u16::try_from(i).ok().and_then(|i| instant_clip_tokenizer::Token::from_u16(i, bpe())));
        bpe().decode(tokens)
    }
}

/// open_clip's `_clean_lower`: `whitespace_clean(basic_clean(text)).lower()`, where `basic_clean` is
/// `ftfy.fix_text` then `html.unescape` twice.
///
/// Of `ftfy.fix_text` (6.x defaults) this reproduces, iterated to a fixed point as ftfy does: HTML entity
/// decoding when the text has no `<`, removal of ANSI terminal escapes and of control characters, Latin
/// ligatures (`ﬁ` → `fi`), full- and half-width forms (`ＡＢＣ` → `ABC`), curly quotes, and NFC
/// normalisation. Not reproduced: ftfy's repair of mojibake (text decoded with the wrong codec, e.g.
/// `cafÃ©`), which is left as it is. HTML entities: numeric references, and the named ones of HTML 4's
/// Latin-1 and special sets (`&amp;`, `&eacute;`, `&mdash;`, …); other HTML5 names stay as text.
pub fn clean(text: &str) -> String {
    // ftfy decides once, before its loop, whether the text looks like HTML.
    let unescape = !text.contains('<');
    let mut t = text.to_string();
    loop {
        let before = t.clone();
        if unescape {
            t = unescape_html(&t, false);
        }
        t = remove_terminal_escapes(&t);
        t = t.chars().flat_map(fix_char).collect::<String>();
        t = t.nfc().collect();
        if t == before {
            break;
        }
    }
    let t = unescape_html(&unescape_html(&t, true), true);
    // Python's str.split() also splits at U+001C..U+001F, which Rust does not count as whitespace.
    let words: Vec<&str> =
        t.split(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)).filter(|w| !w.is_empty()).collect();
    words.join(" ").to_lowercase()
}

/// ftfy's per-character fixes: ligatures, widths, curly quotes, control characters.
fn fix_char(c: char) -> Vec<char> {
    let s: &str = match c {
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
        '\u{3000}' => " ",
        '\u{02bc}' | '\u{2018}'..='\u{201b}' => "'",
        '\u{201c}'..='\u{201f}' => "\"",
        '\u{0}'..='\u{8}'
        | '\u{b}'
        | '\u{e}'..='\u{1f}'
        | '\u{7f}'
        | '\u{206a}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffc}' => "",
        '\u{ff01}'..='\u{ffef}' => return std::iter::once(c).nfkc().collect(),
        _ => return vec![c],
    };
    s.chars().collect()
}

/// `ESC [ digits/semicolons letter`, as ftfy's `ANSI_RE`.
fn remove_terminal_escapes(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\u{1b}' && chars.get(i + 1) == Some(&'[') {
            let mut j = i + 2;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == ';') {
                j += 1;
            }
            if j < chars.len() && chars[j].is_ascii_alphabetic() {
                i = j + 1;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Decode `&name;` for the names in [`ENTITIES`] and numeric references `&#N;`/`&#xH;` (the `;` optional
/// for numeric ones when `lenient`, as Python's `html.unescape`; ftfy requires it).
fn unescape_html(text: &str, lenient: bool) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match decode_entity(rest, lenient) {
            Some((decoded, len)) => {
                out.push(decoded);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The character and byte length of the entity at the start of `s` (which starts with `&`).
fn decode_entity(s: &str, lenient: bool) -> Option<(char, usize)> {
    let body = &s[1..];
    if let Some(num) = body.strip_prefix('#') {
        let (digits, radix, skip) = match num.strip_prefix(['x', 'X']) {
            Some(hex) => (hex.chars().take_while(char::is_ascii_hexdigit).count(), 16, 3),
            None => (num.chars().take_while(char::is_ascii_digit).count(), 10, 2),
        };
        let start = skip;
        let text = &s[start..start + digits];
        if digits == 0 {
            return None;
        }
        let semicolon = s[start + digits..].starts_with(';');
        if !semicolon && !lenient {
            return None;
        }
        let code = u32::from_str_radix(text, radix).unwrap_or(u32::MAX);
        let c = match code {
            0 | 0xd800..=0xdfff => '\u{fffd}',
            _ => char::from_u32(code).unwrap_or('\u{fffd}'),
        };
        return Some((c, start + digits + semicolon as usize));
    }
    let end = body.find(';')?;
    let name = &body[..end];
    ENTITIES.iter().find(|(n, _)| *n == name).map(|&(_, c)| (c, end + 2))
}

/// HTML 4's named entities of the Latin-1 and special sets, plus `&apos;`.
const ENTITIES: &[(&str, char)] = &[
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("nbsp", '\u{a0}'),
    ("iexcl", '¡'),
    ("cent", '¢'),
    ("pound", '£'),
    ("curren", '¤'),
    ("yen", '¥'),
    ("brvbar", '¦'),
    ("sect", '§'),
    ("uml", '¨'),
    ("copy", '©'),
    ("ordf", 'ª'),
    ("laquo", '«'),
    ("not", '¬'),
    ("shy", '\u{ad}'),
    ("reg", '®'),
    ("macr", '¯'),
    ("deg", '°'),
    ("plusmn", '±'),
    ("sup2", '²'),
    ("sup3", '³'),
    ("acute", '´'),
    ("micro", 'µ'),
    ("para", '¶'),
    ("middot", '·'),
    ("cedil", '¸'),
    ("sup1", '¹'),
    ("ordm", 'º'),
    ("raquo", '»'),
    ("frac14", '¼'),
    ("frac12", '½'),
    ("frac34", '¾'),
    ("iquest", '¿'),
    ("Agrave", 'À'),
    ("Aacute", 'Á'),
    ("Acirc", 'Â'),
    ("Atilde", 'Ã'),
    ("Auml", 'Ä'),
    ("Aring", 'Å'),
    ("AElig", 'Æ'),
    ("Ccedil", 'Ç'),
    ("Egrave", 'È'),
    ("Eacute", 'É'),
    ("Ecirc", 'Ê'),
    ("Euml", 'Ë'),
    ("Igrave", 'Ì'),
    ("Iacute", 'Í'),
    ("Icirc", 'Î'),
    ("Iuml", 'Ï'),
    ("ETH", 'Ð'),
    ("Ntilde", 'Ñ'),
    ("Ograve", 'Ò'),
    ("Oacute", 'Ó'),
    ("Ocirc", 'Ô'),
    ("Otilde", 'Õ'),
    ("Ouml", 'Ö'),
    ("times", '×'),
    ("Oslash", 'Ø'),
    ("Ugrave", 'Ù'),
    ("Uacute", 'Ú'),
    ("Ucirc", 'Û'),
    ("Uuml", 'Ü'),
    ("Yacute", 'Ý'),
    ("THORN", 'Þ'),
    ("szlig", 'ß'),
    ("agrave", 'à'),
    ("aacute", 'á'),
    ("acirc", 'â'),
    ("atilde", 'ã'),
    ("auml", 'ä'),
    ("aring", 'å'),
    ("aelig", 'æ'),
    ("ccedil", 'ç'),
    ("egrave", 'è'),
    ("eacute", 'é'),
    ("ecirc", 'ê'),
    ("euml", 'ë'),
    ("igrave", 'ì'),
    ("iacute", 'í'),
    ("icirc", 'î'),
    ("iuml", 'ï'),
    ("eth", 'ð'),
    ("ntilde", 'ñ'),
    ("ograve", 'ò'),
    ("oacute", 'ó'),
    ("ocirc", 'ô'),
    ("otilde", 'õ'),
    ("ouml", 'ö'),
    ("divide", '÷'),
    ("oslash", 'ø'),
    ("ugrave", 'ù'),
    ("uacute", 'ú'),
    ("ucirc", 'û'),
    ("uuml", 'ü'),
    ("yacute", 'ý'),
    ("thorn", 'þ'),
    ("yuml", 'ÿ'),
    ("OElig", 'Œ'),
    ("oelig", 'œ'),
    ("Scaron", 'Š'),
    ("scaron", 'š'),
    ("Yuml", 'Ÿ'),
    ("fnof", 'ƒ'),
    ("circ", 'ˆ'),
    ("tilde", '˜'),
    ("ensp", '\u{2002}'),
    ("emsp", '\u{2003}'),
    ("thinsp", '\u{2009}'),
    ("zwnj", '\u{200c}'),
    ("zwj", '\u{200d}'),
    ("lrm", '\u{200e}'),
    ("rlm", '\u{200f}'),
    ("ndash", '–'),
    ("mdash", '—'),
    ("lsquo", '‘'),
    ("rsquo", '’'),
    ("sbquo", '‚'),
    ("ldquo", '“'),
    ("rdquo", '”'),
    ("bdquo", '„'),
    ("dagger", '†'),
    ("Dagger", '‡'),
    ("bull", '•'),
    ("hellip", '…'),
    ("permil", '‰'),
    ("prime", '′'),
    ("Prime", '″'),
    ("lsaquo", '‹'),
    ("rsaquo", '›'),
    ("oline", '‾'),
    ("euro", '€'),
    ("trade", '™'),
];

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

    fn tok_decode(ids: &[u32]) -> String {
        ClipTokenizer::new().decode(ids)
    }
}
