//! Blobs as files under a root directory (the single node's default: the data
//! directory's `audio/`). Writes go to a temporary file that is renamed into place, so a
//! reader (or a crash) never sees half a file under a key. A staging file is named
//! after its key (`.<name>.<uuid>.partial`), so deleting a key also sweeps what a crashed
//! render of it left behind.

use std::{
    io,
    path::{Path, PathBuf},
};

use crate::{check_key, BlobStore};

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

    /// The directory the keys are under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `range` of the blob (all of it when `None`), or `None` when there is no blob.
    pub async fn read(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> io::Result<Option<crate::ByteStream>> {
        use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
        let mut file = match tokio::fs::File::open(self.path(key)?).await {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let range = match range {
            Some(range) => range,
            None => 0..file.metadata().await?.len(),
        };
        file.seek(io::SeekFrom::Start(range.start)).await?;
        let reader = file.take(range.end.saturating_sub(range.start));
        // 64 KiB reads: a narration streams in a few dozen chunks.
        let stream = futures::stream::try_unfold(reader, |mut reader| async move {
            let mut buffer = vec![0; 64 * 1024];
            let read = reader.read(&mut buffer).await?;
            if read == 0 {
                return Ok(None);
            }
            buffer.truncate(read);
            Ok(Some((bytes::Bytes::from(buffer), reader)))
        });
        Ok(Some(Box::pin(stream)))
    }

    /// The file a key maps to. Keys are produced by notesaga, never by users, but a key
    /// that would leave the root is refused anyway.
    pub fn path(&self, key: &str) -> io::Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// The keys of every blob under `prefix/`, sorted; staging files are not blobs and
    /// are left out. A prefix with nothing under it lists nothing. Read-only; for
    /// `notesaga check`, which compares the store with the log.
    pub async fn keys(&self, prefix: &str) -> io::Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut dirs = vec![(self.path(prefix)?, prefix.to_owned())];
        while let Some((dir, key)) = dirs.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            while let Some(entry) = entries.next_entry().await? {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let child = format!("{key}/{name}");
                if entry.file_type().await?.is_dir() {
                    dirs.push((entry.path(), child));
                } else {
                    keys.push(child);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

impl BlobStore for FsBlobStore {
    fn staging_path(&self, key: &str) -> io::Result<PathBuf> {
        let path = self.path(key)?;
        let dir = path.parent().expect("keys have a directory");
        std::fs::create_dir_all(dir)?;
        let name = path
            .file_name()
            .expect("keys end in a name")
            .to_string_lossy();
        Ok(dir.join(format!(".{name}.{}.partial", uuid::Uuid::new_v4().simple())))
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

    async fn stored_at(&self, key: &str) -> io::Result<Option<i64>> {
        match tokio::fs::metadata(self.path(key)?).await {
            Ok(meta) => {
                let since_epoch = meta
                    .modified()?
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                Ok(Some(
                    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX),
                ))
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn delete(&self, key: &str) -> io::Result<bool> {
        let path = self.path(key)?;
        let existed = remove_file(&path).await?;
        let dir = path.parent().expect("keys have a directory");
        let name = path
            .file_name()
            .expect("keys end in a name")
            .to_string_lossy();
        let staging = format!(".{name}.");
        sweep(dir, |file| {
            file.starts_with(&staging) && file.ends_with(".partial")
        })
        .await?;
        Ok(existed)
    }

    async fn delete_all(&self, prefix: &str) -> io::Result<u32> {
        let dir = self.path(prefix)?;
        let removed = sweep(&dir, |_| true).await?;
        Ok(removed)
    }
}

/// Removes a file; returns whether it was there.
async fn remove_file(path: &Path) -> io::Result<bool> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

/// Removes the files of `dir` whose names `pick` selects, then `dir` itself if that
/// left it empty (a note with no audio leaves no directory behind). Returns how many
/// blobs (not staging files, whose names start with a dot) were removed.
async fn sweep(dir: &Path, pick: impl Fn(&str) -> bool) -> io::Result<u32> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(err),
    };
    let mut removed = 0;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !entry.file_type().await?.is_file() || !pick(&name) {
            continue;
        }
        if remove_file(&entry.path()).await? && !name.starts_with('.') {
            removed += 1;
        }
    }
    // Not empty (another version's audio) or already gone: either is fine.
    let _ = tokio::fs::remove_dir(dir).await;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn narration_key(note: uuid::Uuid, version: i64) -> String {
        format!("{}/{version}.wav", narration_prefix(note))
    }

    fn narration_prefix(note: uuid::Uuid) -> String {
        format!("narrations/{note}")
    }

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
        assert!(store.delete(&key).await.unwrap());
        assert!(!store.delete(&key).await.unwrap(), "nothing left to delete");
        assert_eq!(store.size(&key).await.unwrap(), None);
    }

    /// Files under the root, relative, sorted.
    fn files(root: &Path) -> Vec<String> {
        notesaga_testkit::files_under(root)
            .iter()
            .map(|path| path.strip_prefix(root).unwrap().display().to_string())
            .collect()
    }

    async fn put(store: &FsBlobStore, key: &str) {
        let staging = store.staging_path(key).unwrap();
        std::fs::write(&staging, key).unwrap();
        store.commit(&staging, key).await.unwrap();
    }

    #[tokio::test]
    async fn deleting_a_version_sweeps_its_leftovers_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::new(dir.path());
        let note = uuid::Uuid::from_u128(7);
        put(&store, &narration_key(note, 1)).await;
        put(&store, &narration_key(note, 2)).await;
        // What a render of version 1 that crashed half way leaves behind.
        std::fs::write(
            store.staging_path(&narration_key(note, 1)).unwrap(),
            b"half",
        )
        .unwrap();
        assert!(store.delete(&narration_key(note, 1)).await.unwrap());
        assert_eq!(
            files(dir.path()),
            vec![format!("{}/2.wav", narration_prefix(note))]
        );
        assert!(store.delete(&narration_key(note, 2)).await.unwrap());
        assert!(files(dir.path()).is_empty());
        assert!(
            !dir.path().join(narration_prefix(note)).exists(),
            "the emptied note directory is gone too"
        );
    }

    #[tokio::test]
    async fn deleting_all_removes_every_version_of_one_note_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::new(dir.path());
        let (note, other) = (uuid::Uuid::from_u128(7), uuid::Uuid::from_u128(8));
        for version in 1..=3 {
            put(&store, &narration_key(note, version)).await;
        }
        put(&store, &narration_key(other, 1)).await;
        std::fs::write(
            store.staging_path(&narration_key(note, 4)).unwrap(),
            b"half",
        )
        .unwrap();
        assert_eq!(store.delete_all(&narration_prefix(note)).await.unwrap(), 3);
        assert_eq!(files(dir.path()), vec![narration_key(other, 1)]);
        assert_eq!(store.delete_all(&narration_prefix(note)).await.unwrap(), 0);
    }

    #[test]
    fn keys_cannot_escape_the_root() {
        let store = FsBlobStore::new("/tmp/x");
        assert!(store.path("../etc/passwd").is_err());
        assert!(store.path("a//b").is_err());
        assert!(store.path("narrations/a/1.wav").is_ok());
    }
}
