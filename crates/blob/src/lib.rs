//! Where audio lives, for every role that touches it: the narration role writes and
//! deletes, the API streams (with byte ranges) or redirects to a presigned URL, and
//! `notesaga check` lists. No role reads another role's disk: with S3 they all reach
//! the same bucket; the filesystem store is the single node's default.
//!
//! - [`BlobStore`]: the writer's interface (stage a file, commit it under a key, size,
//!   delete one or every key under a prefix);
//! - [`fs`]: files under a root directory;
//! - [`s3`]: an S3-compatible bucket (AWS, MinIO, moto) through `object_store`;
//! - [`Blobs`]: one of them, as configured, with the readers' operations;
//! - [`range`]: the `Range` header, parsed and resolved against a blob's length (pure).

pub mod fs;
pub mod range;
pub mod s3;

use std::{
    future::Future,
    io,
    ops::Range,
    path::{Path, PathBuf},
    pin::Pin,
    time::Duration,
};

use bytes::Bytes;
use futures::Stream;

pub use crate::{fs::FsBlobStore, s3::S3BlobStore, s3::S3Config};

/// A store of immutable blobs under string keys like `narrations/<note>/<version>.wav`.
pub trait BlobStore: Send + Sync {
    /// A fresh local path to write a new blob to before [`BlobStore::commit`].
    fn staging_path(&self, key: &str) -> io::Result<PathBuf>;
    /// Moves a fully written staging file under `key`.
    fn commit(&self, staging: &Path, key: &str) -> impl Future<Output = io::Result<()>> + Send;
    /// Size of the blob, or `None` when there is none.
    fn size(&self, key: &str) -> impl Future<Output = io::Result<Option<u64>>> + Send;
    /// When the blob was stored, milliseconds since the Unix epoch, or `None` when there
    /// is none. A reply describing a stored blob carries this time, so a redelivered
    /// command repeats its reply byte for byte.
    fn stored_at(&self, key: &str) -> impl Future<Output = io::Result<Option<i64>>> + Send;
    /// Removes the blob (and any staging file left for it); removing a missing blob
    /// succeeds. Returns whether there was a blob to remove.
    fn delete(&self, key: &str) -> impl Future<Output = io::Result<bool>> + Send;
    /// Removes every blob whose key starts with `prefix/` (e.g. `narrations/<note>`) and
    /// any staging file among them; returns how many blobs there were.
    fn delete_all(&self, prefix: &str) -> impl Future<Output = io::Result<u32>> + Send;
}

/// Keys are made by notesaga, never by users, but one that could leave a root
/// directory or name an odd object is refused anyway.
pub(crate) fn check_key(key: &str) -> io::Result<()> {
    if key.is_empty()
        || key
            .split('/')
            .any(|part| part.is_empty() || part == ".." || part == ".")
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad blob key {key:?}"),
        ));
    }
    Ok(())
}

/// The bytes of a blob (or part of one), as they arrive.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// A local file holding a blob: the stored file itself, or a downloaded copy that is
/// removed when this is dropped.
#[derive(Debug)]
pub struct LocalFile {
    path: PathBuf,
    temporary: bool,
}

impl LocalFile {
    /// Where the bytes are.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LocalFile {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The configured store.
#[derive(Debug, Clone)]
pub enum Blobs {
    /// Files under a directory.
    Fs(FsBlobStore),
    /// An S3-compatible bucket.
    S3(S3BlobStore),
}

impl From<FsBlobStore> for Blobs {
    fn from(store: FsBlobStore) -> Self {
        Self::Fs(store)
    }
}

impl From<S3BlobStore> for Blobs {
    fn from(store: S3BlobStore) -> Self {
        Self::S3(store)
    }
}

impl Blobs {
    /// `range` of the blob (all of it when `None`), or `None` when there is no blob.
    /// The range must lie inside the blob ([`range::resolve`] makes sure).
    pub async fn read(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> io::Result<Option<ByteStream>> {
        match self {
            Self::Fs(store) => store.read(key, range).await,
            Self::S3(store) => store.read(key, range).await,
        }
    }

    /// A URL that lets anyone holding it `GET` the blob for `ttl`, where the store can
    /// make one (S3); `None` for the filesystem.
    pub async fn presigned_url(&self, key: &str, ttl: Duration) -> io::Result<Option<String>> {
        match self {
            Self::Fs(_) => Ok(None),
            Self::S3(store) => store.presigned_url(key, ttl).await.map(Some),
        }
    }

    /// The blob as a local file (to read a WAV header), or `None` when there is none.
    pub async fn local_file(&self, key: &str) -> io::Result<Option<LocalFile>> {
        match self {
            Self::Fs(store) => {
                let path = store.path(key)?;
                Ok(tokio::fs::try_exists(&path).await?.then_some(LocalFile {
                    path,
                    temporary: false,
                }))
            }
            Self::S3(store) => store.download(key).await,
        }
    }

    /// The keys of every blob under `prefix/`, sorted (staging files left out).
    pub async fn keys(&self, prefix: &str) -> io::Result<Vec<String>> {
        match self {
            Self::Fs(store) => store.keys(prefix).await,
            Self::S3(store) => store.keys(prefix).await,
        }
    }

    /// Where the store is, for messages: a directory or `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        match self {
            Self::Fs(store) => store.root().display().to_string(),
            Self::S3(store) => store.describe(),
        }
    }
}

impl BlobStore for Blobs {
    fn staging_path(&self, key: &str) -> io::Result<PathBuf> {
        match self {
            Self::Fs(store) => store.staging_path(key),
            Self::S3(store) => store.staging_path(key),
        }
    }

    async fn commit(&self, staging: &Path, key: &str) -> io::Result<()> {
        match self {
            Self::Fs(store) => store.commit(staging, key).await,
            Self::S3(store) => store.commit(staging, key).await,
        }
    }

    async fn size(&self, key: &str) -> io::Result<Option<u64>> {
        match self {
            Self::Fs(store) => store.size(key).await,
            Self::S3(store) => store.size(key).await,
        }
    }

    async fn stored_at(&self, key: &str) -> io::Result<Option<i64>> {
        match self {
            Self::Fs(store) => store.stored_at(key).await,
            Self::S3(store) => store.stored_at(key).await,
        }
    }

    async fn delete(&self, key: &str) -> io::Result<bool> {
        match self {
            Self::Fs(store) => store.delete(key).await,
            Self::S3(store) => store.delete(key).await,
        }
    }

    async fn delete_all(&self, prefix: &str) -> io::Result<u32> {
        match self {
            Self::Fs(store) => store.delete_all(prefix).await,
            Self::S3(store) => store.delete_all(prefix).await,
        }
    }
}
