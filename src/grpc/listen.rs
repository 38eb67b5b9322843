//! Where the gRPC listener accepts: TCP, or a Unix socket shared with an Envoy on the same
//! host. Whoever can connect can ask for signed tokens in any identity a `CheckRequest`
//! claims, so a Unix socket is created mode 0660 (owner and group, Envoy's): it never exists
//! with wider permissions. Its directory must be writable by mcp-warden's user only (whoever
//! can replace the file can stand in for mcp-warden): docs/configuration.md says so.
//!
//! Owns binding, accepting (TCP_NODELAY) and the socket file's lifetime; serving
//! connections is `super`'s.

use std::io::{Error, ErrorKind};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use rustix::fs::Mode;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::config::GrpcListen;

/// The Unix socket's permissions: owner and group read/write, nobody else.
const SOCKET_MODE: u32 = 0o660;

/// A bound gRPC listener.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, SocketFile),
}

/// One accepted connection.
pub(super) enum Accepted {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    /// Binds `at` (start-up only: the Unix socket's file-system calls block). For a Unix
    /// socket: a socket file left by an earlier run is removed when connecting to it is
    /// refused (nothing listens); a live listener, a path that is not a socket, or one whose
    /// state cannot be told is an error, as a busy TCP port is. The bind itself never
    /// replaces a file: whatever appeared at the path meanwhile makes it fail.
    pub async fn bind(at: &GrpcListen) -> std::io::Result<Listener> {
        match at {
            GrpcListen::Tcp(addr) => Ok(Listener::Tcp(TcpListener::bind(addr).await?)),
            GrpcListen::Unix(path) => bind_unix(path).await,
        }
    }

    /// The bound address: `IP:port` (the port the kernel picked for port 0) or `unix:PATH`.
    pub fn local(&self) -> std::io::Result<String> {
        Ok(match self {
            Listener::Tcp(l) => l.local_addr()?.to_string(),
            Listener::Unix(_, file) => format!("unix:{}", file.path.display()),
        })
    }

    /// The next connection; TCP ones with `TCP_NODELAY` set (without it a check waits out
    /// Nagle + delayed ACK, tens of milliseconds).
    pub(super) async fn accept(&self) -> std::io::Result<Accepted> {
        Ok(match self {
            Listener::Tcp(l) => {
                let (stream, _) = l.accept().await?;
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY on a gRPC connection");
                }
                Accepted::Tcp(stream)
            }
            Listener::Unix(l, _) => Accepted::Unix(l.accept().await?.0),
        })
    }
}

async fn bind_unix(path: &Path) -> std::io::Result<Listener> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(Error::new(ErrorKind::AlreadyExists, "the path exists and is not a socket"));
        }
        // A non-blocking probe: a live listener with a full accept queue answers EAGAIN at
        // once (a blocking connect would wait for it forever).
        Ok(m) => match UnixStream::connect(path).await {
            Ok(_) => return Err(Error::new(ErrorKind::AddrInUse, "a listener answers on this socket")),
            // Stale: removed, unless another file took its place since it was looked at.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                if same_socket(path, (m.dev(), m.ino())) {
                    std::fs::remove_file(path)?;
                }
            }
            Err(e) => return Err(Error::new(e.kind(), format!("cannot tell whether the socket is in use: {e}"))),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Created with mode 0660 rather than narrowed after the fact: the umask is the only way
    // to set a socket's mode at `bind`. It is process-wide, and this runs at start-up before
    // anything else creates files (keys, audit output).
    let umask = rustix::process::umask(Mode::from_raw_mode(0o777 & !SOCKET_MODE));
    let bound = std::os::unix::net::UnixListener::bind(path);
    rustix::process::umask(umask);
    let bound = bound?;
    let file = SocketFile { path: path.to_owned(), id: std::fs::symlink_metadata(path).map(|m| (m.dev(), m.ino()))? };
    bound.set_nonblocking(true)?;
    Ok(Listener::Unix(UnixListener::from_std(bound)?, file))
}

/// The socket file this process bound; removed when the listener is dropped (shutdown, or
/// a start-up that fails later on), unless the path now names another file.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// Device and inode.
    id: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if same_socket(&self.path, self.id) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether `path` is still the socket file with this device and inode.
fn same_socket(path: &Path, id: (u64, u64)) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn unix(path: &Path) -> GrpcListen {
        GrpcListen::Unix(path.to_owned())
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn a_unix_socket_is_0660_and_its_file_goes_with_the_listener() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("g.sock");
        let listener = Listener::bind(&unix(&path)).await.expect("bind");
        assert_eq!(mode(&path), SOCKET_MODE);
        assert_eq!(listener.local().expect("local"), format!("unix:{}", path.display()));
        UnixStream::connect(&path).await.expect("reachable at its name");
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, ["g.sock"], "no temporary name left behind");
        drop(listener);
        assert!(!path.exists(), "removed with the listener");
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_or_another_file_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).expect("stale"));
        // A second name keeps the stale inode alive, so a new socket cannot reuse its number.
        std::fs::hard_link(&stale, dir.path().join("kept")).expect("link");
        let old = std::fs::symlink_metadata(&stale).expect("stat").ino();
        let replaced = Listener::bind(&unix(&stale)).await.expect("a stale socket is replaced");
        assert_ne!(std::fs::symlink_metadata(&stale).expect("stat").ino(), old);

        let live = Listener::bind(&unix(&stale)).await.expect_err("the first listener is live");
        assert_eq!(live.kind(), ErrorKind::AddrInUse);
        assert!(stale.exists(), "a live socket is left alone");
        drop(replaced);

        let file = dir.path().join("notes.txt");
        std::fs::write(&file, "keep me").expect("write");
        let e = Listener::bind(&unix(&file)).await.expect_err("not a socket");
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep me");
    }

    #[tokio::test]
    async fn a_path_replaced_meanwhile_is_not_removed_with_the_listener() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("g.sock");
        let listener = Listener::bind(&unix(&path)).await.expect("bind");
        std::fs::remove_file(&path).expect("unlink");
        std::fs::write(&path, "someone else's").expect("write");
        drop(listener);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "someone else's");
    }
}
