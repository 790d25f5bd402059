//! Removing a directory tree the sandboxed code wrote, whatever it made: any depth (the walk
//! is a loop holding one directory fd, never a recursion), directories nobody may read or
//! enter (made accessible to us first, as their owner), links (removed, never followed: every
//! step is relative to a directory fd opened with `O_NOFOLLOW`), FIFOs and sockets (unlinked,
//! never opened). Runs in the host process, on any thread.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstring(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`: the entry itself, never what a link names.
fn lstat_at(dir: RawFd, name: &CString) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated and outlives the call; `st` is ours to write.
    check(unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st)
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is ours to write; fstat of any fd number touches nothing else.
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// Opens the directory `name` in `dir` without following a link; a directory we may not
/// read or enter is made ours to walk first (`0700`: we own it, or we are root).
fn open_dir_at(dir: RawFd, name: &CString) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `name` is NUL-terminated and outlives the call.
    let mut fd = unsafe { libc::openat(dir, name.as_ptr(), flags) };
    if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EACCES) {
        // Checked a directory (not a link) just before, by the caller; chmod follows no link
        // on a directory entry, and no process of the sandbox runs any more.
        // SAFETY: `name` is NUL-terminated and outlives the call.
        check(unsafe { libc::fchmodat(dir, name.as_ptr(), 0o700, 0) })?;
        // SAFETY: as above.
        fd = unsafe { libc::openat(dir, name.as_ptr(), flags) };
    }
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn unlink_at(dir: RawFd, name: &CString, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and outlives the call.
    check(unsafe { libc::unlinkat(dir, name.as_ptr(), flags) })
}

/// The entries of the open directory `dir` (read through its `/proc/self/fd` link, which
/// names exactly this directory).
fn entries(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    let listing = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?;
    listing.map(|entry| entry.map(|e| e.file_name())).collect()
}

/// One directory on the way down: its name in its parent and the parent's identity, checked
/// when the walk climbs back through `..`.
struct Step {
    name: CString,
    parent: (libc::dev_t, libc::ino_t),
}

/// Removes `path` and everything below it. A missing `path` is not an error; `path` itself
/// must not be a link (a link is removed, not followed).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let parent_path = path.parent().filter(|p| !p.as_os_str().is_empty());
    let parent = std::fs::File::open(parent_path.unwrap_or(Path::new(".")))?;
    let name = cstring(path.file_name().ok_or(io::ErrorKind::InvalidInput)?)?;
    let parent_fd = parent.as_raw_fd();
    let st = match lstat_at(parent_fd, &name) {
        Ok(st) => st,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !is_dir(&st) {
        return unlink_at(parent_fd, &name, 0);
    }
    let mut current = open_dir_at(parent_fd, &name)?;
    let mut path_down: Vec<Step> = Vec::new();
    loop {
        // Everything but directories goes at once; the first directory is entered.
        let mut descend = None;
        for entry in entries(&current)? {
            let entry = cstring(&entry)?;
            let st = match lstat_at(current.as_raw_fd(), &entry) {
                Ok(st) => st,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if is_dir(&st) {
                descend.get_or_insert(entry);
            } else {
                unlink_at(current.as_raw_fd(), &entry, 0)?;
            }
        }
        if let Some(child) = descend {
            let here = fstat(current.as_raw_fd())?;
            let next = open_dir_at(current.as_raw_fd(), &child)?;
            path_down.push(Step {
                name: child,
                parent: (here.st_dev, here.st_ino),
            });
            current = next;
            continue;
        }
        // Empty: climb to the parent (checked to be the one we came from) and remove it.
        let Some(step) = path_down.pop() else {
            drop(current);
            return unlink_at(parent_fd, &name, libc::AT_REMOVEDIR);
        };
        let up = open_dir_at(current.as_raw_fd(), &cstring(OsStr::new(".."))?)?;
        let st = fstat(up.as_raw_fd())?;
        if (st.st_dev, st.st_ino) != step.parent {
            return Err(io::Error::other("a directory moved during its removal"));
        }
        drop(current);
        unlink_at(up.as_raw_fd(), &step.name, libc::AT_REMOVEDIR)?;
        current = up;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds in `root`, with Python (relative steps: no path is ever longer than a name), a
    /// tree `depth` levels deep, locked directories, a link out and a FIFO.
    fn build(root: &Path, depth: usize, outside: &Path) {
        let script = format!(
            "import os\nos.chdir({root:?})\nfor _ in range({depth}):\n    os.mkdir('d'); os.chdir('d')\nopen('leaf', 'w').write('x')\nos.chdir({root:?})\nos.makedirs('locked/inner')\nopen('locked/inner/f', 'w').write('x')\nos.chmod('locked/inner', 0)\nos.chmod('locked', 0)\nos.symlink({outside:?}, 'link')\nos.symlink('/', 'root-link')\nos.mkfifo('fifo')\n",
            root = root.to_str().unwrap(),
            outside = outside.to_str().unwrap(),
        );
        let status = std::process::Command::new("/usr/bin/python3")
            .args(["-c", &script])
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn a_tree_of_100_000_levels_with_locked_directories_links_and_a_fifo_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside.txt");
        std::fs::write(&outside, "keep").unwrap();
        let tree = tmp.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        build(&tree, 100_000, &outside);
        // On a thread with a small stack: the walk must not recurse.
        let removing = tree.clone();
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || remove_tree(&removing))
            .unwrap()
            .join()
            .unwrap()
            .unwrap();
        assert!(!tree.exists());
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
    }

    #[test]
    fn a_link_or_a_missing_path_is_handled_without_following() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("f"), "keep").unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        remove_tree(&link).unwrap();
        assert!(!link.exists() && target.join("f").exists());
        remove_tree(&tmp.path().join("missing")).unwrap();
    }
}
