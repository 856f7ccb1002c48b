//! The image store for async code.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{ImageStore, ResolvedImage};
use crate::blocking;
use crate::error::Result;

/// The node's [`ImageStore`] for async code: every call runs on the blocking pool.
///
/// The store's calls take its file lock, which `corral image import` in another
/// process may hold (exclusively) for as long as it takes to commit an image. Behind
/// this facade such a wait holds up only the callers that need the store (the launches
/// of container tasks, say), never the runtime's worker threads that beat the node's
/// heartbeat and reconcile every other task. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Images {
    store: Arc<ImageStore>,
    /// One pull per reference at a time: tasks of one image launched together wait
    /// for the first one's pull instead of each fetching the image.
    pulls: Arc<parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Images {
    /// Opens (creating if needed) the store in `dir`; see [`ImageStore::open`].
    ///
    /// # Errors
    /// As [`ImageStore::open`].
    pub async fn open(dir: PathBuf) -> Result<Self> {
        let store = blocking::run("opening the image store", move || ImageStore::open(dir)).await?;
        Ok(Images { store: Arc::new(store), pulls: Arc::default() })
    }

    /// What a task needs to run the image `reference` names; see [`ImageStore::resolve`].
    ///
    /// # Errors
    /// As [`ImageStore::resolve`].
    pub async fn resolve(&self, reference: &str) -> Result<ResolvedImage> {
        let (store, reference) = (self.store.clone(), reference.to_string());
        blocking::run("resolving an image", move || store.resolve(&reference)).await
    }

    /// Whether `reference` names an image in the store (a store that cannot be read
    /// counts as not holding it; the pull or the launch then says why).
    pub async fn contains(&self, reference: &str) -> bool {
        self.resolve(reference).await.is_ok()
    }

    /// Pulls `reference` from `source` into the store, unless it is there by the time
    /// no other pull of it runs; see [`super::pull::pull`]. `None`: it was there.
    ///
    /// # Errors
    /// As [`super::pull::pull`].
    pub async fn pull(
        &self,
        source: &super::pull::Source,
        reference: &str,
        progress: &tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Result<Option<super::ImageInfo>> {
        let lock = self.pulls.lock().entry(reference.to_string()).or_default().clone();
        let _held = lock.lock().await;
        if self.contains(reference).await {
            // Pulled by another task while this one waited.
            return Ok(None);
        }
        super::pull::pull(&self.store, source, reference, progress).await.map(Some)
    }

    /// Records that task `holder` uses image `image_id`; see [`ImageStore::acquire`].
    ///
    /// # Errors
    /// As [`ImageStore::acquire`].
    pub async fn acquire(&self, image_id: &str, holder: &str) -> Result<()> {
        let (store, id, holder) = (self.store.clone(), image_id.to_string(), holder.to_string());
        blocking::run("taking an image lease", move || store.acquire(&id, &holder)).await
    }

    /// Drops every lease task `holder` holds. Leases are looked up by holder rather
    /// than by the task's image reference, which may name another image by now.
    ///
    /// # Errors
    /// The images cannot be listed, or a lease cannot be removed (the first such
    /// error; the other leases are released all the same).
    pub async fn release_all(&self, holder: &str) -> Result<()> {
        let (store, holder) = (self.store.clone(), holder.to_string());
        blocking::run("releasing image leases", move || {
            let mut first_error = None;
            for image in store.list()? {
                if let Err(e) = store.release(&image.id, &holder) {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    /// Holds the store's lock exclusively, as an import committing in another process
    /// does, until `release` is sent; `held` is sent once the lock is taken.
    fn hold_lock(dir: PathBuf, held: std::sync::mpsc::Sender<()>, release: std::sync::mpsc::Receiver<()>) {
        let f = std::fs::OpenOptions::new().read(true).write(true).open(dir.join("lock")).unwrap();
        // SAFETY: flock on a descriptor this function owns.
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
        held.send(()).unwrap();
        release.recv().unwrap();
        // Closing `f` releases the lock.
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_held_store_lock_stalls_only_the_callers_not_the_runtime() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("images");
        let images = Images::open(dir.clone()).await.unwrap();

        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || hold_lock(dir, held_tx, release_rx));
        held_rx.recv().unwrap();

        // More callers than worker threads: were any of them to wait for the lock on a
        // worker, the ticker below could not run.
        let released = Arc::new(AtomicBool::new(false));
        let mut callers = Vec::new();
        for i in 0..6 {
            let (images, released) = (images.clone(), released.clone());
            callers.push(tokio::spawn(async move {
                let outcome = if i % 2 == 0 {
                    images.resolve("busybox").await.map(|_| ())
                } else {
                    images.release_all("some-task").await
                };
                (released.load(Ordering::SeqCst), outcome)
            }));
        }
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        // The test body runs on its own thread, not on a worker: it can wait here in
        // plain sleeps however stalled the workers are. The bound only keeps a broken
        // agent from hanging the test; a working one ticks at once.
        let patience = std::time::Instant::now() + Duration::from_secs(20);
        while ticks.load(Ordering::SeqCst) < 3 && std::time::Instant::now() < patience {
            std::thread::sleep(Duration::from_millis(10));
        }
        let ticks_while_held = ticks.load(Ordering::SeqCst);
        released.store(true, Ordering::SeqCst);
        release_tx.send(()).unwrap();
        holder.join().unwrap();
        assert!(ticks_while_held >= 3, "the runtime stalled while the image store was locked");

        for caller in callers {
            let (after_release, outcome) = caller.await.unwrap();
            assert!(after_release, "a store call finished while the lock was held");
            match outcome {
                Ok(()) => {}
                Err(crate::Error::Image(m)) => assert!(m.contains("not found"), "{m}"),
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        ticker.abort();
    }
}
