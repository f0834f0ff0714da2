//! AppArmor as kubelet admits it: a pod that asks for an AppArmor profile (any but Unconfined, in its
//! security context, a container's, or the deprecated annotations) is soft-rejected while it is Pending —
//! it stays Pending with reason `AppArmor` and its containers wait `Blocked` — when the node cannot
//! enforce the profile. Kubelet cannot on a host without AppArmor; orch's runtime applies no AppArmor
//! profile at all, so on a host with AppArmor it cannot either, and says so rather than run the pod
//! unconfined.

use k8s_openapi::api::core::v1::{AppArmorProfile, Pod};

/// kubelet's reason for the rejection.
pub const REASON: &str = "AppArmor";

/// The prefix of the deprecated per-container annotations (`…/<container>: runtime/default`).
const ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
const ANNOTATION_UNCONFINED: &str = "unconfined";

/// Whether the kernel enforces AppArmor, as runc's `apparmor.IsEnabled` decides it.
pub fn host_enabled() -> bool {
    std::path::Path::new("/sys/kernel/security/apparmor").exists()
        && std::fs::read("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|v| v.len() > 1 && v[0] == b'Y')
}

/// kubelet's message when a Pending `pod` needs AppArmor that this node cannot give it.
pub fn refusal(pod: &Pod, host_enabled: bool) -> Option<String> {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase.is_some_and(|p| p != "Pending") || !required(pod) {
        return None;
    }
    Some(if host_enabled {
        "Cannot enforce AppArmor: the node's runtime does not apply AppArmor profiles".into()
    } else {
        "Cannot enforce AppArmor: AppArmor is not enabled on the host".into()
    })
}

/// kubelet's isRequired: some profile other than Unconfined is asked for.
fn required(pod: &Pod) -> bool {
    let confining = |p: Option<&AppArmorProfile>| p.is_some_and(|p| p.type_ != "Unconfined");
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    if confining(
        spec.security_context
            .as_ref()
            .and_then(|s| s.app_armor_profile.as_ref()),
    ) {
        return true;
    }
    let containers = super::container::all(spec);
    if containers.iter().any(|c| {
        confining(
            c.security_context
                .as_ref()
                .and_then(|s| s.app_armor_profile.as_ref()),
        )
    }) {
        return true;
    }
    pod.metadata
        .annotations
        .iter()
        .flatten()
        .any(|(key, value)| key.starts_with(ANNOTATION_PREFIX) && value != ANNOTATION_UNCONFINED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_pending_pod_asking_for_a_profile_is_refused_where_it_cannot_be_enforced() {
        let asks = [
            pod(serde_json::json!({"spec": {
                "securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "a"}]}})),
            pod(
                serde_json::json!({"spec": {"containers": [{"name": "a", "securityContext":
                {"appArmorProfile": {"type": "Localhost", "localhostProfile": "k8s-deny-write"}}}]}}),
            ),
            pod(
                serde_json::json!({"spec": {"initContainers": [{"name": "i", "securityContext":
                {"appArmorProfile": {"type": "RuntimeDefault"}}}], "containers": [{"name": "a"}]}}),
            ),
            pod(serde_json::json!({
                "metadata": {"annotations":
                    {"container.apparmor.security.beta.kubernetes.io/a": "runtime/default"}},
                "spec": {"containers": [{"name": "a"}]}})),
        ];
        for asking in &asks {
            assert_eq!(
                refusal(asking, false).as_deref(),
                Some("Cannot enforce AppArmor: AppArmor is not enabled on the host")
            );
            assert!(refusal(asking, true)
                .unwrap()
                .contains("does not apply AppArmor profiles"));
        }
        // Once it runs, kubelet does not look again.
        let mut running = asks[0].clone();
        running.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        });
        assert_eq!(refusal(&running, false), None);

        let unconfined = [
            pod(serde_json::json!({"spec": {
                "securityContext": {"appArmorProfile": {"type": "Unconfined"}},
                "containers": [{"name": "a"}]}})),
            pod(serde_json::json!({
                "metadata": {"annotations":
                    {"container.apparmor.security.beta.kubernetes.io/a": "unconfined"}},
                "spec": {"containers": [{"name": "a"}]}})),
            pod(serde_json::json!({"spec": {"containers": [{"name": "a"}]}})),
        ];
        for free in &unconfined {
            assert_eq!(refusal(free, false), None);
        }
    }
}
