//! The bridge from resource-table entries to k8s-openapi's Rust types: decoding a JSON object through its
//! typed form (which normalises it and rejects values of the wrong type), finding the fields a typed decode
//! dropped (for `fieldValidation=Strict|Warn`), and JSON schemas for the OpenAPI documents.

use serde_json::Value;

use super::resources::ResourceInfo;

#[derive(Debug, thiserror::Error)]
pub enum TypedError {
    #[error("no Rust type is registered for {0}")]
    UnknownKind(String),
    #[error("{0}")]
    Decode(String),
}

macro_rules! with_types {
    ($callback:ident) => {
        $callback! {
            ("", "v1", "Pod") => k8s_openapi::api::core::v1::Pod,
            ("", "v1", "Service") => k8s_openapi::api::core::v1::Service,
            ("", "v1", "Namespace") => k8s_openapi::api::core::v1::Namespace,
            ("", "v1", "Node") => k8s_openapi::api::core::v1::Node,
            ("", "v1", "Endpoints") => k8s_openapi::api::core::v1::Endpoints,
            ("", "v1", "ConfigMap") => k8s_openapi::api::core::v1::ConfigMap,
            ("", "v1", "Secret") => k8s_openapi::api::core::v1::Secret,
            ("", "v1", "Event") => k8s_openapi::api::core::v1::Event,
            ("", "v1", "ServiceAccount") => k8s_openapi::api::core::v1::ServiceAccount,
            ("", "v1", "PersistentVolume") => k8s_openapi::api::core::v1::PersistentVolume,
            ("", "v1", "PersistentVolumeClaim") => k8s_openapi::api::core::v1::PersistentVolumeClaim,
            ("", "v1", "ResourceQuota") => k8s_openapi::api::core::v1::ResourceQuota,
            ("", "v1", "LimitRange") => k8s_openapi::api::core::v1::LimitRange,
            ("", "v1", "Binding") => k8s_openapi::api::core::v1::Binding,
            ("apps", "v1", "Deployment") => k8s_openapi::api::apps::v1::Deployment,
            ("apps", "v1", "ReplicaSet") => k8s_openapi::api::apps::v1::ReplicaSet,
            ("apps", "v1", "StatefulSet") => k8s_openapi::api::apps::v1::StatefulSet,
            ("apps", "v1", "DaemonSet") => k8s_openapi::api::apps::v1::DaemonSet,
            ("apps", "v1", "ControllerRevision") => k8s_openapi::api::apps::v1::ControllerRevision,
            ("events.k8s.io", "v1", "Event") => k8s_openapi::api::events::v1::Event,
            ("autoscaling", "v2", "HorizontalPodAutoscaler") => k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler,
            ("autoscaling", "v1", "HorizontalPodAutoscaler") => k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler,
            ("autoscaling", "v1", "Scale") => k8s_openapi::api::autoscaling::v1::Scale,
            ("batch", "v1", "Job") => k8s_openapi::api::batch::v1::Job,
            ("batch", "v1", "CronJob") => k8s_openapi::api::batch::v1::CronJob,
            ("networking.k8s.io", "v1", "Ingress") => k8s_openapi::api::networking::v1::Ingress,
            ("networking.k8s.io", "v1", "IngressClass") => k8s_openapi::api::networking::v1::IngressClass,
            ("networking.k8s.io", "v1", "NetworkPolicy") => k8s_openapi::api::networking::v1::NetworkPolicy,
            ("policy", "v1", "PodDisruptionBudget") => k8s_openapi::api::policy::v1::PodDisruptionBudget,
            ("policy", "v1", "Eviction") => k8s_openapi::api::policy::v1::Eviction,
            ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => k8s_openapi::api::rbac::v1::ClusterRoleBinding,
            ("rbac.authorization.k8s.io", "v1", "ClusterRole") => k8s_openapi::api::rbac::v1::ClusterRole,
            ("rbac.authorization.k8s.io", "v1", "RoleBinding") => k8s_openapi::api::rbac::v1::RoleBinding,
            ("rbac.authorization.k8s.io", "v1", "Role") => k8s_openapi::api::rbac::v1::Role,
            ("storage.k8s.io", "v1", "StorageClass") => k8s_openapi::api::storage::v1::StorageClass,
            ("scheduling.k8s.io", "v1", "PriorityClass") => k8s_openapi::api::scheduling::v1::PriorityClass,
            ("coordination.k8s.io", "v1", "Lease") => k8s_openapi::api::coordination::v1::Lease,
            ("discovery.k8s.io", "v1", "EndpointSlice") => k8s_openapi::api::discovery::v1::EndpointSlice,
        }
    };
}

macro_rules! roundtrip_impl {
    ($(($g:literal, $v:literal, $k:literal) => $ty:ty,)*) => {
        fn roundtrip_by_gvk(group: &str, version: &str, kind: &str, value: Value) -> Result<Value, TypedError> {
            match (group, version, kind) {
                $(($g, $v, $k) => {
                    let typed: $ty = serde_json::from_value(value).map_err(|e| TypedError::Decode(e.to_string()))?;
                    serde_json::to_value(&typed).map_err(|e| TypedError::Decode(e.to_string()))
                })*
                _ => Err(TypedError::UnknownKind(format!("{group}/{version} {kind}"))),
            }
        }
    };
}
with_types!(roundtrip_impl);

macro_rules! schema_impl {
    ($(($g:literal, $v:literal, $k:literal) => $ty:ty,)*) => {
        /// Adds the schema of a kind (and of everything it references) to the generator; returns the
        /// schema name (`io.k8s.api.apps.v1.Deployment`).
        pub fn add_schema(gen: &mut schemars::SchemaGenerator, group: &str, version: &str, kind: &str) -> Option<String> {
            match (group, version, kind) {
                $(($g, $v, $k) => {
                    gen.subschema_for::<$ty>();
                    Some(<$ty as schemars::JsonSchema>::schema_name().into_owned())
                })*
                _ => None,
            }
        }
    };
}
with_types!(schema_impl);

/// Decodes `value` as the typed object of `group/version kind` and encodes it again. The result carries
/// apiVersion and kind, drops unknown fields and nulls, and keeps the typed field order.
pub fn roundtrip(
    group: &str,
    version: &str,
    kind: &str,
    mut value: Value,
) -> Result<Value, TypedError> {
    if let Some(obj) = value.as_object_mut() {
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        obj.insert("apiVersion".into(), Value::String(api_version));
        obj.insert("kind".into(), Value::String(kind.to_string()));
    }
    roundtrip_by_gvk(group, version, kind, value)
}

pub fn roundtrip_resource(info: &ResourceInfo, value: Value) -> Result<Value, TypedError> {
    roundtrip(info.group, info.version, info.kind, value)
}

/// Field paths present (with a non-null value) in `input` but absent from its typed round trip `decoded`:
/// the fields the type does not know. Paths are written as Kubernetes' strict decoder writes them
/// (`spec.template.spec.containers[0].foo`).
pub fn unknown_fields(input: &Value, decoded: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_unknown(input, decoded, String::new(), &mut out);
    out
}

fn collect_unknown(input: &Value, decoded: &Value, path: String, out: &mut Vec<String>) {
    match (input, decoded) {
        (Value::Object(i), Value::Object(d)) => {
            for (key, value) in i {
                if value.is_null() {
                    continue;
                }
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match d.get(key) {
                    Some(dv) => collect_unknown(value, dv, child, out),
                    None if is_empty_container(value) => {}
                    None => out.push(child),
                }
            }
        }
        (Value::Array(i), Value::Array(d)) => {
            for (idx, (iv, dv)) in i.iter().zip(d.iter()).enumerate() {
                collect_unknown(iv, dv, format!("{path}[{idx}]"), out);
            }
        }
        _ => {}
    }
}

/// A typed encoder omits empty optional maps of some types (e.g. `"status": {}` on objects whose status has
/// only optional fields is kept, but `metadata.creationTimestamp: null` is not); an empty value carries no
/// information, so it is never reported as unknown.
fn is_empty_container(value: &Value) -> bool {
    match value {
        Value::Object(m) => m.values().all(|v| v.is_null() || is_empty_container(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roundtrip_rejects_wrong_types_and_drops_unknown_fields() {
        let bad = json!({"metadata":{"name":"x"},"spec":{"replicas":"three"}});
        assert!(roundtrip("apps", "v1", "Deployment", bad).is_err());

        let input = json!({"metadata":{"name":"x","creationTimestamp":null},"spec":{"replicas":2,"bogus":1,
            "selector":{"matchLabels":{"a":"b"}},
            "template":{"spec":{"containers":[{"name":"c","image":"i","typo":true}]}}},"status":{}});
        let out = roundtrip("apps", "v1", "Deployment", input.clone()).unwrap();
        assert_eq!(out["apiVersion"], "apps/v1");
        assert_eq!(out["kind"], "Deployment");
        assert!(out["spec"].get("bogus").is_none());
        assert_eq!(
            unknown_fields(&input, &out),
            vec!["spec.bogus", "spec.template.spec.containers[0].typo"]
        );
    }

    #[test]
    fn unknown_kinds_are_reported() {
        assert!(matches!(
            roundtrip("x", "v1", "Nope", json!({})),
            Err(TypedError::UnknownKind(_))
        ));
    }
}
