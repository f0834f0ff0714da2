//! A container's environment as kubelet builds it: `envFrom` sources in order, then `env` entries (later
//! names win), values from ConfigMaps, Secrets, the pod's own fields and the container's resources, and
//! `$(VAR)` references expanded against what came before. A missing ConfigMap, Secret or key that is not
//! optional is a `CreateContainerConfigError` with kubelet's message.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::api::quantity;

/// The ConfigMaps and Secrets of the pod's namespace the worker fetched, by name; None = it does not exist.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub config_maps: HashMap<String, Option<ConfigMap>>,
    pub secrets: HashMap<String, Option<Secret>>,
}

impl Sources {
    fn config_map_data(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let cm = self.config_maps.get(name)?.as_ref()?;
        let mut data = cm.data.clone().unwrap_or_default();
        for (k, v) in cm.binary_data.clone().unwrap_or_default() {
            data.insert(k, String::from_utf8_lossy(&v.0).into_owned());
        }
        Some(data)
    }

    fn secret_data(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let s = self.secrets.get(name)?.as_ref()?;
        let mut data: BTreeMap<String, String> = s
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect();
        data.extend(s.string_data.clone().unwrap_or_default());
        Some(data)
    }
}

/// The names of every ConfigMap and Secret the container's environment refers to.
pub fn referenced(container: &Container) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    for from in container.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &from.secret_ref {
            secrets.push(r.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(source) = &var.value_from {
            if let Some(r) = &source.config_map_key_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &source.secret_key_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    (cms, secrets)
}

/// Expands `$(NAME)` from `vars`; `$$` escapes a `$`; unknown references stay as written.
pub fn expand(text: &str, vars: &HashMap<String, String>) -> String {
    expand_with(text, |name| vars.get(name).cloned())
}

/// A volumeMount's `subPathExpr` expanded from the container's environment, as kubelet expands it: every
/// reference must name a variable with a value ("missing value for A, B" otherwise).
pub fn expand_sub_path(expr: &str, env: &[(String, String)]) -> Result<String, String> {
    let vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut missing = std::collections::BTreeSet::new();
    let expanded = expand_with(expr, |name| {
        match vars.get(name).filter(|v| !v.is_empty()) {
            Some(value) => Some(value.to_string()),
            None => {
                missing.insert(name.to_string());
                Some(String::new())
            }
        }
    });
    if missing.is_empty() {
        Ok(expanded)
    } else {
        Err(format!(
            "missing value for {}",
            missing.into_iter().collect::<Vec<_>>().join(", ")
        ))
    }
}

/// [`expand`] with the value of each reference from `lookup`; one it has none for stays as written.
fn expand_with(text: &str, mut lookup: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The value of a downward-API field path of the pod.
pub fn field_value(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let status = pod.status.as_ref();
    let map_key = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")
            .map(str::to_string)
    };
    if let Some(k) = map_key("metadata.labels") {
        return Ok(meta
            .labels
            .as_ref()
            .and_then(|l| l.get(&k).cloned())
            .unwrap_or_default());
    }
    if let Some(k) = map_key("metadata.annotations") {
        return Ok(meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(&k).cloned())
            .unwrap_or_default());
    }
    let join = |m: &Option<BTreeMap<String, String>>| {
        m.iter()
            .flatten()
            // kubelet's FormatMap: `key=%q`, so quotes and newlines in a value stay on its line.
            .map(|(k, v)| format!("{k}={}", crate::api::selector::go_quote(v)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => join(&meta.labels),
        "metadata.annotations" => join(&meta.annotations),
        "spec.nodeName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.hostIPs" => status
            .and_then(|s| s.host_ips.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.ip)
            .collect::<Vec<_>>()
            .join(","),
        "status.podIPs" => status
            .and_then(|s| s.pod_ips.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.ip)
            .collect::<Vec<_>>()
            .join(","),
        other => return Err(format!("unsupported fieldPath {other:?}")),
    })
}

/// What a container's limits default to in downward-API values: the node's allocatable, where the pod's
/// own (pod-level) CPU and memory limits take its place, as kubelet's defaultPodLimitsForDownwardAPI has it.
pub fn downward_api_limits(
    pod: &Pod,
    mut allocatable: BTreeMap<String, Quantity>,
) -> BTreeMap<String, Quantity> {
    let pod_limits = pod
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref()?.limits.as_ref());
    for name in ["cpu", "memory"] {
        let limit = pod_limits
            .and_then(|l| l.get(name))
            .filter(|q| quantity::parse_quantity(&q.0).is_ok_and(|parsed| !parsed.is_zero()));
        if let (Some(limit), Some(slot)) = (limit, allocatable.get_mut(name)) {
            *slot = limit.clone();
        }
    }
    allocatable
}

/// A container resource as a downward-API value: limits default to `allocatable`
/// ([`downward_api_limits`]), and the value is rounded up to a whole number of `divisor`s, as kubelet
/// does.
pub fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&Quantity>,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, String> {
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource {resource:?}"))?;
    let resources = container.resources.clone().unwrap_or_default();
    let from = match kind {
        "limits" => resources.limits,
        "requests" => resources.requests,
        _ => return Err(format!("unsupported resource {resource:?}")),
    };
    let value = from
        .as_ref()
        .and_then(|m| m.get(name).cloned())
        .or_else(|| {
            (kind == "limits")
                .then(|| allocatable.get(name).cloned())
                .flatten()
        })
        .unwrap_or_else(|| Quantity("0".into()));
    let parse = |q: &Quantity| {
        quantity::parse_quantity(&q.0).map_err(|e| format!("{resource}: {:?}: {e}", q.0))
    };
    let divisor = match divisor {
        Some(d) => parse(d)?,
        None => quantity::parse_quantity("1").expect("valid"),
    };
    if divisor.is_zero() {
        return Err(format!("{resource}: the divisor is zero"));
    }
    Ok((parse(&value)?.ratio_to(&divisor).ceil() as i64).to_string())
}

/// The environment of `container` as `NAME=value` strings, in kubelet's order.
pub fn environment(
    pod: &Pod,
    container: &Container,
    sources: &Sources,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<Vec<(String, String)>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut order: Vec<String> = Vec::new();
    let mut vars: HashMap<String, String> = HashMap::new();
    let set = |name: String,
               value: String,
               order: &mut Vec<String>,
               vars: &mut HashMap<String, String>| {
        if vars.insert(name.clone(), value).is_none() {
            order.push(name);
        }
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (data, optional, what, name) = if let Some(r) = &from.config_map_ref {
            (
                sources.config_map_data(&r.name),
                r.optional,
                "configmap",
                &r.name,
            )
        } else if let Some(r) = &from.secret_ref {
            (sources.secret_data(&r.name), r.optional, "secret", &r.name)
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (k, v) in data {
                    set(format!("{prefix}{k}"), v, &mut order, &mut vars);
                }
            }
            None if optional == Some(true) => {}
            None => return Err(format!("{what} \"{name}\" not found")),
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(source) = &var.value_from {
            if let Some(r) = &source.config_map_key_ref {
                match sources.config_map_data(&r.name) {
                    None if r.optional == Some(true) => continue,
                    None => return Err(format!("configmap \"{}\" not found", r.name)),
                    Some(data) => match data.get(&r.key) {
                        Some(v) => v.clone(),
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                r.key, r.name
                            ))
                        }
                    },
                }
            } else if let Some(r) = &source.secret_key_ref {
                match sources.secret_data(&r.name) {
                    None if r.optional == Some(true) => continue,
                    None => return Err(format!("secret \"{}\" not found", r.name)),
                    Some(data) => match data.get(&r.key) {
                        Some(v) => v.clone(),
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                r.key, r.name
                            ))
                        }
                    },
                }
            } else if let Some(f) = &source.field_ref {
                field_value(pod, &f.field_path)?
            } else if let Some(r) = &source.resource_field_ref {
                let target = match r.container_name.as_deref() {
                    Some(name) if !name.is_empty() && name != container.name => pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.containers.iter().find(|c| c.name == name))
                        .ok_or_else(|| format!("container {name:?} not found"))?,
                    _ => container,
                };
                resource_value(target, &r.resource, r.divisor.as_ref(), allocatable)?
            } else {
                String::new()
            }
        } else {
            expand(var.value.as_deref().unwrap_or(""), &vars)
        };
        set(var.name.clone(), value, &mut order, &mut vars);
    }
    Ok(order
        .into_iter()
        .map(|name| {
            let value = vars.remove(&name).unwrap_or_default();
            (name, value)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource,
        ObjectFieldSelector, PodSpec, ResourceFieldSelector, ResourceRequirements,
        SecretKeySelector,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-0".into()),
                namespace: Some("prod".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                pod_ip: Some("10.42.0.7".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    fn from(name: &str, source: EnvVarSource) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(source),
            ..Default::default()
        }
    }

    fn sources() -> Sources {
        let mut s = Sources::default();
        s.config_maps.insert(
            "cfg".into(),
            Some(ConfigMap {
                data: Some(
                    [
                        ("MODE".to_string(), "fast".to_string()),
                        ("LEVEL".to_string(), "3".to_string()),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
        );
        s.secrets.insert(
            "creds".into(),
            Some(Secret {
                data: Some(
                    [(
                        "password".to_string(),
                        k8s_openapi::ByteString(b"s3cret".to_vec()),
                    )]
                    .into(),
                ),
                ..Default::default()
            }),
        );
        s.config_maps.insert("gone".into(), None);
        s
    }

    #[test]
    fn pod_level_limits_stand_in_for_the_nodes_in_downward_api_values() {
        let q = |v: &str| Quantity(v.into());
        let node: BTreeMap<String, Quantity> = [
            ("cpu".to_string(), q("2")),
            ("memory".to_string(), q("8Gi")),
            ("ephemeral-storage".to_string(), q("10Gi")),
        ]
        .into();
        let pod = |limits: &[(&str, &str)]| Pod {
            spec: Some(PodSpec {
                resources: Some(ResourceRequirements {
                    limits: Some(limits.iter().map(|(k, v)| (k.to_string(), q(v))).collect()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let limits = downward_api_limits(&pod(&[("memory", "64Mi"), ("cpu", "0")]), node.clone());
        assert_eq!(limits["memory"], q("64Mi"));
        // A zero limit is none: the node's stays.
        assert_eq!(limits["cpu"], q("2"));
        assert_eq!(downward_api_limits(&Pod::default(), node.clone()), node);
        let unlimited = Container::default();
        assert_eq!(
            resource_value(&unlimited, "limits.memory", Some(&q("1Mi")), &limits),
            Ok("64".into())
        );
    }

    #[test]
    fn env_from_then_env_with_references_and_expansion() {
        let container = Container {
            name: "app".into(),
            env_from: Some(vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "cfg".into(),
                    optional: None,
                }),
                prefix: Some("CFG_".into()),
                ..Default::default()
            }]),
            env: Some(vec![
                var("GREETING", "hello"),
                var(
                    "MESSAGE",
                    "$(GREETING) from $(POD_NAME) $$(GREETING) $(UNKNOWN)",
                ),
                from(
                    "POD_NAME",
                    EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.name".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ),
                from(
                    "APP",
                    EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.labels['app']".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ),
                from(
                    "PASSWORD",
                    EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "creds".into(),
                            key: "password".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                ),
                from(
                    "MEM_MI",
                    EnvVarSource {
                        resource_field_ref: Some(ResourceFieldSelector {
                            resource: "limits.memory".into(),
                            divisor: Some(Quantity("1Mi".into())),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ),
                var("CFG_MODE", "overridden"),
            ]),
            resources: Some(ResourceRequirements {
                limits: Some([("memory".to_string(), Quantity("64Mi".into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let env = environment(&pod(), &container, &sources(), &BTreeMap::new()).unwrap();
        let get = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("CFG_MODE"), Some("overridden"));
        assert_eq!(get("CFG_LEVEL"), Some("3"));
        // POD_NAME is defined after MESSAGE, so it is not expanded there, as in Kubernetes.
        assert_eq!(
            get("MESSAGE"),
            Some("hello from $(POD_NAME) $(GREETING) $(UNKNOWN)")
        );
        assert_eq!(get("POD_NAME"), Some("web-0"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("PASSWORD"), Some("s3cret"));
        assert_eq!(get("MEM_MI"), Some("64"));
        assert_eq!(env[0].0, "CFG_LEVEL");
    }

    #[test]
    fn missing_sources_are_errors_unless_optional() {
        let key_ref = |name: &str, key: &str, optional: Option<bool>| Container {
            name: "app".into(),
            env: Some(vec![from(
                "X",
                EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: name.into(),
                        key: key.into(),
                        optional,
                    }),
                    ..Default::default()
                },
            )]),
            ..Default::default()
        };
        let s = sources();
        let none = BTreeMap::new();
        assert_eq!(
            environment(&pod(), &key_ref("gone", "k", None), &s, &none).unwrap_err(),
            "configmap \"gone\" not found"
        );
        assert_eq!(
            environment(&pod(), &key_ref("cfg", "nope", None), &s, &none).unwrap_err(),
            "couldn't find key nope in ConfigMap prod/cfg"
        );
        assert!(
            environment(&pod(), &key_ref("gone", "k", Some(true)), &s, &none)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn expansion_rules() {
        let vars: HashMap<String, String> = [("A".to_string(), "1".to_string())].into();
        assert_eq!(expand("$(A)-$(B)-$$(A)-$-$(", &vars), "1-$(B)-$(A)-$-$(");
    }

    #[test]
    fn labels_and_annotations_are_written_as_kubelet_quotes_them() {
        let mut p = pod();
        p.metadata.annotations = Some(
            [
                ("note".to_string(), "say \"hi\"\nbye".to_string()),
                ("plain".to_string(), "v".to_string()),
            ]
            .into(),
        );
        assert_eq!(
            field_value(&p, "metadata.annotations").unwrap(),
            "note=\"say \\\"hi\\\"\\nbye\"\nplain=\"v\""
        );
        assert_eq!(field_value(&p, "metadata.labels").unwrap(), "app=\"web\"");
    }
}
