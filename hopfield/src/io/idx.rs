//! IDX files, the format of MNIST and Fashion-MNIST (`*-images-idx3-ubyte`, `*-labels-idx1-ubyte`), plain
//! or gzipped.
//!
//! An IDX file is a 4-byte magic number (two zero bytes, the element type, the rank), one big-endian `u32`
//! per dimension, then the elements in row-major order. Only unsigned bytes (type `0x08`) are read: the
//! type of every MNIST-format image and label file.
//!
//! Errors are [`HopfieldError::Io`] naming the file; a file whose bytes are not a complete IDX array of the
//! expected rank has the source kind [`std::io::ErrorKind::InvalidData`], as a corrupt gzip stream has from
//! flate2 (a truncated one: `UnexpectedEof`).

use crate::error::{HopfieldError, Result};
use flate2::read::MultiGzDecoder;
use std::io::{Error, ErrorKind, Read};
use std::path::Path;

/// The element type code of unsigned bytes.
const UBYTE: u8 = 0x08;

/// An unsigned-byte array read from an IDX file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first (`[images, rows, cols]`, `[labels]`).
    pub dims: Vec<usize>,
    /// Elements in row-major order; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

/// Read an unsigned-byte IDX file of `rank` dimensions, gzipped or not (told apart by the gzip magic bytes,
/// not by the name).
pub fn read_idx(path: impl AsRef<Path>, rank: usize) -> Result<IdxArray> {
    let path = path.as_ref();
    let fail = |source| HopfieldError::Io { op: "read_idx", path: path.display().to_string(), source };
    let mut bytes = std::fs::read(path).map_err(fail)?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        MultiGzDecoder::new(&bytes[..]).read_to_end(&mut plain).map_err(fail)?;
        bytes = plain;
    }
    decode_idx(bytes, rank).map_err(|reason| fail(Error::new(ErrorKind::InvalidData, reason)))
}

/// The array in the (decompressed) bytes of an IDX file, or what is wrong with them.
fn decode_idx(mut bytes: Vec<u8>, rank: usize) -> std::result::Result<IdxArray, String> {
    let header = 4 + 4 * rank;
    if bytes.len() < 4 || bytes[..3] != [0, 0, UBYTE] || bytes[3] as usize != rank {
        let magic = &bytes[..bytes.len().min(4)];
        return Err(format!("not an unsigned-byte IDX file of rank {rank} (magic {magic:02x?})"));
    }
    if bytes.len() < header {
        return Err(format!("truncated header: {} bytes, rank {rank} needs {header}", bytes.len()));
    }
    let dims: Vec<usize> =
        bytes[4..header].chunks_exact(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize).collect();
    let n = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    let found = bytes.len() - header;
    if n != Some(found) {
        let need = n.map_or("more than usize::MAX".to_string(), |n| n.to_string());
        return Err(format!("the header's dimensions {dims:?} need {need} bytes of data, the file has {found}"));
    }
    bytes.drain(..header);
    Ok(IdxArray { dims, data: bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;
    use std::path::PathBuf;

    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0, 0, UBYTE, dims.len() as u8];
        dims.iter().for_each(|d| bytes.extend_from_slice(&d.to_be_bytes()));
        bytes.extend_from_slice(data);
        bytes
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("hopfield-idx-{}-{name}", std::process::id()))
    }

    /// The message of the error reading `bytes` as rank `rank`, which must name the file.
    fn error_of(name: &str, bytes: &[u8], rank: usize) -> (ErrorKind, String) {
        let path = temp(name);
        std::fs::write(&path, bytes).unwrap();
        let err = read_idx(&path, rank).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "`{msg}` does not name the file");
        match err {
            HopfieldError::Io { source, .. } => (source.kind(), msg),
            other => panic!("expected an Io error, got {other:?}"),
        }
    }

    #[test]
    fn reads_plain_and_gzipped_files_alike() {
        // Two 2×3 images whose bytes count up, so any misplaced byte shows.
        let data: Vec<u8> = (0..12).collect();
        let bytes = idx_bytes(&[2, 2, 3], &data);
        let want = IdxArray { dims: vec![2, 2, 3], data: data.clone() };
        for (name, file) in [("plain", bytes.clone()), ("gz", gzip(&bytes))] {
            let path = temp(name);
            std::fs::write(&path, file).unwrap();
            assert_eq!(read_idx(&path, 3).unwrap(), want, "{name}");
            std::fs::remove_file(&path).unwrap();
        }
        // Rank 1 (labels), and an empty array.
        assert_eq!(decode_idx(idx_bytes(&[3], &[7, 8, 9]), 1).unwrap().data, [7, 8, 9]);
        assert_eq!(decode_idx(idx_bytes(&[0, 28, 28], &[]), 3).unwrap().dims, [0, 28, 28]);
    }

    #[test]
    fn wrong_or_incomplete_files_are_errors_naming_the_file() {
        let good = idx_bytes(&[2, 2, 3], &(0..12).collect::<Vec<u8>>());
        let (kind, msg) = error_of("short-data", &good[..good.len() - 1], 3);
        assert_eq!(kind, ErrorKind::InvalidData);
        assert!(msg.contains("[2, 2, 3] need 12 bytes of data, the file has 11"), "{msg}");
        let (_, msg) = error_of("long-data", &[&good[..], &[0]].concat(), 3);
        assert!(msg.contains("the file has 13"), "{msg}");
        let (_, msg) = error_of("short-header", &good[..9], 3);
        assert!(msg.contains("truncated header"), "{msg}");
        let (_, msg) = error_of("rank", &good, 1);
        assert!(msg.contains("not an unsigned-byte IDX file of rank 1"), "{msg}");
        let (_, msg) = error_of("text", b"not idx", 3);
        assert!(msg.contains("not an unsigned-byte IDX"), "{msg}");
        let (_, msg) = error_of("empty", b"", 1);
        assert!(msg.contains("magic []"), "{msg}");
        let float = [&[0u8, 0, 0x0d, 1, 0, 0, 0, 1][..], &1f32.to_be_bytes()].concat();
        assert!(error_of("float", &float, 1).1.contains("magic [00, 00, 0d, 01]"));
        // A cut gzip stream, and gzip magic over garbage.
        let gz = gzip(&good);
        let (kind, msg) = error_of("cut-gz", &gz[..gz.len() / 2], 3);
        assert_eq!(kind, ErrorKind::UnexpectedEof, "{msg}");
        let (kind, _) = error_of("bad-gz", &[0x1f, 0x8b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 3);
        assert_ne!(kind, ErrorKind::NotFound);
        // A missing file.
        let missing = temp("missing");
        let err = read_idx(&missing, 1).unwrap_err();
        assert!(matches!(&err, HopfieldError::Io { source, .. } if source.kind() == ErrorKind::NotFound));
        assert!(err.to_string().contains(&missing.display().to_string()));
    }
}
