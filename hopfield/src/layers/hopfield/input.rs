//! Typed inputs and outputs of `Hopfield`: the three patterns, masks, and what comes back.

use crate::backend::Backend;
use crate::element::Element;
use crate::error::{HopfieldError, Result};

/// A mask given by the caller: boolean (`true` = masked, i.e. hidden) or additive (added to the scores;
/// `-inf` hides). Booleans may come from `u8` (non-zero = masked), which hflayers crashes on.
#[derive(Clone, Debug, PartialEq)]
pub enum Mask {
    /// `true` hides the position.
    Bool { values: Vec<bool>, shape: Vec<usize> },
    /// Added to the scaled scores.
    Additive { values: Vec<f64>, shape: Vec<usize> },
}

impl Mask {
    /// A boolean mask (`true` = masked).
    pub fn bool(values: Vec<bool>, shape: &[usize]) -> Self {
        Mask::Bool { values, shape: shape.to_vec() }
    }
    /// A `u8` mask (non-zero = masked).
    pub fn from_u8(values: &[u8], shape: &[usize]) -> Self {
        Mask::Bool { values: values.iter().map(|&v| v != 0).collect(), shape: shape.to_vec() }
    }
    /// An additive mask.
    pub fn additive(values: Vec<f64>, shape: &[usize]) -> Self {
        Mask::Additive { values, shape: shape.to_vec() }
    }
    /// The mask's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Mask::Bool { shape, .. } | Mask::Additive { shape, .. } => shape,
        }
    }
    /// Additive values (`0` / `-inf` for booleans), checking the length against the shape.
    pub(crate) fn additive_values(&self, op: &'static str) -> Result<Vec<f64>> {
        let n: usize = self.shape().iter().product();
        let v: Vec<f64> = match self {
            Mask::Bool { values, .. } => values.iter().map(|&m| if m { f64::NEG_INFINITY } else { 0.0 }).collect(),
            Mask::Additive { values, .. } => values.clone(),
        };
        if v.len() != n {
            return Err(HopfieldError::shape(op, format!("{n} mask values"), &[v.len()]));
        }
        if v.iter().any(|x| x.is_nan() || *x == f64::INFINITY) {
            return Err(HopfieldError::Format { op, reason: "additive mask holds NaN or +inf".into() });
        }
        Ok(v)
    }
}

/// What a `Hopfield` module associates: stored patterns (keys), state patterns (queries) and pattern
/// projections (values), plus optional masks and what to return.
///
/// # Shapes
/// With `batch_first` (the default): stored `[B, S, stored]`, state `[B, L, input]`, projection
/// `[B, S, projection]`; else the first two axes swap. `stored_pattern_padding_mask`: `[B, S]`.
/// `association_mask`: `[L, S]` or `[B·H, L, S]` (index `b·H + h`).
#[derive(Clone, Debug)]
pub struct HopfieldInput<B: Backend> {
    /// Stored patterns (keys).
    pub stored: B::Tensor,
    /// State patterns (queries).
    pub state: B::Tensor,
    /// Pattern projections (values).
    pub projection: B::Tensor,
    /// Hides stored patterns per sample.
    pub stored_pattern_padding_mask: Option<Mask>,
    /// Hides (or biases) single associations.
    pub association_mask: Option<Mask>,
    /// Return the association matrix `[B, H, L, S]` in the output.
    pub return_association: bool,
    /// Return the projected patterns `[B, H, S, pd]` in the output.
    pub return_projected_patterns: bool,
}

impl<B: Backend> HopfieldInput<B> {
    /// Self-association: one tensor is stored pattern, state pattern and pattern projection.
    pub fn single(x: B::Tensor) -> Self {
        Self::new(x.clone(), x.clone(), x)
    }
    /// Three separate tensors.
    pub fn new(stored: B::Tensor, state: B::Tensor, projection: B::Tensor) -> Self {
        HopfieldInput {
            stored,
            state,
            projection,
            stored_pattern_padding_mask: None,
            association_mask: None,
            return_association: false,
            return_projected_patterns: false,
        }
    }
    /// Add a stored-pattern padding mask.
    pub fn padding_mask(mut self, mask: Mask) -> Self {
        self.stored_pattern_padding_mask = Some(mask);
        self
    }
    /// Add an association mask.
    pub fn association_mask(mut self, mask: Mask) -> Self {
        self.association_mask = Some(mask);
        self
    }
    /// Ask for the association matrix.
    pub fn with_association(mut self) -> Self {
        self.return_association = true;
        self
    }
    /// Ask for the projected patterns.
    pub fn with_projected_patterns(mut self) -> Self {
        self.return_projected_patterns = true;
        self
    }
}

/// The result of a `Hopfield` forward pass.
#[derive(Clone, Debug)]
pub struct HopfieldOutput<B: Backend> {
    /// `[B, L, output]` (batch-first) or `[L, B, output]`.
    pub output: B::Tensor,
    /// Association matrix `[B, H, L, S']` before dropout, on request (`S'` counts bias/zero patterns).
    pub association: Option<B::Tensor>,
    /// Projected patterns `[B, H, S', pd]`, on request.
    pub projected_patterns: Option<B::Tensor>,
    /// Further update steps each head ran (0 = the first association only).
    pub update_steps: Vec<usize>,
}

/// Gradients of the three inputs, in the caller's layout.
#[derive(Clone, Debug)]
pub struct HopfieldInputGrads<B: Backend> {
    /// d loss / d stored.
    pub stored: B::Tensor,
    /// d loss / d state.
    pub state: B::Tensor,
    /// d loss / d projection.
    pub projection: B::Tensor,
}

impl<B: Backend> HopfieldInputGrads<B> {
    /// The gradient of a single tensor used as all three inputs ([`HopfieldInput::single`]).
    pub fn single(&self, backend: &B) -> B::Tensor {
        backend.add(&backend.add(&self.stored, &self.state), &self.projection)
    }
}

/// Convert the caller's masks into additive score biases: padding `[B, S']`, association `[B|1, H|1, L, S']`,
/// padding with zeros (unmasked) for the `extra` appended bias/zero patterns.
pub(crate) fn score_biases<B: Backend>(
    backend: &B,
    input: &HopfieldInput<B>,
    (b, h, l, s): (usize, usize, usize, usize),
    extra: usize,
) -> Result<(Option<B::Tensor>, Option<B::Tensor>)> {
    let pad_cols = |v: Vec<f64>, rows: usize| -> Vec<B::Elem> {
        let mut out = Vec::with_capacity(rows * (s + extra));
        for r in 0..rows {
            out.extend(v[r * s..(r + 1) * s].iter().map(|&x| B::Elem::of(x)));
            out.extend(std::iter::repeat_n(B::Elem::of(0.0), extra));
        }
        out
    };
    let padding = match &input.stored_pattern_padding_mask {
        None => None,
        Some(m) => {
            if m.shape() != [b, s] {
                return Err(HopfieldError::shape(
                    "hopfield.stored_pattern_padding_mask",
                    format!("[{b}, {s}]"),
                    m.shape(),
                ));
            }
            let v = m.additive_values("hopfield.stored_pattern_padding_mask")?;
            Some(backend.from_vec(pad_cols(v, b), &[b, s + extra]))
        }
    };
    let association = match &input.association_mask {
        None => None,
        Some(m) => {
            let v = m.additive_values("hopfield.association_mask")?;
            if m.shape() == [l, s] {
                Some(backend.from_vec(pad_cols(v, l), &[1, 1, l, s + extra]))
            } else if m.shape() == [b * h, l, s] {
                Some(backend.from_vec(pad_cols(v, b * h * l), &[b, h, l, s + extra]))
            } else {
                return Err(HopfieldError::shape(
                    "hopfield.association_mask",
                    format!("[{l}, {s}] or [{}, {l}, {s}]", b * h),
                    m.shape(),
                ));
            }
        }
    };
    Ok((padding, association))
}
