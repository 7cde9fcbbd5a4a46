//! `HopfieldConfig`: every option of hflayers' `Hopfield`, as plain serde data with hflayers' defaults,
//! validated into [`Dims`] at `init`.

use super::retrieval::Retrieval;
use crate::activation::Activation;
use crate::error::{HopfieldError, Result};
use serde::{Deserialize, Serialize};

/// A value given once for all heads or once per head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerHead<T> {
    /// The same value for every head.
    All(T),
    /// One value per head (length `num_heads`).
    Each(Vec<T>),
}

impl<T: Clone> PerHead<T> {
    /// Expand to one value per head, checking the length.
    pub fn expand(&self, heads: usize, field: &'static str) -> Result<Vec<T>> {
        match self {
            PerHead::All(v) => Ok(vec![v.clone(); heads]),
            PerHead::Each(v) if v.len() == heads => Ok(v.clone()),
            PerHead::Each(v) => Err(HopfieldError::config(field, format!("{} values for {heads} heads", v.len()))),
        }
    }
}

/// Which distance stops the update iteration of a head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Convergence {
    /// hflayers: stop when `max_b ‖A_t − A_{t−1}‖_F ≤ eps` (association matrices of consecutive steps).
    #[default]
    Association,
    /// The paper: stop when `max_b ‖ξ_t − ξ_{t−1}‖_F ≤ eps` (state patterns of consecutive steps).
    State,
}

/// Configuration of a [`Hopfield`](super::Hopfield) module. Field names and defaults follow hflayers 1.0.2.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HopfieldConfig {
    /// Size of the state pattern input (hflayers `input_size`). Optional only when everything is static.
    pub input_size: Option<usize>,
    /// Size of each head in the Hopfield space (default `input_size / num_heads`).
    pub hidden_size: Option<usize>,
    /// Size of the output projection (default `input_size`).
    pub output_size: Option<usize>,
    /// Size of each head's projected pattern (default `hidden_size`).
    pub pattern_size: Option<usize>,
    /// Number of parallel association heads.
    pub num_heads: usize,
    /// β, once or per head (default `1/√hidden_size`, or 1 when everything is static).
    pub scaling: Option<PerHead<f64>>,
    /// Further update steps after the first association, per head; `None` = until convergence.
    pub update_steps_max: PerHead<Option<usize>>,
    /// Convergence threshold per head.
    pub update_steps_eps: PerHead<f64>,
    /// Which distance the threshold applies to.
    pub convergence: Convergence,
    /// Layer-normalise stored patterns.
    pub normalize_stored_pattern: bool,
    /// ... with affine parameters.
    pub normalize_stored_pattern_affine: bool,
    /// ... with this ε.
    pub normalize_stored_pattern_eps: f64,
    /// Layer-normalise state patterns.
    pub normalize_state_pattern: bool,
    /// ... with affine parameters.
    pub normalize_state_pattern_affine: bool,
    /// ... with this ε.
    pub normalize_state_pattern_eps: f64,
    /// Layer-normalise pattern projections.
    pub normalize_pattern_projection: bool,
    /// ... with affine parameters.
    pub normalize_pattern_projection_affine: bool,
    /// ... with this ε.
    pub normalize_pattern_projection_eps: f64,
    /// Layer-normalise projected state and stored patterns per head in the Hopfield space.
    pub normalize_hopfield_space: bool,
    /// ... with affine parameters (shared across heads).
    pub normalize_hopfield_space_affine: bool,
    /// ... with this ε.
    pub normalize_hopfield_space_eps: f64,
    /// Use stored patterns as given (no projection).
    pub stored_pattern_as_static: bool,
    /// Use state patterns as given (no projection).
    pub state_pattern_as_static: bool,
    /// Use pattern projections as given (no projection).
    pub pattern_projection_as_static: bool,
    /// Project pattern projections through the stored-pattern projection first.
    pub pattern_projection_as_connected: bool,
    /// Size of the stored pattern input (default `input_size`).
    pub stored_pattern_size: Option<usize>,
    /// Size of the pattern projection input (default `input_size`).
    pub pattern_projection_size: Option<usize>,
    /// Inputs are `[batch, sequence, features]` (else `[sequence, batch, features]`).
    pub batch_first: bool,
    /// Activation applied to the module output (by name, see [`Activation::NAMES`]).
    pub association_activation: Option<String>,
    /// Dropout probability on the association matrix (train mode only).
    pub dropout: f64,
    /// Biases in the input and output projections.
    pub input_bias: bool,
    /// Append a learned bias pattern to the stored patterns and pattern projections.
    pub concat_bias_pattern: bool,
    /// Append an all-zero pattern to the stored patterns and pattern projections.
    pub add_zero_association: bool,
    /// No output projection: the output is the concatenated heads.
    pub disable_out_projection: bool,
    /// Not in hflayers: retrieve through the backend's fused, streaming association
    /// ([`Backend::association`](crate::Backend::association)), which never holds the `L × S` matrix,
    /// whenever the result is the same: no association matrix requested, no active dropout, and either no
    /// update steps or `convergence: state` (update steps then run as fused retrievals `ξ ← softmax(β ξ Kᵀ) K`).
    /// The cache then holds no association matrix. The streaming kernels compute softmax only: with another
    /// [`retrieval`](Self::retrieval) the switch is ignored and the materialised path runs (same results).
    pub fused_association: bool,
    /// Not in hflayers: the row normaliser of the association (default softmax, hflayers' results
    /// unchanged); sparsemax, α-entmax (fixed or learnable α) or softmax₁. See [`Retrieval`].
    pub retrieval: Retrieval,
}

impl Default for HopfieldConfig {
    fn default() -> Self {
        HopfieldConfig {
            input_size: None,
            hidden_size: None,
            output_size: None,
            pattern_size: None,
            num_heads: 1,
            scaling: None,
            update_steps_max: PerHead::All(Some(0)),
            update_steps_eps: PerHead::All(1e-4),
            convergence: Convergence::Association,
            normalize_stored_pattern: true,
            normalize_stored_pattern_affine: true,
            normalize_stored_pattern_eps: 1e-5,
            normalize_state_pattern: true,
            normalize_state_pattern_affine: true,
            normalize_state_pattern_eps: 1e-5,
            normalize_pattern_projection: true,
            normalize_pattern_projection_affine: true,
            normalize_pattern_projection_eps: 1e-5,
            normalize_hopfield_space: false,
            normalize_hopfield_space_affine: false,
            normalize_hopfield_space_eps: 1e-5,
            stored_pattern_as_static: false,
            state_pattern_as_static: false,
            pattern_projection_as_static: false,
            pattern_projection_as_connected: false,
            stored_pattern_size: None,
            pattern_projection_size: None,
            batch_first: true,
            association_activation: None,
            dropout: 0.0,
            input_bias: true,
            concat_bias_pattern: false,
            add_zero_association: false,
            disable_out_projection: false,
            fused_association: false,
            retrieval: Retrieval::Softmax,
        }
    }
}

macro_rules! setters {
    ($($name:ident : $ty:ty),* $(,)?) => {
        $(
            #[doc = concat!("Set `", stringify!($name), "`.")]
            pub fn $name(mut self, value: $ty) -> Self {
                self.$name = value.into();
                self
            }
        )*
    };
}

impl HopfieldConfig {
    /// A config with hflayers' defaults and the given state pattern size.
    pub fn new(input_size: usize) -> Self {
        HopfieldConfig { input_size: Some(input_size), ..Default::default() }
    }

    /// The parameter-free retrieval `softmax(β ξ Xᵀ) X` (CLOOB's): everything static, no norms, no output
    /// projection, one head.
    pub fn static_retrieval(size: usize, beta: f64) -> Self {
        HopfieldConfig::new(size)
            .scaling(beta)
            .stored_pattern_as_static(true)
            .state_pattern_as_static(true)
            .pattern_projection_as_static(true)
            .normalize_all(false)
            .disable_out_projection(true)
    }

    /// Switch all three input layer norms (and their affine parameters) on or off.
    pub fn normalize_all(mut self, on: bool) -> Self {
        self.normalize_stored_pattern = on;
        self.normalize_stored_pattern_affine = on;
        self.normalize_state_pattern = on;
        self.normalize_state_pattern_affine = on;
        self.normalize_pattern_projection = on;
        self.normalize_pattern_projection_affine = on;
        self
    }

    /// Set β for all heads.
    pub fn scaling(mut self, beta: f64) -> Self {
        self.scaling = Some(PerHead::All(beta));
        self
    }
    /// Set one β per head.
    pub fn scaling_per_head(mut self, betas: Vec<f64>) -> Self {
        self.scaling = Some(PerHead::Each(betas));
        self
    }
    /// Allow up to `n` further update steps (`None` = until convergence) on every head.
    pub fn update_steps_max(mut self, n: Option<usize>) -> Self {
        self.update_steps_max = PerHead::All(n);
        self
    }
    /// Set the convergence threshold of every head.
    pub fn update_steps_eps(mut self, eps: f64) -> Self {
        self.update_steps_eps = PerHead::All(eps);
        self
    }
    /// Set the association activation by name (validated at `init`).
    pub fn association_activation(mut self, name: &str) -> Self {
        self.association_activation = Some(name.to_string());
        self
    }

    setters!(
        hidden_size: usize, output_size: usize, pattern_size: usize, num_heads: usize,
        convergence: Convergence,
        normalize_stored_pattern: bool, normalize_stored_pattern_affine: bool, normalize_stored_pattern_eps: f64,
        normalize_state_pattern: bool, normalize_state_pattern_affine: bool, normalize_state_pattern_eps: f64,
        normalize_pattern_projection: bool, normalize_pattern_projection_affine: bool,
        normalize_pattern_projection_eps: f64,
        normalize_hopfield_space: bool, normalize_hopfield_space_affine: bool, normalize_hopfield_space_eps: f64,
        stored_pattern_as_static: bool, state_pattern_as_static: bool, pattern_projection_as_static: bool,
        pattern_projection_as_connected: bool, stored_pattern_size: usize, pattern_projection_size: usize,
        batch_first: bool, dropout: f64, input_bias: bool, concat_bias_pattern: bool,
        add_zero_association: bool, disable_out_projection: bool, fused_association: bool,
        retrieval: Retrieval,
    );

    /// Everything static and nothing learned: hflayers' "static execution".
    pub fn is_static_execution(&self) -> bool {
        self.stored_pattern_as_static
            && self.state_pattern_as_static
            && self.pattern_projection_as_static
            && !self.pattern_projection_as_connected
            && !self.normalize_hopfield_space
            && self.disable_out_projection
    }

    /// Check every field and derive the sizes.
    pub fn validate(&self) -> Result<Dims> {
        let c = self;
        let heads = c.num_heads;
        if heads == 0 {
            return Err(HopfieldError::config("num_heads", "must be at least 1"));
        }
        for (on, affine, name) in [
            (c.normalize_stored_pattern, c.normalize_stored_pattern_affine, "normalize_stored_pattern_affine"),
            (c.normalize_state_pattern, c.normalize_state_pattern_affine, "normalize_state_pattern_affine"),
            (
                c.normalize_pattern_projection,
                c.normalize_pattern_projection_affine,
                "normalize_pattern_projection_affine",
            ),
            (c.normalize_hopfield_space, c.normalize_hopfield_space_affine, "normalize_hopfield_space_affine"),
        ] {
            if affine && !on {
                return Err(HopfieldError::config(name, "affine normalisation without normalisation has no effect"));
            }
        }
        for (eps, name) in [
            (c.normalize_stored_pattern_eps, "normalize_stored_pattern_eps"),
            (c.normalize_state_pattern_eps, "normalize_state_pattern_eps"),
            (c.normalize_pattern_projection_eps, "normalize_pattern_projection_eps"),
            (c.normalize_hopfield_space_eps, "normalize_hopfield_space_eps"),
        ] {
            if !(eps > 0.0 && eps.is_finite()) {
                return Err(HopfieldError::config(name, format!("must be positive and finite, got {eps}")));
            }
        }
        c.retrieval.validate()?;
        if !(0.0..1.0).contains(&c.dropout) {
            return Err(HopfieldError::config("dropout", format!("must lie in [0, 1), got {}", c.dropout)));
        }
        for (v, name) in [
            (c.input_size, "input_size"),
            (c.hidden_size, "hidden_size"),
            (c.output_size, "output_size"),
            (c.pattern_size, "pattern_size"),
            (c.stored_pattern_size, "stored_pattern_size"),
            (c.pattern_projection_size, "pattern_projection_size"),
        ] {
            if v == Some(0) {
                return Err(HopfieldError::config(name, "must be positive"));
            }
        }
        let activation = c
            .association_activation
            .as_deref()
            .map(str::parse::<Activation>)
            .transpose()
            .map_err(|e| HopfieldError::config("association_activation", e.to_string()))?;
        let static_execution = c.is_static_execution();
        let input = match (c.input_size, static_execution) {
            (Some(n), _) => n,
            (None, true) => c.hidden_size.ok_or_else(|| {
                HopfieldError::config(
                    "input_size",
                    "static execution needs input_size or hidden_size (the pattern size)",
                )
            })?,
            (None, false) => return Err(HopfieldError::config("input_size", "required unless everything is static")),
        };
        let stored = c.stored_pattern_size.unwrap_or(input);
        let projection = c.pattern_projection_size.unwrap_or(input);
        let head = if static_execution {
            c.hidden_size.unwrap_or(input)
        } else if let Some(h) = c.hidden_size {
            h
        } else if input % heads == 0 {
            input / heads
        } else {
            return Err(HopfieldError::config(
                "hidden_size",
                format!("input_size {input} is not divisible by num_heads {heads}; set hidden_size"),
            ));
        };
        let pattern = match (c.pattern_size, c.pattern_projection_as_static) {
            (Some(p), _) => p,
            (None, true) => projection,
            (None, false) => head,
        };
        if c.state_pattern_as_static && input != head {
            return Err(HopfieldError::config(
                "state_pattern_as_static",
                format!(
                    "a static state pattern is used as the head, so input_size {input} must equal hidden_size {head}"
                ),
            ));
        }
        if c.stored_pattern_as_static && stored != head {
            return Err(HopfieldError::config(
                "stored_pattern_as_static",
                format!(
                    "a static stored pattern is used as the head, so stored_pattern_size {stored} must equal \
                     hidden_size {head}"
                ),
            ));
        }
        if c.pattern_projection_as_static && projection != pattern {
            return Err(HopfieldError::config(
                "pattern_projection_as_static",
                format!(
                    "a static pattern projection is used as the head, so pattern_projection_size {projection} \
                     must equal pattern_size {pattern}"
                ),
            ));
        }
        if c.pattern_projection_as_connected {
            if c.stored_pattern_as_static {
                return Err(HopfieldError::config(
                    "pattern_projection_as_connected",
                    "has no effect with a static stored pattern (there is no stored-pattern projection to connect)",
                ));
            }
            if stored != projection {
                return Err(HopfieldError::config(
                    "pattern_projection_as_connected",
                    format!("stored_pattern_size {stored} and pattern_projection_size {projection} must be equal"),
                ));
            }
            if pattern != head {
                return Err(HopfieldError::config(
                    "pattern_projection_as_connected",
                    format!("pattern_size {pattern} must equal hidden_size {head}"),
                ));
            }
        }
        let beta = match &c.scaling {
            Some(s) => s.expand(heads, "scaling")?,
            None if static_execution => vec![1.0; heads],
            None => vec![1.0 / (head as f64).sqrt(); heads],
        };
        if let Some(b) = beta.iter().find(|b| !b.is_finite()) {
            return Err(HopfieldError::config("scaling", format!("β must be finite, got {b}")));
        }
        let steps_max = c.update_steps_max.expand(heads, "update_steps_max")?;
        let steps_eps = c.update_steps_eps.expand(heads, "update_steps_eps")?;
        if let Some(e) = steps_eps.iter().find(|e| !(**e > 0.0)) {
            return Err(HopfieldError::config("update_steps_eps", format!("thresholds must be positive, got {e}")));
        }
        let output = if c.disable_out_projection { heads * pattern } else { c.output_size.unwrap_or(input) };
        Ok(Dims {
            heads,
            input,
            stored,
            projection,
            head,
            pattern,
            output,
            static_execution,
            activation,
            beta,
            steps_max,
            steps_eps,
            // hflayers packs q/k/v into one `in_proj_weight` exactly when all inputs share a size and nothing
            // changes the value path; the state_dict names depend on it.
            combined_in_proj: stored == input
                && projection == input
                && c.pattern_size.is_none()
                && !c.pattern_projection_as_connected,
        })
    }
}

/// Sizes and per-head settings derived from a validated [`HopfieldConfig`].
#[derive(Clone, Debug, PartialEq)]
pub struct Dims {
    /// Heads `H`.
    pub heads: usize,
    /// State pattern input size.
    pub input: usize,
    /// Stored pattern input size.
    pub stored: usize,
    /// Pattern projection input size.
    pub projection: usize,
    /// Per-head Hopfield space size.
    pub head: usize,
    /// Per-head projected pattern size.
    pub pattern: usize,
    /// Output size.
    pub output: usize,
    /// Everything static, nothing learned.
    pub static_execution: bool,
    /// Output activation.
    pub activation: Option<Activation>,
    /// β per head.
    pub beta: Vec<f64>,
    /// Further update steps per head (`None` = until convergence).
    pub steps_max: Vec<Option<usize>>,
    /// Convergence threshold per head.
    pub steps_eps: Vec<f64>,
    /// Whether hflayers stores the projections as one `in_proj_weight`.
    pub combined_in_proj: bool,
}
