//! `FieldsV1`: the set of fields an object sets, in the encoding `metadata.managedFields` uses
//! (`f:<field>`, `k:{<merge key>}` for keyed list items, `v:<value>` for set members, `.` for the node itself).

use serde_json::{json, Map, Value};

/// Metadata fields the server owns; they never appear in a field set.
const SYSTEM_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
];

/// List item keys that identify an item, in the order Kubernetes' list-map keys prefer them.
const ITEM_KEYS: &[&str] = &[
    "name",
    "containerPort",
    "port",
    "mountPath",
    "devicePath",
    "type",
    "key",
    "uid",
    "ip",
];

pub fn fields_v1(obj: &Value) -> Value {
    let Some(root) = obj.as_object() else {
        return json!({});
    };
    let mut out = Map::new();
    for (key, value) in root {
        if key == "apiVersion" || key == "kind" || key == "status" {
            continue;
        }
        if key == "metadata" {
            let Some(m) = value.as_object() else { continue };
            let mut fm = Map::new();
            for (mk, mv) in m {
                if !SYSTEM_METADATA.contains(&mk.as_str()) && !mv.is_null() {
                    fm.insert(format!("f:{mk}"), node(mv));
                }
            }
            if !fm.is_empty() {
                out.insert("f:metadata".into(), Value::Object(fm));
            }
            continue;
        }
        if !value.is_null() {
            out.insert(format!("f:{key}"), node(value));
        }
    }
    Value::Object(out)
}

fn node(value: &Value) -> Value {
    match value {
        Value::Object(m) => {
            let mut out = Map::new();
            out.insert(".".into(), json!({}));
            for (k, v) in m {
                if !v.is_null() {
                    out.insert(format!("f:{k}"), node(v));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let mut out = Map::new();
            for item in items {
                match item {
                    Value::Object(m) => {
                        let Some(key) = ITEM_KEYS.iter().find(|k| m.contains_key(**k)) else {
                            return json!({});
                        };
                        let id = json!({ *key: m[*key] }).to_string();
                        out.insert(format!("k:{id}"), node(item));
                    }
                    scalar => {
                        out.insert(format!("v:{scalar}"), json!({}));
                    }
                }
            }
            Value::Object(out)
        }
        _ => json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_maps_keyed_lists_and_sets() {
        let obj = json!({"apiVersion":"v1","kind":"Pod",
            "metadata":{"name":"p","labels":{"app":"x"},"finalizers":["a"]},
            "spec":{"containers":[{"name":"c","image":"i"}]},"status":{"phase":"Running"}});
        assert_eq!(
            fields_v1(&obj),
            json!({"f:metadata":{"f:labels":{".":{},"f:app":{}},"f:finalizers":{"v:\"a\"":{}}},
                   "f:spec":{".":{},"f:containers":{"k:{\"name\":\"c\"}":{".":{},"f:name":{},"f:image":{}}}}})
        );
    }
}

/// A path into a field set: its `f:`/`k:`/`v:` elements from the root.
pub type FieldPath = Vec<String>;

/// The leaf paths of a field set (the `.` self markers are not leaves).
pub fn leaves(fields: &Value) -> Vec<FieldPath> {
    let mut out = Vec::new();
    collect_leaves(fields, &mut Vec::new(), &mut out);
    out
}

fn collect_leaves(fields: &Value, prefix: &mut FieldPath, out: &mut Vec<FieldPath>) {
    let Some(map) = fields.as_object() else {
        return;
    };
    let children: Vec<(&String, &Value)> = map.iter().filter(|(k, _)| k.as_str() != ".").collect();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.push(prefix.clone());
        }
        return;
    }
    for (k, v) in children {
        prefix.push(k.clone());
        collect_leaves(v, prefix, out);
        prefix.pop();
    }
}

/// How Kubernetes prints a field path in conflict messages (`.spec.replicas`, `.spec.containers[name="c"].image`).
pub fn display(path: &FieldPath) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(f) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = element.strip_prefix("k:") {
            let key: Value = serde_json::from_str(k).unwrap_or(Value::Null);
            let parts: Vec<String> = key
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_default();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = element.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        }
    }
    out
}

fn list_item_matches(item: &Value, element: &str) -> bool {
    if let Some(k) = element.strip_prefix("k:") {
        let Ok(Value::Object(key)) = serde_json::from_str::<Value>(k) else {
            return false;
        };
        key.iter().all(|(kk, kv)| item.get(kk) == Some(kv))
    } else if let Some(v) = element.strip_prefix("v:") {
        serde_json::from_str::<Value>(v).is_ok_and(|v| *item == v)
    } else {
        false
    }
}

/// The value at a field path of an object.
pub fn get<'a>(obj: &'a Value, path: &FieldPath) -> Option<&'a Value> {
    let mut cur = obj;
    for element in path {
        cur = match element.strip_prefix("f:") {
            Some(f) => cur.get(f)?,
            None => cur
                .as_array()?
                .iter()
                .find(|item| list_item_matches(item, element))?,
        };
    }
    Some(cur)
}

/// Removes the value at a field path, if present.
pub fn remove(obj: &mut Value, path: &FieldPath) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for element in parents {
        let next = match element.strip_prefix("f:") {
            Some(f) => cur.get_mut(f),
            None => cur
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|item| list_item_matches(item, element))),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match last.strip_prefix("f:") {
        Some(f) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(f);
            }
        }
        None => {
            if let Some(a) = cur.as_array_mut() {
                a.retain(|item| !list_item_matches(item, last));
            }
        }
    }
}

/// A field set without the given leaf paths (emptied parents go too).
pub fn without(fields: &Value, paths: &[FieldPath]) -> Value {
    let mut out = fields.clone();
    for path in paths {
        remove_path(&mut out, path);
    }
    out
}

fn remove_path(fields: &mut Value, path: &[String]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let Some(map) = fields.as_object_mut() else {
        return false;
    };
    if rest.is_empty() {
        map.remove(first);
    } else if let Some(child) = map.get_mut(first) {
        if remove_path(child, rest) {
            map.remove(first);
        }
    }
    map.keys().all(|k| k == ".")
}

/// Fields whose values differ between `old` and `new` (added or changed), as a field set.
pub fn changed_fields(old: &Value, new: &Value) -> Value {
    let all = fields_v1(new);
    let changed: Vec<FieldPath> = leaves(&all)
        .into_iter()
        .filter(|p| get(old, p) != get(new, p))
        .collect();
    let unchanged: Vec<FieldPath> = leaves(&all)
        .into_iter()
        .filter(|p| !changed.contains(p))
        .collect();
    without(&all, &unchanged)
}

/// The union of two field sets.
pub fn union(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut out = x.clone();
            for (k, v) in y {
                let merged = match out.get(k) {
                    Some(existing) => union(existing, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (_, b) => b.clone(),
    }
}

#[cfg(test)]
mod path_tests {
    use super::*;

    #[test]
    fn leaves_get_remove_and_display() {
        let obj = json!({"spec":{"replicas":2,"template":{"spec":{"containers":[{"name":"c","image":"i"}]}}}});
        let fs = fields_v1(&obj);
        let ls = leaves(&fs);
        assert!(ls.contains(&vec!["f:spec".to_string(), "f:replicas".to_string()]));
        let image: FieldPath = [
            "f:spec",
            "f:template",
            "f:spec",
            "f:containers",
            "k:{\"name\":\"c\"}",
            "f:image",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(get(&obj, &image), Some(&json!("i")));
        assert_eq!(
            display(&image),
            ".spec.template.spec.containers[name=\"c\"].image"
        );
        let mut o = obj.clone();
        remove(&mut o, &image);
        assert!(o["spec"]["template"]["spec"]["containers"][0]
            .get("image")
            .is_none());
        let reduced = without(&fs, &[image]);
        assert!(!leaves(&reduced)
            .iter()
            .any(|p| p.last().unwrap() == "f:image"));
    }

    #[test]
    fn changed_fields_only_lists_differences() {
        let old = json!({"spec":{"replicas":2,"paused":false}});
        let new = json!({"spec":{"replicas":3,"paused":false}});
        assert_eq!(
            changed_fields(&old, &new),
            json!({"f:spec":{".":{},"f:replicas":{}}})
        );
        assert_eq!(
            union(&json!({"f:a":{}}), &json!({"f:b":{}})),
            json!({"f:a":{},"f:b":{}})
        );
    }
}
