//! ControllerRevisions, the history DaemonSets and StatefulSets keep of their pod templates (Kubernetes'
//! `pkg/controller/history` plus the revision helpers the two controllers share). A revision's data is a
//! strategic merge patch that puts the template back, `{"spec":{"template":{…,"$patch":"replace"}}}`:
//! `kubectl rollout undo` applies it as is and `kubectl rollout history --revision` shows its template.
//! Revisions are numbered in order, named `<owner>-<hash>`, owned by their set as controller and carry
//! the set's annotations (so `kubernetes.io/change-cause` shows in `rollout history`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::{json, Value};

use super::rollout::{controller_ref, normalized, safe_encode};

/// Pod label naming the revision a pod was made from: a DaemonSet's template hash, a StatefulSet's
/// revision name. DaemonSet revisions carry it too, with the hash.
pub const CONTROLLER_REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// The hash label of revisions made by `pkg/controller/history` (StatefulSets).
pub const HISTORY_HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// Kubernetes truncates the owner's name so that `<prefix>-<hash>` stays a valid name.
const MAX_PREFIX_LEN: usize = 223;

/// The revision data for a pod template: the patch that restores it.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut template {
        map.insert("$patch".into(), "replace".into());
    }
    json!({"spec": {"template": template}})
}

/// Whether a revision holds this data. Kubernetes compares the raw bytes; comparing the JSON with empty
/// values dropped keeps a template restored by `rollout undo` (which may lose or gain `{}`s on the way
/// through the API) equal to the revision it came from.
pub fn data_equals(revision: &ControllerRevision, data: &Value) -> bool {
    revision
        .data
        .as_ref()
        .is_some_and(|d| normalized(d.0.clone()) == normalized(data.clone()))
}

/// Whether two revisions hold the same data.
pub fn equal_revisions(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    b.data.as_ref().is_some_and(|d| data_equals(a, &d.0))
}

/// The pod template a revision restores.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision
        .data
        .as_ref()?
        .0
        .get("spec")?
        .get("template")?
        .clone();
    if let Value::Object(map) = &mut template {
        map.shift_remove("$patch");
    }
    serde_json::from_value(template).ok()
}

/// `HashControllerRevision`: FNV-1 (32 bit) over the data, then the collision count in decimal, in
/// Kubernetes' safe alphabet.
pub fn hash_data(data: &Value, collision_count: Option<i32>) -> String {
    let count = collision_count.map(|c| c.to_string()).unwrap_or_default();
    let hash = fnv1([data.to_string().as_bytes(), count.as_bytes()]);
    safe_encode(&hash.to_string())
}

/// 32-bit FNV-1 (multiply, then xor) over the parts in order.
fn fnv1<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u32 {
    let mut hash: u32 = 2_166_136_261;
    for &b in parts.into_iter().flatten() {
        hash = hash.wrapping_mul(16_777_619);
        hash ^= u32::from(b);
    }
    hash
}

/// `<prefix>-<hash>`, the prefix cut so the name stays within 253 characters.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let cut = prefix
        .char_indices()
        .nth(MAX_PREFIX_LEN)
        .map_or(prefix, |(i, _)| &prefix[..i]);
    format!("{cut}-{hash}")
}

/// A new revision of an owner: its template's labels plus `extra_labels`, the owner's annotations, the
/// owner as controller.
pub fn new_revision(
    owner: &ObjectMeta,
    kind: &str,
    labels: BTreeMap<String, String>,
    name: String,
    data: Value,
    revision: i64,
) -> ControllerRevision {
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: owner.namespace.clone(),
            labels: Some(labels),
            annotations: owner.annotations.clone().filter(|a| !a.is_empty()),
            owner_references: Some(vec![controller_ref("apps/v1", kind, owner)]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// Oldest first: by revision number, then creation time, then name.
pub fn sort_revisions(revisions: &mut [&ControllerRevision]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let at =
                    |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
                at(a).cmp(&at(b))
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// The highest revision number, 0 when there is none.
pub fn max_revision<'a>(revisions: impl IntoIterator<Item = &'a ControllerRevision>) -> i64 {
    revisions.into_iter().map(|r| r.revision).max().unwrap_or(0)
}

/// The revisions controlled by the owner with this uid.
pub fn controlled_by<'a>(
    revisions: impl IntoIterator<Item = &'a ControllerRevision>,
    kind: &str,
    uid: &str,
) -> Vec<&'a ControllerRevision> {
    revisions
        .into_iter()
        .filter(|r| super::controller_of(&r.metadata, kind).is_some_and(|o| o.uid == uid))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(name: &str, number: i64, data: Value) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(RawExtension(data)),
            revision: number,
        }
    }

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]},
        }))
        .unwrap()
    }

    #[test]
    fn the_patch_round_trips_the_template() {
        let t = template("busybox:1.36");
        let data = template_patch(&t);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        let r = revision("web-1", 1, data.clone());
        assert_eq!(template_of(&r), Some(t));
        assert!(data_equals(&r, &data));
        assert!(!data_equals(&r, &template_patch(&template("busybox:1.37"))));
        // Empty values do not make a difference.
        let mut padded = data.clone();
        padded["spec"]["template"]["spec"]["volumes"] = json!([]);
        assert!(data_equals(&r, &padded));
    }

    #[test]
    fn hashes_are_fnv1_in_the_safe_alphabet_and_move_with_the_collision_count() {
        let data = json!({"a": 1});
        let h = hash_data(&data, None);
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        assert_eq!(h, hash_data(&data, None));
        assert_ne!(h, hash_data(&data, Some(1)));
        assert_ne!(hash_data(&data, Some(1)), hash_data(&data, Some(2)));
        // Published FNV-1 test vectors (FNV-1a would give 0xe40c292c for "a").
        assert_eq!(fnv1([&b""[..]]), 0x811c_9dc5);
        assert_eq!(fnv1([&b"a"[..]]), 0x050c_5d7e);
        assert_eq!(fnv1([&b"fo"[..], &b"obar"[..]]), 0x31f0_b262);
    }

    #[test]
    fn names_cut_long_prefixes() {
        assert_eq!(revision_name("web", "abc"), "web-abc");
        let long = "x".repeat(300);
        assert_eq!(revision_name(&long, "h").len(), MAX_PREFIX_LEN + 2);
    }

    #[test]
    fn revisions_sort_by_number_then_name() {
        let a = revision("a", 2, json!({}));
        let b = revision("b", 1, json!({}));
        let c = revision("c", 2, json!({}));
        let mut all = vec![&c, &a, &b];
        sort_revisions(&mut all);
        let names: Vec<_> = all.iter().map(|r| r.metadata.name.as_deref()).collect();
        assert_eq!(names, [Some("b"), Some("a"), Some("c")]);
        assert_eq!(max_revision(all), 2);
    }
}
