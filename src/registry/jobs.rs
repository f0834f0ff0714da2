//! Job strategy: unless `spec.manualSelector` is true, a new Job gets Kubernetes' generated selector
//! (`batch.kubernetes.io/controller-uid=<uid>`) and its pod template the labels that match it — the
//! controller UID and the Job name, each under its `batch.kubernetes.io/` key and the legacy bare key —
//! so the pods of two Jobs never overlap.

use serde_json::{Map, Value};

use crate::api::meta;
use crate::api::resources::ResourceInfo;

use super::generic;
use super::strategy::Strategy;

const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
const LEGACY_JOB_NAME_LABEL: &str = "job-name";

pub struct JobStrategy;

impl Strategy for JobStrategy {
    fn prepare_for_create(&self, info: &ResourceInfo, obj: &mut Value) {
        let had_labels = !meta::labels(obj).is_empty();
        generic::prepare_for_create(info, obj);
        if obj["spec"]["manualSelector"] != Value::Bool(true) {
            generate_selector(obj);
        }
        // Kubernetes copies the template's labels into a label-less Job each time it reads one, so
        // the generated labels show on the Job too; orch defaults on write, so it copies them here.
        if !had_labels {
            let template_labels = obj["spec"]["template"]["metadata"]["labels"].clone();
            if template_labels.as_object().is_some_and(|l| !l.is_empty()) {
                meta::set_meta(obj, "labels", template_labels);
            }
        }
    }
}

/// Kubernetes' `generateSelector`: labels the user already set are kept (validation rejects a
/// conflicting one), and the selector gains the controller-uid requirement.
fn generate_selector(job: &mut Value) {
    let name = meta::name(job).unwrap_or_default().to_string();
    let uid = meta::uid(job).unwrap_or_default().to_string();
    let Some(spec) = object_at(job, &["spec"]) else {
        return;
    };
    if let Some(labels) = object_at_map(spec, &["template", "metadata", "labels"]) {
        for key in [LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL] {
            labels
                .entry(key)
                .or_insert_with(|| Value::String(name.clone()));
        }
        for key in [LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL] {
            labels
                .entry(key)
                .or_insert_with(|| Value::String(uid.clone()));
        }
    }
    if let Some(match_labels) = object_at_map(spec, &["selector", "matchLabels"]) {
        match_labels
            .entry(CONTROLLER_UID_LABEL)
            .or_insert_with(|| Value::String(uid));
    }
}

/// The object at `path`, creating missing or null levels; `None` when something on the way is not
/// an object (validation reports that later).
fn object_at<'a>(value: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    object_at_map(value.as_object_mut()?, path)
}

fn object_at_map<'a>(
    map: &'a mut Map<String, Value>,
    path: &[&str],
) -> Option<&'a mut Map<String, Value>> {
    let Some((first, rest)) = path.split_first() else {
        return Some(map);
    };
    let child = map
        .entry(first.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if child.is_null() {
        *child = Value::Object(Map::new());
    }
    object_at_map(child.as_object_mut()?, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jobs() -> &'static ResourceInfo {
        crate::api::resources::find("batch", "v1", "jobs").unwrap()
    }

    fn job(spec: Value) -> Value {
        json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": spec})
    }

    #[test]
    fn generated_selector_and_template_labels() {
        let mut j = job(json!({"template": {"spec": {"restartPolicy": "Never"}}}));
        JobStrategy.prepare_for_create(jobs(), &mut j);
        assert_eq!(
            j["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        let expected = json!({
            "batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "pi",
            "controller-uid": "u-1", "job-name": "pi",
        });
        assert_eq!(j["spec"]["template"]["metadata"]["labels"], expected);
        assert_eq!(
            j["metadata"]["labels"], expected,
            "a label-less Job shows its template's"
        );
        assert_eq!(j["spec"]["manualSelector"], false);
    }

    #[test]
    fn user_labels_are_kept() {
        let mut j =
            job(json!({"template": {"metadata": {"labels": {"app": "x", "job-name": "mine"}}}}));
        j["metadata"]["labels"] = json!({"team": "a"});
        JobStrategy.prepare_for_create(jobs(), &mut j);
        assert_eq!(
            j["spec"]["template"]["metadata"]["labels"]["job-name"],
            "mine"
        );
        assert_eq!(j["spec"]["template"]["metadata"]["labels"]["app"], "x");
        assert_eq!(j["metadata"]["labels"], json!({"team": "a"}));
    }

    #[test]
    fn manual_selector_is_left_alone() {
        let mut j = job(
            json!({"manualSelector": true, "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}}}),
        );
        JobStrategy.prepare_for_create(jobs(), &mut j);
        assert_eq!(j["spec"]["selector"], json!({"matchLabels": {"a": "b"}}));
        assert_eq!(
            j["spec"]["template"]["metadata"]["labels"],
            json!({"a": "b"})
        );
    }

    #[test]
    fn malformed_specs_do_not_panic() {
        let mut j = job(json!({"template": "nonsense", "selector": 3}));
        JobStrategy.prepare_for_create(jobs(), &mut j);
        assert_eq!(j["spec"]["template"], "nonsense");
    }
}
