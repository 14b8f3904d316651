//! Support for the end-to-end tests in tests/tests/: a real jwt-server stack
//! on an ephemeral loopback port, and bound client connections to it.

pub mod grpc;
pub mod h2_double;
pub mod haproxy;
pub mod process;
#[cfg(feature = "tpm")]
pub mod swtpm;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jose_binding::client::{BoundConnection, ClientSetup, HttpVersion, Target};
use jose_binding::echo::EchoApp;
use jose_binding::gateway::{Gateway, GatewayConfig};
use jose_binding::keystore::KeystoreHandle;
use jose_binding::layer::{Binding, BindingLayer};
use jose_binding::server::{self, App, ServerOptions};
use jose_binding::sidecar::{self, Listener, Sidecar, SidecarConfig};
use jose_binding::{tls, ClientId, Keystore, Policy, SoftwareRootKey};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A client sidecar for `config` in this process, listening on `listen`
/// (`127.0.0.1:0`, `unix:/path`); its address.
pub async fn start_sidecar(config: SidecarConfig, listen: &str) -> String {
    let listener = Listener::bind(listen, false).await.expect("bind");
    let addr = listener.describe();
    tokio::spawn(sidecar::serve(
        listener,
        Sidecar::new(config),
        Duration::from_secs(1),
        std::future::pending(),
    ));
    addr
}

/// A `jwt-client proxy` process's address, from its ready line on
/// `stderr`; the lines after it are collected by a thread, returned
/// through the handle when the process ends (for secrets checks).
pub fn proxy_ready(
    stderr: std::process::ChildStderr,
) -> (String, std::thread::JoinHandle<Vec<String>>) {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(stderr).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("jwt-client proxy ready"))
        .expect("proxy ready line");
    let at = ready.find("listen=").expect("listen= in the ready line") + 7;
    let addr = ready[at..]
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned();
    (
        addr,
        std::thread::spawn(move || lines.map_while(Result::ok).collect()),
    )
}

/// `POST /v1/claims` over plain HTTP/1.1 to `addr`, as an app sends it to
/// the sidecar; the whole answer, head and body.
pub fn post_claims(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect to the sidecar");
    tcp.write_all(
        b"POST /v1/claims HTTP/1.1\r\nhost: app\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .expect("send the request");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).expect("read the answer");
    answer
}

/// Runs `cmd` to completion off the async threads: the test server it talks
/// to may share the runtime.
pub async fn output(mut cmd: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run the command"))
        .await
        .expect("command task")
}

/// curl with `args`, as an app runs it, off the async threads; no proxy
/// from the environment.
pub async fn curl(args: Vec<String>) -> std::process::Output {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(args)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY");
    output(cmd).await
}

/// curl's status and body, `args` before `url`; status 0 if curl got no
/// response. The body is what curl wrote before the status line.
pub async fn curl_status(args: &[&str], url: &str) -> (u16, String) {
    let mut all: Vec<String> = ["-s", "-S", "-o", "-", "-w", "\n%{http_code}"]
        .iter()
        .chain(args)
        .map(|a| a.to_string())
        .collect();
    all.push(url.to_owned());
    let out = curl(all).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

pub fn fixture_keystore() -> Keystore {
    Keystore::load(&fixtures().join("keystore.toml")).expect("fixture keystore")
}

pub fn fixture_key(client: &str) -> SoftwareRootKey {
    SoftwareRootKey::from_file(&fixtures().join(format!("{client}.key"))).expect("fixture key")
}

/// A fresh, empty directory for one test, unique to this process and
/// removed when dropped (also when the test fails).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("jose-binding-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running server; stops (gracefully) on `stop()` or drop.
pub struct TestServer {
    pub port: u16,
    pub keystore: KeystoreHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(policy: Policy, keystore: Keystore) -> TestServer {
        Self::start_with(policy, keystore, ServerOptions::default(), EchoApp::new).await
    }

    /// A server of the app `make` builds around the binding layer.
    pub async fn start_with<S: App>(
        policy: Policy,
        keystore: Keystore,
        opts: ServerOptions,
        make: impl FnOnce(&BindingLayer) -> S,
    ) -> TestServer {
        Self::start_on(0, policy, keystore, opts, make).await
    }

    /// As [`TestServer::start_with`] on a given port (0: any free one).
    pub async fn start_on<S: App>(
        port: u16,
        policy: Policy,
        keystore: Keystore,
        opts: ServerOptions,
        make: impl FnOnce(&BindingLayer) -> S,
    ) -> TestServer {
        let chain = tls::load_certs(&fixtures().join("server.pem")).expect("cert");
        let key = tls::load_key(&fixtures().join("server.key")).expect("key");
        let cfg = Arc::new(tls::server_config(chain, key).expect("tls config"));
        Self::launch(port, policy, keystore, |listener, binding, stopped| {
            let app = make(&binding.layer());
            server::serve(listener, cfg, binding, app, opts, async {
                let _ = stopped.await;
            })
        })
        .await
    }

    /// Binds `port` (0: any free one) and spawns what `serve` makes of the
    /// listener, the binding and the stop signal.
    async fn launch<F, Fut>(port: u16, policy: Policy, keystore: Keystore, serve: F) -> TestServer
    where
        F: FnOnce(tokio::net::TcpListener, Binding, oneshot::Receiver<()>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let handle = KeystoreHandle::new(keystore);
        let binding = Binding::new(handle.clone(), policy);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, binding, stopped));
        TestServer {
            port,
            keystore: handle,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The echo app behind a TLS-terminating frontend
    /// ([`server::serve_frontend`]): plain HTTP on `port` for loopback.
    pub async fn frontend(policy: Policy, keystore: Keystore) -> TestServer {
        Self::launch(0, policy, keystore, |listener, binding, stopped| {
            let app = EchoApp::new(&binding.layer());
            let (opts, frontend) = (ServerOptions::default(), server::FrontendOptions::default());
            server::serve_frontend(listener, binding, app, opts, frontend, async {
                let _ = stopped.await;
            })
        })
        .await
    }

    /// A gateway to `config`'s upstream, with the fixtures' keystore and
    /// the default policy.
    pub async fn gateway(config: GatewayConfig) -> TestServer {
        Self::gateway_with(config, ServerOptions::default()).await
    }

    /// As [`TestServer::gateway`], with the serving loop's limits given.
    pub async fn gateway_with(config: GatewayConfig, opts: ServerOptions) -> TestServer {
        let gateway = Gateway::new(config).expect("a valid route table");
        Self::start_with(Policy::default(), fixture_keystore(), opts, |layer| {
            gateway.service(layer)
        })
        .await
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// Signals shutdown and waits for the serving loop to finish.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("server stops in time")
                .expect("server task");
        }
    }

    /// Signals shutdown without waiting.
    pub fn signal_stop(&mut self) -> Option<JoinHandle<()>> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.take()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Client setup for `client` with its fixture key.
pub fn setup(client: &str, version: HttpVersion) -> ClientSetup {
    setup_with_key(client, version, fixture_key(client))
}

pub fn setup_with_key(client: &str, version: HttpVersion, key: SoftwareRootKey) -> ClientSetup {
    let roots = tls::load_roots(&fixtures().join("ca.pem")).expect("roots");
    ClientSetup::new(
        roots,
        version,
        ClientId::new(client).expect("id"),
        Arc::new(key),
    )
    .expect("client setup")
}

pub async fn connect(server: &TestServer, setup: &ClientSetup) -> BoundConnection {
    let target = Target::parse(&server.url()).expect("url");
    BoundConnection::connect(&target, setup)
        .await
        .expect("connect")
}

/// A TLS 1.3 client stream, for tests that write HTTP bytes themselves.
pub type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS 1.3 connection (HTTP/1.1) to the server with client1's issuer
/// bound to it, for clients that bring their own HTTP.
pub async fn bound_tls(port: u16) -> (TlsStream, jose_binding::Issuer) {
    use jose_binding::{Issuer, SubKeys};
    let roots = tls::load_roots(&fixtures().join("ca.pem")).unwrap();
    let cfg = tls::client_config(roots, &[tls::ALPN_HTTP11]).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let ekm = tls::export_ekm(stream.get_ref().1).unwrap();
    let id = ClientId::new("client1").unwrap();
    let keys = SubKeys::derive(&fixture_key("client1"), &ekm, &id).unwrap();
    (stream, Issuer::new(id, "localhost", keys))
}

/// Reads a response head (through the blank line) from `io`, byte by byte
/// so nothing after it is consumed; `None` if the peer closed first.
pub async fn read_head<R: tokio::io::AsyncRead + Unpin>(io: &mut R) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match io.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// The status code of a response head.
pub fn status_of(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
