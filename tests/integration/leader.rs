//! Leader election through a Lease: one candidate wins, renews, and loses the Lease only once it stops
//! renewing for a lease duration; the server's own controllers hold their Lease.

use std::time::Duration;

use orch::client::leader::LeaderElection;
use orch::util::SystemClock;

use crate::harness::Server;

fn candidate(client: orch::client::Client, identity: &str) -> LeaderElection {
    LeaderElection {
        client,
        namespace: "default".into(),
        name: "test-lock".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(2),
        renew_interval: Duration::from_millis(200),
    }
}

#[test]
fn one_candidate_leads_until_it_stops_renewing() {
    let s = Server::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let a = candidate(s.client(), "a");
        let b = candidate(s.client(), "b");
        let (first, second) = tokio::join!(
            a.try_acquire_or_renew(&SystemClock),
            b.try_acquire_or_renew(&SystemClock)
        );
        assert!(first ^ second, "exactly one wins: a={first} b={second}");
        let (leader, other) = if first { (&a, &b) } else { (&b, &a) };
        assert!(
            leader.try_acquire_or_renew(&SystemClock).await,
            "the leader renews"
        );
        assert!(
            !other.try_acquire_or_renew(&SystemClock).await,
            "a held lease is not taken"
        );
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert!(
            other.try_acquire_or_renew(&SystemClock).await,
            "an expired lease is taken over"
        );
        assert!(!leader.try_acquire_or_renew(&SystemClock).await);
    });
    let holder = s.ok(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        "orch-controllers",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert!(
        !holder.is_empty(),
        "the server's controllers hold their lease"
    );
}
