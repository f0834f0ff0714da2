//! The one set of informers the control plane's loops share (controllers and the scheduler), so each
//! resource is listed and watched once per process.

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, Service,
};
use k8s_openapi::api::storage::v1::StorageClass;
use tokio::sync::watch;

use super::{Client, Informer};

/// The informers every controller and the scheduler share.
pub struct SharedInformers {
    pub pods: Informer<Pod>,
    pub nodes: Informer<Node>,
    pub leases: Informer<Lease>,
    pub replica_sets: Informer<ReplicaSet>,
    pub deployments: Informer<Deployment>,
    pub daemon_sets: Informer<DaemonSet>,
    pub stateful_sets: Informer<StatefulSet>,
    pub controller_revisions: Informer<ControllerRevision>,
    pub jobs: Informer<Job>,
    pub cron_jobs: Informer<CronJob>,
    pub persistent_volume_claims: Informer<PersistentVolumeClaim>,
    pub namespaces: Informer<Namespace>,
    pub services: Informer<Service>,
    pub persistent_volumes: Informer<PersistentVolume>,
    pub storage_classes: Informer<StorageClass>,
}

impl SharedInformers {
    pub fn new(client: &Client) -> Self {
        SharedInformers {
            pods: Informer::new(client.clone()),
            nodes: Informer::new(client.clone()),
            leases: Informer::with_query(
                client.clone(),
                "fieldSelector=metadata.namespace%3Dkube-node-lease",
            ),
            replica_sets: Informer::new(client.clone()),
            deployments: Informer::new(client.clone()),
            daemon_sets: Informer::new(client.clone()),
            stateful_sets: Informer::new(client.clone()),
            controller_revisions: Informer::new(client.clone()),
            jobs: Informer::new(client.clone()),
            cron_jobs: Informer::new(client.clone()),
            persistent_volume_claims: Informer::new(client.clone()),
            namespaces: Informer::new(client.clone()),
            services: Informer::new(client.clone()),
            persistent_volumes: Informer::new(client.clone()),
            storage_classes: Informer::new(client.clone()),
        }
    }

    pub fn run(&self, shutdown: &watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            self.pods.run(shutdown.clone()),
            self.nodes.run(shutdown.clone()),
            self.leases.run(shutdown.clone()),
            self.replica_sets.run(shutdown.clone()),
            self.deployments.run(shutdown.clone()),
            self.daemon_sets.run(shutdown.clone()),
            self.stateful_sets.run(shutdown.clone()),
            self.controller_revisions.run(shutdown.clone()),
            self.jobs.run(shutdown.clone()),
            self.cron_jobs.run(shutdown.clone()),
            self.persistent_volume_claims.run(shutdown.clone()),
            self.namespaces.run(shutdown.clone()),
            self.services.run(shutdown.clone()),
            self.persistent_volumes.run(shutdown.clone()),
            self.storage_classes.run(shutdown.clone()),
        ]
    }

    pub async fn wait_synced(&self) {
        self.pods.wait_synced().await;
        self.nodes.wait_synced().await;
        self.leases.wait_synced().await;
        self.replica_sets.wait_synced().await;
        self.deployments.wait_synced().await;
        self.daemon_sets.wait_synced().await;
        self.stateful_sets.wait_synced().await;
        self.controller_revisions.wait_synced().await;
        self.jobs.wait_synced().await;
        self.cron_jobs.wait_synced().await;
        self.persistent_volume_claims.wait_synced().await;
        self.namespaces.wait_synced().await;
        self.services.wait_synced().await;
        self.persistent_volumes.wait_synced().await;
        self.storage_classes.wait_synced().await;
    }
}
