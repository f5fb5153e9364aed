//! The single node's data directory is its user's alone: it holds every user's notes,
//! their audio, the JWT secret and the broker's log. Directories are made `0700` and
//! files `0600` explicitly (whatever the umask), and an existing tree with looser modes
//! is tightened, each change logged, so a directory made by an older version or by hand
//! is fixed on the next start.

use std::{
    fs::{File, OpenOptions},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::Path,
};

use anyhow::{Context as _, Result};
use tracing::warn;

/// Mode of every directory of the node.
pub(crate) const DIR_MODE: u32 = 0o700;

/// Mode of every file of the node.
pub(crate) const FILE_MODE: u32 = 0o600;

/// The mode `mode` should have: without any group or other bit (an owner's missing bit
/// is left alone), and a directory keeps its owner's `rwx`.
pub(crate) fn tightened(mode: u32, is_dir: bool) -> u32 {
    let mode = mode & 0o7777 & !0o077;
    if is_dir {
        mode | DIR_MODE
    } else {
        mode
    }
}

/// Creates `dir` (and its missing parents) `0700`, or tightens it if it exists.
pub(crate) fn private_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    tighten(dir)
}

/// Opens `path` for writing (appending if `append`), creating it `0600`; an existing
/// file is tightened.
pub(crate) fn private_file(path: &Path, append: bool) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .mode(FILE_MODE)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    tighten(path)?;
    Ok(file)
}

/// Removes the group and other bits of `path` (not following a symbolic link), logging
/// what it changed.
fn tighten(path: &Path) -> Result<()> {
    let metadata = std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot read the mode of {}", path.display()))?;
    if metadata.file_type().is_symlink() {
        return Ok(());
    }
    let mode = metadata.permissions().mode() & 0o7777;
    let wanted = tightened(mode, metadata.is_dir());
    if wanted != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted)).with_context(
            || {
                format!(
                    "{} is readable by other users and cannot be made private",
                    path.display()
                )
            },
        )?;
        warn!(
            path = %path.display(),
            from = format!("{mode:o}"),
            to = format!("{wanted:o}"),
            "tightened permissions: the data directory is for the node's user alone"
        );
    }
    Ok(())
}

/// Tightens `root` and everything under it (symbolic links are neither followed nor
/// changed). A file that vanishes meanwhile (a SQLite journal) is skipped.
pub(crate) fn tighten_tree(root: &Path) -> Result<()> {
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        match tighten(&path) {
            Ok(()) => {}
            Err(_) if !path.exists() => continue,
            Err(err) => return Err(err),
        }
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            let entries = std::fs::read_dir(&path)
                .with_context(|| format!("cannot list {}", path.display()))?;
            for entry in entries.flatten() {
                pending.push(entry.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_lose_group_and_other_bits_and_directories_keep_their_owner_bits() {
        let cases = [
            (0o755, true, 0o700),
            (0o700, true, 0o700),
            (0o500, true, 0o700),
            (0o2775, true, 0o2700),
            (0o644, false, 0o600),
            (0o600, false, 0o600),
            (0o666, false, 0o600),
            (0o400, false, 0o400),
            (0o755, false, 0o700),
        ];
        for (mode, is_dir, wanted) in cases {
            assert_eq!(tightened(mode, is_dir), wanted, "{mode:o} dir={is_dir}");
        }
    }

    #[test]
    fn a_loose_tree_is_tightened_and_new_files_are_private() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(data.join("audio/x")).unwrap();
        std::fs::write(data.join("audio/x/1.wav"), b"RIFF").unwrap();
        std::fs::write(data.join("projections.db"), b"").unwrap();
        for (path, mode) in [
            (data.clone(), 0o755),
            (data.join("audio"), 0o775),
            (data.join("audio/x"), 0o755),
            (data.join("audio/x/1.wav"), 0o644),
            (data.join("projections.db"), 0o666),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        private_dir(&data).unwrap();
        tighten_tree(&data).unwrap();
        drop(private_file(&data.join("node.json"), false).unwrap());
        private_dir(&data.join("broker")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        for dir in ["", "audio", "audio/x", "broker"] {
            assert_eq!(mode(&data.join(dir)), 0o700, "{dir}");
        }
        for file in ["audio/x/1.wav", "projections.db", "node.json"] {
            assert_eq!(mode(&data.join(file)), 0o600, "{file}");
        }
    }
}
