//! Refuse a pickle that names a Python global a weights file does not need (`os.system`, `builtins.eval`,
//! any class): every opcode of the pickle is walked (nothing is executed or built) and every `GLOBAL`,
//! `INST` and `STACK_GLOBAL` must name one of [`ALLOWED`].
//!
//! `STACK_GLOBAL` takes its module and name from the stack. They are known only when the two opcodes
//! before it (memo stores and frames aside, which leave the stack alone) pushed them: a string, or a memo
//! entry stored from a string that way. That is how Python's pickler writes them; any other arrangement
//! cannot be checked and is refused.

use crate::pretrain::{err, PretrainError, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// The largest `data.pkl` read (the pickle holds names, shapes and offsets, not tensor data).
pub const MAX_PICKLE: u64 = 100 * 1024 * 1024;

/// The globals a PyTorch state-dict pickle needs: the tensor rebuilders, the typed storages, `OrderedDict`.
pub const ALLOWED: &[(&str, &str)] = &[
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "DoubleStorage"),
    ("torch", "FloatStorage"),
    ("torch", "HalfStorage"),
    ("torch", "BFloat16Storage"),
    ("torch", "LongStorage"),
    ("torch", "IntStorage"),
    ("torch", "ShortStorage"),
    ("torch", "CharStorage"),
    ("torch", "ByteStorage"),
    ("torch", "BoolStorage"),
];

fn refuse(what: &str, why: String) -> PretrainError {
    PretrainError(format!(
        "refusing {what}: {why}; a weights file needs only tensor rebuilds and OrderedDict (nothing was executed)"
    ))
}

/// Check the `data.pkl` of PyTorch zip checkpoint `path` ([`check_pickle`]).
pub fn check_zip(path: &Path) -> Result<()> {
    let what = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open {what}"), e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| err(format!("{what} is not a readable PyTorch zip checkpoint (truncated?)"), e))?;
    let names: Vec<String> =
        zip.file_names().filter_map(|n| n.ok()).filter(|n| n.ends_with("data.pkl")).map(|n| n.into_owned()).collect();
    let [name] = names.as_slice() else {
        return Err(PretrainError(format!("{what}: expected one data.pkl in the zip, found {}", names.len())));
    };
    let mut entry = zip.by_name(name).map_err(|e| err(&what, e))?;
    if entry.size() > MAX_PICKLE {
        return Err(PretrainError(format!("{what}: {name} of {} bytes is too large for a state dict", entry.size())));
    }
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    (&mut entry).take(MAX_PICKLE + 1).read_to_end(&mut bytes).map_err(|e| err(format!("{what}: {name}"), e))?;
    check_pickle(&bytes).map_err(|why| refuse(&what, why))
}

/// Walk `bytes` opcode by opcode; an error says which global (or which malformed opcode) was found.
pub fn check_pickle(bytes: &[u8]) -> std::result::Result<(), String> {
    let mut r = Cursor { b: bytes, at: 0 };
    // Values pushed by the opcodes just before this one (the top of the stack, last on top): a string
    // when known. Emptied by any opcode that is not a push, a memo store or a frame.
    let mut top: Vec<Option<String>> = Vec::new();
    let mut memo: HashMap<u64, Option<String>> = HashMap::new();
    let mut memo_len = 0u64;
    let check = |module: &str, name: &str| {
        if ALLOWED.iter().any(|&(m, n)| m == module && n == name) {
            Ok(())
        } else {
            Err(format!("its pickle references the Python global {module}.{name}"))
        }
    };
    loop {
        let op = r.byte()?;
        let pushed: Option<Option<String>> = match op {
            b'.' => return Ok(()),
            // Strings: SHORT_BINUNICODE, BINUNICODE, BINUNICODE8, SHORT_BINSTRING, BINSTRING, UNICODE, STRING.
            0x8c | b'U' => Some(Some(r.text(1)?)),
            b'X' | b'T' => Some(Some(r.text(4)?)),
            0x8d => Some(Some(r.text(8)?)),
            b'V' | b'S' => Some(Some(r.line()?.trim_matches(['\'', '"']).to_string())),
            // Memo reads: BINGET, LONG_BINGET, GET.
            b'h' => Some(memo.get(&r.uint(1)?).cloned().flatten()),
            b'j' => Some(memo.get(&r.uint(4)?).cloned().flatten()),
            b'g' => Some(memo.get(&r.line()?.parse().map_err(|_| "bad GET index")?).cloned().flatten()),
            // Memo stores: BINPUT, LONG_BINPUT, PUT, MEMOIZE (the top is unknown when `top` is empty).
            b'q' | b'r' | b'p' | 0x94 => {
                let idx = match op {
                    b'q' => r.uint(1)?,
                    b'r' => r.uint(4)?,
                    b'p' => r.line()?.parse().map_err(|_| "bad PUT index")?,
                    _ => {
                        memo_len += 1;
                        memo_len - 1
                    }
                };
                memo.insert(idx, top.last().cloned().flatten());
                continue;
            }
            0x95 => {
                r.skip(8)?; // FRAME
                continue;
            }
            b'c' | b'i' => {
                let (module, name) = (r.line()?, r.line()?);
                check(&module, &name)?;
                Some(None)
            }
            0x93 => {
                let (name, module) = (top.pop().flatten(), top.pop().flatten());
                match (module, name) {
                    (Some(m), Some(n)) => check(&m, &n)?,
                    _ => return Err("its pickle builds a global (STACK_GLOBAL) from values it cannot check".into()),
                }
                top.clear();
                Some(None)
            }
            0x82..=0x84 => return Err("its pickle uses the extension registry (EXT1/2/4)".into()),
            _ => {
                skip_args(&mut r, op)?;
                None
            }
        };
        match pushed {
            Some(v) => top.push(v),
            None => top.clear(),
        }
    }
}

/// Skip the arguments of an opcode that neither pushes a string nor names a global.
fn skip_args(r: &mut Cursor, op: u8) -> std::result::Result<(), String> {
    match op {
        // BININT1, PROTO; BININT2; BININT, BINFLOAT.
        b'K' | 0x80 => r.skip(1),
        b'M' => r.skip(2),
        b'J' => r.skip(4),
        b'G' => r.skip(8),
        // LONG1, SHORT_BINBYTES; LONG4, BINBYTES; BINBYTES8, BYTEARRAY8.
        0x8a | b'C' => r.sized(1),
        0x8b | b'B' => r.sized(4),
        0x8e | 0x96 => r.sized(8),
        // INT, LONG, FLOAT, PERSID: a line.
        b'I' | b'L' | b'F' | b'P' => r.line().map(|_| ()),
        // No arguments.
        b'('
        | b'0'
        | b'1'
        | b'2'
        | b'N'
        | b'R'
        | b'a'
        | b'b'
        | b'd'
        | b'}'
        | b'e'
        | b'l'
        | b']'
        | b'o'
        | b's'
        | b't'
        | b')'
        | b'u'
        | b'Q'
        | 0x81
        | 0x85..=0x89
        | 0x8f..=0x92
        | 0x97
        | 0x98 => Ok(()),
        other => Err(format!("its pickle holds the unknown opcode 0x{other:02x}")),
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or("its pickle is truncated")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn byte(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn skip(&mut self, n: usize) -> std::result::Result<(), String> {
        self.take(n).map(|_| ())
    }
    fn uint(&mut self, n: usize) -> std::result::Result<u64, String> {
        Ok(self.take(n)?.iter().rev().fold(0u64, |acc, &b| (acc << 8) | b as u64))
    }
    fn sized(&mut self, n: usize) -> std::result::Result<(), String> {
        let len = self.uint(n)?;
        self.skip(usize::try_from(len).map_err(|_| "its pickle is truncated")?)
    }
    fn text(&mut self, n: usize) -> std::result::Result<String, String> {
        let len = usize::try_from(self.uint(n)?).map_err(|_| "its pickle is truncated")?;
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }
    fn line(&mut self) -> std::result::Result<String, String> {
        let rest = &self.b[self.at..];
        let end = rest.iter().position(|&c| c == b'\n').ok_or("its pickle is truncated")?;
        self.at += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
}
