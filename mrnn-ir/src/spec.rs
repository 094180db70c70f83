//! Front door for mRNNTorch's JSON configs: the serde model of the file ([`Spec`]) and a reader
//! that reports unknown keys and wrong types at their JSON pointer, every one of them at once.
//!
//! Keys starting with `__` (such as `__comment_regions`) are ignored, as mRNNTorch ignores them.
//! The optional `"model"` object holds mRNNTorch's constructor arguments, which mRNNTorch itself
//! ignores in the file; here they set the dynamics.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::diag::{Ctxt, Loc, list};

/// An mRNNTorch config file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// Recurrent regions, in the order of the hidden vector.
    #[serde(default)]
    pub recurrent_regions: Vec<RegionSpec>,
    /// Input regions, in the order of the input vector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_regions: Vec<InputRegionSpec>,
    /// Connections between recurrent regions.
    #[serde(default)]
    pub recurrent_connections: Vec<ConnectionSpec>,
    /// Connections from input regions into recurrent regions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_connections: Vec<ConnectionSpec>,
    /// mRNNTorch's constructor arguments (dynamics, activation, Dale's law, noise, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSpec>,
}

/// One entry of `recurrent_regions`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionSpec {
    /// Unique name; `region_<i>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Number of units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_units: Option<i64>,
    /// `pos` (excitatory) or `neg` (inhibitory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign: Option<String>,
    /// Tonic input of every unit (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_firing: Option<f64>,
    /// Initial pre-activation of every unit (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<f64>,
    /// Group name (`alm` for `alm_exc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_region: Option<String>,
    /// Whether `base_firing` is trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learnable_bias: Option<bool>,
}

/// One entry of `input_regions`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InputRegionSpec {
    /// Unique name; `region_<i>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Number of units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_units: Option<i64>,
    /// `pos` (excitatory) or `neg` (inhibitory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign: Option<String>,
}

/// One entry of `recurrent_connections` or `input_connections`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionSpec {
    /// Source region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_region: Option<String>,
    /// Destination (recurrent) region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_region: Option<String>,
    /// Fraction of weights that are zero per source unit, in `[0, 1)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<f64>,
    /// The sign the author expects (`pos`/`exc` or `neg`/`inhib`), checked against the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign: Option<String>,
}

/// The optional `"model"` object: mRNNTorch's constructor arguments.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// `leaky` or `elman`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamics: Option<String>,
    /// Integration step (leaky).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dt: Option<f64>,
    /// Time constant (leaky).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tau: Option<f64>,
    /// `relu`, `tanh`, `sigmoid`, `softplus` or `linear`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<String>,
    /// Dale's law on recurrent weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rec_constrained: Option<bool>,
    /// Dale's law on input weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inp_constrained: Option<bool>,
    /// Noise level on the hidden state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_level_act: Option<f64>,
    /// Noise level on the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_level_inp: Option<f64>,
    /// Target spectral radius of the effective recurrent matrix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spectral_radius: Option<f64>,
    /// Batch-first layout of inputs and outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_first: Option<bool>,
    /// Seed for masks and weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

const TOP_KEYS: &[&str] =
    &["recurrent_regions", "input_regions", "recurrent_connections", "input_connections", "model"];
const REGION_KEYS: &[&str] =
    &["name", "num_units", "sign", "base_firing", "init", "parent_region", "learnable_bias"];
const INPUT_REGION_KEYS: &[&str] = &["name", "num_units", "sign"];
const CONNECTION_KEYS: &[&str] = &["src_region", "dst_region", "sparsity", "sign"];
/// The keys of the `"model"` object.
pub const MODEL_KEYS: &[&str] = &[
    "dynamics",
    "dt",
    "tau",
    "activation",
    "rec_constrained",
    "inp_constrained",
    "noise_level_act",
    "noise_level_inp",
    "spectral_radius",
    "batch_first",
    "seed",
];

impl Spec {
    /// Reads a config, pushing every problem (syntax, unknown keys, wrong types) into `cx`.
    /// Returns `None` when the document could not be read as a config at all.
    pub fn read(cx: &Ctxt, text: &str) -> Option<Spec> {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                cx.error(
                    Loc::JsonText { line: e.line().max(1), column: e.column().max(1) },
                    format!("invalid JSON: {}", strip_position(&e.to_string())),
                );
                return None;
            }
        };
        Spec::from_value(cx, value)
    }

    /// Reads a config from an already-parsed JSON value.
    pub fn from_value(cx: &Ctxt, value: Value) -> Option<Spec> {
        if !value.is_object() {
            cx.error(
                Loc::json(""),
                format!(
                    "a config must be a JSON object with keys {}, found {}",
                    list(TOP_KEYS),
                    kind_of(&value)
                ),
            );
            return None;
        }
        check_keys(cx, &value, "", TOP_KEYS);
        for (field, keys) in [
            ("recurrent_regions", REGION_KEYS),
            ("input_regions", INPUT_REGION_KEYS),
            ("recurrent_connections", CONNECTION_KEYS),
            ("input_connections", CONNECTION_KEYS),
        ] {
            if let Some(Value::Array(items)) = value.get(field) {
                for (i, item) in items.iter().enumerate() {
                    check_keys(cx, item, &format!("/{field}/{i}"), keys);
                }
            }
        }
        if let Some(model) = value.get("model") {
            check_keys(cx, model, "/model", MODEL_KEYS);
        }
        let spec = match serde_path_to_error::deserialize::<_, Spec>(value) {
            Ok(spec) => spec,
            Err(e) => {
                let pointer = path_to_pointer(e.path());
                cx.error(Loc::json(pointer), e.into_inner().to_string());
                return None;
            }
        };
        Some(spec)
    }

    /// Writes the config as pretty JSON, in mRNNTorch's format.
    ///
    /// # Panics
    ///
    /// Never: every field serializes (`serde_json` only fails on maps with non-string keys).
    #[must_use]
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a Spec always serializes")
    }
}

/// Reports keys of the object at `pointer` that are not in `known` (keys starting with `__` are
/// comments and always allowed).
fn check_keys(cx: &Ctxt, value: &Value, pointer: &str, known: &[&str]) {
    let Value::Object(map) = value else { return };
    for key in map.keys() {
        if key.starts_with("__") || known.contains(&key.as_str()) {
            continue;
        }
        let member = format!("{pointer}/{}", crate::diag::escape_pointer_segment(key));
        let help = match crate::diag::closest(key, known.iter().copied()) {
            Some(c) => format!("did you mean `{c}`? valid keys here: {}", list(known)),
            None => {
                format!("valid keys here: {} (keys starting with `__` are ignored)", list(known))
            }
        };
        cx.error_help(Loc::json_key(member), format!("unknown key `{key}`"), help);
    }
}

fn path_to_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => {
                pointer.push('/');
                pointer.push_str(&index.to_string());
            }
            Segment::Map { key } => {
                pointer.push('/');
                pointer.push_str(&crate::diag::escape_pointer_segment(key));
            }
            Segment::Enum { variant } => {
                pointer.push('/');
                pointer.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    pointer
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `serde_json` appends " at line L column C" to its messages; the location is shown separately.
fn strip_position(message: &str) -> &str {
    message.rfind(" at line ").map_or(message, |i| &message[..i])
}

impl Spec {
    /// The config of a checked architecture, with every setting spelled out in `"model"` (for
    /// checkpoint metadata, `mrnn convert` and exports). Compiling it gives back the same
    /// architecture.
    #[must_use]
    pub fn from_architecture(arch: &crate::model::Architecture) -> Spec {
        use crate::model::{Dynamics, Source};
        let s = arch.settings();
        let connection = |c: &crate::model::Connection| ConnectionSpec {
            src_region: Some(arch.source_name(c.src).to_owned()),
            dst_region: Some(arch.regions()[c.dst].name.to_string()),
            sparsity: c.sparsity,
            sign: None,
        };
        let (dt, tau) = match s.dynamics {
            Dynamics::Leaky { dt, tau } => (Some(dt), Some(tau)),
            Dynamics::Elman => (None, None),
        };
        Spec {
            recurrent_regions: arch
                .regions()
                .iter()
                .map(|r| RegionSpec {
                    name: Some(r.name.to_string()),
                    num_units: Some(i64::try_from(r.units).unwrap_or(i64::MAX)),
                    sign: Some(r.sign.spec_name().to_owned()),
                    base_firing: Some(r.base_firing),
                    init: Some(r.init),
                    parent_region: r.parent.as_ref().map(ToString::to_string),
                    learnable_bias: Some(r.learnable_bias),
                })
                .collect(),
            input_regions: arch
                .inputs()
                .iter()
                .map(|r| InputRegionSpec {
                    name: Some(r.name.to_string()),
                    num_units: Some(i64::try_from(r.units).unwrap_or(i64::MAX)),
                    sign: Some(r.sign.spec_name().to_owned()),
                })
                .collect(),
            recurrent_connections: arch
                .connections()
                .iter()
                .filter(|c| matches!(c.src, Source::Recurrent(_)))
                .map(connection)
                .collect(),
            input_connections: arch
                .connections()
                .iter()
                .filter(|c| matches!(c.src, Source::Input(_)))
                .map(connection)
                .collect(),
            model: Some(ModelSpec {
                dynamics: Some(s.dynamics.name().to_owned()),
                dt,
                tau,
                activation: Some(s.activation.name().to_owned()),
                rec_constrained: Some(s.dale.recurrent),
                inp_constrained: Some(s.dale.input),
                noise_level_act: Some(s.noise.act),
                noise_level_inp: Some(s.noise.inp),
                spectral_radius: s.spectral_radius,
                batch_first: Some(s.batch_first),
                seed: Some(s.seed),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Option<Spec>, Vec<String>) {
        let cx = Ctxt::new();
        let spec = Spec::read(&cx, text);
        let diags = match cx.check() {
            Ok(w) | Err(w) => w,
        };
        (spec, diags.into_iter().map(|d| format!("{:?}: {}", d.loc, d.message)).collect())
    }

    #[test]
    fn ignores_comment_keys_and_reads_defaults() {
        let (spec, diags) = read(
            r#"{"__comment": [1], "recurrent_regions": [{"name": "a", "num_units": 3, "__x": 1}]}"#,
        );
        assert!(diags.is_empty(), "{diags:?}");
        let spec = spec.unwrap();
        assert_eq!(spec.recurrent_regions[0].num_units, Some(3));
        assert!(spec.input_regions.is_empty() && spec.model.is_none());
    }

    #[test]
    fn reports_every_unknown_key() {
        let (_, diags) = read(
            r#"{"recurent_regions": [], "recurrent_regions": [{"num_unit": 3}], "model": {"alpha": 1}}"#,
        );
        assert_eq!(diags.len(), 3, "{diags:?}");
        assert!(diags[0].contains("unknown key `recurent_regions`"));
        assert!(diags[1].contains("/recurrent_regions/0/num_unit"));
        assert!(diags[2].contains("unknown key `alpha`"));
    }

    #[test]
    fn reports_wrong_types_at_their_pointer() {
        let (spec, diags) = read(r#"{"recurrent_regions": [{"name": "a", "num_units": "ten"}]}"#);
        assert!(spec.is_none());
        assert!(diags[0].contains("/recurrent_regions/0/num_units"), "{diags:?}");
        assert!(diags[0].contains("invalid type"), "{diags:?}");
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let (spec, diags) = read("{\n  \"recurrent_regions\": [,]\n}");
        assert!(spec.is_none());
        assert!(diags[0].contains("line: 2"), "{diags:?}");
        assert!(diags[0].contains("invalid JSON"), "{diags:?}");
    }

    #[test]
    fn round_trips_through_json() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/reference/CBGTCL.json"
        ))
        .expect("../shared/reference/CBGTCL.json beside the checkout");
        let (spec, diags) = read(&text);
        assert!(diags.is_empty(), "{diags:?}");
        let spec = spec.unwrap();
        let (again, _) = read(&spec.to_json_pretty());
        assert_eq!(again.unwrap(), spec);
    }
}
