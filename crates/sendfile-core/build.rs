// Names for the groups of operating systems the platform code tells apart, so each group is
// spelled once instead of in every #[cfg].
fn main() {
  cfg_aliases::cfg_aliases! {
    // sendfile(2) to any destination, the file position when no offset is given.
    linux_like: { any(target_os = "linux", target_os = "android") },
    // sendfile(in, out, ...) to stream sockets only, bytes sent reported alongside errors.
    bsd_like: { any(target_os = "macos", target_os = "ios", target_os = "freebsd", target_os = "dragonfly") },
    // copy_file_range(2): Linux 4.5+ and FreeBSD 13+.
    has_copy_file_range: { any(target_os = "linux", target_os = "android", target_os = "freebsd") },
  }
}
