//! Events that controllers and the scheduler record about objects, as `kubectl describe` shows them
//! (core/v1 Events with a source component, first/last timestamps and a count; a repeat within ten
//! minutes raises the count of the recorded event; `controllers::event_ttl` expires them after an hour).

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

/// A repeat of the same event within this window raises the count of the recorded one.
const AGGREGATION_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);
/// How many distinct events are remembered for aggregation.
const REMEMBERED: usize = 4096;

struct Seen {
    path: String,
    count: i64,
    at: std::time::Instant,
}

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
    seen: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Seen>>>,
}

impl Recorder {
    pub fn new(client: Client, component: &'static str) -> Self {
        Recorder {
            client,
            component,
            seen: Default::default(),
        }
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
        // Like client-go's event correlator: the same event again raises the count instead of adding one.
        let identity = format!("{}\0{}\0{kind}\0{reason}\0{message}", about.uid, about.name);
        let repeat = {
            let seen = self.seen.lock().expect("events lock");
            seen.get(&identity)
                .filter(|s| s.at.elapsed() < AGGREGATION_WINDOW)
                .map(|s| (s.path.clone(), s.count + 1))
        };
        if let Some((path, count)) = repeat {
            let bump = json!({"count": count, "lastTimestamp": format_time(now)});
            if self.client.merge_patch(&path, &bump).await.is_ok() {
                self.remember(identity, path, count);
                return;
            }
        }
        let collection = format!("/api/v1/namespaces/{namespace}/events");
        match self.client.create(&collection, &event).await {
            Ok(created) => {
                let name = created["metadata"]["name"].as_str().unwrap_or_default();
                self.remember(identity, format!("{collection}/{name}"), 1);
            }
            Err(e) => tracing::debug!(reason, error = %e, "event not recorded"),
        }
    }

    fn remember(&self, identity: String, path: String, count: i64) {
        let mut seen = self.seen.lock().expect("events lock");
        if seen.len() >= REMEMBERED && !seen.contains_key(&identity) {
            seen.retain(|_, s| s.at.elapsed() < AGGREGATION_WINDOW);
            if seen.len() >= REMEMBERED {
                seen.clear();
            }
        }
        seen.insert(
            identity,
            Seen {
                path,
                count,
                at: std::time::Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::util::clock::FakeClock;

    #[tokio::test]
    async fn a_repeated_event_raises_the_count_of_the_first() {
        let clock = Arc::new(FakeClock::new("2026-11-23T10:00:00Z".parse().unwrap()));
        let (_dir, client) = crate::server::testing::in_process(clock.clone()).await;
        let recorder = Recorder::new(client.clone(), "test-controller");
        let about = Involved {
            api_version: "v1",
            kind: "Pod",
            namespace: "default",
            name: "web",
            uid: "u1",
        };
        recorder
            .warning(clock.as_ref(), &about, "FailedScheduling", "0/1 nodes")
            .await;
        clock.advance(jiff::SignedDuration::from_secs(30));
        recorder
            .warning(clock.as_ref(), &about, "FailedScheduling", "0/1 nodes")
            .await;
        recorder
            .normal(clock.as_ref(), &about, "Scheduled", "assigned")
            .await;
        let events = client
            .get("/api/v1/namespaces/default/events")
            .await
            .unwrap();
        let items = events["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{items:?}");
        let failed = items
            .iter()
            .find(|e| e["reason"] == "FailedScheduling")
            .unwrap();
        assert_eq!(failed["count"], 2);
        assert_eq!(failed["firstTimestamp"], "2026-11-23T10:00:00Z");
        assert_eq!(failed["lastTimestamp"], "2026-11-23T10:00:30Z");
        assert_eq!(failed["source"]["component"], "test-controller");
    }
}
