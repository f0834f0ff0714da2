//! The service account controller: every active namespace has a `default` ServiceAccount, as kube-controller-manager's serviceaccounts-controller does.

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use serde_json::json;

use super::{run_workers, Context, ControllerError};
use crate::client::{Api, WorkQueue};

pub const DEFAULT_NAME: &str = "default";

pub fn start(ctx: &Context) -> Vec<tokio::task::JoinHandle<()>> {
    let queue = WorkQueue::new();
    {
        let queue = queue.clone();
        ctx.informers.namespaces.on_change(move |change| {
            queue.add(change.object().metadata.name.as_deref().unwrap_or_default());
        });
    }
    let ctx = ctx.clone();
    run_workers(
        "serviceaccount",
        queue,
        1,
        ctx.shutdown.clone(),
        move |ns| {
            let ctx = ctx.clone();
            async move { ensure_default(&ctx, &ns).await.map(|_| None) }
        },
    )
}

fn active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

async fn ensure_default(ctx: &Context, namespace: &str) -> Result<(), ControllerError> {
    if !ctx
        .informers
        .namespaces
        .get(namespace)
        .is_some_and(|ns| active(&ns))
    {
        return Ok(());
    }
    let api = Api::<ServiceAccount>::namespaced(ctx.client.clone(), namespace);
    if api.get_opt(DEFAULT_NAME).await?.is_some() {
        return Ok(());
    }
    let account: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": DEFAULT_NAME, "namespace": namespace},
    }))
    .map_err(|e| ControllerError::Invalid(e.to_string()))?;
    match api.create(&account).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() => Ok(()),
        // The namespace began terminating meanwhile.
        Err(e) if e.code() == Some(403) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
