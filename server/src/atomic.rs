//! Crash-safe file replacement for the key file (and any other file the
//! server owns).
//!
//! The normal path writes a temporary file next to the target, fsyncs it,
//! renames it over the target and fsyncs the directory, so a crash at any
//! point leaves either the old or the new complete file. A single file
//! bind-mounted into a container cannot be renamed over (`EBUSY`/`EXDEV`);
//! then the new content is written in place. That fallback is only offered
//! to callers whose new content *starts with* the old content (the key file
//! only ever grows), so a crash mid-write leaves the old content plus part of
//! a new line — never an empty or shortened file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Replace `path` with `content`, mode 0600.
///
/// `append_only`: the caller guarantees `content` starts with the file's
/// current content, which permits the in-place fallback described above.
pub fn write(path: &Path, content: &[u8], append_only: bool) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = write_new(&tmp, content).and_then(|()| fs::rename(&tmp, path));
    match result {
        Ok(()) => {
            sync_dir(path);
            Ok(())
        }
        Err(err) => {
            let _ = fs::remove_file(&tmp);
            let rename_refused = matches!(err.raw_os_error(), Some(16 /* EBUSY */) | Some(18 /* EXDEV */));
            if rename_refused && append_only {
                write_in_place(path, content)
            } else {
                Err(err)
            }
        }
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn write_new(tmp: &Path, content: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(tmp)?;
    file.write_all(content)?;
    file.sync_all()
}

fn write_in_place(path: &Path, content: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(path)?;
    let old_len = file.metadata()?.len();
    // Only the bytes past the old end are new; writing just those keeps the
    // old content untouched even if we die half-way.
    let start = old_len.min(content.len() as u64);
    file.seek(SeekFrom::Start(start))?;
    file.write_all(&content[start as usize..])?;
    file.set_len(content.len() as u64)?;
    file.sync_all()
}

/// fsync the directory so the rename itself is durable. Best effort: some
/// filesystems refuse to open or sync a directory, and the data is already
/// safe in the file.
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dyndns-atomic-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn replaces_the_file_with_mode_0600_and_leaves_no_temp_file() {
        let dir = scratch("replace");
        let path = dir.join("keys");
        fs::write(&path, "old\n").expect("seed");
        write(&path, b"old\nnew\n", true).expect("write");
        assert_eq!(fs::read_to_string(&path).expect("read"), "old\nnew\n");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(&dir).expect("dir").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names.len(), 1, "left behind: {names:?}");
    }

    #[test]
    fn in_place_fallback_keeps_the_old_prefix() {
        let dir = scratch("inplace");
        let path = dir.join("keys");
        fs::write(&path, "a 1\n").expect("seed");
        write_in_place(&path, b"a 1\nb 2\n").expect("write");
        assert_eq!(fs::read_to_string(&path).expect("read"), "a 1\nb 2\n");
    }
}
