//! AppArmor as kubelet admits it: a pod that asks for an AppArmor profile (any but Unconfined, in its
//! security context, a container's, or the deprecated annotations) is soft-rejected while it is Pending —
//! it stays Pending with reason `AppArmor` and its containers wait `Blocked` — on a host without
//! AppArmor. On a host with it, orch's runtime applies no profile: RuntimeDefault runs as a pod that
//! names no profile does (containerd would confine both with its default profile), and a Localhost
//! profile, which only the runtime could apply, is refused the same way rather than ignored.

use k8s_openapi::api::core::v1::{AppArmorProfile, Pod};

/// kubelet's reason for the rejection.
pub const REASON: &str = "AppArmor";

/// The prefix of the deprecated per-container annotations (`…/<container>: runtime/default`).
const ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
const ANNOTATION_UNCONFINED: &str = "unconfined";
const ANNOTATION_LOCALHOST: &str = "localhost/";

/// Whether the kernel enforces AppArmor, as runc's `apparmor.IsEnabled` decides it.
pub fn host_enabled() -> bool {
    std::path::Path::new("/sys/kernel/security/apparmor").exists()
        && std::fs::read("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|v| v.len() > 1 && v[0] == b'Y')
}

/// The message with which a Pending `pod` is kept from running for AppArmor it asks for.
pub fn refusal(pod: &Pod, host_enabled: bool) -> Option<String> {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase.is_some_and(|p| p != "Pending") {
        return None;
    }
    if !host_enabled {
        // kubelet's isRequired: some profile other than Unconfined.
        return asks(
            pod,
            |kind| kind != "Unconfined",
            |value| value != ANNOTATION_UNCONFINED,
        )
        .then(|| "Cannot enforce AppArmor: AppArmor is not enabled on the host".into());
    }
    asks(
        pod,
        |kind| kind == "Localhost",
        |value| value.starts_with(ANNOTATION_LOCALHOST),
    )
    .then(|| {
        "Cannot enforce AppArmor: the node's runtime does not apply Localhost AppArmor profiles"
            .into()
    })
}

/// Whether the pod, one of its containers or a deprecated annotation asks for a profile whose type (or
/// annotation value) `matches`.
fn asks(
    pod: &Pod,
    matches: impl Fn(&str) -> bool,
    annotation_matches: impl Fn(&str) -> bool,
) -> bool {
    let asked = |p: Option<&AppArmorProfile>| p.is_some_and(|p| matches(&p.type_));
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    asked(
        spec.security_context
            .as_ref()
            .and_then(|s| s.app_armor_profile.as_ref()),
    ) || super::container::all(spec).iter().any(|c| {
        asked(
            c.security_context
                .as_ref()
                .and_then(|s| s.app_armor_profile.as_ref()),
        )
    }) || pod
        .metadata
        .annotations
        .iter()
        .flatten()
        .any(|(key, value)| key.starts_with(ANNOTATION_PREFIX) && annotation_matches(value))
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
        }
        // Where AppArmor is enabled, only the Localhost profile is refused: orch applies none.
        let refused_with_apparmor: Vec<bool> =
            asks.iter().map(|p| refusal(p, true).is_some()).collect();
        assert_eq!(refused_with_apparmor, [false, true, false, false]);
        assert_eq!(
            refusal(&asks[1], true).as_deref(),
            Some("Cannot enforce AppArmor: the node's runtime does not apply Localhost AppArmor profiles")
        );
        let annotated_localhost = pod(serde_json::json!({
            "metadata": {"annotations":
                {"container.apparmor.security.beta.kubernetes.io/a": "localhost/k8s-deny-write"}},
            "spec": {"containers": [{"name": "a"}]}}));
        assert!(refusal(&annotated_localhost, true).is_some());
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
