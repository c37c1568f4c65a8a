//! Opening files for the HTTP layer in one native call each: open + fstat by path, and open +
//! fstat beneath a root directory (see `sendfile_core::open_beneath`), on libuv's threadpool
//! (one job, one completion: what `fs.open` followed by `fs.fstat` costs twice).

use napi::bindgen_prelude::*;
use napi_derive::napi;
use sendfile_core::{open_beneath, open_with_stat, Errno, Symlinks};
use std::ffi::OsStr;
use std::os::fd::{IntoRawFd, OwnedFd};
use std::path::PathBuf;

/// Symlinks met below the root: see `StaticOptions.symlinks`.
#[napi(string_enum = "snake_case")]
pub enum SymlinkPolicy {
  Inside,
  Deny,
  Follow,
}

/// A path to open beneath a root directory.
#[napi(object)]
pub struct BeneathRequest {
  /// An fd of the root directory; duplicated before the job starts, so closing it meanwhile is safe.
  pub root_fd: i32,
  /// The root's real path (symlinks resolved): absolute symlinks must lead below it.
  pub root_real: String,
  /// The path's components below the root, none of them `.`, `..`, empty or with a `/`.
  pub names: Vec<String>,
  pub symlinks: SymlinkPolicy,
}

/// What an open found. `errno` is absent on success; then `fd` is open and owned by the caller,
/// and `stat` holds, in this order: dev, ino, mode, nlink, uid, gid, rdev, size, blksize,
/// blocks, then seconds and nanoseconds of atime, mtime, ctime.
#[napi(object)]
pub struct OpenedFile {
  pub errno: Option<i32>,
  pub fd: Option<i32>,
  pub stat: Option<Vec<f64>>,
  /// Beneath a root: whether a name on the resolved path starts with a dot.
  pub dotted: bool,
}

impl OpenedFile {
  fn failed(errno: Errno) -> Self {
    OpenedFile {
      errno: Some(errno as i32),
      fd: None,
      stat: None,
      dotted: false,
    }
  }

  fn opened(fd: OwnedFd, stat: &sendfile_core::FileStat, dotted: bool) -> Self {
    // Numbers as Node's non-bigint fs.Stats holds them: doubles.
    #[allow(clippy::unnecessary_cast)]
    let fields = vec![
      stat.st_dev as f64,
      stat.st_ino as f64,
      stat.st_mode as f64,
      stat.st_nlink as f64,
      stat.st_uid as f64,
      stat.st_gid as f64,
      stat.st_rdev as f64,
      stat.st_size as f64,
      stat.st_blksize as f64,
      stat.st_blocks as f64,
      stat.st_atime as f64,
      stat.st_atime_nsec as f64,
      stat.st_mtime as f64,
      stat.st_mtime_nsec as f64,
      stat.st_ctime as f64,
      stat.st_ctime_nsec as f64,
    ];
    OpenedFile {
      errno: None,
      fd: Some(fd.into_raw_fd()),
      stat: Some(fields),
      dotted,
    }
  }
}

pub enum OpenJob {
  Path {
    path: PathBuf,
    no_follow: bool,
    non_blocking: bool,
  },
  Beneath {
    root: std::result::Result<OwnedFd, Errno>,
    root_real: PathBuf,
    names: Vec<String>,
    symlinks: Symlinks,
  },
}

impl Task for OpenJob {
  type Output = OpenedFile;
  type JsValue = OpenedFile;

  fn compute(&mut self) -> Result<OpenedFile> {
    Ok(match self {
      OpenJob::Path {
        path,
        no_follow,
        non_blocking,
      } => match open_with_stat(path, *no_follow, *non_blocking) {
        Ok((fd, stat)) => OpenedFile::opened(fd, &stat, false),
        Err(errno) => OpenedFile::failed(errno),
      },
      OpenJob::Beneath {
        root,
        root_real,
        names,
        symlinks,
      } => {
        let root = match root {
          Ok(root) => root,
          Err(errno) => return Ok(OpenedFile::failed(*errno)),
        };
        let names: Vec<&OsStr> = names.iter().map(OsStr::new).collect();
        match open_beneath(std::os::fd::AsFd::as_fd(root), root_real, &names, *symlinks) {
          Ok(opened) => OpenedFile::opened(opened.fd, &opened.stat, opened.dotted),
          Err(errno) => OpenedFile::failed(errno),
        }
      }
    })
  }

  fn resolve(&mut self, _env: Env, output: OpenedFile) -> Result<OpenedFile> {
    Ok(output)
  }
}

/// Opens `path` read-only (`O_NOFOLLOW` with `noFollow`; `O_NONBLOCK` with `nonBlocking`, so
/// a FIFO opens without waiting for a writer) and fstats it, in one threadpool job.
#[napi(js_name = "openPathAsync", ts_return_type = "Promise<OpenedFile>")]
pub fn open_path_async(path: String, no_follow: bool, non_blocking: bool) -> AsyncTask<OpenJob> {
  AsyncTask::new(OpenJob::Path {
    path: PathBuf::from(path),
    no_follow,
    non_blocking,
  })
}

/// Opens a path beneath a root directory (no symlink or `..` leads out of it unless
/// `symlinks` is `follow`) and fstats it, in one threadpool job.
#[napi(js_name = "openBeneathAsync", ts_return_type = "Promise<OpenedFile>")]
pub fn open_beneath_async(request: BeneathRequest) -> AsyncTask<OpenJob> {
  // SAFETY: the number is the caller's, valid for this synchronous call; the duplicate is ours.
  let root = unsafe { sendfile_core::duplicate(request.root_fd) };
  AsyncTask::new(OpenJob::Beneath {
    root,
    root_real: PathBuf::from(request.root_real),
    names: request.names,
    symlinks: match request.symlinks {
      SymlinkPolicy::Inside => Symlinks::Inside,
      SymlinkPolicy::Deny => Symlinks::Deny,
      SymlinkPolicy::Follow => Symlinks::Follow,
    },
  })
}
