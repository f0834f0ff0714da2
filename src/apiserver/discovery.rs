//! Discovery documents: aggregated (`apidiscovery.k8s.io/v2`, what kubectl asks for first) and the legacy
//! `/api`, `/apis`, per-group and per-group-version lists, all derived from the resource table.

use serde_json::{json, Value};

use crate::api::resources::{self, ResourceInfo};

pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
pub const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which aggregated version the Accept header asks for, if any, honouring its order.
pub fn wants_aggregated(accept: &str) -> Option<&'static str> {
    for part in accept.split(',') {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        if !params.contains(&"as=APIGroupDiscoveryList")
            || !params.contains(&"g=apidiscovery.k8s.io")
        {
            continue;
        }
        if params.contains(&"v=v2") {
            return Some(AGGREGATED_V2);
        }
        if params.contains(&"v=v2beta1") {
            return Some(AGGREGATED_V2BETA1);
        }
    }
    None
}

fn scope(info: &ResourceInfo) -> &'static str {
    if info.namespaced {
        "Namespaced"
    } else {
        "Cluster"
    }
}

fn aggregated_resource(info: &ResourceInfo) -> Value {
    let mut r = json!({
        "resource": info.plural,
        "responseKind": {"group": info.group, "version": info.version, "kind": info.kind},
        "scope": scope(info),
        "singularResource": info.singular,
        "verbs": info.verbs(),
    });
    if !info.short_names.is_empty() {
        r["shortNames"] = json!(info.short_names);
    }
    if !info.categories.is_empty() {
        r["categories"] = json!(info.categories);
    }
    if !info.subresources.is_empty() {
        r["subresources"] = info
            .subresources
            .iter()
            .map(|s| {
                json!({"subresource": s.name, "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                       "verbs": s.verbs})
            })
            .collect();
    }
    r
}

fn aggregated_group(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = resources::discoverable()
                .filter(|r| r.group == group && r.version == *v)
                .map(aggregated_resource)
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

/// `/api` (core only) or `/apis` (every named group) in aggregated form; `version` is the apiVersion
/// (`apidiscovery.k8s.io/v2` or `v2beta1`).
pub fn aggregated(core: bool, version: &str) -> Value {
    let items: Vec<Value> = resources::groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, versions)| aggregated_group(g, &versions))
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": version, "metadata": {}, "items": items})
}

pub fn api_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

fn api_group(group: &str, versions: &[&str]) -> Value {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": gvs, "preferredVersion": gvs[0].clone()})
}

pub fn api_group_list() -> Value {
    let groups: Vec<Value> = resources::groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, versions)| api_group(g, &versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group_document(group: &str) -> Option<Value> {
    let (_, versions) = resources::groups()
        .into_iter()
        .find(|(g, _)| *g == group && !g.is_empty())?;
    let mut doc = api_group(group, &versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let infos: Vec<&ResourceInfo> = resources::discoverable()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if infos.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for info in &infos {
        let mut r = json!({"name": info.plural, "singularName": info.singular, "namespaced": info.namespaced,
                           "kind": info.kind, "verbs": info.verbs()});
        if !info.short_names.is_empty() {
            r["shortNames"] = json!(info.short_names);
        }
        if !info.categories.is_empty() {
            r["categories"] = json!(info.categories);
        }
        list.push(r);
        for sub in info.subresources {
            let mut s = json!({"name": format!("{}/{}", info.plural, sub.name), "singularName": "",
                               "namespaced": info.namespaced, "kind": sub.kind, "verbs": sub.verbs});
            if sub.group != info.group || sub.version != info.version {
                s["group"] = json!(sub.group);
                s["version"] = json!(sub.version);
            }
            list.push(s);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_accept_is_recognised_in_order() {
        let agg = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(wants_aggregated(agg), Some(AGGREGATED_V2));
        assert_eq!(wants_aggregated("application/json, */*"), None);
    }

    #[test]
    fn aggregated_core_lists_pods_with_what_kubectl_needs() {
        let doc = aggregated(true, "apidiscovery.k8s.io/v2");
        let pods = doc["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap();
        assert_eq!(
            pods["responseKind"],
            json!({"group":"","version":"v1","kind":"Pod"})
        );
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert_eq!(pods["scope"], "Namespaced");
    }

    #[test]
    fn legacy_resource_list_includes_subresources_with_foreign_kinds() {
        let doc = api_resource_list("apps", "v1").unwrap();
        let scale = doc["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(
            (scale["group"].as_str(), scale["kind"].as_str()),
            (Some("autoscaling"), Some("Scale"))
        );
        assert!(api_resource_list("nope", "v1").is_none());
    }
}
