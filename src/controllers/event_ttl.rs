//! Event expiry: the API server keeps Events for an hour (kube-apiserver's `--event-ttl` default), so a
//! long-running edge box does not accumulate them without bound. Every minute, Events last seen more
//! than an hour ago are deleted.

use std::time::Duration;

use serde_json::{json, Value};

use super::{Context, ControllerError};
use crate::api::meta;

pub const EVENT_TTL: Duration = Duration::from_secs(3600);
const PERIOD: Duration = Duration::from_secs(60);

pub fn start(ctx: &Context) -> Vec<tokio::task::JoinHandle<()>> {
    let ctx = ctx.clone();
    vec![tokio::spawn(async move {
        let mut shutdown = ctx.shutdown.clone();
        loop {
            if let Err(e) = expire(&ctx).await {
                tracing::warn!(error = %e, "event expiry failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(PERIOD) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    })]
}

/// When the event last happened: lastTimestamp, eventTime or its creation, whichever is newest.
fn last_seen(event: &Value) -> Option<jiff::Timestamp> {
    ["lastTimestamp", "eventTime"]
        .iter()
        .filter_map(|f| event[*f].as_str())
        .chain(meta::meta_str(event, "creationTimestamp"))
        .filter_map(|t| t.parse::<jiff::Timestamp>().ok())
        .max()
}

pub fn expired(event: &Value, now: jiff::Timestamp) -> bool {
    let ttl = jiff::SignedDuration::try_from(EVENT_TTL).unwrap_or_default();
    last_seen(event).is_some_and(|t| now.duration_since(t) > ttl)
}

async fn expire(ctx: &Context) -> Result<(), ControllerError> {
    let now = ctx.clock.now();
    let events = ctx.client.get("/api/v1/events").await?;
    for event in events["items"].as_array().into_iter().flatten() {
        if !expired(event, now) {
            continue;
        }
        let path = format!(
            "/api/v1/namespaces/{}/events/{}",
            meta::namespace(event).unwrap_or_default(),
            meta::name(event).unwrap_or_default()
        );
        match ctx.client.delete(&path, &json!({})).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_expire_an_hour_after_they_were_last_seen() {
        let now: jiff::Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        let old = json!({"metadata": {"creationTimestamp": "2026-11-23T10:00:00Z"}, "lastTimestamp": "2026-11-23T10:30:00Z"});
        assert!(expired(&old, now));
        let repeated = json!({"metadata": {"creationTimestamp": "2026-11-23T10:00:00Z"}, "lastTimestamp": "2026-11-23T11:30:00Z"});
        assert!(!expired(&repeated, now));
        let new_style = json!({"metadata": {"creationTimestamp": "2026-11-23T10:00:00Z"}, "eventTime": "2026-11-23T11:59:00.000000Z"});
        assert!(!expired(&new_style, now));
    }
}
