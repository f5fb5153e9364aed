//! Where audio lives: a small blob-store interface, implemented on the filesystem under
//! the data directory. Writes go to a temporary file that is renamed into place, so a
//! reader (or a crash) never sees half a file under a key.

use std::{
    future::Future,
    io,
    path::{Path, PathBuf},
};

/// A store of immutable blobs under string keys like `narrations/<note>/<version>.wav`.
pub trait BlobStore: Send + Sync {
    /// A fresh path to write a new blob to before [`BlobStore::commit`].
    fn staging_path(&self, key: &str) -> io::Result<PathBuf>;
    /// Moves a fully written staging file under `key` (replacing nothing if it exists).
    fn commit(&self, staging: &Path, key: &str) -> impl Future<Output = io::Result<()>> + Send;
    /// Size of the blob, or `None` when there is none.
    fn size(&self, key: &str) -> impl Future<Output = io::Result<Option<u64>>> + Send;
    /// Removes the blob; removing a missing blob succeeds.
    fn delete(&self, key: &str) -> impl Future<Output = io::Result<()>> + Send;
}

/// Blobs as files under a root directory.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// A store rooted at `root` (created on demand).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file a key maps to. Keys are produced by notesaga, never by users, but a key
    /// that would leave the root is refused anyway.
    pub fn path(&self, key: &str) -> io::Result<PathBuf> {
        if key
            .split('/')
            .any(|part| part.is_empty() || part == ".." || part == ".")
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad blob key {key:?}"),
            ));
        }
        Ok(self.root.join(key))
    }
}

impl BlobStore for FsBlobStore {
    fn staging_path(&self, key: &str) -> io::Result<PathBuf> {
        let path = self.path(key)?;
        let dir = path.parent().expect("keys have a directory");
        std::fs::create_dir_all(dir)?;
        Ok(dir.join(format!(".{}.partial", uuid::Uuid::new_v4().simple())))
    }

    async fn commit(&self, staging: &Path, key: &str) -> io::Result<()> {
        let path = self.path(key)?;
        // rename is atomic within one filesystem; the staging file sits beside the key.
        tokio::fs::rename(staging, &path).await
    }

    async fn size(&self, key: &str) -> io::Result<Option<u64>> {
        match tokio::fs::metadata(self.path(key)?).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

/// The key of the narration of one note version.
pub fn narration_key(note_id: uuid::Uuid, version: i64) -> String {
    format!("narrations/{note_id}/{version}.wav")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn write_commit_size_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::new(dir.path());
        let key = narration_key(uuid::Uuid::from_u128(1), 2);
        assert_eq!(store.size(&key).await.unwrap(), None);
        let staging = store.staging_path(&key).unwrap();
        std::fs::write(&staging, b"abc").unwrap();
        store.commit(&staging, &key).await.unwrap();
        assert_eq!(store.size(&key).await.unwrap(), Some(3));
        store.delete(&key).await.unwrap();
        store.delete(&key).await.unwrap();
        assert_eq!(store.size(&key).await.unwrap(), None);
    }

    #[test]
    fn keys_cannot_escape_the_root() {
        let store = FsBlobStore::new("/tmp/x");
        assert!(store.path("../etc/passwd").is_err());
        assert!(store.path("a//b").is_err());
        assert!(store.path("narrations/a/1.wav").is_ok());
    }
}
