//! OpenAPI v3: the index at `/openapi/v3` and one document per group version with real schemas (from
//! k8s-openapi's schemars implementations) and the PATCH operations kubectl inspects to decide on
//! server-side field validation. Documents are built once per server, on first use.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};

use crate::api::resources::{self, ResourceInfo};
use crate::api::typed;

#[derive(Default)]
pub struct OpenApi {
    docs: OnceLock<BTreeMap<String, (Value, String)>>,
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

impl OpenApi {
    fn docs(&self) -> &BTreeMap<String, (Value, String)> {
        self.docs.get_or_init(|| {
            resources::group_versions()
                .into_iter()
                .map(|(g, v)| {
                    let doc = build_document(g, v);
                    let hash = hex::encode_upper(Sha512::digest(doc.to_string().as_bytes()));
                    (gv_path(g, v), (doc, hash))
                })
                .collect()
        })
    }

    pub fn index(&self) -> Value {
        let paths: Map<String, Value> = self
            .docs()
            .iter()
            .map(|(path, (_, hash))| {
                (
                    path.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
                )
            })
            .collect();
        json!({"paths": paths})
    }

    /// The document for `api/v1` or `apis/<g>/<v>` and its hash.
    pub fn document(&self, path: &str) -> Option<&(Value, String)> {
        self.docs().get(path.trim_matches('/'))
    }
}

fn build_document(group: &str, version: &str) -> Value {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut paths = Map::new();
    let mut kinds: Vec<(String, &ResourceInfo)> = Vec::new();
    for info in resources::RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        if let Some(name) = typed::add_schema(&mut generator, info.group, info.version, info.kind) {
            kinds.push((name, info));
        }
        for sub in info.subresources {
            typed::add_schema(&mut generator, sub.group, sub.version, sub.kind);
        }
        add_paths(&mut paths, info);
    }
    let mut schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    add_patch_metadata(&mut schemas);
    for (name, info) in kinds {
        if let Some(schema) = schemas.get_mut(&name).and_then(Value::as_object_mut) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": info.group, "version": info.version, "kind": info.kind}]),
            );
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", crate::apiserver::KUBERNETES_MINOR)},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// Schemas whose list fields carry strategic-merge metadata, and where the SMP table finds such a type.
/// kubectl computes apply and edit patches from these extensions; without them every list looks atomic.
const PATCH_METADATA_TYPES: &[(&str, &str, &[&str])] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "Pod",
        &["metadata"],
    ),
    ("io.k8s.api.core.v1.PodSpec", "Pod", &["spec"]),
    (
        "io.k8s.api.core.v1.Container",
        "Pod",
        &["spec", "containers"],
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "Pod",
        &["spec", "ephemeralContainers"],
    ),
    ("io.k8s.api.core.v1.PodStatus", "Pod", &["status"]),
    ("io.k8s.api.core.v1.ServiceSpec", "Service", &["spec"]),
    ("io.k8s.api.core.v1.NodeSpec", "Node", &["spec"]),
    ("io.k8s.api.core.v1.NodeStatus", "Node", &["status"]),
];

fn add_patch_metadata(schemas: &mut Map<String, Value>) {
    use super::patch::strategic::{list_strategy, ListStrategy};
    for (schema_name, kind, path) in PATCH_METADATA_TYPES {
        let Some(properties) = schemas
            .get_mut(*schema_name)
            .and_then(|s| s.get_mut("properties"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for (field, property) in properties.iter_mut() {
            let mut field_path = path.to_vec();
            field_path.push(field.as_str());
            let Some(property) = property.as_object_mut() else {
                continue;
            };
            match list_strategy(kind, &field_path) {
                ListStrategy::Merge { merge_key } => {
                    property.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
                    property.insert("x-kubernetes-patch-merge-key".into(), json!(merge_key));
                }
                ListStrategy::MergePrimitives => {
                    property.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
                }
                ListStrategy::Replace => {}
            }
        }
    }
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn add_paths(paths: &mut Map<String, Value>, info: &ResourceInfo) {
    let base = format!("/{}", gv_path(info.group, info.version));
    let collection = if info.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", info.plural)
    } else {
        format!("{base}/{}", info.plural)
    };
    let gvk = json!({"group": info.group, "version": info.version, "kind": info.kind});
    let schema_ref = typed_ref(info);
    let body = |types: &[&str]| {
        let content: Map<String, Value> = types
            .iter()
            .map(|t| (t.to_string(), json!({"schema": schema_ref.clone()})))
            .collect();
        json!({"content": content, "required": true})
    };
    let params = || {
        vec![
            query_param("dryRun", "When present, indicates that modifications should not be persisted."),
            query_param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
            query_param("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict."),
        ]
    };
    let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref.clone()}}}});
    paths.insert(
        collection.clone(),
        json!({
            "get": {"operationId": format!("list{}", info.kind), "x-kubernetes-action": "list", "x-kubernetes-group-version-kind": gvk, "responses": ok},
            "post": {"operationId": format!("create{}", info.kind), "x-kubernetes-action": "post", "x-kubernetes-group-version-kind": gvk,
                     "parameters": params(), "requestBody": body(&["*/*"]), "responses": ok},
        }),
    );
    let item = format!("{collection}/{{name}}");
    let mut patch_params = params();
    patch_params.push(query_param(
        "force",
        "Force is going to \"force\" Apply requests.",
    ));
    let mut item_ops = json!({
        "get": {"operationId": format!("read{}", info.kind), "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk, "responses": ok},
        "put": {"operationId": format!("replace{}", info.kind), "x-kubernetes-action": "put", "x-kubernetes-group-version-kind": gvk,
                "parameters": params(), "requestBody": body(&["*/*"]), "responses": ok},
        "patch": {"operationId": format!("patch{}", info.kind), "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk,
                  "parameters": patch_params,
                  "requestBody": body(&["application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json"]),
                  "responses": ok},
        "delete": {"operationId": format!("delete{}", info.kind), "x-kubernetes-action": "delete", "x-kubernetes-group-version-kind": gvk, "responses": ok},
    });
    item_ops["parameters"] = json!([
        {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}},
    ]);
    paths.insert(item, item_ops);
}

fn typed_ref(info: &ResourceInfo) -> Value {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    match typed::add_schema(&mut generator, info.group, info.version, info.kind) {
        Some(name) => json!({"$ref": format!("#/components/schemas/{name}")}),
        None => json!({"type": "object"}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_document_has_deployment_schema_and_validating_patch() {
        let api = OpenApi::default();
        let (doc, hash) = api.document("apis/apps/v1").unwrap();
        assert_eq!(hash.len(), 128);
        let schema = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            schema["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        assert!(
            doc["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]
                ["replicas"]
                .is_object()
        );
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        assert!(patch["requestBody"]["content"]
            .get("application/strategic-merge-patch+json")
            .is_some());
    }

    #[test]
    fn list_fields_carry_patch_merge_keys() {
        let api = OpenApi::default();
        let (doc, _) = api.document("api/v1").unwrap();
        let containers =
            &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        let env =
            &doc["components"]["schemas"]["io.k8s.api.core.v1.Container"]["properties"]["env"];
        assert_eq!(env["x-kubernetes-patch-merge-key"], "name");
    }

    #[test]
    fn index_points_at_hashed_documents() {
        let api = OpenApi::default();
        let index = api.index();
        let url = index["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/api/v1?hash="));
        assert!(index["paths"]["apis/autoscaling/v2"].is_object());
    }
}
