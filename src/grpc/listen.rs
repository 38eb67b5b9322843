//! Where the gRPC listener accepts: TCP, or a Unix socket shared with an Envoy on the same
//! host. Whoever can connect can ask for signed tokens in any identity a `CheckRequest`
//! claims, so a Unix socket is made mode 0660 (owner and group, Envoy's) before anyone can
//! reach it by name.
//!
//! Owns binding and the socket file's lifetime; serving connections is `super`'s.

use std::io::{Error, ErrorKind};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

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
    /// Binds `at`. For a Unix socket: a socket file left by an earlier run is replaced when
    /// connecting to it is refused (nothing listens); a live listener, a path that is not a
    /// socket, or one whose state cannot be told is an error, as a busy TCP port is. The
    /// socket is bound under a temporary name, made 0660, then renamed into place, so it is
    /// never reachable at `path` with wider permissions.
    pub async fn bind(at: &GrpcListen) -> std::io::Result<Listener> {
        let path = match at {
            GrpcListen::Tcp(addr) => return Ok(Listener::Tcp(TcpListener::bind(addr).await?)),
            GrpcListen::Unix(path) => path,
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if !m.file_type().is_socket() => {
                return Err(Error::new(ErrorKind::AlreadyExists, "the path exists and is not a socket"));
            }
            Ok(_) => match UnixStream::connect(path).await {
                Ok(_) => return Err(Error::new(ErrorKind::AddrInUse, "a listener answers on this socket")),
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {} // stale: replaced below
                Err(e) => return Err(Error::new(e.kind(), format!("cannot tell whether the socket is in use: {e}"))),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let name = path.file_name().ok_or_else(|| Error::new(ErrorKind::InvalidInput, "no file name"))?;
        let tmp = path.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp)?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(SOCKET_MODE))
            .and_then(|()| std::fs::rename(&tmp, path))
            .and_then(|()| std::fs::symlink_metadata(path));
        match placed {
            Ok(m) => Ok(Listener::Unix(listener, SocketFile { path: path.clone(), ino: m.ino() })),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// The bound address: `IP:port` (the port the kernel picked for port 0) or `unix:PATH`.
    pub fn local(&self) -> std::io::Result<String> {
        Ok(match self {
            Listener::Tcp(l) => l.local_addr()?.to_string(),
            Listener::Unix(_, file) => format!("unix:{}", file.path.display()),
        })
    }

    pub(super) async fn accept(&self) -> std::io::Result<Accepted> {
        Ok(match self {
            Listener::Tcp(l) => Accepted::Tcp(l.accept().await?.0),
            Listener::Unix(l, _) => Accepted::Unix(l.accept().await?.0),
        })
    }
}

/// The socket file this process placed; removed when the listener is dropped (shutdown, or
/// a start-up that fails later on), unless the path now names another file.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if still_ours(&self.path, self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn still_ours(path: &Path, ino: u64) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket() && m.ino() == ino)
}

#[cfg(test)]
mod tests {
    use super::*;

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
