//! Request bodies of the HTTP API, validated once into typed values. Every refusal names the
//! field and says what is allowed; unknown fields are refused rather than ignored, so a typo
//! never silently runs with a default. Runs in the host process (`code-exec serve`).

use serde_json::{Map, Value};

use crate::backend::BackendKind;
use crate::limits::{
    CpuFraction, DiskMb, LimitError, Limits, MemoryMb, OutputBytes, Pids, Timeout,
};

/// A request the server refuses with 400.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRequest(pub String);

impl From<LimitError> for BadRequest {
    fn from(e: LimitError) -> Self {
        BadRequest(e.to_string())
    }
}

/// `POST /v1/execute` and `POST /v1/sandboxes/{id}/execute`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecuteBody {
    pub code: String,
    pub stdin: Option<String>,
    pub sandbox: Option<BackendKind>,
    pub limits: LimitChanges,
}

/// `POST /v1/sandboxes`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateBody {
    pub sandbox: Option<BackendKind>,
    pub limits: LimitChanges,
}

/// Limits a request sets; the rest keep their defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LimitChanges {
    pub memory_mb: Option<MemoryMb>,
    pub cpu: Option<CpuFraction>,
    pub timeout: Option<Timeout>,
    pub pids: Option<Pids>,
    pub max_output_bytes: Option<OutputBytes>,
    pub disk_mb: Option<DiskMb>,
}

impl LimitChanges {
    pub fn apply(&self, mut limits: Limits) -> Limits {
        if let Some(v) = self.memory_mb {
            limits.memory_mb = v;
        }
        if let Some(v) = self.cpu {
            limits.cpu = v;
        }
        if let Some(v) = self.timeout {
            limits.timeout = v;
        }
        if let Some(v) = self.pids {
            limits.pids = v;
        }
        if let Some(v) = self.max_output_bytes {
            limits.max_output_bytes = v;
        }
        if let Some(v) = self.disk_mb {
            limits.disk_mb = Some(v);
        }
        limits
    }
}

/// A JSON value read with every object's keys checked for duplicates: a body with one key
/// twice means two things to two readers (a proxy may check the first, serde keeps the last).
struct Unambiguous(Value);

impl<'de> serde::Deserialize<'de> for Unambiguous {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(UnambiguousVisitor)
            .map(Unambiguous)
    }
}

struct UnambiguousVisitor;

impl<'de> serde::de::Visitor<'de> for UnambiguousVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unambiguous(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Unambiguous(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

fn object(bytes: &[u8]) -> Result<Map<String, Value>, BadRequest> {
    let Unambiguous(value) =
        serde_json::from_slice(bytes).map_err(|e| BadRequest(format!("malformed JSON: {e}")))?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(BadRequest(format!(
            "the body must be a JSON object, not {}",
            kind_of(&other)
        ))),
    }
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

fn refuse_unknown(
    map: &Map<String, Value>,
    allowed: &[&str],
    what: &str,
) -> Result<(), BadRequest> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(BadRequest(format!(
            "{what}: unknown field {key:?}; allowed: {}",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn string(map: &Map<String, Value>, field: &str) -> Result<Option<String>, BadRequest> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(BadRequest(format!(
            "{field}: expected a string, got {}",
            kind_of(other)
        ))),
    }
}

fn sandbox(map: &Map<String, Value>) -> Result<Option<BackendKind>, BadRequest> {
    string(map, "sandbox")?
        .map(|s| s.parse().map_err(|e| BadRequest(format!("sandbox: {e}"))))
        .transpose()
}

/// The `limits` object (or the body of `PATCH .../limits`), each value through the same
/// validation as the command line's flags.
pub fn limit_changes(value: Option<&Value>, allowed: &[&str]) -> Result<LimitChanges, BadRequest> {
    let map = match value {
        None | Some(Value::Null) => return Ok(LimitChanges::default()),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(BadRequest(format!(
                "limits: expected an object, got {}",
                kind_of(other)
            )));
        }
    };
    refuse_unknown(map, allowed, "limits")?;
    let number = |field: &str| -> Result<Option<String>, BadRequest> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(BadRequest(format!(
                "limits.{field}: expected a number, got {}",
                kind_of(other)
            ))),
        }
    };
    fn field_error(field: &'static str) -> impl Fn(LimitError) -> BadRequest {
        move |e| BadRequest(format!("limits.{field}: {e}"))
    }
    Ok(LimitChanges {
        memory_mb: number("memory_mb")?
            .map(|v| MemoryMb::parse(&v).map_err(field_error("memory_mb")))
            .transpose()?,
        cpu: number("cpu")?
            .map(|v| CpuFraction::parse(&v).map_err(field_error("cpu")))
            .transpose()?,
        timeout: number("timeout_s")?
            .map(|v| Timeout::parse(&v).map_err(field_error("timeout_s")))
            .transpose()?,
        pids: number("pids")?
            .map(|v| Pids::parse(&v).map_err(field_error("pids")))
            .transpose()?,
        max_output_bytes: number("max_output_bytes")?
            .map(|v| OutputBytes::parse(&v).map_err(field_error("max_output_bytes")))
            .transpose()?,
        disk_mb: number("disk_mb")?
            .map(|v| DiskMb::parse(&v).map_err(field_error("disk_mb")))
            .transpose()?,
    })
}

/// Every limit a request may set.
pub const ALL_LIMITS: &[&str] = &[
    "memory_mb",
    "cpu",
    "timeout_s",
    "pids",
    "max_output_bytes",
    "disk_mb",
];
/// The limits a live sandbox can change.
pub const LIVE_LIMITS: &[&str] = &["memory_mb", "cpu", "pids"];

/// Parses an execute body; `persistent` bodies (a sandbox's execute) take neither `sandbox`
/// nor `limits`.
pub fn execute_body(bytes: &[u8], persistent: bool) -> Result<ExecuteBody, BadRequest> {
    let map = object(bytes)?;
    let allowed: &[&str] = if persistent {
        &["code", "stdin"]
    } else {
        &["code", "stdin", "sandbox", "limits"]
    };
    refuse_unknown(&map, allowed, "body")?;
    let code = string(&map, "code")?.ok_or_else(|| BadRequest("code: required".into()))?;
    Ok(ExecuteBody {
        code,
        stdin: string(&map, "stdin")?,
        sandbox: sandbox(&map)?,
        limits: limit_changes(map.get("limits"), ALL_LIMITS)?,
    })
}

/// Parses a `POST /v1/sandboxes` body (an empty body is allowed).
pub fn create_body(bytes: &[u8]) -> Result<CreateBody, BadRequest> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(CreateBody {
            sandbox: None,
            limits: LimitChanges::default(),
        });
    }
    let map = object(bytes)?;
    refuse_unknown(&map, &["sandbox", "limits"], "body")?;
    Ok(CreateBody {
        sandbox: sandbox(&map)?,
        limits: limit_changes(map.get("limits"), ALL_LIMITS)?,
    })
}

/// Parses a `PATCH /v1/sandboxes/{id}/limits` body.
pub fn patch_body(bytes: &[u8]) -> Result<LimitChanges, BadRequest> {
    let map = object(bytes)?;
    let changes = limit_changes(Some(&Value::Object(map)), LIVE_LIMITS)?;
    if changes == LimitChanges::default() {
        return Err(BadRequest(
            "limits: give at least one of memory_mb, cpu, pids".into(),
        ));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_twice_anywhere_is_refused_and_named() {
        for (body, key) in [
            (r#"{"code": "a", "code": "b"}"#, "\"code\""),
            (
                r#"{"code": "a", "limits": {"cpu": 1, "cpu": 2}}"#,
                "\"cpu\"",
            ),
            (r#"{"code": "a", "x": [{"k": 1, "k": 2}]}"#, "\"k\""),
        ] {
            let err = object(body.as_bytes()).unwrap_err().0;
            assert!(
                err.contains("duplicate key") && err.contains(key),
                "{body}: {err}"
            );
        }
        // The same keys in different objects, and every JSON type, still read as before.
        let map = object(
            br#"{"code": "a", "limits": {"code": 1.5, "n": -3, "big": 18446744073709551615}, "v": [null, true, "s"]}"#,
        )
        .unwrap();
        assert_eq!(
            Value::Object(map),
            serde_json::json!({"code": "a", "limits": {"code": 1.5, "n": -3, "big": 18446744073709551615u64}, "v": [null, true, "s"]})
        );
    }

    #[test]
    fn parses_and_validates_execute_bodies() {
        let body = execute_body(
            br#"{"code": "print(1)", "stdin": "x", "sandbox": "none", "limits": {"memory_mb": 64, "timeout_s": 2.5}}"#,
            false,
        )
        .unwrap();
        assert_eq!(body.code, "print(1)");
        assert_eq!(body.sandbox, Some(BackendKind::None));
        assert_eq!(body.limits.memory_mb.unwrap().get(), 64);
        assert_eq!(body.limits.timeout.unwrap().get().as_secs_f64(), 2.5);
        let refused = |b: &[u8]| execute_body(b, false).unwrap_err().0;
        assert!(refused(b"{").starts_with("malformed JSON"));
        assert!(refused(b"[]").contains("JSON object"));
        assert_eq!(refused(b"{}"), "code: required");
        assert!(refused(br#"{"code": 1}"#).contains("code: expected a string"));
        assert!(refused(br#"{"code": "", "sandbox": "vm"}"#).starts_with("sandbox:"));
        assert!(
            refused(br#"{"code": "", "limits": {"memory_mb": "64"}}"#)
                .contains("limits.memory_mb: expected a number")
        );
        let e = refused(br#"{"code": "", "limits": {"memory_mb": 0}}"#);
        assert!(
            e.starts_with("limits.memory_mb: invalid memory_mb") && e.contains("allowed"),
            "{e}"
        );
        assert!(refused(br#"{"code": "", "limits": {"cpu": -1}}"#).contains("limits.cpu"));
        assert!(refused(br#"{"code": "", "limits": {"pids": 1.5}}"#).contains("limits.pids"));
        assert!(
            refused(br#"{"code": "", "limits": {"memroy_mb": 64}}"#)
                .contains("unknown field \"memroy_mb\"")
        );
        assert!(refused(br#"{"code": "", "extra": 1}"#).contains("unknown field \"extra\""));
        assert!(
            execute_body(br#"{"code": "", "limits": {}}"#, true)
                .unwrap_err()
                .0
                .contains("unknown field \"limits\"")
        );
    }

    #[test]
    fn parses_create_and_patch_bodies() {
        assert_eq!(create_body(b"").unwrap().sandbox, None);
        assert_eq!(
            create_body(br#"{"sandbox": "native", "limits": {"cpu": 1}}"#)
                .unwrap()
                .limits
                .cpu
                .unwrap()
                .get(),
            1.0
        );
        let patch = patch_body(br#"{"memory_mb": 256, "pids": 10}"#).unwrap();
        assert_eq!(patch.memory_mb.unwrap().get(), 256);
        assert!(patch_body(b"{}").unwrap_err().0.contains("at least one"));
        assert!(
            patch_body(br#"{"timeout_s": 3}"#)
                .unwrap_err()
                .0
                .contains("unknown field")
        );
    }
}
