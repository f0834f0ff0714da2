//! The ResourceQuota admission plugin: a create (or a pod's resize) that would take a namespace's usage
//! past a quota's `spec.hard` is refused (403, "exceeded quota: …"), a pod that leaves a quota-limited
//! compute resource unstated is refused ("failed quota: …: must specify …"), and an admitted create is
//! charged to each quota's `status.used` at once (a resize with what it grew by), so concurrent
//! requests cannot all slip under the limit. The quota controller recalculates `status.used` from the
//! stored objects, which also gives back what deletes and shrinking resizes free.

use serde_json::{json, Value};

use super::{forbidden, list_core};
use crate::api::quota::{self, Usage};
use crate::api::resources::{self, ResourceInfo};
use crate::registry::errors::RegistryError;
use crate::registry::store::{ListOptions, Registry, UpdateOptions};

/// Checks and charges every quota of the object's namespace: with all it uses when it is created, with
/// what it grew by when it is updated from `old` (a pod's resize).
pub async fn admit(
    registry: &Registry,
    info: &ResourceInfo,
    obj: &Value,
    old: Option<&Value>,
    dry_run: bool,
) -> Result<(), RegistryError> {
    let Some(namespace) = crate::api::meta::namespace(obj).filter(|_| info.namespaced) else {
        return Ok(());
    };
    let now = registry.now();
    let delta = match old {
        None => quota::usage_of(info.group, info.plural, obj, now),
        Some(old) => growth(info, obj, old, now),
    };
    if delta.is_empty() {
        return Ok(());
    }
    let quotas = list_core(registry, "resourcequotas", namespace).await?;
    // Every quota is checked before any is charged, so that a request one of them refuses charges none.
    // A refusal found only by the re-check inside a charge leaves the quotas charged before it over by
    // this request until the controller's recount, as in Kubernetes.
    let mut charges = Vec::new();
    for q in &quotas {
        let hard = quota::parse_list(&q["spec"]["hard"]);
        if !quota::in_scope(q, info.group, info.plural, obj)
            || !hard
                .keys()
                .any(|k| delta.contains_key(k) || quota::POD_COMPUTE.contains(&k.as_str()))
        {
            continue;
        }
        let name = crate::api::meta::name(q).unwrap_or_default();
        if info.group.is_empty() && info.plural == "pods" {
            if let Some(missing) = quota::unstated_compute(obj, &hard) {
                return Err(forbidden(
                    info,
                    obj,
                    &format!("failed quota: {name}: must specify {missing}"),
                ));
            }
        }
        let requested: Usage = delta
            .iter()
            .filter(|(k, _)| hard.contains_key(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if requested.is_empty() {
            continue;
        }
        let used = match q["status"]["used"].as_object() {
            Some(_) => quota::parse_list(&q["status"]["used"]),
            None => usage_in(registry, namespace, q).await?,
        };
        check(info, obj, name, &requested, &used, &hard)?;
        charges.push((q, requested, used));
    }
    if !dry_run {
        for (q, requested, used) in charges {
            charge(registry, info, obj, q, &requested, &used).await?;
        }
    }
    Ok(())
}

/// Refuses `requested` when it would take `used` past `hard` ("exceeded quota: …"), naming only the
/// resources that would go over, as Kubernetes masks the lists.
fn check(
    info: &ResourceInfo,
    obj: &Value,
    quota_name: &str,
    requested: &Usage,
    used: &Usage,
    hard: &Usage,
) -> Result<(), RegistryError> {
    let exceeded: Vec<&String> = requested
        .iter()
        .filter(|(k, v)| {
            let now = used.get(*k).map(|u| u.plus(v)).unwrap_or(**v);
            hard.get(*k).is_some_and(|limit| now > *limit)
        })
        .map(|(k, _)| k)
        .collect();
    if exceeded.is_empty() {
        return Ok(());
    }
    let mask = |list: &Usage| -> Usage {
        exceeded
            .iter()
            .map(|k| {
                let value = list
                    .get(*k)
                    .copied()
                    .unwrap_or_else(|| quota_zero(&requested[*k]));
                ((*k).clone(), value)
            })
            .collect()
    };
    Err(forbidden(
        info,
        obj,
        &format!(
            "exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
            quota::pretty(&mask(requested)),
            quota::pretty(&mask(used)),
            quota::pretty(&mask(hard))
        ),
    ))
}

/// What `obj` uses beyond `old`, resource by resource: what shrank is given back by the quota
/// controller's recount, not here.
fn growth(info: &ResourceInfo, obj: &Value, old: &Value, at: jiff::Timestamp) -> Usage {
    let before = quota::usage_of(info.group, info.plural, old, at);
    quota::usage_of(info.group, info.plural, obj, at)
        .into_iter()
        .filter_map(|(name, after)| {
            let grown = before.get(&name).map_or(after, |b| after.minus(b));
            (!grown.is_zero() && !grown.is_negative()).then_some((name, grown))
        })
        .collect()
}

fn quota_zero(like: &crate::api::quantity::Quantity) -> crate::api::quantity::Quantity {
    crate::api::quantity::Quantity::zero(like.format())
}

/// What the objects of the namespace in the quota's scope use of its resources, counted from the store.
pub async fn usage_in(
    registry: &Registry,
    namespace: &str,
    resource_quota: &Value,
) -> Result<Usage, RegistryError> {
    let hard = quota::parse_list(&resource_quota["spec"]["hard"]);
    let now = registry.now();
    let mut used: Usage = hard
        .iter()
        .map(|(k, v)| (k.clone(), quota_zero(v)))
        .collect();
    for info in resources::storage_resources().filter(|r| r.namespaced) {
        let counted = hard
            .keys()
            .any(|k| quota::counts_toward(info.group, info.plural, k));
        if !counted {
            continue;
        }
        let items = registry
            .list(info, Some(namespace), &ListOptions::default())
            .await?
            .items;
        for item in items
            .iter()
            .filter(|item| quota::in_scope(resource_quota, info.group, info.plural, item))
        {
            for (k, v) in quota::usage_of(info.group, info.plural, item, now) {
                if let Some(total) = used.get_mut(&k) {
                    *total = total.plus(&v);
                }
            }
        }
    }
    Ok(used)
}

/// Adds `requested` to the quota's `status.used`, checking it again against the stored quota inside the
/// compare-and-swap: requests admitted together all saw the same usage, and only as many as fit may pass.
/// `checked_against` is the usage the request was first checked against, which stands in for a quota
/// the controller has not counted yet.
async fn charge(
    registry: &Registry,
    info: &ResourceInfo,
    obj: &Value,
    resource_quota: &Value,
    requested: &Usage,
    checked_against: &Usage,
) -> Result<(), RegistryError> {
    let name = crate::api::meta::name(resource_quota).unwrap_or_default();
    let namespace = crate::api::meta::namespace(resource_quota).unwrap_or_default();
    let quotas = resources::find("", "v1", "resourcequotas").expect("quotas are served");
    let options = UpdateOptions {
        subresource: Some("status".into()),
        ..UpdateOptions::default()
    };
    registry
        .guaranteed_update::<RegistryError>(quotas, Some(namespace), name, &options, |current| {
            // Another request may have written the first count since this one made its own.
            let mut used = match current["status"]["used"].as_object() {
                Some(_) => quota::parse_list(&current["status"]["used"]),
                None => checked_against.clone(),
            };
            check(
                info,
                obj,
                name,
                requested,
                &used,
                &quota::parse_list(&current["spec"]["hard"]),
            )?;
            for (k, v) in requested {
                let total = used.get(k).map(|u| u.plus(v)).unwrap_or(*v);
                used.insert(k.clone(), total);
            }
            let mut next = current.clone();
            next["status"] =
                json!({"hard": current["spec"]["hard"], "used": quota::to_json(&used)});
            Ok(next)
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use crate::util::clock::FakeClock;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pods_created_together_are_admitted_only_as_far_as_a_counted_quota_goes() {
        admitted_together(true).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pods_created_together_are_admitted_only_as_far_as_a_quota_not_yet_counted_goes() {
        admitted_together(false).await;
    }

    /// Creates 20 pods at once under a quota of 5 pods, counted by the controller or not yet.
    async fn admitted_together(counted: bool) {
        let clock = Arc::new(FakeClock::new("2026-11-25T10:00:00Z".parse().unwrap()));
        let (_dir, client) = crate::server::testing::in_process(clock).await;
        let quotas = "/api/v1/namespaces/default/resourcequotas";
        client
            .create(
                quotas,
                &json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "5"}}}),
            )
            .await
            .unwrap();
        if counted {
            let mut quota = client.get(&format!("{quotas}/q")).await.unwrap();
            quota["status"] = json!({"hard": {"pods": "5"}, "used": {"pods": "0"}});
            client
                .update(&format!("{quotas}/q/status"), &quota)
                .await
                .unwrap();
        }

        let creates = (0..20).map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("p{i}")},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}});
                client.create("/api/v1/namespaces/default/pods", &pod).await
            })
        });
        let results = futures_util::future::join_all(creates).await;
        let mut admitted = 0;
        for result in results {
            match result.unwrap() {
                Ok(_) => admitted += 1,
                Err(e) => assert!(
                    e.to_string().contains(
                        "exceeded quota: q, requested: pods=1, used: pods=5, limited: pods=5"
                    ),
                    "{e}"
                ),
            }
        }
        assert_eq!(admitted, 5);
        let charged = client.get(&format!("{quotas}/q")).await.unwrap();
        assert_eq!(charged["status"]["used"]["pods"], "5");
        let stored = client.get("/api/v1/namespaces/default/pods").await.unwrap();
        assert_eq!(stored["items"].as_array().unwrap().len(), 5);
    }
}
