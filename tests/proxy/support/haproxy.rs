//! A real HAProxy in TCP mode in front of ringfence, sending the PROXY protocol header: the
//! L4 load balancer `server.proxy_protocol` is for. Skipped where `haproxy` is not installed,
//! unless RINGFENCE_REQUIRE_HAPROXY is set (CI sets it after installing Debian's package).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// Which header HAProxy sends to the server.
#[derive(Debug, Clone, Copy)]
pub enum Send {
    /// `send-proxy`: the text header (v1).
    V1,
    /// `send-proxy-v2`: the binary header.
    V2,
}

/// `haproxy -db` as the current user, configured in a directory of its own; killed on drop.
pub struct Haproxy {
    child: Child,
    /// Held: the configuration lives as long as HAProxy.
    _dir: tempfile::TempDir,
    pub addr: SocketAddr,
}

impl Haproxy {
    /// Starts HAProxy listening on a free loopback port and forwarding to `server`; None when
    /// HAProxy is not installed and not required.
    pub async fn start(server: SocketAddr, send: Send) -> Option<Haproxy> {
        // Debian installs it in /usr/sbin, which a non-root PATH may lack.
        let Some(binary) = ["haproxy", "/usr/sbin/haproxy"]
            .into_iter()
            .find(|b| Command::new(b).arg("-v").output().is_ok())
        else {
            assert!(
                std::env::var_os("RINGFENCE_REQUIRE_HAPROXY").is_none(),
                "haproxy is required here but not installed"
            );
            eprintln!("haproxy not installed: skipped");
            return None;
        };
        let dir = super::common::scratch();
        // A port the kernel just handed out and took back: free unless another test takes it
        // between now and HAProxy's bind.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let send = match send {
            Send::V1 => "send-proxy",
            Send::V2 => "send-proxy-v2",
        };
        let config = format!(
            "global\n    maxconn 100\n\
             defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
             frontend in\n    bind {addr}\n    default_backend ringfence\n\
             backend ringfence\n    server s {server} {send}\n"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(binary)
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("haproxy starts");
        let mut haproxy = Haproxy {
            child,
            _dir: dir,
            addr,
        };
        haproxy.wait_listening().await;
        Some(haproxy)
    }

    /// Waits, bounded, until HAProxy accepts on its port; fails at once if it exited.
    async fn wait_listening(&mut self) {
        let what = format!("haproxy to listen on {}", self.addr);
        super::eventually(&what, async || {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("haproxy exited: {status}");
            }
            std::net::TcpStream::connect(self.addr).is_ok()
        })
        .await;
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
