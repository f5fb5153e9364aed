//! The write-ahead log: numbered segment files of framed entries, one writer thread
//! that appends and fsyncs in groups, positional reads for fetches, and recovery.
//!
//! WHY one log for every partition: a single node serves tens of partitions, and with
//! a file per partition one produce request touching six partitions costs six fsyncs.
//! One sequential log costs one fsync per group of concurrent appends, whatever they
//! touch (group commit), and replaying it at start-up rebuilds every index.
//!
//! Positions are reserved by the caller under the engine's lock, in the same order as
//! the writes are submitted, so the writer appends at exactly the reserved position and
//! the index can point at batches before they are written (it exposes them to readers
//! only once durable).

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io,
    os::unix::fs::{DirBuilderExt as _, FileExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{mpsc, Arc, RwLock},
    thread,
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::entry::{read_frame, DecodeError, Entry, Framed};
use crate::metrics;

/// When an append counts as durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Fsync {
    /// `fdatasync` before acknowledging each group of appends: an acknowledged record
    /// survives a killed broker and a power cut.
    Always,
    /// Written to the OS before acknowledging, flushed by the OS later: an acknowledged
    /// record survives a killed broker (SIGKILL), not a power cut or kernel crash.
    Never,
}

/// A segment is closed and a new one started beyond this size.
pub(crate) const SEGMENT_BYTES: u64 = 256 * 1024 * 1024;

/// Why the log cannot be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// The directory or a segment cannot be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A segment before the last one is damaged: what follows cannot be trusted.
    #[error(
        "segment {path} is damaged at byte {at} and is not the last one; the log after it \
         cannot be trusted. Move the broker's data directory aside (or restore it) and start again"
    )]
    Damaged { path: PathBuf, at: u64 },
    /// A whole frame holds bytes this version does not understand.
    #[error("segment {path} at byte {at}: {source}")]
    Decode {
        path: PathBuf,
        at: u64,
        source: DecodeError,
    },
}

struct Write {
    segment: u32,
    pos: u64,
    bytes: Bytes,
    done: oneshot::Sender<()>,
}

type Files = Arc<RwLock<BTreeMap<u32, Arc<File>>>>;

/// The open log: submissions and reads are shared; positions come from the [`Cursor`].
#[derive(Debug)]
pub(crate) struct Wal {
    dir: PathBuf,
    files: Files,
    writer: mpsc::Sender<Write>,
}

/// Where the next write goes. The engine keeps it under the same lock as its state and
/// submits in the order it reserves, so the writer appends exactly at each position.
#[derive(Debug)]
pub(crate) struct Cursor {
    active: u32,
    active_len: u64,
}

impl Cursor {
    /// The segment and position the next `len` bytes will be written at.
    pub(crate) fn reserve(&mut self, len: u64) -> (u32, u64) {
        if self.active_len > 0 && self.active_len + len > SEGMENT_BYTES {
            self.active += 1;
            self.active_len = 0;
        }
        let at = (self.active, self.active_len);
        self.active_len += len;
        at
    }
}

fn segment_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:010}.wal"))
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Wal {
    /// Opens (or creates) the log in `dir`, replaying every entry through `replay` with
    /// its segment and the position of its frame. A torn or damaged tail of the last
    /// segment (a write a crash cut short, never acknowledged) is cut off.
    pub(crate) fn open(
        dir: &Path,
        fsync: Fsync,
        mut replay: impl FnMut(u32, u64, Entry),
    ) -> Result<(Self, Cursor), OpenError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_at(dir))?;
        let mut ids = Vec::new();
        for item in fs::read_dir(dir).map_err(io_at(dir))? {
            let name = item.map_err(io_at(dir))?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name
                .strip_suffix(".wal")
                .and_then(|n| n.parse::<u32>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();

        let files: Files = Arc::default();
        let mut active = 0;
        let mut active_len = 0;
        let started = Instant::now();
        let mut entries = 0u64;
        for (i, &id) in ids.iter().enumerate() {
            let path = segment_path(dir, id);
            let bytes = Bytes::from(fs::read(&path).map_err(io_at(&path))?);
            let mut at = 0usize;
            while at < bytes.len() {
                match read_frame(&bytes.slice(at..)) {
                    Framed::Whole { body, len } => {
                        let entry = Entry::decode(body).map_err(|source| OpenError::Decode {
                            path: path.clone(),
                            at: at as u64,
                            source,
                        })?;
                        replay(id, at as u64, entry);
                        entries += 1;
                        at += len;
                    }
                    Framed::Torn | Framed::Corrupt if i + 1 == ids.len() => {
                        // Zeros are the ones the writer laid ahead of its appends (see
                        // `ZERO_FILL_BYTES`): the end of what was written. Only the last
                        // segment has them: one is cut back, durably, before the next is
                        // made. Anything else is a write a crash cut short. Either way
                        // the segment is cut back to its end.
                        if bytes[at..].iter().any(|b| *b != 0) {
                            warn!(
                                segment = %path.display(),
                                at,
                                dropped_bytes = bytes.len() - at,
                                "cutting off the unacknowledged tail of the log (a write cut short by a crash)"
                            );
                        }
                        cut_at(&path, at as u64)?;
                        break;
                    }
                    Framed::Torn | Framed::Corrupt => {
                        return Err(OpenError::Damaged {
                            path,
                            at: at as u64,
                        })
                    }
                }
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_at(&path))?;
            active = id;
            active_len = file.metadata().map_err(io_at(&path))?.len();
            _ = files
                .write()
                .expect("not poisoned")
                .insert(id, Arc::new(file));
        }
        info!(
            segments = ids.len(),
            entries,
            millis = started.elapsed().as_millis() as u64,
            "native log replayed"
        );

        let (writer, queue) = mpsc::channel();
        let thread_files = files.clone();
        let thread_dir = dir.to_owned();
        thread::Builder::new()
            .name("notesaga-wal-writer".into())
            .spawn(move || write_loop(&thread_dir, &thread_files, &queue, fsync))
            .map_err(io_at(dir))?;
        let wal = Self {
            dir: dir.to_owned(),
            files,
            writer,
        };
        metrics::log_size(wal.size_on_disk());
        Ok((wal, Cursor { active, active_len }))
    }

    /// Hands framed bytes to the writer; the receiver fires once they are durable (by
    /// the fsync policy). A failed write stops the broker (see `write_loop`).
    pub(crate) fn submit(&self, segment: u32, pos: u64, bytes: Bytes) -> oneshot::Receiver<()> {
        let (done, durable) = oneshot::channel();
        if self
            .writer
            .send(Write {
                segment,
                pos,
                bytes,
                done,
            })
            .is_err()
        {
            error!("the log writer is gone");
        }
        durable
    }

    /// Reads `len` bytes at `pos` of a segment (a durable batch).
    pub(crate) fn read(&self, segment: u32, pos: u64, len: u32) -> io::Result<Bytes> {
        let file = self
            .files
            .read()
            .expect("not poisoned")
            .get(&segment)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("segment {segment}")))?;
        let mut buf = vec![0; len as usize];
        file.read_exact_at(&mut buf, pos)?;
        Ok(Bytes::from(buf))
    }

    /// Bytes of every segment.
    pub(crate) fn size_on_disk(&self) -> u64 {
        segments_size(&self.files)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Cuts the segment at `path` off at `len` bytes, durably.
fn cut_at(path: &Path, len: u64) -> Result<(), OpenError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_at(path))?;
    file.set_len(len).map_err(io_at(path))?;
    file.sync_all().map_err(io_at(path))
}

/// Bytes of every segment (the zeros laid ahead of the active one's end included).
fn segments_size(files: &Files) -> u64 {
    files
        .read()
        .expect("not poisoned")
        .values()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// The segment the writer appends to.
struct Active {
    id: u32,
    file: Arc<File>,
    /// Where its end is (kept here, so checking a write's reserved position costs no
    /// `statx`).
    end: u64,
    /// How far the file is written, zeros ahead of `end` included.
    filled: u64,
}

type Current = Option<Active>;

/// How many bytes of zeros the writer lays ahead of the active segment's end at a time.
///
/// WHY: an append that grows a file changes its size, so the `fdatasync` after it
/// writes the inode as well as the data: two block writes, each a trap to the
/// hypervisor on this VM (`docs/field-notes.md`). Over bytes already written (zeros), a
/// write leaves the size alone and `fdatasync` writes the data only. Measured here with
/// a 700-byte write and an `fdatasync` each: 208–234 µs appending, 139–174 µs over
/// zeros. So the file is extended by this much at a time (one size change per MiB of
/// log), and a segment is cut back to its end when it is closed and at start-up.
/// `fallocate` would not do: its unwritten extents are converted on the first write to
/// each block, a metadata change again.
const ZERO_FILL_BYTES: u64 = 1024 * 1024;

/// Writes `bytes` at `at` of the active segment, laying zeros ahead first when the
/// write would go past them.
fn write_at(active: &mut Active, at: u64, bytes: &[u8]) -> io::Result<()> {
    let needed = at + bytes.len() as u64;
    if needed > active.filled {
        let target = needed.max(active.filled + ZERO_FILL_BYTES).min(
            // Never lay zeros past the segment's reserved size (but always cover the write).
            SEGMENT_BYTES.max(needed),
        );
        let zeros = vec![0u8; usize::try_from(target - active.filled).unwrap_or(usize::MAX)];
        active.file.write_all_at(&zeros, active.filled)?;
        active.filled = target;
    }
    active.file.write_all_at(bytes, at)
}

/// Closes the active segment: cut back to its end (its zeros dropped), durably, whatever
/// the fsync policy: recovery takes zeros only at the end of the last segment.
fn close(active: &Active) -> io::Result<()> {
    if active.filled > active.end {
        active.file.set_len(active.end)?;
    }
    active.file.sync_all()
}

/// Most bytes the writer gathers for one `write`: a group of many large batches is
/// written in pieces of about this size, not copied whole into memory.
const COALESCE_BYTES: usize = 1024 * 1024;

/// How often the writer refreshes the log-size gauge (a `statx` per segment).
const LOG_SIZE_EVERY: Duration = Duration::from_secs(1);

/// The writer thread: takes what is queued, appends it, fsyncs once, acknowledges all.
fn write_loop(dir: &Path, files: &Files, queue: &mpsc::Receiver<Write>, fsync: Fsync) {
    let mut current: Current = None;
    let mut size_measured: Option<Instant> = None;
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < 4096 {
            match queue.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        if let Err(error) = append_group(dir, files, &mut current, &group, fsync) {
            // The index already points at these bytes: serving on would hand out
            // offsets that are not on disk. Stop; a restart replays what is durable.
            error!(%error, "cannot write the log; stopping the broker");
            eprintln!("notesaga-broker: cannot write the log: {error}");
            std::process::exit(74);
        }
        if size_measured.is_none_or(|at| at.elapsed() >= LOG_SIZE_EVERY) {
            metrics::log_size(segments_size(files));
            size_measured = Some(Instant::now());
        }
        for write in group {
            _ = write.done.send(());
        }
    }
}

/// Appends `group` in order: the writes of one segment, reserved back to back, go to
/// the file in one `write` (one system call for the group, not one per request).
fn append_group(
    dir: &Path,
    files: &Files,
    current: &mut Current,
    group: &[Write],
    fsync: Fsync,
) -> io::Result<()> {
    // The bytes gathered for one write, and where in the active segment they go.
    let mut pending: Vec<u8> = Vec::new();
    let mut pending_at = 0;
    for write in group {
        if current.as_ref().map(|active| active.id) != Some(write.segment) {
            if let Some(mut active) = current.take() {
                write_at(&mut active, pending_at, &pending)?;
                pending.clear();
                close(&active)?;
            }
            *current = Some(open_active(dir, files, write.segment)?);
        }
        let active = current.as_mut().expect("set above");
        if active.end != write.pos {
            return Err(io::Error::other(format!(
                "segment {} is {} bytes, the write was reserved at {}",
                write.segment, active.end, write.pos
            )));
        }
        if pending.is_empty() {
            pending_at = active.end;
        }
        active.end += write.bytes.len() as u64;
        if pending.is_empty() && write.bytes.len() >= COALESCE_BYTES {
            // A large batch goes out as it is, not copied.
            write_at(active, pending_at, &write.bytes)?;
            continue;
        }
        pending.extend_from_slice(&write.bytes);
        if pending.len() >= COALESCE_BYTES {
            write_at(active, pending_at, &pending)?;
            pending.clear();
        }
    }
    if let Some(active) = current {
        write_at(active, pending_at, &pending)?;
        if fsync == Fsync::Always {
            let started = Instant::now();
            active.file.sync_data()?;
            metrics::fsync(started.elapsed());
        }
    }
    Ok(())
}

/// The segment `id` as the writer's active one: the open file if the log has it, else
/// a new file (its name made durable). A segment reopened at start-up ends where its
/// file ends: recovery cut its zeros off.
fn open_active(dir: &Path, files: &Files, id: u32) -> io::Result<Active> {
    let existing = files.read().expect("not poisoned").get(&id).cloned();
    let file = match existing {
        Some(file) => file,
        None => {
            let file = Arc::new(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o600)
                    .open(segment_path(dir, id))?,
            );
            // The new file's name must survive a crash too.
            File::open(dir)?.sync_all()?;
            _ = files
                .write()
                .expect("not poisoned")
                .insert(id, file.clone());
            file
        }
    };
    let len = file.metadata()?.len();
    Ok(Active {
        id,
        file,
        end: len,
        filled: len,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::native::entry::Meta;

    fn meta(id: i64) -> Entry {
        Entry::Meta(Meta::ProducerIdAllocated { id })
    }

    async fn append((wal, cursor): &mut (Wal, Cursor), entry: &Entry) -> (u32, u64) {
        let bytes = entry.frame();
        let (segment, pos) = cursor.reserve(bytes.len() as u64);
        wal.submit(segment, pos, bytes).await.unwrap();
        (segment, pos)
    }

    fn replayed_entries(dir: &Path) -> Vec<Entry> {
        replayed(dir).into_iter().map(|(_, _, e)| e).collect()
    }

    fn replayed(dir: &Path) -> Vec<(u32, u64, Entry)> {
        let mut seen = Vec::new();
        let _wal = Wal::open(dir, Fsync::Always, |s, p, e| seen.push((s, p, e))).unwrap();
        seen
    }

    #[tokio::test]
    async fn what_was_acknowledged_is_replayed_in_order_at_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), Fsync::Always, |_, _, _| {}).unwrap();
        let mut written = Vec::new();
        for id in 0..5 {
            let (s, p) = append(&mut wal, &meta(id)).await;
            written.push((s, p, meta(id)));
        }
        drop(wal);
        assert_eq!(replayed(dir.path()), written);
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_off_and_appending_goes_on_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), Fsync::Always, |_, _, _| {}).unwrap();
        append(&mut wal, &meta(1)).await;
        drop(wal);
        // A crash in the middle of the second write.
        let path = segment_path(dir.path(), 0);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&meta(2).frame()[..7]).unwrap();
        drop(file);

        let mut wal = Wal::open(dir.path(), Fsync::Always, |_, _, _| {}).unwrap();
        append(&mut wal, &meta(3)).await;
        drop(wal);
        let ids = replayed_entries(dir.path());
        assert_eq!(ids, vec![meta(1), meta(3)]);
    }

    #[tokio::test]
    async fn zeros_laid_ahead_are_not_entries_and_are_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 0);
        let mut wal = Wal::open(dir.path(), Fsync::Always, |_, _, _| {}).unwrap();
        append(&mut wal, &meta(1)).await;
        append(&mut wal, &meta(2)).await;
        let written = (meta(1).frame().len() + meta(2).frame().len()) as u64;
        assert_eq!(fs::metadata(&path).unwrap().len(), ZERO_FILL_BYTES);
        drop(wal);

        // A restart replays the entries, not the zeros, and appends right after them.
        let mut wal = Wal::open(dir.path(), Fsync::Always, |_, _, _| {}).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), written);
        assert_eq!(append(&mut wal, &meta(3)).await, (0, written));
        // A segment closed for the next one is cut back to its end.
        wal.1.active_len = SEGMENT_BYTES;
        assert_eq!(append(&mut wal, &meta(4)).await, (1, 0));
        let closed = written + meta(3).frame().len() as u64;
        assert_eq!(fs::metadata(&path).unwrap().len(), closed);
        drop(wal);
        let ids = replayed_entries(dir.path());
        assert_eq!(ids, vec![meta(1), meta(2), meta(3), meta(4)]);
    }

    /// A log of two segments (one entry each); the path of the first, closed one.
    async fn two_segments(dir: &Path) -> PathBuf {
        let mut wal = Wal::open(dir, Fsync::Always, |_, _, _| {}).unwrap();
        append(&mut wal, &meta(1)).await;
        // Force a second segment.
        wal.1.active_len = SEGMENT_BYTES;
        append(&mut wal, &meta(2)).await;
        segment_path(dir, 0)
    }

    fn assert_refused_as_damaged(dir: &Path) {
        let err = Wal::open(dir, Fsync::Always, |_, _, _| {}).unwrap_err();
        assert!(matches!(err, OpenError::Damaged { .. }), "{err}");
    }

    #[tokio::test]
    async fn zeros_at_the_end_of_a_closed_segment_are_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = two_segments(dir.path()).await;
        // A closed segment is cut back before the next one exists, so zeros at its end
        // are a write the disk lost, not the writer's: refuse, as for any damage.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(ZERO_FILL_BYTES).unwrap();
        drop(file);
        assert_refused_as_damaged(dir.path());
    }

    #[tokio::test]
    async fn damage_before_the_last_segment_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = two_segments(dir.path()).await;
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        assert_refused_as_damaged(dir.path());
    }

    #[tokio::test]
    async fn segments_and_directory_are_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut wal = Wal::open(&log, Fsync::Never, |_, _, _| {}).unwrap();
        append(&mut wal, &meta(1)).await;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&log), 0o700);
        assert_eq!(mode(&segment_path(&log, 0)), 0o600);
    }
}
