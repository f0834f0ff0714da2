//! Request bodies: JSON, YAML and Kubernetes protobuf into one JSON value, then through the kind's typed
//! form so wrong types are rejected and unknown fields are handled as `fieldValidation` asks.

use serde_json::Value;

use crate::api::resources::ResourceInfo;
use crate::api::typed;

use super::status::ApiError;

pub const MAX_BODY: usize = 3 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    Warn,
    #[default]
    Strict,
}

impl FieldValidation {
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("") | Some("Strict") => Ok(FieldValidation::Strict),
            Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::BadRequest(format!(
                "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

/// The media type without parameters, lower-cased; no Content-Type means JSON (kubectl sends none on
/// `PUT …/scale`).
pub fn media_type(content_type: Option<&str>) -> String {
    content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes a request body by its content type into JSON.
pub fn decode(content_type: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    let media = media_type(content_type);
    match media.as_str() {
        "application/json" | "" | "*/*" | "application/apply-patch+yaml" | "application/yaml" | "application/x-yaml" => {
            if media.contains("yaml") {
                decode_yaml(body)
            } else {
                serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("error decoding JSON: {e}")))
            }
        }
        "application/vnd.kubernetes.protobuf" => {
            let mut obj = super::protobuf::decode_request_body(super::protobuf::ProtoRegistry::embedded(), body)
                .map_err(|e| ApiError::BadRequest(format!("error decoding protobuf: {e}")))?;
            drop_go_zero_values(&mut obj, false);
            Ok(obj)
        }
        other => Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other})"
        ))),
    }
}

/// Maps whose values are user data: an empty string there is a value, not Go's zero value.
const USER_MAPS: &[&str] = &[
    "data",
    "stringData",
    "labels",
    "annotations",
    "matchLabels",
    "selector",
    "nodeSelector",
    "binaryData",
];

/// Fields of the built-in types that are plain (non-pointer) Go bools or integers with `omitempty`: their
/// zero value means unset, and Go's JSON encoding omits it. (Pointer fields such as `replicas` or
/// `automountServiceAccountToken` keep an explicit zero or false.)
const GO_VALUE_SCALARS: &[&str] = &[
    "stdin",
    "stdinOnce",
    "tty",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "paused",
    "hostPort",
    "nodePort",
    "readOnly",
    "publishNotReadyAddresses",
    "minReadySeconds",
    "initialDelaySeconds",
    "timeoutSeconds",
    "periodSeconds",
    "successThreshold",
    "failureThreshold",
];

/// Go's protobuf encoding sends every non-pointer field, so unset strings arrive as "", unset structs as
/// empty messages and unset plain scalars as 0/false. JSON clients omit them; remove them so defaults
/// apply the same way and stored objects read as they would from a JSON create.
fn drop_go_zero_values(value: &mut Value, in_user_map: bool) {
    match value {
        Value::Object(map) => {
            if !in_user_map {
                map.retain(|k, v| {
                    let zero = v == &Value::from(0) || v == &Value::Bool(false);
                    !(matches!(v, Value::String(s) if s.is_empty())
                        || (zero && (k == "generation" || GO_VALUE_SCALARS.contains(&k.as_str()))))
                });
            }
            for (k, v) in map.iter_mut() {
                drop_go_zero_values(v, USER_MAPS.contains(&k.as_str()) && v.is_object());
            }
            if !in_user_map {
                map.retain(|k, v| k == "spec" || !matches!(v, Value::Object(m) if m.is_empty()));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| drop_go_zero_values(i, false)),
        _ => {}
    }
}

/// YAML is a superset of JSON; server-side apply bodies are usually JSON sent as YAML.
pub fn decode_yaml(body: &[u8]) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("YAML body is not UTF-8".into()))?;
    let options = serde_saphyr::options! { legacy_octal_numbers: true };
    serde_saphyr::from_str_with_options::<Value>(text, options)
        .map_err(|e| ApiError::BadRequest(format!("error converting YAML to JSON: {e}")))
}

/// Decodes `obj` through the typed form of `info`'s kind. Returns the normalised object and, for
/// `Warn`, the warnings to send back.
pub fn typed_object(
    info: &ResourceInfo,
    obj: Value,
    validation: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    typed_object_as(info.group, info.version, info.kind, obj, validation)
}

pub fn typed_object_as(
    group: &str,
    version: &str,
    kind: &str,
    obj: Value,
    validation: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::BadRequest(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: the body must be a JSON object"
        )));
    }
    let decoded = typed::roundtrip(group, version, kind, obj.clone()).map_err(|e| {
        ApiError::BadRequest(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}"
        ))
    })?;
    let unknown = if validation == FieldValidation::Ignore {
        Vec::new()
    } else {
        typed::unknown_fields(&obj, &decoded)
    };
    match validation {
        FieldValidation::Strict if !unknown.is_empty() => {
            let list: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            Err(ApiError::BadRequest(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                list.join(", ")
            )))
        }
        _ => Ok((
            decoded,
            unknown
                .into_iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployments() -> &'static ResourceInfo {
        crate::api::resources::find("apps", "v1", "deployments").unwrap()
    }

    #[test]
    fn yaml_reads_legacy_octal_like_kubectl() {
        let v = decode(Some("application/yaml"), b"spec:\n  defaultMode: 0644\n").unwrap();
        assert_eq!(v["spec"]["defaultMode"], 420);
    }

    #[test]
    fn strict_rejects_unknown_fields_and_warn_reports_them() {
        let obj = json!({"metadata":{"name":"d"},"spec":{"x":1}});
        let err = typed_object(deployments(), obj.clone(), FieldValidation::Strict).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.x\""
        );
        let (_, warnings) =
            typed_object(deployments(), obj.clone(), FieldValidation::Warn).unwrap();
        assert_eq!(warnings, vec!["unknown field \"spec.x\""]);
        let (_, warnings) = typed_object(deployments(), obj, FieldValidation::Ignore).unwrap();
        assert!(warnings.is_empty());
    }

    #[test]
    fn go_zero_values_from_protobuf_are_dropped_but_user_data_kept() {
        let mut v = json!({"metadata":{"name":"x","namespace":"","generation":0,"labels":{"a":""}},
            "spec":{"strategy":{"type":""},"replicas":0,"paused":false,"template":{"spec":{"hostNetwork":false,
                "automountServiceAccountToken":false,
                "containers":[{"name":"c","imagePullPolicy":"","tty":false,"ports":[{"containerPort":80,"hostPort":0}]}]}}},
            "data":{"k":""}});
        drop_go_zero_values(&mut v, false);
        assert_eq!(
            v,
            json!({"metadata":{"name":"x","labels":{"a":""}},
            "spec":{"replicas":0,"template":{"spec":{"automountServiceAccountToken":false,
                "containers":[{"name":"c","ports":[{"containerPort":80}]}]}}},"data":{"k":""}})
        );
    }

    #[test]
    fn malformed_and_unknown_media_are_rejected() {
        assert!(matches!(
            decode(None, b"{not json"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            decode(Some("text/plain"), b"x"),
            Err(ApiError::UnsupportedMediaType(_))
        ));
    }
}
