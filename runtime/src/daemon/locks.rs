//! Per-slice operation locks: mutating operations on one slice run one at a time (create vs
//! destroy vs start of the same name); different slices proceed in parallel. Entries are
//! removed when the last holder or waiter goes, so the map does not grow with churn.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

type Map = Arc<Mutex<HashMap<String, (Arc<AsyncMutex<()>>, usize)>>>;

#[derive(Debug, Default)]
pub struct SliceLocks {
    /// name -> (lock, number of holders and waiters)
    map: Map,
}

pub struct SliceGuard {
    name: String,
    map: Map,
    guard: Option<OwnedMutexGuard<()>>,
}

impl SliceLocks {
    pub fn new() -> SliceLocks {
        SliceLocks::default()
    }

    pub async fn lock(&self, name: &str) -> SliceGuard {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            let entry = map
                .entry(name.to_string())
                .or_insert_with(|| (Arc::new(AsyncMutex::new(())), 0));
            entry.1 += 1;
            entry.0.clone()
        };
        // Created before waiting: if this future is dropped while waiting, Drop still runs
        // and releases the entry.
        let mut g = SliceGuard {
            name: name.to_string(),
            map: self.map.clone(),
            guard: None,
        };
        g.guard = Some(lock.lock_owned().await);
        g
    }

    /// Take the lock only if nobody holds or awaits it.
    pub fn try_lock(&self, name: &str) -> Option<SliceGuard> {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if map.contains_key(name) {
                return None;
            }
            let lock = Arc::new(AsyncMutex::new(()));
            map.insert(name.to_string(), (lock.clone(), 1));
            lock
        };
        let guard = lock.try_lock_owned().ok();
        let g = SliceGuard {
            name: name.to_string(),
            map: self.map.clone(),
            guard,
        };
        // Fresh, uncontended mutex: try_lock_owned cannot fail.
        g.guard.is_some().then_some(g)
    }

    /// Number of slices with a lock entry (held or awaited).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for SliceGuard {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = map.get_mut(&self.name) {
            entry.1 -= 1;
            if entry.1 == 0 {
                map.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn serialises_one_name_and_cleans_up() {
        let locks = Arc::new(SliceLocks::new());
        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..20 {
            let locks = locks.clone();
            let counter = counter.clone();
            tasks.push(tokio::spawn(async move {
                let name = if i % 2 == 0 { "a" } else { "b" };
                let _g = locks.lock(name).await;
                let before = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                counter.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                before
            }));
        }
        for t in tasks {
            assert!(
                t.await.unwrap() <= 1,
                "at most one holder per name (two names)"
            );
        }
        assert!(locks.is_empty());
        // A waiter that gives up leaves nothing behind either.
        let g = locks.lock("c").await;
        let waiting = tokio::time::timeout(Duration::from_millis(10), locks.lock("c")).await;
        assert!(waiting.is_err());
        drop(g);
        assert!(locks.is_empty());
        let t = locks.try_lock("d").expect("free");
        assert!(locks.try_lock("d").is_none());
        drop(t);
        assert!(locks.is_empty());
    }
}
