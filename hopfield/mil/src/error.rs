//! The error of the MIL harness: bad input files name the file and the line, bad settings name the setting.

use thiserror::Error;

/// What went wrong while reading a data set, splitting it, or training on it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MilError {
    /// The file could not be opened or read, or (IDX files) its bytes are not the array its header
    /// announces; line 0: before the first line, or a binary file.
    #[error("{path}:{line}: {source}")]
    Io {
        path: String,
        line: usize,
        #[source]
        source: std::io::Error,
    },
    /// A whole file is refused (not a regular file, too large) or cannot be written.
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    /// A line of the file is not in the `label,bag_id,feature,...` layout.
    #[error("{path}:{line}: {reason}")]
    Parse { path: String, line: usize, reason: String },
    /// A setting (fold count, grid, model size) cannot work with this data.
    #[error("invalid setting `{what}`: {reason}")]
    Setting { what: &'static str, reason: String },
    /// The model or optimiser rejected its input.
    #[error(transparent)]
    Model(#[from] hopfield::HopfieldError),
}

/// Result with [`MilError`].
pub type Result<T, E = MilError> = std::result::Result<T, E>;

impl MilError {
    /// Shorthand for a [`MilError::Setting`].
    pub fn setting(what: &'static str, reason: impl Into<String>) -> Self {
        MilError::Setting { what, reason: reason.into() }
    }
}
