//! HAProxy from Debian's package (`scripts/test.sh` installs it), started
//! by a test as this user on loopback ports, in the foreground (`-db`),
//! with an admin socket for reading its servers' states.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TempDir;

/// A running HAProxy (killed on drop).
pub struct Haproxy {
    pub dir: TempDir,
    child: Child,
}

impl Haproxy {
    /// HAProxy with `sections` (its `defaults`, `frontend`, `backend`, ...)
    /// after a `global` section of its own (admin socket, no daemon);
    /// waits until `port` (a `bind` of `sections`) accepts connections.
    pub fn start(name: &str, sections: &str, port: u16) -> Haproxy {
        Haproxy::start_with_global(name, "", sections, port)
    }

    /// As [`start`](Self::start), with `global` lines of the caller's
    /// (`tune.ssl.keylog on`, say) added to the `global` section.
    pub fn start_with_global(name: &str, global: &str, sections: &str, port: u16) -> Haproxy {
        let bin = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("haproxy not found: scripts/test.sh installs it (apt-get install haproxy)");
        let dir = TempDir::new(&format!("haproxy-{name}"));
        let conf = format!(
            "global\n  stats socket {}/admin.sock mode 600 level admin\n  maxconn 4096\n{global}\n\n{sections}\n",
            dir.display()
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, conf).unwrap();
        let check = Command::new(&bin)
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "haproxy -c: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new(&bin)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        let haproxy = Haproxy { dir, child };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return haproxy;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("haproxy did not listen on {port}");
    }

    /// The fixtures' certificate chain and key in one PEM file in this
    /// HAProxy's directory (what `bind ... ssl crt` takes); its path.
    pub fn fixture_crt(dir: &std::path::Path) -> PathBuf {
        let mut pem = std::fs::read(crate::fixtures().join("server.pem")).unwrap();
        pem.extend(std::fs::read(crate::fixtures().join("server.key")).unwrap());
        let path = dir.join("server.crt.pem");
        std::fs::write(&path, pem).unwrap();
        path
    }

    /// HAProxy terminating TLS 1.3 (the fixtures' certificate) on a free
    /// port with the binding hand-off of `jwt-server --frontend haproxy`,
    /// in front of `backend` (over h2c when `h2c`), reusing at most two
    /// backend connections for all clients; the port too.
    pub fn terminating(name: &str, backend: u16, h2c: bool) -> (Haproxy, u16) {
        Haproxy::terminating_to(name, &format!("127.0.0.1:{backend}"), h2c)
    }

    /// As [`Haproxy::terminating`], to a backend HAProxy names as `server`
    /// does: `HOST:PORT`, or an absolute path (a Unix socket).
    pub fn terminating_to(name: &str, backend: &str, h2c: bool) -> (Haproxy, u16) {
        // HAProxy reads the certificate at start; the file may go after.
        let dir = TempDir::new(&format!("{name}-crt"));
        let crt = Haproxy::fixture_crt(&dir);
        let front = crate::upstream::free_port();
        let proto = if h2c { " proto h2" } else { "" };
        let sections = format!(
            "defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n  \
             option forwardfor\n\n\
             frontend tls\n  bind 127.0.0.1:{front} ssl crt {} ssl-min-ver TLSv1.3 alpn h2,http/1.1\n  \
             http-request set-header x-jose-binding-exporter-secret %[ssl_fc_exporter_secret]\n  \
             http-request set-header x-jose-binding-tls-cipher %[ssl_fc_cipher]\n  \
             http-request del-header x-jose-binding-ekm\n  default_backend server\n\n\
             backend server\n  http-reuse always\n  server s1 {backend} maxconn 2{proto}\n",
            crt.display()
        );
        let lb = Haproxy::start_with_global(
            name,
            "  tune.ssl.keylog on\n  tune.bufsize 131072",
            &sections,
            front,
        );
        drop(dir);
        (lb, front)
    }

    /// One command on the admin socket; its answer.
    pub fn admin(&self, command: &str) -> String {
        let mut s = std::os::unix::net::UnixStream::connect(self.dir.join("admin.sock"))
            .expect("haproxy admin socket");
        s.write_all(format!("{command}\n").as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// The status (`UP`, `DOWN`, `MAINT`, ...) of each server of `backend`,
    /// by name, from `show stat`.
    pub fn servers(&self, backend: &str) -> Vec<(String, String)> {
        let stat = self.admin("show stat");
        let mut lines = stat.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or("")
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
            return Vec::new();
        };
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.get(px) == Some(&backend))
            .filter(|f| !matches!(f.get(sv), Some(&"BACKEND" | &"FRONTEND")))
            .map(|f| (f[sv].to_owned(), f[st].to_owned()))
            .collect()
    }

    /// Waits up to `timeout` until `want(server states)` holds.
    pub fn wait_servers(
        &self,
        backend: &str,
        timeout: Duration,
        want: impl Fn(&[(String, String)]) -> bool,
    ) -> Vec<(String, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.servers(backend);
            if want(&now) || Instant::now() > deadline {
                return now;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
