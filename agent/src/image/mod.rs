//! The node's image store: a content-addressed store of imported images, each
//! flattened once into a read-only-by-convention rootfs that every task of that
//! image shares as its overlay lower dir.
//!
//! Images come from OCI image-layout archives or `docker save` archives
//! ([`ImageStore::import`]), or are pulled from a registry ([`pull`]): the control
//! plane's, or the one a reference names. Archives are unpacked by a
//! safe extractor that cannot write outside its root, whatever the archive holds.

mod import;
mod names;
pub mod pull;
pub mod push;
mod shared;
mod store;
pub(crate) mod unpack;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use shared::Images;
pub use store::ImageStore;

/// An image in the store, as `corral image ls` shows it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// sha256 hex of the image config blob, as Docker computes it.
    pub id: String,
    /// Names (`name:tag`) pointing at the image, sorted; may be empty.
    pub names: Vec<String>,
    /// Bytes in the flattened rootfs (hard links counted once).
    pub size_bytes: u64,
    /// Number of layers.
    pub layers: usize,
    /// When the image was built, RFC 3339, as its config says.
    pub created: Option<String>,
}

/// What running a container of an image needs, from the store and the image config.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The image id.
    pub id: String,
    /// The flattened rootfs. Shared by every task of the image: never write to it;
    /// mount it as an overlay lower dir.
    pub rootfs: PathBuf,
    /// The config's `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// The config's `Cmd`.
    pub cmd: Vec<String>,
    /// The config's `Env`, as `K=V`.
    pub env: Vec<String>,
    /// The config's `WorkingDir`, if set.
    pub working_dir: Option<String>,
    /// The config's `User`, if set.
    pub user: Option<String>,
}

/// The outcome of [`ImageStore::remove_detailed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// The image as it was before.
    pub image: ImageInfo,
    /// The names removed.
    pub untagged: Vec<String>,
    /// Whether the image itself was deleted (it has no name left, or was named by id).
    pub deleted: bool,
}

/// A step of an import, for progress reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportEvent {
    /// The archive is being unpacked into a staging dir and checked.
    Reading {
        /// The archive.
        archive: PathBuf,
    },
    /// A layer is being applied to the rootfs.
    Layer {
        /// 1-based position of the layer.
        index: usize,
        /// Number of layers.
        count: usize,
        /// sha256 hex of the layer blob.
        digest: String,
        /// Size of the layer blob as stored (compressed or not).
        bytes: u64,
    },
    /// The image was in the store already; only names were added.
    AlreadyPresent {
        /// Its id.
        id: String,
    },
}
