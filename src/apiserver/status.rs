//! The one place errors become a `metav1.Status` body and an HTTP code.

use http::StatusCode;
use serde_json::{json, Value};

use crate::registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{message}")]
    NotFound { message: String, details: Value },
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    /// Server-side apply touched fields other managers own.
    #[error("{0}")]
    ApplyConflict(String),
    #[error("the request is too large")]
    TooLarge,
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn not_found_path() -> Self {
        ApiError::NotFound {
            message: "the server could not find the requested resource".into(),
            details: json!({}),
        }
    }

    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::Registry(e) => match e {
                RegistryError::NotFound { .. } => StatusCode::NOT_FOUND,
                RegistryError::AlreadyExists { .. } | RegistryError::Conflict { .. } => {
                    StatusCode::CONFLICT
                }
                RegistryError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                RegistryError::BadRequest(_) => StatusCode::BAD_REQUEST,
                RegistryError::Forbidden(_) => StatusCode::FORBIDDEN,
                RegistryError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
                RegistryError::Expired { .. } => StatusCode::GONE,
                RegistryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::ApplyConflict(_) => StatusCode::CONFLICT,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::Registry(e) => match e {
                RegistryError::NotFound { .. } => "NotFound",
                RegistryError::AlreadyExists { .. } => "AlreadyExists",
                RegistryError::Conflict { .. } => "Conflict",
                RegistryError::Invalid { .. } => "Invalid",
                RegistryError::BadRequest(_) => "BadRequest",
                RegistryError::Forbidden(_) => "Forbidden",
                RegistryError::MethodNotAllowed(_) => "MethodNotAllowed",
                RegistryError::Expired { .. } => "Expired",
                RegistryError::Internal(_) => "InternalError",
            },
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::ApplyConflict(_) => "Conflict",
            ApiError::NotFound { .. } => "NotFound",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::TooLarge => "RequestEntityTooLarge",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Internal(_) => "InternalError",
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            ApiError::Registry(RegistryError::NotFound { resource, name })
            | ApiError::Registry(RegistryError::AlreadyExists { resource, name })
            | ApiError::Registry(RegistryError::Conflict { resource, name, .. }) => {
                let (kind, group) = resource.split_once('.').unwrap_or((resource.as_str(), ""));
                Some(json!({"name": name, "group": group, "kind": kind}))
            }
            ApiError::Registry(RegistryError::Invalid {
                kind,
                name,
                group,
                causes,
            }) => Some(json!({
                "name": name, "group": group, "kind": kind,
                "causes": causes.iter().map(|c| json!({"reason": c.reason(), "message": cause_message(c), "field": c.field})).collect::<Vec<_>>(),
            })),
            // Even empty, as the API server sends it: kubectl reads `details` of every NotFound
            // (`kubectl debug` crashed on a 404 for an unknown subresource without it).
            ApiError::NotFound { details, .. } => Some(details.clone()),
            _ => None,
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::Registry(RegistryError::Invalid {
                kind,
                name,
                group,
                causes,
            }) => {
                let qualified = if group.is_empty() {
                    kind.clone()
                } else {
                    format!("{kind}.{group}")
                };
                let list: Vec<String> = causes.iter().map(|c| c.message()).collect();
                let joined = if list.len() == 1 {
                    list[0].clone()
                } else {
                    format!("[{}]", list.join(", "))
                };
                format!("{qualified} \"{name}\" is invalid: {joined}")
            }
            ApiError::Registry(RegistryError::NotFound { resource, name }) if name.is_empty() => {
                format!("{resource} not found")
            }
            other => other.to_string(),
        }
    }

    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        if let Some(details) = self.details() {
            status["details"] = details;
        }
        status
    }
}

/// A cause's message without its field path, which the cause carries separately.
fn cause_message(cause: &crate::api::validation::FieldError) -> String {
    let full = cause.message();
    full.strip_prefix(&format!("{}: ", cause.field))
        .map(str::to_string)
        .unwrap_or(full)
}

pub fn success_status(details: Option<Value>) -> Value {
    let mut status =
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    if let Some(d) = details {
        status["details"] = d;
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_matches_kubernetes_shape() {
        let e = ApiError::Registry(RegistryError::NotFound {
            resource: "pods".into(),
            name: "nope".into(),
        });
        assert_eq!(e.code(), StatusCode::NOT_FOUND);
        assert_eq!(
            e.status(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"nope\" not found",
                   "reason":"NotFound","code":404,"details":{"name":"nope","group":"","kind":"pods"}})
        );
        assert_eq!(
            ApiError::not_found_path().status(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":"the server could not find the requested resource","reason":"NotFound",
                   "code":404,"details":{}})
        );
    }

    #[test]
    fn conflicts_name_the_group_qualified_resource() {
        let e = ApiError::Registry(RegistryError::Conflict {
            resource: "deployments.apps".into(),
            name: "x".into(),
            reason: "the object has been modified; please apply your changes to the latest version and try again".into(),
        });
        assert_eq!(e.status()["message"], "Operation cannot be fulfilled on deployments.apps \"x\": the object has been modified; please apply your changes to the latest version and try again");
        assert_eq!(e.status()["details"]["group"], "apps");
    }
}
