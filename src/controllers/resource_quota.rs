//! The ResourceQuota controller: keeps every quota's `status.hard` equal to its spec and `status.used`
//! equal to what the namespace's stored objects use (which also returns what deleted objects freed after
//! admission charged them). It recounts every quota every few seconds and whenever a pod changes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::{run_workers, Context, ControllerError};
use crate::api::quota::{self, Usage};
use crate::api::resources::{self, ResourceInfo};
use crate::client::WorkQueue;

const RESYNC: Duration = Duration::from_secs(5);

pub fn start(ctx: &Context) -> Vec<tokio::task::JoinHandle<()>> {
    let queue = WorkQueue::new();
    // Pod changes only matter in namespaces that have quotas; most have none.
    let with_quotas: Arc<Mutex<HashSet<String>>> = Arc::default();
    {
        let queue = queue.clone();
        let with_quotas = with_quotas.clone();
        ctx.informers.pods.on_change(move |change| {
            if let Some(ns) = change.object().metadata.namespace.as_deref() {
                if with_quotas
                    .lock()
                    .expect("quota namespaces lock")
                    .contains(ns)
                {
                    queue.add(ns);
                }
            }
        });
    }
    let mut tasks = Vec::new();
    {
        let ctx = ctx.clone();
        let queue = queue.clone();
        let mut shutdown = ctx.shutdown.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                if let Ok(list) = ctx.client.get("/api/v1/resourcequotas").await {
                    let namespaces: HashSet<String> = list["items"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|q| q["metadata"]["namespace"].as_str())
                        .map(str::to_string)
                        .collect();
                    for ns in &namespaces {
                        queue.add(ns);
                    }
                    *with_quotas.lock().expect("quota namespaces lock") = namespaces;
                }
                tokio::select! {
                    _ = tokio::time::sleep(RESYNC) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        }));
    }
    let ctx = ctx.clone();
    tasks.extend(run_workers(
        "resourcequota",
        queue,
        1,
        ctx.shutdown.clone(),
        move |ns| {
            let ctx = ctx.clone();
            async move { sync_namespace(&ctx, &ns).await.map(|_| None) }
        },
    ));
    tasks
}

/// Whether objects of `info` add to any of the quota's resources.
fn counted(info: &ResourceInfo, hard: &Usage) -> bool {
    hard.keys()
        .any(|k| quota::counts_toward(info.group, info.plural, k))
}

async fn sync_namespace(ctx: &Context, namespace: &str) -> Result<(), ControllerError> {
    let quotas = ctx
        .client
        .get(&format!("/api/v1/namespaces/{namespace}/resourcequotas"))
        .await?;
    let quotas: Vec<&Value> = quotas["items"].as_array().into_iter().flatten().collect();
    let hards: Vec<Usage> = quotas
        .iter()
        .map(|q| quota::parse_list(&q["spec"]["hard"]))
        .collect();
    let mut used: Vec<Usage> = hards
        .iter()
        .map(|hard| {
            hard.iter()
                .map(|(k, v)| (k.clone(), crate::api::quantity::Quantity::zero(v.format())))
                .collect()
        })
        .collect();
    let now = ctx.clock.now();
    // Each kind is listed once, and each object's usage worked out once, whatever the number of quotas.
    for info in resources::storage_resources()
        .filter(|r| r.namespaced && hards.iter().any(|hard| counted(r, hard)))
    {
        let list = ctx.client.get(&info.path(Some(namespace), None)).await?;
        for item in list["items"].as_array().into_iter().flatten() {
            let mut usage = None;
            for (i, q) in quotas.iter().enumerate() {
                if !counted(info, &hards[i]) || !quota::in_scope(q, info.group, info.plural, item) {
                    continue;
                }
                let usage = usage
                    .get_or_insert_with(|| quota::usage_of(info.group, info.plural, item, now));
                for (k, v) in usage.iter() {
                    if let Some(total) = used[i].get_mut(k) {
                        *total = total.plus(v);
                    }
                }
            }
        }
    }
    for (q, used) in quotas.into_iter().zip(used) {
        let status = json!({"hard": q["spec"]["hard"], "used": quota::to_json(&used)});
        if same_quantities(&q["status"], &status) {
            continue;
        }
        let mut updated = q.clone();
        updated["status"] = status;
        let name = q["metadata"]["name"].as_str().unwrap_or_default();
        match ctx
            .client
            .update(
                &format!("/api/v1/namespaces/{namespace}/resourcequotas/{name}/status"),
                &updated,
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn same_quantities(a: &Value, b: &Value) -> bool {
    ["hard", "used"]
        .iter()
        .all(|k| quota::parse_list(&a[*k]) == quota::parse_list(&b[*k]))
}
