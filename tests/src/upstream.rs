//! Upstreams for the gateway tests: a small hyper service on loopback that
//! shows what reached it, and nginx from Debian's package, started with a
//! config the test writes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::sync::mpsc;

use crate::TempDir;

/// What the hyper upstream has seen.
#[derive(Default)]
pub struct Seen {
    /// Requests received, whatever their path.
    pub requests: AtomicUsize,
    /// Body bytes received by `/upload`.
    pub uploaded: AtomicU64,
}

/// A hyper HTTP/1.1 upstream on a loopback port, until dropped.
///
/// - `/headers`: `{"method","path","headers":[[name,value],…]}` of the request;
/// - `/sse`: one server-sent event at once, a second after 2 s, then the end;
/// - `/trailers`: `hello` with the trailer `x-checksum: 5d41402a`, declared;
/// - `/bad-trailers`: `hello` with `x-checksum` and fields that may never
///   be trailers (`set-cookie`, `content-type`, `location`), all declared;
/// - `/upload`: reads the body, answers how many bytes it had;
/// - `/slow`: answers after 3 s;
/// - anything else: 200 `ok`.
pub struct HyperUpstream {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl HyperUpstream {
    pub async fn start() -> HyperUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(s.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        HyperUpstream { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }
}

impl Drop for HyperUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(seen: Arc<Seen>, req: Request<Incoming>) -> Result<Response<Channel>, Infallible> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let (tx, body) = Channel::new();
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/headers" => {
            let headers: Vec<_> = req
                .headers()
                .iter()
                .map(|(n, v)| json!([n.as_str(), String::from_utf8_lossy(v.as_bytes())]))
                .collect();
            let v = json!({"method": req.method().as_str(), "path": req.uri().to_string(), "headers": headers});
            let _ = tx.try_send(Frame::data(Bytes::from(v.to_string())));
        }
        "/sse" => {
            tokio::spawn(async move {
                let _ = tx
                    .send(Frame::data(Bytes::from_static(b"data: one\n\n")))
                    .await;
                tokio::time::sleep(Duration::from_secs(2)).await;
                let _ = tx
                    .send(Frame::data(Bytes::from_static(b"data: two\n\n")))
                    .await;
            });
            let mut r = Response::new(body);
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            return Ok(r);
        }
        "/trailers" => {
            let _ = tx.try_send(Frame::data(Bytes::from_static(b"hello")));
            let mut t = HeaderMap::new();
            t.insert("x-checksum", "5d41402a".parse().unwrap());
            let _ = tx.try_send(Frame::trailers(t));
            let mut r = Response::new(body);
            r.headers_mut()
                .insert("trailer", "x-checksum".parse().unwrap());
            return Ok(r);
        }
        "/bad-trailers" => {
            let _ = tx.try_send(Frame::data(Bytes::from_static(b"hello")));
            let mut t = HeaderMap::new();
            t.insert("x-checksum", "5d41402a".parse().unwrap());
            t.insert("set-cookie", "session=stolen".parse().unwrap());
            t.insert("content-type", "text/html".parse().unwrap());
            t.insert("location", "https://evil.example/".parse().unwrap());
            let _ = tx.try_send(Frame::trailers(t));
            let mut r = Response::new(body);
            r.headers_mut().insert(
                "trailer",
                "x-checksum, set-cookie, content-type, location"
                    .parse()
                    .unwrap(),
            );
            return Ok(r);
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut n = 0u64;
            while let Some(f) = body.frame().await {
                match f {
                    Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => break,
                }
            }
            seen.uploaded.fetch_add(n, Ordering::SeqCst);
            let _ = tx.try_send(Frame::data(Bytes::from(n.to_string())));
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let _ = tx.try_send(Frame::data(Bytes::from_static(b"late")));
        }
        _ => {
            let _ = tx.try_send(Frame::data(Bytes::from_static(b"ok")));
        }
    }
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    Ok(r)
}

/// A response body fed frame by frame through a channel; it ends when the
/// sender is dropped.
pub struct Channel(mpsc::Receiver<Frame<Bytes>>);

impl Channel {
    pub fn new() -> (mpsc::Sender<Frame<Bytes>>, Channel) {
        let (tx, rx) = mpsc::channel(4);
        (tx, Channel(rx))
    }
}

impl Body for Channel {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

/// nginx from Debian's package on a loopback port, in the foreground as
/// this user (one process, no master), until dropped.
pub struct Nginx {
    pub port: u16,
    pub dir: TempDir,
    child: Child,
}

impl Nginx {
    /// nginx with `http` directives added to its `http` block and
    /// `server` directives to its one server.
    pub fn start(name: &str, http: &str, server: &str) -> Nginx {
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("nginx not found: scripts/test.sh installs it (apt-get install nginx)");
        let dir = TempDir::new(&format!("nginx-{name}"));
        let port = free_port();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nerror_log {d}/error.log warn;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
             scgi_temp_path {d}/scgi;\n  {http}\n  server {{\n    listen 127.0.0.1:{port};\n    {server}\n  }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(&*dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let nginx = Nginx { port, dir, child };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return nginx;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
        panic!("nginx did not start on port {port}: {log}");
    }

    /// nginx for the gigabyte tests: `/big`, a sparse file of `size` bytes
    /// (the disk is not the subject) served from its own directory, whose
    /// path comes back too, and `/upload`, proxied unbuffered to `upstream`.
    pub fn streaming(name: &str, upstream: &str, size: u64) -> (Nginx, PathBuf) {
        // `root` is relative to nginx's prefix, its own directory.
        let nginx = Nginx::start(
            name,
            "sendfile on;",
            &format!(
                "location = /big {{ root files; }}\n\
                 location /upload {{ client_max_body_size 0; proxy_request_buffering off; \
                 proxy_http_version 1.1; proxy_pass {upstream}; }}"
            ),
        );
        std::fs::create_dir_all(nginx.dir.join("files")).unwrap();
        let big = nginx.dir.join("files/big");
        std::fs::File::create(&big).unwrap().set_len(size).unwrap();
        (nginx, big)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests nginx logged.
    pub fn access_lines(&self) -> usize {
        std::fs::read_to_string(self.dir.join("access.log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `GET path` in plain HTTP/1.1 to a loopback port (a status listener):
/// the whole answer, head included.
pub async fn plain_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// A request an upstream served, as it read it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub version: http::Version,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    fn of<B>(req: &Request<B>) -> SeenRequest {
        SeenRequest {
            version: req.version(),
            path: req.uri().path().to_owned(),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| {
                    let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (n.as_str().to_owned(), v)
                })
                .collect(),
        }
    }

    /// Values of header `name` (lower case).
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// An upstream that switches to h2c whenever a request asks to upgrade to
/// anything, as an h2c-capable server (hypercorn, say) may: `101` with
/// `Upgrade: h2c`, then HTTP/2 on the same connection. It records every
/// request it serves, over HTTP/1.1 or inside the tunnel, until dropped.
pub struct H2cUpstream {
    pub addr: SocketAddr,
    seen: Arc<std::sync::Mutex<Vec<SeenRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl H2cUpstream {
    pub async fn start() -> H2cUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| h2c(s.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        H2cUpstream { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for H2cUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Seen2 = Arc<std::sync::Mutex<Vec<SeenRequest>>>;

async fn h2c(
    seen: Seen2,
    mut req: Request<Incoming>,
) -> Result<Response<http_body_util::Full<Bytes>>, Infallible> {
    seen.lock().unwrap().push(SeenRequest::of(&req));
    if !req.headers().contains_key("upgrade") {
        return Ok(Response::new(Bytes::from_static(b"ok").into()));
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(io) = upgrade.await else { return };
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            seen.lock().unwrap().push(SeenRequest::of(&req));
            async {
                Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                    Bytes::from_static(b"h2 ok"),
                )))
            }
        });
        let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .serve_connection(io, svc)
            .await;
    });
    let mut r = Response::new(http_body_util::Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut().insert("upgrade", "h2c".parse().unwrap());
    r.headers_mut()
        .insert("connection", "Upgrade".parse().unwrap());
    Ok(r)
}

/// A plain TCP upstream that keeps every byte it receives and answers each
/// HTTP/1.1 request `200 ok` once it has read it whole (by
/// `Content-Length`, or chunked with its trailer section). Read raw, no
/// field a parser might drop or merge goes unseen.
pub struct RawUpstream {
    pub addr: SocketAddr,
    received: Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    pub async fn start() -> RawUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(raw_connection(tcp, log.clone()));
            }
        });
        RawUpstream {
            addr,
            received,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far, as text.
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn raw_connection(tcp: tokio::net::TcpStream, log: Arc<std::sync::Mutex<Vec<u8>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let mut r = BufReader::new(tcp);
    let mut line = Vec::new();
    macro_rules! read_line {
        () => {{
            line.clear();
            match r.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => log.lock().unwrap().extend_from_slice(&line),
            }
            String::from_utf8_lossy(&line).trim_end().to_owned()
        }};
    }
    loop {
        let (mut length, mut chunked) = (0usize, false);
        loop {
            let l = read_line!();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        if chunked {
            loop {
                let size = read_line!();
                let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .unwrap_or(0);
                if size == 0 {
                    while !read_line!().is_empty() {}
                    break;
                }
                let mut data = vec![0; size + 2];
                if r.read_exact(&mut data).await.is_err() {
                    return;
                }
                log.lock().unwrap().extend_from_slice(&data);
            }
        } else if length > 0 {
            let mut data = vec![0; length];
            if r.read_exact(&mut data).await.is_err() {
                return;
            }
            log.lock().unwrap().extend_from_slice(&data);
        }
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if r.get_mut().write_all(ok).await.is_err() {
            return;
        }
    }
}

/// A real WebSocket echo server (tungstenite) on a loopback port; the
/// number of handshakes it completed, and of tunnels open now.
pub struct WsEcho {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    pub open: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl WsEcho {
    pub async fn start() -> WsEcho {
        use futures_util::{SinkExt, StreamExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (a, o) = (accepted.clone(), open.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (a, o) = (a.clone(), o.clone());
                tokio::spawn(async move {
                    if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                        a.fetch_add(1, Ordering::SeqCst);
                        o.fetch_add(1, Ordering::SeqCst);
                        while let Some(Ok(m)) = ws.next().await {
                            if m.is_text() || m.is_binary() {
                                let _ = ws.send(m).await;
                            }
                        }
                        o.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        WsEcho {
            addr,
            accepted,
            open,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for WsEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}
