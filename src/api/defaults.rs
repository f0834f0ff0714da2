//! TEMP STUB until the defaults module lands.
pub fn apply_defaults(_kind: &str, _obj: &mut serde_json::Value) {}
