//! The objects of recent watch events, shared by every watch of the same resource and version: a stored
//! change is decoded once rather than once per watcher, and serialized once for the watchers that send
//! it on as JSON. A node starting pods has four watches on pods (the shared informers, the kubelet, the
//! garbage collector, a client), each of which decoded and serialized every change on its own.
//!
//! Only the most recent changes are kept, up to a number and a size, so a watcher that falls behind
//! decodes for itself, and kept objects cost memory only until newer changes push them out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use serde_json::Value;

use crate::api::resources::ResourceInfo;

/// How many decoded changes are kept: enough for watchers that read a burst of changes together.
const KEPT: usize = 64;

/// How large the kept changes may be together, as stored: a few large ConfigMaps must not stay in
/// memory for nobody. Decoded, an object takes a few times its stored size.
const KEPT_BYTES: usize = 1 << 20;

/// An object as a watch delivers it, with its JSON made on first use.
#[derive(Debug)]
pub struct WatchObject {
    value: Value,
    json: OnceLock<Bytes>,
}

impl WatchObject {
    pub fn new(value: Value) -> Self {
        WatchObject {
            value,
            json: OnceLock::new(),
        }
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The object serialized as JSON, once for every watcher that sends it.
    pub fn json(&self) -> &Bytes {
        self.json
            .get_or_init(|| Bytes::from(serde_json::to_vec(&self.value).unwrap_or_default()))
    }
}

/// A change (its revision) as the version of the resource it is watched in.
type Key = (i64, &'static str, &'static str);

/// The decoded objects of the last [`KEPT`] changes watched.
#[derive(Default)]
pub(super) struct RecentObjects {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    /// Oldest first, with their stored sizes. A few dozen: looked through rather than indexed.
    objects: VecDeque<(Key, usize, Arc<WatchObject>)>,
    bytes: usize,
}

impl Kept {
    fn find(&self, key: &Key) -> Option<Arc<WatchObject>> {
        // Watchers ask for the newest changes: searched from there.
        self.objects
            .iter()
            .rev()
            .find(|(kept, _, _)| kept == key)
            .map(|(_, _, object)| Arc::clone(object))
    }
}

impl RecentObjects {
    /// The object of the change at `revision` in `info`'s version, `stored_size` bytes as stored: the one
    /// kept, or `decode`d now and kept.
    pub(super) fn get_or_decode<E>(
        &self,
        info: &'static ResourceInfo,
        revision: i64,
        stored_size: usize,
        decode: impl FnOnce() -> Result<Value, E>,
    ) -> Result<Arc<WatchObject>, E> {
        let key = (revision, info.group, info.version);
        if let Some(found) = self.lock().find(&key) {
            return Ok(found);
        }
        // Decoded outside the lock: two watchers racing for the same change both decode it, and
        // the first kept wins.
        let decoded = Arc::new(WatchObject::new(decode()?));
        let mut kept = self.lock();
        if let Some(found) = kept.find(&key) {
            return Ok(found);
        }
        if stored_size > KEPT_BYTES {
            return Ok(decoded);
        }
        while kept.objects.len() == KEPT || kept.bytes + stored_size > KEPT_BYTES {
            let Some((_, size, _)) = kept.objects.pop_front() else {
                break;
            };
            kept.bytes -= size;
        }
        kept.objects
            .push_back((key, stored_size, Arc::clone(&decoded)));
        kept.bytes += stored_size;
        Ok(decoded)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().expect("recent watch objects lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources;

    fn info(plural: &str, group: &str) -> &'static ResourceInfo {
        resources::RESOURCES
            .iter()
            .find(|r| r.plural == plural && r.group == group)
            .expect("a known resource")
    }

    #[test]
    fn a_change_is_decoded_once_per_version_and_only_recent_ones_are_kept() {
        let recent = RecentObjects::default();
        let pods = info("pods", "");
        let decodes = std::cell::Cell::new(0);
        let decode = |n: i64| {
            decodes.set(decodes.get() + 1);
            Ok::<_, ()>(serde_json::json!({"kind": "Pod", "n": n}))
        };

        let first = recent.get_or_decode(pods, 7, 100, || decode(7)).unwrap();
        let second = recent.get_or_decode(pods, 7, 100, || decode(7)).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "the second watcher shares it");
        assert_eq!(decodes.get(), 1);
        assert_eq!(&first.json()[..], br#"{"kind":"Pod","n":7}"#);

        // The same revision watched as another resource version is its own object.
        recent
            .get_or_decode(info("events", "events.k8s.io"), 7, 100, || decode(7))
            .unwrap();
        assert_eq!(decodes.get(), 2);

        // A failed decode keeps nothing.
        assert!(recent.get_or_decode(pods, 8, 100, || Err(())).is_err());
        recent.get_or_decode(pods, 8, 100, || decode(8)).unwrap();
        assert_eq!(decodes.get(), 3);

        for revision in 100..100 + KEPT as i64 {
            recent
                .get_or_decode(pods, revision, 100, || decode(revision))
                .unwrap();
        }
        let before = decodes.get();
        recent.get_or_decode(pods, 7, 100, || decode(7)).unwrap();
        assert_eq!(decodes.get(), before + 1, "pushed out by newer changes");
        assert!(recent.lock().objects.len() <= KEPT);

        // Large objects push out as many as their size needs, and one too large is not kept.
        recent
            .get_or_decode(pods, 500, KEPT_BYTES / 2 + 1, || decode(500))
            .unwrap();
        recent
            .get_or_decode(pods, 501, KEPT_BYTES / 2 + 1, || decode(501))
            .unwrap();
        assert!(recent.lock().bytes <= KEPT_BYTES);
        let before = decodes.get();
        recent
            .get_or_decode(pods, 500, KEPT_BYTES / 2 + 1, || decode(500))
            .unwrap();
        assert_eq!(
            decodes.get(),
            before + 1,
            "pushed out by the next large one"
        );
        recent
            .get_or_decode(pods, 600, KEPT_BYTES + 1, || decode(600))
            .unwrap();
        recent
            .get_or_decode(pods, 600, KEPT_BYTES + 1, || decode(600))
            .unwrap();
        assert_eq!(decodes.get(), before + 3, "too large to keep");
        assert_eq!(recent.lock().objects.len(), 1, "and pushed out nothing");
    }
}
