//! ftfy's `fix_encoding`: text that was UTF-8 but got decoded with a one-byte codec (`cafÃ©` → `café`),
//! and its C1-control repair (`don\x92t` → `don’t`).
//!
//! A port of ftfy 6.3.1's decision rules (`ftfy.fix_encoding_and_explain`, `badness.is_bad`, the fixes it
//! calls): the text is re-encoded with the first of ftfy's one-byte codecs that can encode it all and
//! decoded as UTF-8, but only when ftfy's `BADNESS_RE` sees mojibake in it. The codecs' tables, the
//! badness pattern and the UTF-8 clue classes are read from `ftfy_tables.tsv`, written from ftfy's own
//! tables by `scripts/fixtures/tokenizer_tables.py`.

use regex::bytes::Regex as BytesRegex;
use regex::Regex;
use std::collections::HashMap;
use std::sync::OnceLock;

const FTFY_TSV: &str = include_str!("ftfy_tables.tsv");

/// Repairs of mojibake inside mojibake (`decode_inconsistent_utf8` calling `fix_encoding` on a part)
/// nested deeper than this are not made: each level costs a pass over its part.
const MAX_NESTED_REPAIRS: usize = 3;

/// One of ftfy's `CHARMAP_ENCODINGS`: what each byte decodes to, and back.
struct Charmap {
    name: String,
    decode: [char; 256],
    encode: HashMap<char, u8>,
}

impl Charmap {
    /// ftfy's `possible_encoding`: every character is ASCII other than U+001A, or a decoded byte
    /// 0x80–0xFF or 0x1A.
    fn can_encode(&self, text: &str) -> bool {
        text.chars().all(|c| {
            (c < '\u{80}' && c != '\u{1a}') || self.encode.get(&c).is_some_and(|&byte| byte >= 0x80 || byte == 0x1a)
        })
    }
    fn encode(&self, text: &str) -> Vec<u8> {
        text.chars().map(|c| self.encode[&c]).collect()
    }
}

struct FtfyTables {
    charmaps: Vec<Charmap>,
    badness: Regex,
    /// `UTF8_DETECTOR_RE` without its look-behind, anchored: one run of UTF-8-like sequences.
    utf8_run: Regex,
    /// Characters that may start a sequence `utf8_run` matches.
    utf8_first: Regex,
    /// The look-behind's class: no run starts after one of these.
    utf8_continuation_strict: Regex,
    altered_utf8: BytesRegex,
    lossy_utf8: BytesRegex,
}

fn tables() -> &'static FtfyTables {
    static TABLES: OnceLock<FtfyTables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut charmaps = Vec::new();
        let mut badness = None;
        let mut clues = HashMap::new();
        for line in FTFY_TSV.lines().filter(|l| !l.starts_with('#')) {
            let fields: Vec<&str> = line.splitn(3, '\t').collect();
            match fields[0] {
                "charmap" => {
                    let chars: Vec<char> = fields[2]
                        .split(' ')
                        .map(|p| char::from_u32(u32::from_str_radix(p, 16).expect("hex")).expect("a scalar value"))
                        .collect();
                    let decode: [char; 256] = chars.try_into().expect("ftfy_tables.tsv: 256 characters a charmap");
                    let mut encode = HashMap::new();
                    for (byte, &c) in decode.iter().enumerate().rev() {
                        encode.insert(c, byte as u8);
                    }
                    charmaps.push(Charmap { name: fields[1].to_string(), decode, encode });
                }
                "badness" => badness = Some(Regex::new(fields[1]).expect("ftfy's BADNESS_RE in Rust syntax")),
                "utf8_clue" => {
                    clues.insert(fields[1].to_string(), fields[2].to_string());
                }
                other => panic!("ftfy_tables.tsv: unknown row kind {other:?}"),
            }
        }
        let clue = |name: &str| clues.get(name).unwrap_or_else(|| panic!("ftfy_tables.tsv: no {name}")).as_str();
        let (first2, first3, first4, cont) =
            (clue("utf8_first_of_2"), clue("utf8_first_of_3"), clue("utf8_first_of_4"), clue("utf8_continuation"));
        let run = format!("^(?:[{first2}][{cont}]|[{first3}][{cont}]{{2}}|[{first4}][{cont}]{{3}})+");
        FtfyTables {
            charmaps,
            badness: badness.expect("ftfy_tables.tsv: a badness row"),
            utf8_run: Regex::new(&run).expect("UTF8_DETECTOR_RE"),
            utf8_first: Regex::new(&format!("^[{first2}{first3}{first4}]")).expect("UTF-8 first classes"),
            utf8_continuation_strict: Regex::new(&format!("^[{}]", clue("utf8_continuation_strict")))
                .expect("UTF-8 continuation class"),
            altered_utf8: BytesRegex::new(
                r"(?-u)[\xc2\xc3\xc5\xce\xd0\xd9][ ]|[\xe2\xe3][ ][\x80-\x84\x86-\x9f\xa1-\xbf]|[\xe0-\xe3][\x80-\x84\x86-\x9f\xa1-\xbf][ ]|[\xf0][ ][\x80-\xbf][\x80-\xbf]|[\xf0][\x80-\xbf][ ][\x80-\xbf]|[\xf0][\x80-\xbf][\x80-\xbf][ ]",
            )
            .expect("ALTERED_UTF8_RE"),
            lossy_utf8: BytesRegex::new(
                r"(?-u)[\xc2-\xdf][\x1a]|[\xc2-\xc3][?]|\xed[\xa0-\xaf][\x1a?]\xed[\xb0-\xbf][\x1a?\x80-\xbf]|\xed[\xa0-\xaf][\x1a?\x80-\xbf]\xed[\xb0-\xbf][\x1a?]|[\xe0-\xef][\x1a?][\x1a\x80-\xbf]|[\xe0-\xef][\x1a\x80-\xbf][\x1a?]|[\xf0-\xf4][\x1a?][\x1a\x80-\xbf][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a?][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a\x80-\xbf][\x1a?]|\x1a",
            )
            .expect("LOSSY_UTF8_RE"),
        }
    })
}

/// ftfy's `is_bad`: does `BADNESS_RE` find a sequence that looks like mojibake?
fn is_bad(text: &str) -> bool {
    tables().badness.is_match(text)
}

/// ftfy's `fix_encoding`: one-step repairs until nothing changes, at most `max_rounds` of them.
pub(super) fn fix_encoding(text: &str, max_rounds: usize) -> String {
    fix_encoding_nested(text, max_rounds, 0)
}

fn fix_encoding_nested(text: &str, max_rounds: usize, depth: usize) -> String {
    let mut text = text.to_string();
    for _ in 0..max_rounds {
        match fix_encoding_one_step(&text, max_rounds, depth) {
            Some(fixed) if fixed != text => text = fixed,
            _ => break,
        }
    }
    text
}

/// ftfy's `_fix_encoding_one_step_and_explain`; `None` where it changes nothing.
fn fix_encoding_one_step(text: &str, max_rounds: usize, depth: usize) -> Option<String> {
    if text.is_ascii() || !is_bad(text) {
        return None;
    }
    let t = tables();
    let mut latin1_possible = false;
    for charmap in &t.charmaps {
        if !charmap.can_encode(text) {
            continue;
        }
        latin1_possible |= charmap.name == "latin-1";
        let mut bytes = charmap.encode(text);
        if charmap.name != "macroman" && t.altered_utf8.is_match(&bytes) {
            bytes = restore_byte_a0(&bytes);
        }
        if charmap.name.starts_with("sloppy") {
            bytes = t.lossy_utf8.replace_all(&bytes, "\u{fffd}".as_bytes()).into_owned();
        }
        if let Some(fixed) = decode_utf8_variants(&bytes) {
            return Some(fixed);
        }
    }
    if depth < MAX_NESTED_REPAIRS {
        let fixed = decode_inconsistent_utf8(text, max_rounds, depth);
        if fixed != text {
            return Some(fixed);
        }
    }
    // ftfy tests for "windows-1252" among its possible codecs, which it never is (it names the sloppy
    // one), so Latin-1 text always goes on to strict Windows-1252 here.
    if latin1_possible {
        if let Some(fixed) = latin1_as_windows_1252(text) {
            if fixed != text {
                return Some(fixed);
            }
        }
    }
    if text.chars().any(is_c1_control) {
        return Some(fix_c1_controls(text));
    }
    None
}

fn is_c1_control(c: char) -> bool {
    ('\u{80}'..='\u{9f}').contains(&c)
}

/// ftfy's `fix_c1_controls`: each U+0080–U+009F as the Windows-1252 character of that byte (where it has
/// one; the five bytes Windows-1252 leaves undefined stay).
pub(super) fn fix_c1_controls(text: &str) -> String {
    let cp1252 = tables().charmaps.iter().find(|c| c.name == "sloppy-windows-1252").expect("ftfy's sloppy cp1252");
    text.chars().map(|c| if is_c1_control(c) { cp1252.decode[c as usize] } else { c }).collect()
}

/// Python's `text.encode("latin-1").decode("windows-1252")`, `None` where a byte is undefined there.
fn latin1_as_windows_1252(text: &str) -> Option<String> {
    let cp1252 = tables().charmaps.iter().find(|c| c.name == "sloppy-windows-1252").expect("ftfy's sloppy cp1252");
    text.chars()
        .map(|c| match c {
            '\u{81}' | '\u{8d}' | '\u{8f}' | '\u{90}' | '\u{9d}' => None,
            c if is_c1_control(c) => Some(cp1252.decode[c as usize]),
            c => Some(c),
        })
        .collect()
}

/// ftfy's `restore_byte_a0`: a space that stood for U+00A0 inside a UTF-8 sequence (`Ã ` → `à `).
fn restore_byte_a0(bytes: &[u8]) -> Vec<u8> {
    // A_GRAVE_WORD_RE: b"\xc3 (?! |quele|quela|quilo|s )" → b"\xc3\xa0 ".
    let mut grave = Vec::with_capacity(bytes.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0xc3 && bytes.get(i + 1) == Some(&b' ') {
            let after = &bytes[i + 2..];
            if ![&b" "[..], b"quele", b"quela", b"quilo", b"s "].iter().any(|w| after.starts_with(w)) {
                grave.extend_from_slice(b"\xc3\xa0 ");
                i += 2;
                continue;
            }
        }
        grave.push(bytes[i]);
        i += 1;
    }
    tables()
        .altered_utf8
        .replace_all(&grave, |m: &regex::bytes::Captures| {
            m[0].iter().map(|&b| if b == b' ' { 0xa0 } else { b }).collect::<Vec<u8>>()
        })
        .into_owned()
}

/// ftfy's `utf-8-variants` codec where the bytes hold 0xED or 0xC0 (CESU-8 surrogate pairs, Java's
/// `C0 80` for U+0000), strict UTF-8 otherwise; `None` where they do not decode.
fn decode_utf8_variants(bytes: &[u8]) -> Option<String> {
    if !bytes.contains(&0xed) && !bytes.contains(&0xc0) {
        return String::from_utf8(bytes.to_vec()).ok();
    }
    let mut out = String::with_capacity(bytes.len());
    let mut start = 0;
    let mut i = 0;
    let flush = |out: &mut String, from: usize, to: usize| -> Option<()> {
        out.push_str(std::str::from_utf8(&bytes[from..to]).ok()?);
        Some(())
    };
    while i < bytes.len() {
        let b = |k: usize| bytes.get(i + k).copied().unwrap_or(0);
        if b(0) == 0xc0 && b(1) == 0x80 {
            flush(&mut out, start, i)?;
            out.push('\0');
            i += 2;
            start = i;
        } else if b(0) == 0xed
            && (0xa0..=0xaf).contains(&b(1))
            && (0x80..=0xbf).contains(&b(2))
            && b(3) == 0xed
            && (0xb0..=0xbf).contains(&b(4))
            && (0x80..=0xbf).contains(&b(5))
        {
            flush(&mut out, start, i)?;
            let high = (u32::from(b(1) & 0x0f) << 6) | u32::from(b(2) & 0x3f);
            let low = (u32::from(b(4) & 0x0f) << 6) | u32::from(b(5) & 0x3f);
            out.push(char::from_u32(0x10000 + (high << 10) + low)?);
            i += 6;
            start = i;
        } else {
            i += 1;
        }
    }
    flush(&mut out, start, bytes.len())?;
    Some(out)
}

/// ftfy's `decode_inconsistent_utf8`: runs that look like UTF-8 decoded as a one-byte codec, inside text
/// no codec can encode as a whole (`cafÃ© 東京`), each repaired on its own where it looks bad.
fn decode_inconsistent_utf8(text: &str, max_rounds: usize, depth: usize) -> String {
    let t = tables();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut previous: Option<char> = None;
    let mut iter = text.char_indices();
    while let Some((i, c)) = iter.next() {
        let starts_run = t.utf8_first.is_match(&text[i..i + c.len_utf8()])
            && !previous.is_some_and(|p| t.utf8_continuation_strict.is_match(p.encode_utf8(&mut [0; 4])));
        if let Some(run) = starts_run.then(|| t.utf8_run.find(&text[i..])).flatten() {
            let part = &text[i..i + run.end()];
            out.push_str(&text[copied..i]);
            if part.len() < text.len() && is_bad(part) {
                out.push_str(&fix_encoding_nested(part, max_rounds, depth + 1));
            } else {
                out.push_str(part);
            }
            copied = i + run.end();
            previous = part.chars().next_back();
            while iter.offset() < copied {
                iter.next();
            }
            continue;
        }
        previous = Some(c);
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_load_and_codecs_round_trip() {
        let t = tables();
        assert_eq!(t.charmaps.len(), 10);
        for charmap in &t.charmaps {
            let all: String = charmap.decode.iter().collect();
            assert_eq!(charmap.encode(&all), (0..=255u8).collect::<Vec<_>>(), "{}", charmap.name);
        }
    }

    #[test]
    fn repairs_as_ftfy() {
        // Each checked against ftfy 6.3.1's fix_encoding.
        let cases = [
            ("cafÃ©", "café"),
            ("â€œquotedâ€\u{9d}", "“quoted”"),
            ("The Mona Lisa doesnÃƒÂ¢Ã¢â€šÂ¬Ã¢â€žÂ¢t have eyebrows.", "The Mona Lisa doesn’t have eyebrows."),
            ("don\u{92}t", "don’t"),
            ("caf\u{e9} na\u{ef}ve", "caf\u{e9} na\u{ef}ve"),
            ("cafÃ© 東京", "café 東京"),
            ("Ã perturber la rÃ©flexion", "à perturber la réflexion"),
        ];
        for (text, expected) in cases {
            assert_eq!(fix_encoding(text, 16), expected, "{text:?}");
        }
    }
}
