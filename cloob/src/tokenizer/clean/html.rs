//! HTML character references, decoded as Python's `html.unescape` and as ftfy's `unescape_html`.
//!
//! Both read `html5_entities.tsv`, written by `scripts/fixtures/tokenizer_tables.py` from Python's own
//! `html.entities.html5`, `html._invalid_charrefs`, `html._invalid_codepoints` and ftfy's entity table.

use std::sync::OnceLock;

/// The tables of `html5_entities.tsv`, each sorted by its key for binary search.
struct EntityTables {
    /// `html.entities.html5`: names with their `;` where HTML5 requires one, and the legacy names without.
    html5: Vec<(Box<str>, Box<str>)>,
    /// The upper-case names ftfy decodes on top of HTML5's (`AMP;` → `&`), with their `;`.
    ftfy_upper: Vec<(Box<str>, Box<str>)>,
    /// `html._invalid_charrefs`: numeric references Python maps elsewhere (`&#146;` → `’`, `&#0;` → U+FFFD).
    charrefs: Vec<(u32, Box<str>)>,
    /// `html._invalid_codepoints`: numeric references Python deletes.
    dropped: Vec<u32>,
}

const ENTITIES_TSV: &str = include_str!("html5_entities.tsv");

/// Python's `html.unescape` looks names up to this many characters.
const LONGEST_NAME: usize = 32;

fn parse_points(field: &str) -> Box<str> {
    field
        .split(' ')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let code = u32::from_str_radix(p, 16).expect("html5_entities.tsv: a hex code point");
            char::from_u32(code).expect("html5_entities.tsv: a scalar value")
        })
        .collect::<String>()
        .into_boxed_str()
}

fn tables() -> &'static EntityTables {
    static TABLES: OnceLock<EntityTables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut t =
            EntityTables { html5: Vec::new(), ftfy_upper: Vec::new(), charrefs: Vec::new(), dropped: Vec::new() };
        for line in ENTITIES_TSV.lines().filter(|l| !l.starts_with('#')) {
            let fields: Vec<&str> = line.split('\t').collect();
            let number = || u32::from_str_radix(fields[1], 16).expect("html5_entities.tsv: a hex number");
            match fields[0] {
                "html5" => t.html5.push((fields[1].into(), parse_points(fields[2]))),
                "ftfy_upper" => t.ftfy_upper.push((fields[1].into(), parse_points(fields[2]))),
                "charref" => t.charrefs.push((number(), parse_points(fields[2]))),
                "dropped" => t.dropped.push(number()),
                other => panic!("html5_entities.tsv: unknown row kind {other:?}"),
            }
        }
        t.html5.sort();
        t.ftfy_upper.sort();
        t.charrefs.sort();
        t.dropped.sort();
        t
    })
}

fn lookup<'a>(table: &'a [(Box<str>, Box<str>)], name: &str) -> Option<&'a str> {
    table.binary_search_by(|(n, _)| (**n).cmp(name)).ok().map(|i| &*table[i].1)
}

/// The text of the numeric reference to `code` (`None` past any code point), as Python's
/// `html._replace_charref`.
fn numeric_reference(code: Option<u32>, out: &mut String) {
    let t = tables();
    let Some(code) = code else {
        out.push('\u{fffd}');
        return;
    };
    if let Ok(i) = t.charrefs.binary_search_by_key(&code, |(n, _)| *n) {
        out.push_str(&t.charrefs[i].1);
    } else if (0xd800..=0xdfff).contains(&code) || code > 0x10ffff {
        out.push('\u{fffd}');
    } else if t.dropped.binary_search(&code).is_err() {
        out.push(char::from_u32(code).expect("a scalar value: surrogates and larger excluded above"));
    }
}

/// Python's `html.unescape`: `&name;`, `&name` for the legacy names (the longest known prefix of up to 32
/// characters: `&copy2019` → `©2019`), `&#N;`/`&#xH;` with or without `;`.
pub(super) fn python_unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let body = &rest[at + 1..];
        let consumed = decode_reference(body, &mut out);
        if consumed == 0 {
            out.push('&');
        }
        rest = &body[consumed..];
    }
    out.push_str(rest);
    out
}

/// Decode the reference after a `&` into `out`, as Python's `_charref` pattern and `_replace_charref`;
/// the bytes of `body` it took, 0 where `_charref` does not match (`out` unchanged then).
fn decode_reference(body: &str, out: &mut String) -> usize {
    if let Some(num) = body.strip_prefix('#') {
        let (radix, skip) = if num.starts_with(['x', 'X']) { (16, 1) } else { (10, 0) };
        let digits = num[skip..]
            .bytes()
            .take_while(|b| if radix == 16 { b.is_ascii_hexdigit() } else { b.is_ascii_digit() })
            .count();
        if digits == 0 {
            return 0;
        }
        let end = 1 + skip + digits;
        // Any number of digits: past u32 it is past every code point, as Python's `int` says.
        numeric_reference(u32::from_str_radix(&body[1 + skip..end], radix).ok(), out);
        return end + usize::from(body[end..].starts_with(';'));
    }
    let name_end = body
        .char_indices()
        .take(LONGEST_NAME)
        .find(|&(_, c)| matches!(c, '\t' | '\n' | '\u{c}' | ' ' | '<' | '&' | '#' | ';'))
        .map_or_else(|| body.char_indices().nth(LONGEST_NAME).map_or(body.len(), |(i, _)| i), |(i, _)| i);
    if name_end == 0 {
        return 0;
    }
    let with_semicolon = name_end + usize::from(body[name_end..].starts_with(';'));
    let name = &body[..with_semicolon];
    let html5 = &tables().html5;
    if let Some(text) = lookup(html5, name) {
        out.push_str(text);
        return with_semicolon;
    }
    // The longest prefix of at least two characters that is a name (only `;`-less ones can be).
    let bounds: Vec<usize> = name.char_indices().map(|(i, _)| i).skip(2).collect();
    for &end in bounds.iter().rev() {
        if let Some(text) = lookup(html5, &name[..end]) {
            out.push_str(text);
            out.push_str(&name[end..]);
            return with_semicolon;
        }
    }
    out.push('&');
    out.push_str(name);
    with_semicolon
}

/// ftfy's `unescape_html`: references matching `&#?[0-9A-Za-z]{1,24};` only (the `;` required), named
/// ones from HTML5's table with ftfy's upper-case names added, numeric ones as Python decodes them.
pub(super) fn ftfy_unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let hash = usize::from(rest[1..].starts_with('#'));
        let run = rest[1 + hash..].bytes().take_while(u8::is_ascii_alphanumeric).count();
        let end = 1 + hash + run;
        if !(1..=24).contains(&run) || !rest[end..].starts_with(';') {
            out.push('&');
            rest = &rest[1..];
            continue;
        }
        let reference = &rest[..=end];
        if hash == 1 {
            let decoded = python_unescape(reference);
            out.push_str(if decoded.contains(';') { reference } else { &decoded });
        } else {
            let name = &reference[1..];
            let t = tables();
            out.push_str(lookup(&t.html5, name).or_else(|| lookup(&t.ftfy_upper, name)).unwrap_or(reference));
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_hold_python_s_counts() {
        let t = tables();
        // len(html.entities.html5), len(html._invalid_charrefs), len(html._invalid_codepoints).
        assert_eq!(t.html5.len(), 2231);
        assert_eq!(t.charrefs.len(), 34);
        assert_eq!(t.dropped.len(), 126);
        assert!(t.html5.iter().all(|(n, _)| n.chars().count() <= LONGEST_NAME));
    }

    #[test]
    fn python_unescape_cases() {
        // Each checked against Python 3.11's html.unescape.
        let cases = [
            ("It&#146;s &#133; &#128;", "It’s … €"),
            ("&AMP; &QUOT; &amp &nbsp;x &copy2019 &rarr; &hearts;", "& \" & \u{a0}x ©2019 → ♥"),
            ("&#0; &#x110000; &#xD800; &#1; &#65 &#x42;&#X43", "\u{fffd} \u{fffd} \u{fffd}  A BC"),
            ("&notit; &notin; &#; &#x; &; & &unknown;", "¬it; ∉ &#; &#x; &; & &unknown;"),
            ("&amp;amp; &lt&gt", "&amp; <>"),
            ("&#99999999999999999999;", "\u{fffd}"),
        ];
        for (text, expected) in cases {
            assert_eq!(python_unescape(text), expected, "{text:?}");
        }
    }

    #[test]
    fn ftfy_unescape_cases() {
        // Each checked against ftfy 6.3.1's fixes.unescape_html.
        let cases = [
            ("&AMP; &Eacute; &EACUTE; &amp &#146; &#65abc;", "& É É &amp ’ &#65abc;"),
            ("&amp;amp; &hearts; &#x1F600; &#0;", "&amp; ♥ 😀 \u{fffd}"),
        ];
        for (text, expected) in cases {
            assert_eq!(ftfy_unescape(text), expected, "{text:?}");
        }
        // The name is looked for only as far as 24 characters.
        let long = format!("&{};", "a".repeat(1000));
        assert_eq!(ftfy_unescape(&long), long);
    }
}
