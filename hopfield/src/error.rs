//! The one error type of the crate: every public function that takes user input returns it.

use thiserror::Error;

/// What went wrong, naming the operation or configuration field and the shapes involved.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HopfieldError {
    /// A configuration value is invalid; `field` names it as in the config struct.
    #[error("invalid config `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    /// Input data is out of range for the operation (a token id, a label, an index), whatever its shape.
    #[error("{op}: invalid input: {reason}")]
    Input { op: &'static str, reason: String },
    /// Tensor shapes do not fit the operation.
    #[error("{op}: shape mismatch: expected {expected}, got {got:?}")]
    Shape { op: &'static str, expected: String, got: Vec<usize> },
    /// A named parameter or tensor is missing from a file or state dict.
    #[error("{op}: missing tensor `{name}`")]
    Missing { op: &'static str, name: String },
    /// A file could not be read or written.
    #[error("{op}: {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its content is not what it should be.
    #[error("{op}: {reason}")]
    Format { op: &'static str, reason: String },
    /// A compute device is missing (no GPU, no driver, no adapter) or failed.
    #[error("{backend} device: {reason}")]
    Device { backend: &'static str, reason: String },
    /// Training produced a non-finite value.
    #[error("{op}: non-finite value: {detail}")]
    NonFinite { op: &'static str, detail: String },
}

/// Result with [`HopfieldError`].
pub type Result<T, E = HopfieldError> = std::result::Result<T, E>;

impl HopfieldError {
    /// Shorthand for a [`HopfieldError::Config`].
    pub fn config(field: &'static str, reason: impl Into<String>) -> Self {
        HopfieldError::Config { field, reason: reason.into() }
    }
    /// Shorthand for a [`HopfieldError::Input`].
    pub fn input(op: &'static str, reason: impl Into<String>) -> Self {
        HopfieldError::Input { op, reason: reason.into() }
    }
    /// Shorthand for a [`HopfieldError::Shape`].
    pub fn shape(op: &'static str, expected: impl Into<String>, got: &[usize]) -> Self {
        HopfieldError::Shape { op, expected: expected.into(), got: got.to_vec() }
    }
}
