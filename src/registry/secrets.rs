//! Secret strategy: `stringData` is write-only convenience, merged into `data` (base64) on every write, and
//! the type defaults to Opaque.

use base64::Engine;
use serde_json::Value;

use crate::api::resources::ResourceInfo;

use super::generic;
use super::strategy::Strategy;

pub struct SecretStrategy;

impl Strategy for SecretStrategy {
    fn prepare_for_create(&self, info: &ResourceInfo, obj: &mut Value) {
        fold_string_data(obj);
        generic::prepare_for_create(info, obj);
    }

    fn prepare_for_update(&self, info: &ResourceInfo, new: &mut Value, old: &Value) {
        fold_string_data(new);
        generic::prepare_for_update(info, new, old);
    }
}

fn fold_string_data(obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let Some(Value::Object(string_data)) = root.remove("stringData") else {
        return;
    };
    let data = root
        .entry("data")
        .or_insert_with(|| Value::Object(Default::default()));
    if !data.is_object() {
        *data = Value::Object(Default::default());
    }
    for (k, v) in string_data {
        let text = v.as_str().unwrap_or_default();
        data[&k] = Value::String(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn string_data_becomes_base64_data() {
        let mut s = json!({"data":{"a":"eA=="},"stringData":{"b":"hi"}});
        fold_string_data(&mut s);
        assert_eq!(s, json!({"data":{"a":"eA==","b":"aGk="}}));
    }
}
