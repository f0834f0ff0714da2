//! Events that controllers and the scheduler record about objects, as `kubectl describe` shows them
//! (core/v1 Events with a source component, first/last timestamps and a count).

use serde_json::json;

use super::Client;
use crate::api::meta::format_time;
use crate::util::Clock;

/// What an event is about.
pub struct Involved<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
}

impl<'a> Involved<'a> {
    pub fn new(
        api_version: &'a str,
        kind: &'a str,
        meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) -> Self {
        Involved {
            api_version,
            kind,
            namespace: meta.namespace.as_deref().unwrap_or_default(),
            name: meta.name.as_deref().unwrap_or_default(),
            uid: meta.uid.as_deref().unwrap_or_default(),
        }
    }
}

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
}

impl Recorder {
    pub fn new(client: Client, component: &'static str) -> Self {
        Recorder { client, component }
    }

    /// Records a Normal event; failures are logged, never returned: an event is not worth failing a sync.
    pub async fn normal(
        &self,
        clock: &dyn Clock,
        about: &Involved<'_>,
        reason: &str,
        message: &str,
    ) {
        self.record(clock, about, "Normal", reason, message).await
    }

    pub async fn warning(
        &self,
        clock: &dyn Clock,
        about: &Involved<'_>,
        reason: &str,
        message: &str,
    ) {
        self.record(clock, about, "Warning", reason, message).await
    }

    async fn record(
        &self,
        clock: &dyn Clock,
        about: &Involved<'_>,
        kind: &str,
        reason: &str,
        message: &str,
    ) {
        let now = clock.now();
        // Events live in the object's namespace; cluster-scoped objects' events go to default.
        let namespace = if about.namespace.is_empty() {
            "default"
        } else {
            about.namespace
        };
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {
                "name": format!("{}.{:x}", about.name, now.as_nanosecond()),
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": about.api_version, "kind": about.kind, "namespace": about.namespace,
                "name": about.name, "uid": about.uid,
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": "",
            "firstTimestamp": format_time(now),
            "lastTimestamp": format_time(now),
            "eventTime": null,
            "count": 1,
        });
        let path = format!("/api/v1/namespaces/{namespace}/events");
        if let Err(e) = self.client.create(&path, &event).await {
            tracing::debug!(reason, error = %e, "event not recorded");
        }
    }
}
