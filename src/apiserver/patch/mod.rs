//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch and
//! server-side apply, each turning the current object and a patch into the new object.

pub mod apply;
pub mod strategic;

use serde_json::Value;

use super::status::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_media_type(media: &str) -> Result<Self, ApiError> {
        match media {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" => Ok(PatchType::Apply),
            other => Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other})"
            ))),
        }
    }
}

/// Applies a JSON, merge or strategic patch (server-side apply has its own entry point in `apply`).
pub fn apply_patch(
    kind: &str,
    patch_type: PatchType,
    current: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    match patch_type {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
            let mut out = current.clone();
            json_patch::patch(&mut out, &ops).map_err(|e| {
                ApiError::Internal(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
                .into_unprocessable()
            })?;
            Ok(out)
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest(
                    "merge patch must be a JSON object".into(),
                ));
            }
            let mut out = current.clone();
            json_patch::merge(&mut out, patch);
            Ok(out)
        }
        PatchType::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest(
                    "strategic merge patch must be a JSON object".into(),
                ));
            }
            strategic::apply(kind, current, patch).map_err(|e| ApiError::BadRequest(e.to_string()))
        }
        PatchType::Apply => Err(ApiError::Internal(
            "server-side apply is handled by patch::apply".into(),
        )),
    }
}

impl ApiError {
    /// JSON patch operations that cannot apply (a failed `test`, a missing path) are 422 in Kubernetes.
    fn into_unprocessable(self) -> ApiError {
        match self {
            ApiError::Internal(m) => ApiError::Registry(crate::registry::RegistryError::Invalid {
                kind: String::new(),
                name: String::new(),
                group: String::new(),
                causes: vec![crate::api::validation::FieldError {
                    error_type: crate::api::validation::ErrorType::Invalid,
                    field: String::new(),
                    value: None,
                    detail: m,
                }],
            }),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_merge_patches() {
        let current =
            json!({"metadata":{"name":"a","labels":{"x":"1","y":"2"}},"spec":{"replicas":1}});
        let merged = apply_patch(
            "Deployment",
            PatchType::Merge,
            &current,
            &json!({"metadata":{"labels":{"x":null,"z":"3"}}}),
        )
        .unwrap();
        assert_eq!(merged["metadata"]["labels"], json!({"y":"2","z":"3"}));
        let patched = apply_patch(
            "Deployment",
            PatchType::Json,
            &current,
            &json!([{"op":"replace","path":"/spec/replicas","value":4}]),
        )
        .unwrap();
        assert_eq!(patched["spec"]["replicas"], 4);
        let failed = apply_patch(
            "Deployment",
            PatchType::Json,
            &current,
            &json!([{"op":"test","path":"/spec/replicas","value":9}]),
        );
        assert!(matches!(
            failed,
            Err(ApiError::Registry(
                crate::registry::RegistryError::Invalid { .. }
            ))
        ));
    }
}
