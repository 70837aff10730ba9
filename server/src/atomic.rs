//! Crash-safe file replacement for the key file (and any other file the
//! server owns).
//!
//! The normal path writes a temporary file next to the target, fsyncs it,
//! renames it over the target and fsyncs the directory, so a crash at any
//! point leaves either the old or the new complete file. The temporary file
//! has a random name and is created with `O_CREAT|O_EXCL|O_NOFOLLOW` and mode
//! 0600, so a link planted where it will be cannot redirect the write, and
//! nobody can read it while it is written. When the target itself is a
//! symbolic link (a key file kept elsewhere, a secrets mount), the file it
//! points to is replaced and the link stays — if that file belongs to the
//! server's own user (`write`). A single file
//! bind-mounted into a container cannot be renamed over (`EBUSY`/`EXDEV`);
//! then the new content is written in place. That fallback is only offered
//! to callers whose new content *starts with* the old content (the key file
//! only ever grows), so a crash mid-write leaves the old content plus part of
//! a new line — never an empty or shortened file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Read a file the server owns (key file, state file, certificates): at
/// most `max` bytes, and only a regular file. `Ok(None)`: it does not
/// exist. A FIFO, a device or a directory is an error (opened without
/// blocking, so a FIFO cannot hang the start), and so is a larger file
/// (a 100 MB "state file" would otherwise be held in memory whole).
pub fn read_limited(path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let file = match OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("it is not a regular file"));
    }
    if meta.len() > max {
        return Err(io::Error::other(format!(
            "it holds {} bytes, more than the {max} a file of this kind may",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::other(format!("it grew past the {max} bytes a file of this kind may hold")));
    }
    Ok(Some(bytes))
}

/// Replace `path` with `content`, mode 0600.
///
/// `append_only`: the caller guarantees `content` starts with the file's
/// current content, which permits the in-place fallback described above.
///
/// When `path` is a link, the file it points to is replaced only if that
/// file belongs to the user the server runs as (compared with the owner of
/// the temporary file just created): a link planted to `/etc/passwd`, or
/// to another service's file, is refused instead of rewritten — as root
/// the server could otherwise rewrite any file on the system.
pub fn write(path: &Path, content: &[u8], append_only: bool) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let target = resolve_links(path)?;
    let linked = target != path;
    let path = target.as_path();
    let (tmp, file) = create_temp(path)?;
    if linked {
        let ours = file.metadata()?.uid();
        if let Ok(meta) = fs::metadata(path) {
            if meta.uid() != ours {
                let _ = fs::remove_file(&tmp);
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "it is a link to {}, which belongs to user {} and not to this server's user {ours}; refusing to rewrite it (point the link at a file of this user)",
                        path.display(),
                        meta.uid()
                    ),
                ));
            }
        }
    }
    let result = fill(file, content).and_then(|()| fs::rename(&tmp, path));
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

/// The file `path` finally names: links followed (at most 40, as the
/// kernel does), relative link targets taken from the link's directory.
fn resolve_links(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&current)?;
                current = match current.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            // A regular file, or nothing yet: write here.
            _ => return Ok(current),
        }
    }
    Err(io::Error::other(format!("{} is a loop of symbolic links", path.display())))
}

/// A new temporary file next to `path` with a random name, created
/// exclusively (never through an existing file or link), mode 0600.
fn create_temp(path: &Path) -> io::Result<(PathBuf, File)> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    for _ in 0..8 {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| io::Error::other(format!("the OS random source failed: {e}")))?;
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = path.with_file_name(format!(".{name}.tmp-{suffix}"));
        let opened =
            OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).mode(0o600).open(&tmp);
        match opened {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("could not create a temporary file with a fresh name"))
}

fn fill(mut file: File, content: &[u8]) -> io::Result<()> {
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

    fn scratch(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new().prefix(&format!("dyndns-atomic-{name}-")).tempdir().expect("temp dir")
    }

    #[test]
    fn replaces_the_file_with_mode_0600_and_leaves_no_temp_file() {
        let scratch = scratch("replace");
        let dir = scratch.path();
        let path = dir.join("keys");
        fs::write(&path, "old\n").expect("seed");
        write(&path, b"old\nnew\n", true).expect("write");
        assert_eq!(fs::read_to_string(&path).expect("read"), "old\nnew\n");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names.len(), 1, "left behind: {names:?}");
    }

    #[test]
    fn a_planted_link_at_the_old_temporary_name_is_never_written_through() {
        let scratch = scratch("planted");
        let dir = scratch.path();
        let victim = dir.join("victim");
        fs::write(&victim, "precious\n").expect("victim");
        let path = dir.join("keys");
        // The name the server used to write to, predictable from its PID.
        std::os::unix::fs::symlink(&victim, dir.join(format!(".keys.tmp-{}", std::process::id()))).expect("link");
        write(&path, b"a k\n", true).expect("write");
        assert_eq!(fs::read_to_string(&victim).expect("read"), "precious\n");
        assert_eq!(fs::read_to_string(&path).expect("read"), "a k\n");
        // And a link at a random name cannot be guessed; creation is
        // exclusive in any case.
        let (tmp, _file) = create_temp(&path).expect("temp");
        assert!(fs::symlink_metadata(&tmp).expect("meta").file_type().is_file());
        let mode = fs::metadata(&tmp).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "private from creation");
    }

    #[test]
    fn a_linked_file_is_replaced_at_its_target_and_the_link_stays() {
        let scratch = scratch("linked");
        let dir = scratch.path();
        fs::create_dir_all(dir.join("real")).expect("dir");
        fs::write(dir.join("real/keys"), "old\n").expect("seed");
        std::os::unix::fs::symlink("real/keys", dir.join("keys")).expect("link");
        write(&dir.join("keys"), b"old\nnew\n", true).expect("write");
        assert!(fs::symlink_metadata(dir.join("keys")).expect("meta").file_type().is_symlink(), "the link stays");
        assert_eq!(fs::read_to_string(dir.join("real/keys")).expect("read"), "old\nnew\n");
        let names: Vec<_> =
            fs::read_dir(dir.join("real")).expect("dir").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names.len(), 1, "left behind: {names:?}");
    }

    #[test]
    fn in_place_fallback_keeps_the_old_prefix() {
        let scratch = scratch("inplace");
        let dir = scratch.path();
        let path = dir.join("keys");
        fs::write(&path, "a 1\n").expect("seed");
        write_in_place(&path, b"a 1\nb 2\n").expect("write");
        assert_eq!(fs::read_to_string(&path).expect("read"), "a 1\nb 2\n");
    }
}
