//! Opening a path beneath a root directory, for a static file server: nothing outside the root
//! is ever opened, whatever the path or the symlinks in the tree say, and whatever another
//! process renames while the path is resolved. There is no check-then-open window: every step
//! opens relative to a directory fd already held, refusing to follow a symlink on its own, and
//! a symlink is followed only by reading it and resolving its target here, under the same rule.
//!
//! Linux resolves in one `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` call when the path
//! holds no symlink; a path with one (or a kernel without `openat2`, macOS, FreeBSD) takes the
//! component-by-component walk, which is what `RESOLVE_BENEATH` does in the kernel.

use crate::platform;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, FileStat, Mode};
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// Linux's limit on symlinks followed in one resolution (`MAXSYMLINKS`, path_resolution(7)).
const MAX_SYMLINKS: u32 = 40;

/// What to do with a symbolic link met below the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Symlinks {
  /// Followed while its target stays inside the root (an absolute target must name a path
  /// under the root's real path); one that leads out fails with `EXDEV`.
  Inside,
  /// Never followed: `ELOOP`.
  Deny,
  /// Followed wherever it leads, as `openat(2)` does.
  Follow,
}

/// An fd opened beneath a root, with its stat.
#[derive(Debug)]
pub struct Beneath {
  pub fd: OwnedFd,
  pub stat: FileStat,
  /// Whether a name on the path as resolved (below the root: the names asked for and those
  /// that symlinks led to) starts with a dot. Unknown with [`Symlinks::Follow`]: then only the
  /// names asked for count.
  pub dotted: bool,
}

/// The flags of the final open: read-only, and never waiting (a FIFO opens without a writer;
/// nothing here reads it), never becoming the controlling terminal.
fn final_flags() -> OFlag {
  OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC
}

/// Opens `path` read-only and close-on-exec (following symlinks unless `no_follow`; without
/// waiting for a FIFO's writer if `non_blocking`, which then also makes its reads never wait),
/// and fstats it: `open(2)` + `fstat(2)` in one call for the binding.
pub fn open_with_stat(
  path: &Path,
  no_follow: bool,
  non_blocking: bool,
) -> Result<(OwnedFd, FileStat), Errno> {
  let mut flags = OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
  if no_follow {
    flags |= OFlag::O_NOFOLLOW;
  }
  if non_blocking {
    flags |= OFlag::O_NONBLOCK;
  }
  let fd = nix::fcntl::open(path, flags, Mode::empty())?;
  let stat = fstat(&fd)?;
  Ok((fd, stat))
}

/// Opens `names` (the path's components, none of them `.`, `..`, empty or with a `/`) beneath
/// `root`, an fd of the root directory whose real path (symlinks resolved) is `root_real`, and
/// fstats what it opened. An empty `names` opens the root itself.
///
/// Errors are the kernel's (`ENOENT`, `ENOTDIR`, `EACCES`, `EMFILE`...), plus `ELOOP` for a
/// symlink that [`Symlinks::Deny`] refuses or for too many symlinks, and `EXDEV` for a path that
/// would lead out of the root.
pub fn open_beneath(
  root: BorrowedFd<'_>,
  root_real: &Path,
  names: &[&OsStr],
  symlinks: Symlinks,
) -> Result<Beneath, Errno> {
  if names
    .iter()
    .any(|name| name.is_empty() || *name == "." || *name == ".." || name.as_bytes().contains(&b'/'))
  {
    return Err(Errno::EINVAL);
  }
  let asked_dotted = names.iter().any(|name| is_dotted(name));
  let relative = joined(names);
  if symlinks == Symlinks::Follow {
    let fd = openat(root, relative.as_os_str(), final_flags(), Mode::empty())?;
    let stat = fstat(&fd)?;
    return Ok(Beneath {
      fd,
      stat,
      dotted: asked_dotted,
    });
  }
  match platform::open_without_symlinks(root, relative.as_os_str(), final_flags()) {
    Some(Ok(fd)) => {
      let stat = fstat(&fd)?;
      return Ok(Beneath {
        fd,
        stat,
        dotted: asked_dotted,
      });
    }
    // A symlink on the path: refused, or resolved by the walk below.
    Some(Err(Errno::ELOOP)) if symlinks == Symlinks::Deny => return Err(Errno::ELOOP),
    Some(Err(Errno::ELOOP)) | None => {}
    Some(Err(error)) => return Err(error),
  }
  walk(root, root_real, names, symlinks)
}

/// The component-by-component resolution: each directory opened with `O_NOFOLLOW |
/// O_DIRECTORY` relative to the one before, `..` popping back (never above the root), each
/// symlink read with `readlinkat` and its target's components put in front of the rest.
fn walk(
  root: BorrowedFd<'_>,
  root_real: &Path,
  names: &[&OsStr],
  symlinks: Symlinks,
) -> Result<Beneath, Errno> {
  let mut pending: VecDeque<OsString> = names.iter().map(|name| name.to_os_string()).collect();
  // The directories below the root, and their names: the real path as resolved so far.
  let mut directories: Vec<(OwnedFd, OsString)> = Vec::new();
  let mut links = 0;
  while let Some(name) = pending.pop_front() {
    if name.is_empty() || name == "." {
      continue;
    }
    if name == ".." {
      // Above the root is outside it, whatever is there.
      directories.pop().ok_or(Errno::EXDEV)?;
      continue;
    }
    let current = directories
      .last()
      .map_or(root, |(directory, _)| directory.as_fd());
    let last = pending.iter().all(|rest| rest.is_empty() || rest == ".");
    let flags = if last {
      final_flags() | OFlag::O_NOFOLLOW
    } else {
      platform::DIRECTORY_WALK_FLAGS | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
    };
    let error = match openat(current, name.as_os_str(), flags, Mode::empty()) {
      Ok(fd) if last => {
        let stat = fstat(&fd)?;
        let dotted = is_dotted(&name) || directories.iter().any(|(_, name)| is_dotted(name));
        return Ok(Beneath { fd, stat, dotted });
      }
      Ok(fd) => {
        directories.push((fd, name));
        continue;
      }
      Err(error) => error,
    };
    // O_NOFOLLOW on a symlink: ELOOP (Linux, macOS), EMLINK (FreeBSD); with O_DIRECTORY on
    // Linux's O_PATH: ENOTDIR. Any of them may also be what it says; readlinkat tells.
    if !matches!(error, Errno::ELOOP | Errno::EMLINK | Errno::ENOTDIR) {
      return Err(error);
    }
    let target = match readlinkat(current, name.as_os_str()) {
      Ok(target) => target,
      // Not a symlink: the open's own error stands.
      Err(Errno::EINVAL) => return Err(error),
      Err(error) => return Err(error),
    };
    if symlinks == Symlinks::Deny {
      return Err(Errno::ELOOP);
    }
    links += 1;
    if links > MAX_SYMLINKS {
      return Err(Errno::ELOOP);
    }
    let target = Path::new(&target);
    let below = if target.is_absolute() {
      // Absolute: only a path under the root's real path stays inside; resolution restarts there.
      let below = target.strip_prefix(root_real).map_err(|_| Errno::EXDEV)?;
      directories.clear();
      below
    } else {
      target
    };
    for component in below.components().rev() {
      match component {
        Component::Normal(part) => pending.push_front(part.to_os_string()),
        Component::ParentDir => pending.push_front(OsString::from("..")),
        Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
      }
    }
  }
  // Every name was `.` or consumed by `..`: the directory reached is the answer.
  let current = directories
    .last()
    .map_or(root, |(directory, _)| directory.as_fd());
  let fd = openat(current, ".", final_flags(), Mode::empty())?;
  let stat = fstat(&fd)?;
  let dotted = directories.iter().any(|(_, name)| is_dotted(name));
  Ok(Beneath { fd, stat, dotted })
}

fn is_dotted(name: &OsStr) -> bool {
  name.as_bytes().first() == Some(&b'.')
}

/// `a/b/c`, or `.` for no names.
fn joined(names: &[&OsStr]) -> OsString {
  if names.is_empty() {
    return OsString::from(".");
  }
  let mut path = OsString::new();
  for (at, name) in names.iter().enumerate() {
    if at > 0 {
      path.push("/");
    }
    path.push(name);
  }
  path
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::fs;
  use std::os::unix::fs::symlink;
  use std::path::PathBuf;

  /// `base/root` (the served tree) and `base/outside`, each with a file.
  fn tree(label: &str) -> (PathBuf, PathBuf) {
    let base = std::env::temp_dir().join(format!("beneath-{label}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(base.join("root/dir")).unwrap();
    fs::create_dir_all(base.join("outside")).unwrap();
    fs::write(base.join("root/dir/file.txt"), "inside").unwrap();
    fs::write(base.join("root/.secret"), "dot").unwrap();
    fs::write(base.join("outside/file.txt"), "outside").unwrap();
    let root = fs::canonicalize(base.join("root")).unwrap();
    (base, root)
  }

  fn open(
    root: &Path,
    path: &str,
    symlinks: Symlinks,
    walk_only: bool,
  ) -> Result<(String, bool), Errno> {
    let root_fd = nix::fcntl::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())?;
    let names: Vec<&OsStr> = path
      .split('/')
      .filter(|name| !name.is_empty())
      .map(OsStr::new)
      .collect();
    let opened = if walk_only {
      walk(root_fd.as_fd(), root, &names, symlinks)?
    } else {
      open_beneath(root_fd.as_fd(), root, &names, symlinks)?
    };
    let mut text = String::new();
    let kind = nix::sys::stat::SFlag::from_bits_truncate(opened.stat.st_mode)
      & nix::sys::stat::SFlag::S_IFMT;
    if kind != nix::sys::stat::SFlag::S_IFDIR {
      use std::io::Read;
      fs::File::from(opened.fd).read_to_string(&mut text).unwrap();
    }
    Ok((text, opened.dotted))
  }

  #[test]
  fn plain_paths_open_and_report_their_dots() {
    let (base, root) = tree("plain");
    for walk_only in [false, true] {
      assert_eq!(
        open(&root, "dir/file.txt", Symlinks::Inside, walk_only),
        Ok(("inside".into(), false))
      );
      assert_eq!(
        open(&root, ".secret", Symlinks::Inside, walk_only),
        Ok(("dot".into(), true))
      );
      assert_eq!(
        open(&root, "dir/missing", Symlinks::Inside, walk_only),
        Err(Errno::ENOENT)
      );
      assert_eq!(
        open(&root, "dir/file.txt/x", Symlinks::Inside, walk_only),
        Err(Errno::ENOTDIR)
      );
      assert_eq!(
        open(&root, "", Symlinks::Inside, walk_only),
        Ok((String::new(), false))
      );
    }
    let root_fd = nix::fcntl::open(&root, OFlag::O_RDONLY, Mode::empty()).unwrap();
    for bad in ["..", ".", "", "a/b"] {
      let result = open_beneath(root_fd.as_fd(), &root, &[OsStr::new(bad)], Symlinks::Inside);
      assert_eq!(result.map(|_| ()), Err(Errno::EINVAL), "{bad:?}");
    }
    fs::remove_dir_all(base).unwrap();
  }

  #[test]
  fn symlinks_inside_the_root_are_followed_and_those_leading_out_are_exdev() {
    let (base, root) = tree("links");
    symlink("dir/file.txt", root.join("relative")).unwrap();
    symlink(root.join("dir"), root.join("absolute-dir")).unwrap();
    symlink("../../outside", root.join("dir/up-and-out")).unwrap();
    symlink(base.join("outside"), root.join("absolute-out")).unwrap();
    symlink(".secret", root.join("public")).unwrap();
    symlink("loop", root.join("loop")).unwrap();
    symlink("../dir/file.txt", root.join("dir/sibling")).unwrap();
    for walk_only in [false, true] {
      let inside = |path| open(&root, path, Symlinks::Inside, walk_only);
      assert_eq!(inside("relative"), Ok(("inside".into(), false)));
      assert_eq!(
        inside("absolute-dir/file.txt"),
        Ok(("inside".into(), false))
      );
      assert_eq!(inside("dir/sibling"), Ok(("inside".into(), false)));
      assert_eq!(inside("dir/up-and-out/file.txt"), Err(Errno::EXDEV));
      assert_eq!(inside("absolute-out/file.txt"), Err(Errno::EXDEV));
      // A symlink to a dotfile is a dotfile.
      assert_eq!(inside("public"), Ok(("dot".into(), true)));
      assert_eq!(inside("loop"), Err(Errno::ELOOP));
      assert_eq!(
        open(&root, "relative", Symlinks::Deny, walk_only),
        Err(Errno::ELOOP)
      );
      assert_eq!(
        open(&root, "absolute-dir/file.txt", Symlinks::Deny, walk_only),
        Err(Errno::ELOOP)
      );
    }
    assert_eq!(
      open(&root, "absolute-out/file.txt", Symlinks::Follow, false),
      Ok(("outside".into(), false))
    );
    assert_eq!(
      open(&root, "dir/up-and-out/file.txt", Symlinks::Follow, false),
      Ok(("outside".into(), false))
    );
    fs::remove_dir_all(base).unwrap();
  }
}
