//! open_clip's text cleaning before the BPE: the part of `ftfy.fix_text` the captions need, `html.unescape`,
//! whitespace collapsed, lowercased.

use unicode_normalization::UnicodeNormalization;

/// open_clip's `_clean_lower`: `whitespace_clean(basic_clean(text)).lower()`, where `basic_clean` is
/// `ftfy.fix_text` then `html.unescape` twice.
///
/// Of `ftfy.fix_text` (6.x defaults) this reproduces, iterated to a fixed point as ftfy does: HTML entity
/// decoding when the text has no `<`, removal of ANSI terminal escapes and of control characters, Latin
/// ligatures (`ﬁ` → `fi`), full- and half-width forms (`ＡＢＣ` → `ABC`), curly quotes, and NFC
/// normalisation. Not reproduced: ftfy's repair of mojibake (text decoded with the wrong codec, e.g.
/// `cafÃ©`), which is left as it is. HTML entities: numeric references, and the named ones of HTML 4's
/// Latin-1 and special sets (`&amp;`, `&eacute;`, `&mdash;`, …); other HTML5 names stay as text.
///
/// ftfy's loop runs until nothing changes, one round per level of nested escapes (`&amp;amp;…`), so a text of
/// `n` such levels costs `n` rounds over the whole text; here at most [`MAX_ROUNDS`] rounds are run, which
/// keeps the cost linear in the text's length. A text nested deeper keeps its remaining escapes as text
/// (less the two levels `html.unescape` takes off after the loop).
pub fn clean(text: &str) -> String {
    clean_counting_rounds(text).0
}

/// Rounds of ftfy's fixes [`clean`] runs at most: captions escaped a few times over need 2–6.
pub const MAX_ROUNDS: usize = 16;

/// [`clean`] and the number of rounds of ftfy's fixes it ran.
fn clean_counting_rounds(text: &str) -> (String, usize) {
    // ftfy decides once, before its loop, whether the text looks like HTML.
    let unescape = !text.contains('<');
    let mut t = text.to_string();
    let mut rounds = 0;
    while rounds < MAX_ROUNDS {
        rounds += 1;
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
    (words.join(" ").to_lowercase(), rounds)
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
    // Only as far as the longest name: searching the whole rest for `;` would make a text of many `&` and no
    // `;` cost the square of its length.
    let end = body.bytes().take(LONGEST_ENTITY + 1).position(|b| b == b';')?;
    let name = &body[..end];
    ENTITIES.iter().find(|(n, _)| *n == name).map(|&(_, c)| (c, end + 2))
}

/// Bytes of the longest name in [`ENTITIES`].
const LONGEST_ENTITY: usize = 6;

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
    fn entity_names_are_looked_up_only_as_far_as_the_longest() {
        assert_eq!(LONGEST_ENTITY, ENTITIES.iter().map(|(n, _)| n.len()).max().unwrap());
        assert_eq!(decode_entity("&hellip;", false), Some(('…', 8)));
        assert_eq!(decode_entity("&helliptic;", false), None);
        assert_eq!(decode_entity(&format!("&{};", "a".repeat(1000)), false), None);
        assert_eq!(clean("&& &amp;&amp; &eacute x;"), "&& && &eacute x;");
    }
}
