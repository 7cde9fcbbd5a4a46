//! Shard patterns as webdataset (its `braceexpand`) and img2dataset write them: `data/{00000..00099}.tar`,
//! `{train,extra}/{0..9}.tar`.

/// The most names one pattern may expand to (a typo such as `{0..9999999999}` is an error, not a hang).
pub const MAX_NAMES: usize = 10_000_000;

/// Expand the braces of a shard pattern, left to right (the leftmost group varies slowest):
///
/// - `{00000..00099}`: a numeric range, both bounds included, zero-padded to the width of the first bound
///   when it has leading zeros (`{0..10}` is not padded); a range may count down (`{3..1}`);
/// - `{a,b,c}`: a list (items may be empty: `x{,.bak}`);
/// - several groups: their cartesian product.
///
/// Groups do not nest. An unclosed `{`, a stray `}`, an empty `{}`, a brace that is neither a list nor a
/// numeric range, or more than [`MAX_NAMES`] names is an error naming the pattern.
pub fn expand_braces(pattern: &str) -> Result<Vec<String>, String> {
    let bad = |why: &str| format!("shard pattern {pattern:?}: {why}");
    let mut names = vec![String::new()];
    let mut rest = pattern;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(bad("a '}' without its '{'"));
        }
        let body_and_more = &rest[open + 1..];
        let close = match body_and_more.find(['{', '}']) {
            Some(i) if body_and_more[i..].starts_with('}') => i,
            Some(_) => return Err(bad("nested braces are not supported")),
            None => return Err(bad("a '{' without its '}'")),
        };
        let alternatives = alternatives(&body_and_more[..close]).map_err(|why| bad(&why))?;
        if names.len().saturating_mul(alternatives.len()) > MAX_NAMES {
            return Err(bad(&format!("more than {MAX_NAMES} names")));
        }
        let literal = &rest[..open];
        names = names.iter().flat_map(|n| alternatives.iter().map(move |a| format!("{n}{literal}{a}"))).collect();
        rest = &body_and_more[close + 1..];
    }
    for n in &mut names {
        n.push_str(rest);
    }
    Ok(names)
}

/// The alternatives of one brace's body: a list or a numeric range.
fn alternatives(body: &str) -> Result<Vec<String>, String> {
    if body.contains(',') {
        return Ok(body.split(',').map(str::to_owned).collect());
    }
    let Some((a, b)) = body.split_once("..") else {
        return Err(format!("{{{body}}} is neither a list {{a,b}} nor a range {{0..9}}"));
    };
    let number = |s: &str| match s.bytes().all(|c| c.is_ascii_digit()) && !s.is_empty() {
        true => s.parse::<u64>().map_err(|e| format!("{{{body}}}: {s}: {e}")),
        false => Err(format!("{{{body}}}: a range's bounds are non-negative integers")),
    };
    let (lo, hi) = (number(a)?, number(b)?);
    let count = lo.abs_diff(hi);
    if count >= MAX_NAMES as u64 {
        return Err(format!("{{{body}}}: more than {MAX_NAMES} names"));
    }
    let width = if a.len() > 1 && a.starts_with('0') { a.len() } else { 0 };
    let at = |i: u64| if lo <= hi { lo + i } else { lo - i };
    Ok((0..=count).map(|i| format!("{:0width$}", at(i))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> Vec<String> {
        expand_braces(p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn ranges_lists_and_products() {
        assert_eq!(ok("data/shard.tar"), ["data/shard.tar"]);
        assert_eq!(ok("s/{00000..00003}.tar"), ["s/00000.tar", "s/00001.tar", "s/00002.tar", "s/00003.tar"]);
        assert_eq!(ok("{8..11}"), ["8", "9", "10", "11"]);
        assert_eq!(ok("{0..10}").last().unwrap(), "10");
        assert_eq!(ok("{0..10}")[0], "0", "a single 0 is not padding");
        assert_eq!(ok("{098..101}"), ["098", "099", "100", "101"]);
        assert_eq!(ok("{0998..1001}"), ["0998", "0999", "1000", "1001"]);
        assert_eq!(ok("{3..1}.tar"), ["3.tar", "2.tar", "1.tar"]);
        assert_eq!(ok("{5..5}"), ["5"]);
        assert_eq!(ok("{a,b,c}.tar"), ["a.tar", "b.tar", "c.tar"]);
        assert_eq!(ok("x{,.bak}"), ["x", "x.bak"]);
        assert_eq!(
            ok("{train,val}/{0..1}-{x,y}"),
            ["train/0-x", "train/0-y", "train/1-x", "train/1-y", "val/0-x", "val/0-y", "val/1-x", "val/1-y"]
        );
        assert_eq!(ok("/d/{000..099}.tar").len(), 100);
    }

    #[test]
    fn malformed_braces_are_errors_naming_the_pattern() {
        for p in [
            "s/{00000..00009.tar",
            "s/00000..00009}.tar",
            "{}",
            "{abc}",
            "{a..z}",
            "{1..}",
            "{-1..3}",
            "{{0..1}}",
            "{0..99999999999999999999}",
            "{0..9999999999}",
            "{0..9999}{0..9999}",
        ] {
            let e = expand_braces(p).expect_err(p);
            assert!(e.contains(&format!("{p:?}")), "{p}: {e}");
        }
    }
}
