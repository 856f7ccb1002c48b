//! Following one object through a watch until a caller-given test says it is done:
//! what `corral rollout status` and `corral job run --wait` share.

use std::time::Duration;

use anyhow::bail;
use corral_client::{Api, ObjectType, WatchEvent, WatchParams};
use futures::StreamExt;

/// How following ended.
pub(crate) enum Ended {
    /// `done` returned this exit code.
    Done(u8),
    /// The object was deleted first.
    Deleted,
}

/// Watches object `name` from revision `from` (the revision it was read at), calling
/// `done` with each new state until it returns an exit code or the object is deleted.
/// A watch that fell behind compaction (410) reads the object again and resumes; a
/// watch the server ended resumes where it was.
///
/// # Errors
/// A request that failed, a watch error other than 410, or `done`'s own error.
pub(crate) async fn follow<K: ObjectType>(
    api: &Api<K>,
    name: &str,
    from: Option<String>,
    mut done: impl FnMut(&K) -> anyhow::Result<Option<u8>>,
) -> anyhow::Result<Ended> {
    let mut params = WatchParams {
        field_selector: Some(format!("metadata.name={name}")),
        resource_version: from,
        bookmarks: true,
        ..WatchParams::default()
    };
    loop {
        let stream = match api.watch(&params).await {
            Ok(s) => Some(s),
            Err(e) if e.is_gone() => None,
            Err(e) => return Err(e.into()),
        };
        let mut received = false;
        let mut behind = stream.is_none();
        if let Some(mut stream) = stream {
            while let Some(event) = stream.next().await {
                received = true;
                let event = event?;
                // A watch resumed with a field selector sends, for an object that changed
                // while it was not watched, a first non-matching event as DELETED in case
                // the client held it (server/src/fields.rs): another object's, ignored.
                if let WatchEvent::Added(obj) | WatchEvent::Modified(obj) | WatchEvent::Deleted(obj) = &event
                    && obj.meta().name != name
                {
                    continue;
                }
                match event {
                    WatchEvent::Added(obj) | WatchEvent::Modified(obj) => {
                        params.resource_version = obj.meta().resource_version.clone();
                        if let Some(code) = done(&obj)? {
                            return Ok(Ended::Done(code));
                        }
                    }
                    // Its last state may already be the end (a run refused, then
                    // pruned before the watch opened): report that end.
                    WatchEvent::Deleted(obj) => {
                        return Ok(match done(&obj)? {
                            Some(code) => Ended::Done(code),
                            None => Ended::Deleted,
                        });
                    }
                    WatchEvent::Bookmark { resource_version } => params.resource_version = Some(resource_version),
                    WatchEvent::Error(status) if status.code == 410 => {
                        behind = true;
                        break;
                    }
                    WatchEvent::Error(status) => {
                        let why = if status.message.is_empty() { status.reason } else { status.message };
                        bail!("the watch of {name} failed: {why}; run the command again");
                    }
                }
            }
        }
        if behind {
            // Too far behind: read the object again and watch from there.
            let Some(obj) = api.get_opt(name).await? else { return Ok(Ended::Deleted) };
            if let Some(code) = done(&obj)? {
                return Ok(Ended::Done(code));
            }
            params.resource_version = obj.meta().resource_version.clone();
        } else if !received {
            // The server ended the watch at once; pause before resuming.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
