//! The flags' value parsers: each accepts what the setting allows and says why it refuses the rest (clap
//! prefixes the flag's name).

use crate::pretrain::{PretrainError, Result};
use hopfield::layers::Retrieval;

pub(crate) fn caption_field(s: &str) -> std::result::Result<String, String> {
    s.parse::<crate::data::wds::CaptionField>().map(|_| s.to_string())
}

pub(crate) fn parse_f64(s: &str) -> std::result::Result<f64, String> {
    let v = s.parse::<f64>().map_err(|e| format!("{e}"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("must be finite, got {v}"))
    }
}

pub(crate) fn non_negative(s: &str) -> std::result::Result<f64, String> {
    parse_f64(s).and_then(|v| if v >= 0.0 { Ok(v) } else { Err(format!("must be ≥ 0, got {v}")) })
}

pub(crate) fn unit_interval(s: &str) -> std::result::Result<f64, String> {
    parse_f64(s).and_then(|v| if (0.0..1.0).contains(&v) { Ok(v) } else { Err(format!("must lie in [0, 1), got {v}")) })
}

/// `--retrieval`: any retrieval but a learnable entmax α (CLOOB's retrieval has no parameters).
pub(crate) fn fixed_retrieval(s: &str) -> std::result::Result<Retrieval, String> {
    let r: Retrieval = s.parse()?;
    if let Retrieval::Entmax { learnable: true, .. } = r {
        return Err("a learnable α needs a parameter, and CLOOB's retrieval has none: use entmax:ALPHA".into());
    }
    Ok(r)
}

pub(crate) fn positive(s: &str) -> std::result::Result<f64, String> {
    parse_f64(s).and_then(|v| if v > 0.0 { Ok(v) } else { Err(format!("must be > 0, got {v}")) })
}

pub(crate) fn inv_tau(s: &str) -> std::result::Result<f64, String> {
    parse_f64(s).and_then(|v| {
        if (1.0..=100.0).contains(&v) {
            Ok(v)
        } else {
            Err(format!("must lie in [1, 100], got {v}"))
        }
    })
}

pub(crate) fn clip_norm(s: &str) -> std::result::Result<Option<f64>, String> {
    non_negative(s).map(|v| (v > 0.0).then_some(v))
}

pub(crate) fn at_least_one<T: std::str::FromStr<Err = std::num::ParseIntError> + Default + PartialEq>(
    s: &str,
) -> std::result::Result<T, String> {
    match s.parse::<T>() {
        Ok(n) if n == T::default() => Err("must be at least 1, got 0".into()),
        r => r.map_err(|e| format!("{e}")),
    }
}

/// Parse a count of at least 2 (`--batch-size`, `--eval-size`).
pub fn at_least_two(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n < 2 => Err(format!("must be at least 2, got {n}")),
        r => r.map_err(|e| format!("{e}")),
    }
}

/// Parse a CSV separator: one character, or `\t` / `tab` for a tab.
pub fn separator(s: &str) -> std::result::Result<char, String> {
    let mut chars = s.chars();
    match (s, chars.next(), chars.next()) {
        ("\\t" | "tab", _, _) => Ok('\t'),
        (_, Some(c), None) => Ok(c),
        _ => Err(format!("must be one character (or `\\t`), got {s:?}")),
    }
}

/// A parser of a count in `lo..=hi` (a size flag bounded before anything is allocated).
pub(crate) fn count_in(lo: usize, hi: usize) -> impl Fn(&str) -> std::result::Result<usize, String> + Clone {
    move |s: &str| match s.parse::<usize>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        Ok(n) => Err(format!("must lie in [{lo}, {hi}], got {n}")),
        Err(e) => Err(format!("{e}")),
    }
}

/// An error naming `--flag` when `bytes` (for its `value`) exceed half of this machine's memory.
pub(crate) fn fits_in_memory(flag: &str, value: usize, bytes: u64) -> Result<()> {
    let total = physical_memory();
    if bytes > total / 2 {
        return Err(PretrainError(format!(
            "--{flag} {value} needs at least {:.1} GB for its images, more than half of this machine's {:.1} GB",
            bytes as f64 / 1e9,
            total as f64 / 1e9
        )));
    }
    Ok(())
}

/// This machine's memory in bytes (`u64::MAX` where it cannot be read).
fn physical_memory() -> u64 {
    // SAFETY: sysconf reads a system constant; a negative return is an error, handled.
    let (pages, size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    if pages > 0 && size > 0 {
        (pages as u64).saturating_mul(size as u64)
    } else {
        u64::MAX
    }
}
