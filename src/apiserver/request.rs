//! Turns a request line into what it asks for: which resource, namespace, name, subresource and verb,
//! following the Kubernetes URL layout (`/api/v1/…`, `/apis/<group>/<version>/…`).

use http::Method;

use crate::api::resources::{self, ResourceInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

#[derive(Debug, Clone)]
pub struct ResourceRequest {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub verb: Verb,
}

/// What a path names before the verb is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A resource path under a served group version.
    Resource {
        group: String,
        version: String,
        namespace: Option<String>,
        plural: String,
        name: Option<String>,
        subresource: Option<String>,
    },
    /// `/api`, `/apis`, `/api/v1`, `/apis/<g>`, `/apis/<g>/<v>`.
    Discovery {
        group: Option<String>,
        version: Option<String>,
        legacy_root: bool,
    },
    Other,
}

pub fn parse_path(path: &str) -> Target {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => {
            return Target::Discovery {
                group: None,
                version: None,
                legacy_root: true,
            }
        }
        ["apis"] => {
            return Target::Discovery {
                group: None,
                version: None,
                legacy_root: false,
            }
        }
        ["api", v] => {
            return Target::Discovery {
                group: Some(String::new()),
                version: Some(v.to_string()),
                legacy_root: true,
            }
        }
        ["apis", g] => {
            return Target::Discovery {
                group: Some(g.to_string()),
                version: None,
                legacy_root: false,
            }
        }
        ["apis", g, v] => {
            return Target::Discovery {
                group: Some(g.to_string()),
                version: Some(v.to_string()),
                legacy_root: false,
            }
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Target::Other,
    };
    let (namespace, rest) = match rest {
        // `namespaces/<name>/status|finalize` are subresources of the namespace, not resources in it.
        ["namespaces", _, "status" | "finalize"] => (None, rest),
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(ns.to_string()), tail),
        other => (None, other),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return Target::Other,
    };
    Target::Resource {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        plural: plural.to_string(),
        name,
        subresource,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("the server could not find the requested resource")]
    NotFound,
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
}

/// Resolves a resource path and HTTP method into a resource request.
pub fn resolve(
    method: &Method,
    target: &Target,
    watch: bool,
) -> Result<ResourceRequest, RequestError> {
    let Target::Resource {
        group,
        version,
        namespace,
        plural,
        name,
        subresource,
    } = target
    else {
        return Err(RequestError::NotFound);
    };
    // `/api/v1/namespaces/<name>` names the namespace itself.
    let (plural, namespace, name, subresource) =
        match (plural.as_str(), namespace, name, subresource) {
            _ if namespace.is_none() && plural == "namespaces" => {
                (plural.clone(), None, name.clone(), subresource.clone())
            }
            _ => (
                plural.clone(),
                namespace.clone(),
                name.clone(),
                subresource.clone(),
            ),
        };
    let info = resources::find(group, version, &plural)
        .or_else(|| resources::find_node_reported(group, version, &plural))
        .ok_or(RequestError::NotFound)?;
    if let Some(sub) = &subresource {
        if info.subresource(sub).is_none() {
            return Err(RequestError::NotFound);
        }
    }
    if namespace.is_some() && !info.namespaced {
        return Err(RequestError::NotFound);
    }
    let verb = match (method.clone(), name.is_some()) {
        (Method::GET, true) if watch => Verb::Watch,
        (Method::GET, true) => Verb::Get,
        (Method::GET, false) if watch => Verb::Watch,
        (Method::GET, false) => Verb::List,
        (Method::POST, false) => Verb::Create,
        (Method::POST, true) if subresource.is_some() => Verb::Create,
        (Method::PUT, true) => Verb::Update,
        (Method::PATCH, true) => Verb::Patch,
        (Method::DELETE, true) => Verb::Delete,
        (Method::DELETE, false) => Verb::DeleteCollection,
        _ => return Err(RequestError::MethodNotAllowed),
    };
    Ok(ResourceRequest {
        info,
        namespace,
        name,
        subresource,
        verb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_the_nodes_report_resolve_like_stored_ones() {
        let t = parse_path("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web");
        let r = resolve(&Method::GET, &t, false).unwrap();
        assert_eq!((r.info.kind, r.verb), ("PodMetrics", Verb::Get));
        assert!(crate::api::resources::is_node_reported(r.info));
        let nodes_in_namespace =
            parse_path("/apis/metrics.k8s.io/v1beta1/namespaces/default/nodes");
        assert_eq!(
            resolve(&Method::GET, &nodes_in_namespace, false).err(),
            Some(RequestError::NotFound)
        );
        assert!(!crate::api::resources::is_node_reported(
            crate::api::resources::find("", "v1", "pods").unwrap()
        ));
    }

    #[test]
    fn parses_resource_paths() {
        let t = parse_path("/apis/apps/v1/namespaces/default/deployments/web/scale");
        let r = resolve(&Method::PATCH, &t, false).unwrap();
        assert_eq!(
            (
                r.info.kind,
                r.namespace.as_deref(),
                r.name.as_deref(),
                r.subresource.as_deref(),
                r.verb
            ),
            (
                "Deployment",
                Some("default"),
                Some("web"),
                Some("scale"),
                Verb::Patch
            )
        );
        let t = parse_path("/api/v1/pods");
        let r = resolve(&Method::GET, &t, true).unwrap();
        assert_eq!(
            (r.info.kind, r.namespace, r.verb),
            ("Pod", None, Verb::Watch)
        );
    }

    #[test]
    fn namespaces_are_cluster_scoped_paths() {
        let t = parse_path("/api/v1/namespaces/kube-system");
        let r = resolve(&Method::GET, &t, false).unwrap();
        assert_eq!(
            (r.info.kind, r.namespace, r.name.as_deref()),
            ("Namespace", None, Some("kube-system"))
        );
        let t = parse_path("/api/v1/namespaces/x/finalize");
        let r = resolve(&Method::PUT, &t, false).unwrap();
        assert_eq!(
            (r.name.as_deref(), r.subresource.as_deref()),
            (Some("x"), Some("finalize"))
        );
    }

    #[test]
    fn unknown_resources_and_bad_methods() {
        assert_eq!(
            resolve(&Method::GET, &parse_path("/api/v1/widgets"), false).unwrap_err(),
            RequestError::NotFound
        );
        assert_eq!(
            resolve(
                &Method::PUT,
                &parse_path("/api/v1/namespaces/default/pods"),
                false
            )
            .unwrap_err(),
            RequestError::MethodNotAllowed
        );
        assert_eq!(
            resolve(
                &Method::GET,
                &parse_path("/api/v1/namespaces/a/nodes"),
                false
            )
            .unwrap_err(),
            RequestError::NotFound
        );
        assert!(matches!(
            parse_path("/apis"),
            Target::Discovery { group: None, .. }
        ));
    }
}
