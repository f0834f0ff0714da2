//! The LimitRanger admission plugin for pods: containers without requests or limits get the defaults of
//! the namespace's LimitRanges (`defaultRequest`, `default`), recorded in the `kubernetes.io/limit-ranger`
//! annotation; then every Container and Pod bound (`min`, `max`, `maxLimitRequestRatio`) is checked, with
//! Kubernetes' messages.

use serde_json::{json, Value};

use super::{forbidden, list_core};
use crate::api::quantity::Quantity;
use crate::api::resources::ResourceInfo;
use crate::registry::errors::RegistryError;
use crate::registry::store::Registry;

const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// The limits of one `spec.limits[]` entry.
struct Limit<'a> {
    kind: &'a str,
    item: &'a Value,
}

fn limits(ranges: &[Value]) -> impl Iterator<Item = Limit<'_>> {
    ranges.iter().flat_map(|r| {
        r["spec"]["limits"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| Limit {
                kind: item["type"].as_str().unwrap_or(""),
                item,
            })
    })
}

fn quantity(v: &Value) -> Option<Quantity> {
    Quantity::try_from(v).ok()
}

/// Fills in container defaults; returns the annotation text describing what was set.
pub fn apply_defaults(pod: &mut Value, ranges: &[Value]) -> Option<String> {
    let mut set = Vec::new();
    for limit in limits(ranges).filter(|l| l.kind == "Container") {
        for list in ["initContainers", "containers"] {
            let Some(containers) = pod["spec"][list].as_array_mut() else {
                continue;
            };
            for container in containers {
                let name = container["name"].as_str().unwrap_or("").to_string();
                for (source, target, what) in [
                    ("defaultRequest", "requests", "request"),
                    ("default", "limits", "limit"),
                ] {
                    let Some(defaults) = limit.item[source].as_object() else {
                        continue;
                    };
                    for (resource, value) in defaults {
                        if container["resources"][target].get(resource).is_none() {
                            if !container["resources"][target].is_object() {
                                container["resources"][target] = json!({});
                            }
                            container["resources"][target][resource] = value.clone();
                            set.push(format!(
                                "{resource} {what} for {list_kind} {name}",
                                list_kind = if list == "containers" {
                                    "container"
                                } else {
                                    "init container"
                                }
                            ));
                        }
                    }
                }
            }
        }
    }
    (!set.is_empty()).then(|| format!("LimitRanger plugin set: {}", set.join("; ")))
}

/// The first bound the pod violates, in Kubernetes' words.
pub fn check_bounds(pod: &Value, ranges: &[Value]) -> Result<(), String> {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|l| pod["spec"][l].as_array().into_iter().flatten())
        .collect();
    for limit in limits(ranges) {
        match limit.kind {
            "Container" => {
                for c in &containers {
                    check(
                        limit.item,
                        &c["resources"]["requests"],
                        &c["resources"]["limits"],
                        "Container",
                    )?;
                }
            }
            "Pod" => {
                let (requests, limits) = pod_totals(&containers);
                check(limit.item, &requests, &limits, "Pod")?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn pod_totals(containers: &[&Value]) -> (Value, Value) {
    let mut totals = [serde_json::Map::new(), serde_json::Map::new()];
    for c in containers {
        for (i, field) in ["requests", "limits"].iter().enumerate() {
            for (resource, value) in c["resources"][field].as_object().into_iter().flatten() {
                let Some(q) = quantity(value) else { continue };
                let sum = match totals[i].get(resource).and_then(quantity) {
                    Some(previous) => previous.plus(&q),
                    None => q,
                };
                totals[i].insert(resource.clone(), Value::String(sum.to_string()));
            }
        }
    }
    let [requests, limits] = totals;
    (Value::Object(requests), Value::Object(limits))
}

fn check(item: &Value, requests: &Value, limits: &Value, kind: &str) -> Result<(), String> {
    for (resource, min) in item["min"].as_object().into_iter().flatten() {
        let Some(min) = quantity(min) else { continue };
        match requests.get(resource).and_then(quantity) {
            None => {
                return Err(format!(
                    "minimum {resource} usage per {kind} is {min}.  No request is specified"
                ))
            }
            Some(r) if r < min => {
                return Err(format!(
                    "minimum {resource} usage per {kind} is {min}, but request is {r}"
                ))
            }
            _ => {}
        }
        if let Some(l) = limits.get(resource).and_then(quantity).filter(|l| *l < min) {
            return Err(format!(
                "minimum {resource} usage per {kind} is {min}, but limit is {l}"
            ));
        }
    }
    for (resource, max) in item["max"].as_object().into_iter().flatten() {
        let Some(max) = quantity(max) else { continue };
        match limits.get(resource).and_then(quantity) {
            None => {
                return Err(format!(
                    "maximum {resource} usage per {kind} is {max}.  No limit is specified"
                ))
            }
            Some(l) if l > max => {
                return Err(format!(
                    "maximum {resource} usage per {kind} is {max}, but limit is {l}"
                ))
            }
            _ => {}
        }
        if let Some(r) = requests
            .get(resource)
            .and_then(quantity)
            .filter(|r| *r > max)
        {
            return Err(format!(
                "maximum {resource} usage per {kind} is {max}, but request is {r}"
            ));
        }
    }
    for (resource, ratio) in item["maxLimitRequestRatio"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let Some(ratio) = quantity(ratio) else {
            continue;
        };
        let request = requests.get(resource).and_then(quantity);
        let limit = limits.get(resource).and_then(quantity);
        let (Some(request), Some(limit)) = (request, limit) else {
            if limit.is_some() || request.is_some() {
                return Err(format!("{resource} max limit to request ratio per {kind} is {ratio}, but no request is specified or request is 0"));
            }
            continue;
        };
        if request.is_zero() {
            return Err(format!("{resource} max limit to request ratio per {kind} is {ratio}, but no request is specified or request is 0"));
        }
        let actual = limit.ratio_to(&request);
        if actual > ratio.to_millis() as f64 / 1000.0 {
            return Err(format!("{resource} max limit to request ratio per {kind} is {ratio}, but provided ratio is {actual:.6}"));
        }
    }
    Ok(())
}

/// Applies the namespace's LimitRanges to a pod being created.
pub async fn admit_pod(
    registry: &Registry,
    info: &ResourceInfo,
    pod: &mut Value,
) -> Result<(), RegistryError> {
    let namespace = crate::api::meta::namespace(pod)
        .unwrap_or_default()
        .to_string();
    let ranges = list_core(registry, "limitranges", &namespace).await?;
    if ranges.is_empty() {
        return Ok(());
    }
    if let Some(note) = apply_defaults(pod, &ranges) {
        crate::api::meta::metadata_mut(pod)
            .entry("annotations")
            .or_insert_with(|| json!({}))[ANNOTATION] = Value::String(note);
    }
    check_bounds(pod, &ranges).map_err(|message| forbidden(info, pod, &message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(limits: Value) -> Vec<Value> {
        vec![json!({"spec": {"limits": limits}})]
    }

    #[test]
    fn defaults_fill_only_what_is_missing_and_are_recorded() {
        let ranges = range(
            json!([{"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m", "memory": "64Mi"}}]),
        );
        let mut pod = json!({"spec": {"containers": [{"name": "app", "resources": {"requests": {"memory": "32Mi"}}}]}});
        let note = apply_defaults(&mut pod, &ranges).unwrap();
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({"requests": {"memory": "32Mi", "cpu": "100m"}, "limits": {"cpu": "500m"}})
        );
        assert_eq!(
            note,
            "LimitRanger plugin set: cpu request for container app; cpu limit for container app"
        );
    }

    #[test]
    fn bounds_use_kubernetes_messages() {
        let ranges =
            range(json!([{"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "64Mi"}}]));
        let pod = |cpu: &str, mem: &str| json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"memory": mem}, "limits": {"cpu": cpu}}}]}});
        assert_eq!(
            check_bounds(&pod("2", "64Mi"), &ranges).unwrap_err(),
            "maximum cpu usage per Container is 1, but limit is 2"
        );
        assert_eq!(
            check_bounds(&pod("500m", "32Mi"), &ranges).unwrap_err(),
            "minimum memory usage per Container is 64Mi, but request is 32Mi"
        );
        assert!(check_bounds(&pod("1", "64Mi"), &ranges).is_ok());
        let pod_max = range(json!([{"type": "Pod", "max": {"cpu": "1"}}]));
        let two = json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "600m"}}},
            {"name": "b", "resources": {"limits": {"cpu": "600m"}}}]}});
        assert_eq!(
            check_bounds(&two, &pod_max).unwrap_err(),
            "maximum cpu usage per Pod is 1, but limit is 1200m"
        );
    }
}
