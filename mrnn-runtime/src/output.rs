//! Every file the runtime and the `mrnn` tool write goes through [`write_atomic`]: a temporary
//! file in the target's directory, synced, then renamed over the target, so that a crash or a
//! full disk never leaves a half-written file and never destroys the previous one.
//!
//! A rename replaces whatever the target path names, so the writer first decides what it may
//! replace:
//! - a missing path, or a regular file: written (atomically);
//! - a symbolic link: followed (a chain of them too) and its final target written, atomically in
//!   the **target's** directory, so the link itself stays a link (as `echo > link` would write
//!   through it); the same rules then apply to the target;
//! - anything else (a FIFO, a character or block device such as `/dev/null` or `/dev/full`, a
//!   socket, a directory): refused with an error naming what it is. A device is never replaced.
//!
//! Commands that know their outputs before a long computation check them first with
//! [`check_target`] (one file) and [`prepare_dir`] (a directory of results), so that a bad path
//! fails in a second, not after an hour of training.
//!
//! ```
//! use mrnn_runtime::output;
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("notes.txt");
//! output::check_target(&path)?;
//! output::write_atomic(&path, b"fixed points: 8")?;
//! assert_eq!(std::fs::read(&path).unwrap(), b"fixed points: 8");
//! // A directory is not a file to write.
//! assert!(output::write_atomic(dir.path(), b"x").is_err());
//! # Ok::<(), mrnn_runtime::Error>(())
//! ```

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

/// Symbolic links followed at most (as the kernel's `ELOOP` limit of 40).
const MAX_LINKS: usize = 40;

/// Numbers the temporary files of this process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// What a path names, in words, for refusals: `a FIFO (named pipe)`, `a character device`.
pub(crate) fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_file() {
        return "a regular file";
    }
    if t.is_dir() {
        return "a directory";
    }
    if t.is_symlink() {
        return "a symbolic link";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "neither a regular file nor a directory"
}

/// The path a write to `path` lands on: `path` itself, or the final target of the symbolic
/// links it names (relative targets resolved against the link's directory). The target may be
/// missing (a dangling link is written through, creating its target).
fn resolve(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&current).map_err(|e| io_error(&current, e))?;
                current = match current.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(Error::Invalid(format!(
        "cannot write `{}`: more than {MAX_LINKS} symbolic links (a loop?)",
        path.display()
    )))
}

/// The size of the input file `path` after checking that it is a regular file (through
/// symbolic links). Inputs are read more than once (a header, then the whole file) and their
/// size bounds what reading them costs: a FIFO would block, and a device such as `/dev/zero`
/// never ends.
pub(crate) fn regular_input(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    if meta.is_file() {
        Ok(meta.len())
    } else {
        Err(Error::Invalid(format!(
            "cannot read `{}`: it is {}, not a regular file",
            path.display(),
            kind_of(&meta)
        )))
    }
}

/// Where a write to `path` goes, after checking that it may: `path` or the target of its
/// symbolic links, which must be missing or a regular file, in an existing directory.
fn writable_target(path: &Path) -> Result<PathBuf> {
    if path.as_os_str().is_empty() {
        return Err(Error::Invalid("cannot write a file with an empty name".into()));
    }
    let target = resolve(path)?;
    let via = if target == path {
        String::new()
    } else {
        format!(" (the symbolic link `{}` points there)", path.display())
    };
    // The directory first: with a file in its way, the target's own error would only say
    // "not a directory".
    let dir = parent_dir(&target);
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(meta) => {
            return Err(Error::Invalid(format!(
                "cannot write `{}`{via}: `{}` is {}, not a directory",
                target.display(),
                dir.display(),
                kind_of(&meta)
            )));
        }
        Err(e) => {
            return Err(Error::Invalid(format!(
                "cannot write `{}`{via}: {}",
                target.display(),
                missing_dir(dir, &e)
            )));
        }
    }
    match std::fs::metadata(&target) {
        Ok(meta) if meta.is_file() => Ok(target),
        Ok(meta) => Err(Error::Invalid(format!(
            "cannot write `{}`{via}: it is {}, not a regular file; mrnn writes and replaces only regular files (choose another path)",
            target.display(),
            kind_of(&meta)
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(target),
        Err(e) => Err(io_error(&target, e)),
    }
}

/// Why the directory `dir` cannot be used (`e` from reading it): the first component of its
/// path that is a file, or that it does not exist.
fn missing_dir(dir: &Path, e: &std::io::Error) -> String {
    let culprit = dir
        .ancestors()
        .find_map(|a| std::fs::metadata(a).ok().filter(|m| !m.is_dir()).map(|m| (a, kind_of(&m))));
    match culprit {
        Some((file, kind)) => format!("`{}` is {kind}, not a directory", file.display()),
        None if e.kind() == std::io::ErrorKind::NotFound => {
            format!("its directory `{}` does not exist", dir.display())
        }
        None => format!("its directory `{}` cannot be read: {e}", dir.display()),
    }
}

/// The directory a file lands in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source }
}

/// Creates a fresh temporary file beside `target` (`{name}.{pid}.{n}.tmp`). `create_new` never
/// follows a symbolic link nor opens a file that exists, so a stray file or link with that name
/// is never written through; concurrent writers get different names.
fn create_temporary(target: &Path) -> std::io::Result<(PathBuf, File)> {
    // A name of at most 100 characters keeps the suffix within the filesystem's limit on a
    // name (255 bytes) whatever the target's.
    let name: String = target
        .file_name()
        .map(|n| n.to_string_lossy().chars().take(100).collect())
        .unwrap_or_default();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = target.with_file_name(format!("{name}.{}.{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
}

/// Checks, before any work, that [`write_atomic`] may write `path`: missing or a regular file
/// (through symbolic links), in an existing directory where a file can be created. The error
/// names what is wrong (a FIFO, a device, a directory, a missing or read-only directory).
pub fn check_target(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let target = writable_target(path)?;
    probe(parent_dir(&target)).map_err(|e| {
        Error::Invalid(format!(
            "cannot write `{}`: cannot create a file in `{}`: {e}",
            path.display(),
            parent_dir(&target).display()
        ))
    })
}

/// Whether a file can be created in `dir`: creates and removes a temporary one (permissions
/// alone do not say it: a read-only filesystem, or root, who ignores them).
fn probe(dir: &Path) -> std::io::Result<()> {
    let (tmp, file) = create_temporary(&dir.join(".mrnn-write-check"))?;
    drop(file);
    std::fs::remove_file(tmp)
}

/// Makes sure `dir` is a directory results can be written into: creates it (and its parents)
/// when missing, refuses a path that exists and is not a directory (naming the first component
/// that is a file), and checks that a file can be created in it.
pub fn prepare_dir(dir: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    if dir.as_os_str().is_empty() {
        return Err(Error::Invalid("the output directory has an empty name".into()));
    }
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(meta) => {
            return Err(Error::Invalid(format!(
                "the output directory `{}` is {}, not a directory (choose another path)",
                dir.display(),
                kind_of(&meta)
            )));
        }
        Err(_) => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                return Err(Error::Invalid(format!(
                    "cannot create the output directory `{}`: {}",
                    dir.display(),
                    match e.kind() {
                        // "Not a directory" alone does not say which component is the culprit.
                        std::io::ErrorKind::NotADirectory => missing_dir(dir, &e),
                        _ => e.to_string(),
                    }
                )));
            }
        }
    }
    probe(dir).map_err(|e| {
        Error::Invalid(format!("cannot write into the output directory `{}`: {e}", dir.display()))
    })
}

/// Writes `bytes` to `path` atomically (see the [module](self) for what may be written): a
/// temporary file beside the target, synced to disk, renamed over it. On failure the target is
/// untouched and the temporary file removed.
///
/// This is the one writer of the crate and of the `mrnn` tool: checkpoints, JSON results,
/// safetensors outputs and figures (PNG bytes) all go through it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// [`write_atomic`] for content produced piece by piece: `write` fills the (buffered)
/// temporary file; an error from it abandons the write and leaves the target untouched.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let target = writable_target(path)?;
    let (tmp, file) = create_temporary(&target).map_err(|e| io_error(path, e))?;
    let result = (|| -> Result<()> {
        // A file replaced keeps its permissions (a private result stays private).
        if let Ok(meta) = std::fs::metadata(&target) {
            file.set_permissions(meta.permissions()).map_err(|e| io_error(path, e))?;
        }
        let mut w = BufWriter::new(file);
        write(&mut w).map_err(|e| io_error(path, e))?;
        let file = w.into_inner().map_err(|e| io_error(path, e.into_error()))?;
        file.sync_all().map_err(|e| io_error(path, e))?;
        drop(file);
        // Checked again just before the rename: the path may have changed meanwhile, and a
        // rename over a device would replace it.
        let again = writable_target(path)?;
        if again != target {
            return Err(Error::Invalid(format!(
                "cannot write `{}`: it changed while being written (now it leads to `{}`)",
                path.display(),
                again.display()
            )));
        }
        std::fs::rename(&tmp, &target).map_err(|e| io_error(path, e))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Persist the rename itself; not every platform can open a directory, so best effort.
    if let Ok(d) = File::open(parent_dir(&target)) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| Path::new(n).extension().is_some_and(|e| e == "tmp"))
            .collect()
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |w| {
            w.write_all(b"half of the new")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("disk full"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
    }

    #[test]
    fn a_stray_temporary_name_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        // Whatever the next temporary names are (other tests write meanwhile), links with
        // those names lead to the victim.
        #[cfg(unix)]
        {
            let next = COUNTER.load(Ordering::Relaxed);
            for n in next..next + 256 {
                let name = format!("out.bin.{}.{n}.tmp", std::process::id());
                std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
            }
        }
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    }

    #[cfg(unix)]
    #[test]
    fn a_replaced_file_keeps_its_permissions_and_long_names_fit() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("private.json");
        write_atomic(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&path, b"new").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let long = dir.path().join("x".repeat(250));
        write_atomic(&long, b"long").unwrap();
        assert_eq!(std::fs::read(&long).unwrap(), b"long");
    }

    #[cfg(unix)]
    #[test]
    fn writes_through_symbolic_links_and_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let real_dir = dir.path().join("real");
        std::fs::create_dir(&real_dir).unwrap();
        let real = real_dir.join("data.bin");
        std::fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.bin");
        std::os::unix::fs::symlink("real/data.bin", &link).unwrap();
        let chain = dir.path().join("chain.bin");
        std::os::unix::fs::symlink("link.bin", &chain).unwrap();
        write_atomic(&chain, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert!(std::fs::symlink_metadata(&chain).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        // A dangling link creates its target.
        let dangling = dir.path().join("dangling.bin");
        std::os::unix::fs::symlink("real/new.bin", &dangling).unwrap();
        write_atomic(&dangling, b"created").unwrap();
        assert_eq!(std::fs::read(real_dir.join("new.bin")).unwrap(), b"created");
        // A loop is an error, not a hang.
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::os::unix::fs::symlink("b", &a).unwrap();
        std::os::unix::fs::symlink("a", &b).unwrap();
        let err = write_atomic(&a, b"x").unwrap_err().to_string();
        assert!(err.contains("symbolic links"), "{err}");
        assert!(leftovers(dir.path()).is_empty() && leftovers(&real_dir).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn refuses_fifos_sockets_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let mut cases = vec![(socket, "a socket"), (dir.path().to_path_buf(), "a directory")];
        if made.is_ok_and(|s| s.success()) {
            cases.push((fifo, "a FIFO"));
        }
        for (path, what) in cases {
            for err in [check_target(&path).unwrap_err(), write_atomic(&path, b"x").unwrap_err()] {
                let err = err.to_string();
                assert!(err.contains(what) && err.contains("not a regular file"), "{err}");
            }
            if what != "a directory" {
                let err = prepare_dir(&path).unwrap_err().to_string();
                assert!(err.contains(what) && err.contains("not a directory"), "{err}");
                let err = prepare_dir(path.join("sub")).unwrap_err().to_string();
                assert!(err.contains(what) && err.contains("not a directory"), "{err}");
            }
            let link = dir.path().join("to-special");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&path, &link).unwrap();
            let err = write_atomic(&link, b"x").unwrap_err().to_string();
            assert!(err.contains(what) && err.contains("symbolic link"), "{err}");
            assert!(!std::fs::symlink_metadata(&path).unwrap().is_file(), "{what} kept");
        }
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn missing_directories_and_files_in_the_way_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_target(dir.path().join("no/such/out.bin")).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = check_target(file.join("out.bin")).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        let err = prepare_dir(&file).unwrap_err().to_string();
        assert!(err.contains("is a regular file, not a directory"), "{err}");
        let err = prepare_dir(file.join("a/b")).unwrap_err().to_string();
        assert!(err.contains(&format!("`{}` is a regular file", file.display())), "{err}");
        prepare_dir(dir.path().join("new/results")).unwrap();
        assert!(dir.path().join("new/results").is_dir());
        assert!(leftovers(&dir.path().join("new/results")).is_empty());
        assert!(check_target(Path::new("")).is_err());
    }
}
