//! Object validation on create and update, reported as field errors. Only the name rule exists so far;
//! the per-kind rules of Kubernetes are still to be written (noted on issue 2).
use serde_json::Value;
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorType {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    TooLong,
    Forbidden,
    TooMany,
}
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub error_type: ErrorType,
    pub field: String,
    pub value: Option<Value>,
    pub detail: String,
}
impl FieldError {
    pub fn message(&self) -> String {
        format!("{}: Invalid value: {}", self.field, self.detail)
    }
    pub fn reason(&self) -> &'static str {
        "FieldValueInvalid"
    }
}
pub fn validate_create(_kind: &str, obj: &Value, _namespaced: bool) -> Vec<FieldError> {
    if obj["metadata"]["name"].as_str().unwrap_or("").is_empty() {
        return vec![FieldError {
            error_type: ErrorType::Required,
            field: "metadata.name".into(),
            value: None,
            detail: "name or generateName is required".into(),
        }];
    }
    Vec::new()
}
pub fn validate_update(kind: &str, new: &Value, _old: &Value, namespaced: bool) -> Vec<FieldError> {
    validate_create(kind, new, namespaced)
}
