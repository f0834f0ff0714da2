//! kubelet's local-storage limits: a pod whose disk emptyDir holds more than its `sizeLimit`, a pod whose
//! use passes its containers' `ephemeral-storage` limits added up (`PodLimits`), or a container that
//! writes more than its own limit (its root filesystem's changes and its logs) is evicted, with kubelet's
//! messages. Checked with the node's pressure, every housekeeping round; a memory emptyDir is bounded by
//! its tmpfs instead.

use k8s_openapi::api::core::v1::Pod;

use super::eviction::{disk_usage, Eviction};
use super::{sandbox, volumes, Kubelet};
use crate::api::pod_resources;
use crate::api::quantity::parse_quantity;
use crate::client::informer::key_of;

/// kubelet's eviction message for the first limit the pod passes, if any. `volume_usage` and
/// `container_usage` give the bytes an emptyDir (by volume name) and a container (by name) use.
pub fn violation(
    pod: &Pod,
    volume_usage: impl Fn(&str) -> u64,
    container_usage: impl Fn(&str) -> u64,
) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let limit = |q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| {
        parse_quantity(&q.0)
            .ok()
            .map(|parsed| (q.0.clone(), parsed.to_bytes()))
    };
    for volume in spec.volumes.iter().flatten() {
        let Some(dir) = on_disk_empty_dir(volume) else {
            continue;
        };
        if let Some((text, bytes)) = dir.size_limit.as_ref().and_then(limit) {
            if i128::from(volume_usage(&volume.name)) > bytes {
                return Some(format!(
                    "Usage of EmptyDir volume \"{}\" exceeds the limit \"{text}\". ",
                    volume.name
                ));
            }
        }
    }
    // The pod's limit is its containers' as Kubernetes adds limits up (any container's counts), checked
    // before each container's own, as kubelet does.
    // Measuring a container walks its files: each is measured once for both checks.
    let mut measured: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut used_by = |name: &str| -> u64 {
        *measured
            .entry(name.to_string())
            .or_insert_with(|| container_usage(name))
    };
    let pod_limit = pod_resources::pod_limits(pod, &pod_resources::Options::default())
        .get("ephemeral-storage")
        .copied();
    if let Some(total) = pod_limit {
        // Every container's use counts against the pod's limit, sidecars' and init containers' too.
        let used: u64 = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .map(|c| used_by(&c.name))
            .chain(
                spec.volumes
                    .iter()
                    .flatten()
                    .filter(|v| on_disk_empty_dir(v).is_some())
                    .map(|v| volume_usage(&v.name)),
            )
            .sum();
        if i128::from(used) > total.to_bytes() {
            return Some(format!(
                "Pod ephemeral local storage usage exceeds the total limit of containers {total}. "
            ));
        }
    }
    for container in &spec.containers {
        let own = container
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref()?.get("ephemeral-storage"))
            .and_then(limit)
            .filter(|(_, bytes)| *bytes != 0);
        if let Some((text, bytes)) = own {
            if i128::from(used_by(&container.name)) > bytes {
                return Some(format!(
                    "Container {} exceeded its local ephemeral storage limit \"{text}\". ",
                    container.name
                ));
            }
        }
    }
    None
}

/// The volume's emptyDir when it is on the node's disk (a memory one is bounded by its tmpfs).
fn on_disk_empty_dir(
    volume: &k8s_openapi::api::core::v1::Volume,
) -> Option<&k8s_openapi::api::core::v1::EmptyDirVolumeSource> {
    volume
        .empty_dir
        .as_ref()
        .filter(|d| d.medium.as_deref() != Some("Memory"))
}

impl Kubelet {
    /// Evicts every running pod past one of its local-storage limits (pods without such limits cost
    /// nothing here).
    pub(super) fn evict_past_storage_limits(&self) {
        for pod in self.pods.list() {
            let Some(uid) = pod.metadata.uid.as_deref() else {
                continue;
            };
            if pod.metadata.deletion_timestamp.is_some()
                || !has_storage_limits(&pod)
                || self
                    .evictions
                    .lock()
                    .expect("evictions lock")
                    .contains_key(uid)
            {
                continue;
            }
            let pod_dir = sandbox::pod_dir(&self.config.data_dir, uid);
            let logs = sandbox::log_dir(&self.config.log_root, &pod);
            let running = self.running_metas(uid);
            if running.is_empty() {
                continue;
            }
            let volume_usage =
                |name: &str| disk_usage(&volumes::empty_dir_path(&pod_dir, name), false);
            let container_usage = |name: &str| {
                running
                    .iter()
                    .find(|m| m.container == name)
                    .map_or(0, |m| self.container_disk_usage(m, &logs, false))
            };
            if let Some(message) = violation(&pod, volume_usage, container_usage) {
                let key = key_of(&pod.metadata);
                tracing::warn!(pod = %key, %message, "evicting a pod past its local storage limits");
                self.evictions.lock().expect("evictions lock").insert(
                    uid.to_string(),
                    Eviction {
                        message,
                        failed: false,
                    },
                );
                self.queue.add(&key);
            }
        }
    }
}

fn has_storage_limits(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.volumes
        .iter()
        .flatten()
        .any(|v| on_disk_empty_dir(v).is_some_and(|d| d.size_limit.is_some()))
        || spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| {
                c.resources
                    .as_ref()
                    .and_then(|r| r.limits.as_ref())
                    .is_some_and(|l| l.contains_key("ephemeral-storage"))
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(volume_limit: Option<&str>, container_limits: &[Option<&str>]) -> Pod {
        let containers: Vec<serde_json::Value> = container_limits
            .iter()
            .enumerate()
            .map(|(i, limit)| match limit {
                Some(l) => serde_json::json!({"name": format!("c{i}"),
                    "resources": {"limits": {"ephemeral-storage": l}}}),
                None => serde_json::json!({"name": format!("c{i}")}),
            })
            .collect();
        let mut empty_dir = serde_json::json!({});
        if let Some(l) = volume_limit {
            empty_dir["sizeLimit"] = serde_json::json!(l);
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": containers,
                     "volumes": [{"name": "scratch", "emptyDir": empty_dir},
                                 {"name": "ram", "emptyDir": {"medium": "Memory", "sizeLimit": "1Ki"}}]},
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_past_a_limit_gets_kubelets_message_for_it() {
        let mib = |n: u64| move |_: &str| n << 20;
        let none = |_: &str| 0;
        let with_volume = pod(Some("5Mi"), &[None]);
        assert_eq!(violation(&with_volume, mib(4), none), None);
        assert_eq!(
            violation(&with_volume, mib(6), none).as_deref(),
            Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"5Mi\". ")
        );
        let limited = pod(None, &[Some("10Mi"), Some("10Mi")]);
        let first_only = |name: &str| if name == "c0" { 11 << 20 } else { 0 };
        assert_eq!(
            violation(&limited, none, first_only).as_deref(),
            Some("Container c0 exceeded its local ephemeral storage limit \"10Mi\". ")
        );
        // Each container under its own limit, the pod over their sum with its emptyDir.
        assert_eq!(
            violation(&limited, mib(5), mib(8)).as_deref(),
            Some("Pod ephemeral local storage usage exceeds the total limit of containers 20Mi. ")
        );
        // The pod's limit is what its containers' limits add up to, though one has none.
        assert_eq!(
            violation(&pod(None, &[Some("10Mi"), None]), mib(50), none).as_deref(),
            Some("Pod ephemeral local storage usage exceeds the total limit of containers 10Mi. ")
        );
        assert!(!has_storage_limits(&pod(None, &[None])));
        assert!(has_storage_limits(&pod(Some("1Mi"), &[None])));
        // The pod's limit is checked first, as kubelet does, and counts every container's use.
        let both_over = |name: &str| if name == "c0" { 15 << 20 } else { 8 << 20 };
        assert_eq!(
            violation(&limited, none, both_over).as_deref(),
            Some("Pod ephemeral local storage usage exceeds the total limit of containers 20Mi. ")
        );
        // Each container's files are walked once, though both checks read its use.
        let walks = std::cell::Cell::new(0);
        let counted = |_: &str| {
            walks.set(walks.get() + 1);
            1
        };
        assert_eq!(violation(&limited, none, counted), None);
        assert_eq!(walks.get(), 2);
        let mut with_sidecar = limited.clone();
        with_sidecar.spec.as_mut().unwrap().init_containers = Some(vec![serde_json::from_value(
            serde_json::json!({"name": "side", "restartPolicy": "Always",
                "resources": {"limits": {"ephemeral-storage": "1Mi"}}}),
        )
        .unwrap()]);
        let sidecar_writes = |name: &str| if name == "side" { 30 << 20 } else { 0 };
        assert_eq!(
            violation(&with_sidecar, none, sidecar_writes).as_deref(),
            Some("Pod ephemeral local storage usage exceeds the total limit of containers 21Mi. ")
        );
    }
}
