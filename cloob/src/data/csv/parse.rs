//! Line-based reading of open_clip CSV text: one physical line is one row.
//!
//! open_clip reads its CSV files with pandas, where a field opened with `"` runs until the matching `"`,
//! across line ends. In captioned-image data a caption that spans lines is almost always a stray quote
//! (`"5 inch screen` …), and following it silently merges the rest of the file into one caption. Here a
//! line whose quote is never closed is a bad row with its line number, and the next line is read as the
//! next row. Within a line, quoting is the `csv` crate's (RFC 4180 with its lenient rules: `""` inside
//! a quoted field is a quote, a quote inside an unquoted field is a character).
//!
//! Blank lines are skipped (as pandas does); every other line after the header is a data line, usable or
//! not: the count of data lines is the file's number of rows.

use super::super::DataError;
use std::io::BufRead;

/// The longest line read, in bytes; a longer line is a bad row and is skipped to its end.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// How a CSV file is laid out: the separator and the names of the image-path and caption columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Column with the image path.
    pub img_key: String,
    /// Column with the caption.
    pub caption_key: String,
    /// Field separator.
    pub separator: u8,
}

/// A usable row: the image path (trimmed, as written in the file) and the caption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    /// Image path as written (relative paths are resolved by the caller).
    pub image: String,
    /// The caption, as written.
    pub caption: String,
}

/// One data line: its 1-based line number in the file and its pair, or why it is unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Line number in the file (the header is line 1 when it is the first line).
    pub line: u64,
    /// Byte offset of the line's first byte in the input.
    pub offset: u64,
    /// The pair, or the reason the line is a bad row.
    pub row: Result<Pair, String>,
}

/// The data lines of a CSV text, after its header (see [`rows`]).
#[derive(Debug)]
pub struct Rows<R> {
    input: R,
    columns: Columns,
    line: u64,
    offset: u64,
    buf: Vec<u8>,
    failed: bool,
}

/// Where the two columns of a file are, from its header: parses one data line on its own (a row read
/// again by its byte offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Columns {
    separator: u8,
    image: usize,
    caption: usize,
    header_width: usize,
}

/// Read the header of `input` (its first non-blank line) and find the two columns of `layout`; iterate
/// the result for the data lines. `source` names the input in errors.
pub fn rows<R: BufRead>(mut input: R, layout: &Layout, source: &str) -> Result<Rows<R>, DataError> {
    let mut buf = Vec::new();
    let (mut line, mut offset) = (0u64, 0u64);
    let header = loop {
        line += 1;
        match read_line(&mut input, &mut buf) {
            Err(e) => return Err(DataError(format!("{source}: cannot read the header: {e}"))),
            Ok(None) => return Err(DataError(format!("{source}: the file is empty (no header line)"))),
            Ok(Some((false, _))) => {
                return Err(DataError(format!("{source}: the header line is longer than {MAX_LINE_BYTES} bytes")))
            }
            Ok(Some((true, n))) if is_blank(&buf) => offset += n,
            Ok(Some((true, n))) => {
                offset += n;
                break buf.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&buf).to_vec();
            }
        }
    };
    let names = fields(&header, layout.separator)
        .map_err(|e| DataError(format!("{source}: the header (line {line}) is unreadable: {e}")))?;
    let find = |key: &str| {
        names.iter().position(|h| h.trim() == key).ok_or_else(|| {
            DataError(format!(
                "{source}: no column {key:?} (columns: {names:?}; set --csv-img-key / --csv-caption-key / \
                 --csv-separator)"
            ))
        })
    };
    let columns = Columns {
        separator: layout.separator,
        image: find(&layout.img_key)?,
        caption: find(&layout.caption_key)?,
        header_width: names.len(),
    };
    Ok(Rows { input, columns, line, offset, buf, failed: false })
}

impl<R: BufRead> Iterator for Rows<R> {
    type Item = Line;
    fn next(&mut self) -> Option<Line> {
        while !self.failed {
            self.line += 1;
            let (line, offset) = (self.line, self.offset);
            let complete = match read_line(&mut self.input, &mut self.buf) {
                Ok(None) => return None,
                Err(e) => {
                    // A read error ends the file here: one bad row says where and why.
                    self.failed = true;
                    let row = Err(format!("read error, the rest of the file is skipped: {e}"));
                    return Some(Line { line, offset, row });
                }
                Ok(Some((c, n))) => {
                    self.offset += n;
                    c
                }
            };
            if !complete {
                return Some(Line { line, offset, row: Err(format!("longer than {MAX_LINE_BYTES} bytes")) });
            }
            if is_blank(&self.buf) {
                continue;
            }
            return Some(Line { line, offset, row: self.columns.pair(&self.buf) });
        }
        None
    }
}

impl<R> Rows<R> {
    /// The file's columns, to parse a line read again later.
    pub fn columns(&self) -> Columns {
        self.columns
    }
}

impl Columns {
    /// The pair of one data line (without its line end), or why it is a bad row.
    pub fn pair(&self, line: &[u8]) -> Result<Pair, String> {
        let fields = fields(line, self.separator)?;
        match (fields.get(self.image), fields.get(self.caption)) {
            (Some(image), Some(caption)) => {
                let image = image.trim();
                if image.is_empty() {
                    Err("empty image path".into())
                } else if caption.trim().is_empty() {
                    Err("empty caption".into())
                } else {
                    Ok(Pair { image: image.to_string(), caption: caption.clone() })
                }
            }
            _ => Err(format!("{} fields, the header has {}", fields.len(), self.header_width)),
        }
    }
}

/// Read one line into `buf` without its `\n` / `\r\n`: `None` at the end of the input, else whether the
/// line is complete (`false` when it is longer than [`MAX_LINE_BYTES`]: then `buf` holds its start and the
/// rest is skipped) and the bytes consumed, line end included.
pub fn read_line<R: BufRead>(input: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Option<(bool, u64)>> {
    buf.clear();
    let n = std::io::Read::take(&mut *input, MAX_LINE_BYTES as u64 + 1).read_until(b'\n', buf)? as u64;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Some((true, n)));
    }
    if buf.len() <= MAX_LINE_BYTES {
        return Ok(Some((true, n))); // the last line, without a line end
    }
    // Skip to the end of the over-long line.
    let mut skipped = 0u64;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(p) => {
                input.consume(p + 1);
                skipped += p as u64 + 1;
                break;
            }
            None => {
                let len = chunk.len();
                input.consume(len);
                skipped += len as u64;
            }
        }
    }
    Ok(Some((false, n + skipped)))
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace())
}

/// The fields of one line, or why it cannot be read.
fn fields(line: &[u8], separator: u8) -> Result<Vec<String>, String> {
    if !line.contains(&b'"') {
        // The common case, on every row of every epoch: without a quote, the csv crate's fields are the
        // pieces between separators (no escape or comment character is set), so no reader is built.
        return line.split(|&b| b == separator).map(utf8).collect();
    }
    quoted_fields(line, separator)
}

fn utf8(field: &[u8]) -> Result<String, String> {
    String::from_utf8(field.to_vec()).map_err(|_| "not valid UTF-8".to_string())
}

/// [`fields`] of a line with quotes, through the `csv` crate.
fn quoted_fields(line: &[u8], separator: u8) -> Result<Vec<String>, String> {
    if quote_left_open(line, separator) {
        return Err("a quote opened on this line is never closed (a caption cannot span lines)".into());
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(separator)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(line);
    let mut record = csv::ByteRecord::new();
    reader.read_byte_record(&mut record).map_err(|e| e.to_string())?;
    record.iter().map(utf8).collect()
}

/// Whether a field of `line` opens a quote that the line never closes, by the `csv` crate's rules: a
/// quote opens a quoted field only as its first byte, `""` inside it is a quote, and a lone quote ends it.
fn quote_left_open(line: &[u8], separator: u8) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut state = State::FieldStart;
    for &b in line {
        state = match (state, b) {
            (State::FieldStart | State::Unquoted | State::QuoteInQuoted, b) if b == separator => State::FieldStart,
            (State::FieldStart, b'"') => State::Quoted,
            (State::Quoted, b'"') => State::QuoteInQuoted,
            (State::QuoteInQuoted, b'"') => State::Quoted,
            (State::Quoted, _) => State::Quoted,
            _ => State::Unquoted,
        };
    }
    state == State::Quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(sep: u8) -> Layout {
        Layout { img_key: "filepath".into(), caption_key: "title".into(), separator: sep }
    }

    fn parse(text: &str, sep: u8) -> Vec<(u64, Result<(String, String), String>)> {
        rows(text.as_bytes(), &layout(sep), "t.csv")
            .unwrap()
            .map(|l| (l.line, l.row.map(|p| (p.image, p.caption))))
            .collect()
    }

    fn ok(image: &str, caption: &str) -> Result<(String, String), String> {
        Ok((image.into(), caption.into()))
    }

    #[test]
    fn an_unclosed_quote_is_one_bad_row_and_the_next_line_is_read() {
        let text = "filepath\ttitle\na.png\t\"5 inch screen\nb.png\ta \"quoted\" word\nc.png\t\"closed\" then more\n";
        let got = parse(text, b'\t');
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].0, 2);
        assert!(got[0].1.as_ref().unwrap_err().contains("never closed"), "{got:?}");
        assert_eq!(got[1], (3, ok("b.png", "a \"quoted\" word")));
        assert_eq!(got[2], (4, ok("c.png", "closed then more")));
    }

    #[test]
    fn quoting_within_a_line_follows_the_csv_crate() {
        let text = "title,filepath\n\"a, b\",x.png\n\"say \"\"hi\"\"\",y.png\n";
        assert_eq!(parse(text, b','), [(2, ok("x.png", "a, b")), (3, ok("y.png", "say \"hi\""))]);
        for (line, open) in [
            (&b"\"abc"[..], true),
            (b"\"a\"\"b", true),
            (b"\"a\"\"b\"", false),
            (b"x,\"a,b", true),
            (b"x\"y,z", false),
            (b" \"a", false),
            (b"\"a\"x\"", false),
        ] {
            assert_eq!(quote_left_open(line, b','), open, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn a_line_without_quotes_splits_as_the_csv_crate_splits_it() {
        let lines: [&[u8]; 7] = [b"a\tb", b"\t\t", b"a,b\tc", b" x \t y ", b"only", b"a\tb\t", b"caf\xc3\xa9\t\r"];
        for line in lines {
            for sep in [b'\t', b','] {
                assert_eq!(fields(line, sep), quoted_fields(line, sep), "{:?}", String::from_utf8_lossy(line));
            }
        }
        assert_eq!(fields(b"a\t\xe9", b'\t'), Err("not valid UTF-8".into()));
    }

    #[test]
    fn every_non_blank_line_is_a_row_and_bad_ones_say_why() {
        let text = "\u{feff}filepath\ttitle\r\n\r\na.png\tfine\r\n\t\tno path\nb.png\t   \nonly-one\n\nc.png\tlast";
        let got = parse(text, b'\t');
        let lines: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(lines, [3, 4, 5, 6, 8]);
        assert_eq!(got[0].1, ok("a.png", "fine"));
        assert_eq!(got[1].1, Err("empty image path".into()));
        assert_eq!(got[2].1, Err("empty caption".into()));
        assert_eq!(got[3].1, Err("1 fields, the header has 2".into()));
        assert_eq!(got[4].1, ok("c.png", "last"));
    }

    #[test]
    fn bad_bytes_and_long_lines_are_bad_rows_not_errors() {
        let mut text = b"filepath,title\n".to_vec();
        text.extend_from_slice(b"a.png,caf\xe9\n");
        text.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        text.extend_from_slice(b"\nb.png,after\n");
        let got: Vec<_> = rows(&text[..], &layout(b','), "t").unwrap().collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].row, Err("not valid UTF-8".into()));
        assert!(got[1].row.as_ref().unwrap_err().contains("longer than"));
        assert_eq!((got[2].line, got[2].row.clone()), (4, Ok(Pair { image: "b.png".into(), caption: "after".into() })));
    }

    #[test]
    fn header_errors_name_the_source() {
        let e = |text: &str| rows(text.as_bytes(), &layout(b','), "d.csv").unwrap_err().to_string();
        assert!(e("").contains("d.csv: the file is empty"));
        assert!(e("\n\n").contains("empty"));
        assert!(e("image,caption\n").contains("no column \"filepath\""));
        assert!(e("\"filepath,title\n").contains("never closed"));
    }
}
