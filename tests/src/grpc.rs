//! A real gRPC service (tonic, from tests/proto/echo.proto) for the
//! gateway's gRPC tests and example: one method of each kind, served over
//! h2c or TLS 1.3 on a loopback port.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

/// The code protoc generated.
pub mod pb {
    tonic::include_proto!("jose_binding.echo.v1");
}

use pb::echo_server::{Echo, EchoServer};
use pb::{Message, Reply};

/// The echo service: what it gets back, with the caller the gateway named.
#[derive(Debug, Default, Clone)]
pub struct EchoService;

/// What the server saw of its caller: the verified client and form in the
/// gateway's identity metadata, and the deadline.
struct Caller {
    client_id: String,
    form: String,
    deadline: String,
}

fn caller(meta: &MetadataMap) -> Caller {
    let get = |k: &str| {
        meta.get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    Caller {
        client_id: get("x-jose-binding-client-id"),
        form: get("x-jose-binding-form"),
        deadline: get("grpc-timeout"),
    }
}

fn reply(m: &Message, seq: u32, who: &Caller) -> Reply {
    Reply {
        text: m.text.clone(),
        seq,
        client_id: who.client_id.clone(),
        form: who.form.clone(),
        deadline: who.deadline.clone(),
    }
}

type Replies = Pin<Box<dyn Stream<Item = Result<Reply, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn say(&self, req: Request<Message>) -> Result<Response<Reply>, Status> {
        let who = caller(req.metadata());
        let m = req.into_inner();
        if m.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(m.delay_ms.into())).await;
        }
        if m.fail_with != 0 {
            return Err(Status::new(m.fail_with.into(), m.text));
        }
        Ok(Response::new(reply(&m, 0, &who)))
    }

    type CountStream = Replies;

    async fn count(&self, req: Request<Message>) -> Result<Response<Replies>, Status> {
        let who = caller(req.metadata());
        let m = req.into_inner();
        let replies = tokio_stream::iter(0..m.count).map(move |i| Ok(reply(&m, i, &who)));
        Ok(Response::new(Box::pin(replies)))
    }

    async fn collect(&self, req: Request<Streaming<Message>>) -> Result<Response<Reply>, Status> {
        let who = caller(req.metadata());
        let mut inbound = req.into_inner();
        let (mut text, mut n) = (String::new(), 0);
        while let Some(m) = inbound.next().await {
            text.push_str(&m?.text);
            n += 1;
        }
        let all = Message {
            text,
            ..Message::default()
        };
        Ok(Response::new(reply(&all, n, &who)))
    }

    type ChatStream = Replies;

    async fn chat(&self, req: Request<Streaming<Message>>) -> Result<Response<Replies>, Status> {
        let who = caller(req.metadata());
        let mut inbound = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut seq = 0;
            while let Some(m) = inbound.next().await {
                let out = m.map(|m| reply(&m, seq, &who));
                seq += 1;
                if tx.send(out).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The echo service on a loopback port, stopped when dropped.
pub struct GrpcServer {
    /// Its port.
    pub port: u16,
    task: JoinHandle<()>,
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GrpcServer {
    /// Over h2c (HTTP/2 without TLS), as `--upstream h2c://` reaches it.
    pub async fn h2c() -> GrpcServer {
        GrpcServer::start(None).await
    }

    /// Over TLS 1.3 with ALPN `h2` and the fixtures' `localhost`
    /// certificate, as `--upstream https://` reaches it.
    pub async fn tls() -> GrpcServer {
        use jose_binding::tls;
        let fixtures = crate::fixtures();
        let chain = tls::load_certs(&fixtures.join("server.pem")).unwrap();
        let key = tls::load_key(&fixtures.join("server.key")).unwrap();
        let mut config = tls::server_config(chain, key).unwrap();
        config.alpn_protocols = vec![tls::ALPN_H2.to_vec()];
        GrpcServer::start(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> GrpcServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(serve(listener, tls));
        GrpcServer { port, task }
    }
}

/// Serves the echo service on `listener` (over TLS with `tls`, else h2c)
/// until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
    let routes = tonic::service::Routes::new(EchoServer::new(EchoService)).prepare();
    while let Ok((tcp, _)) = listener.accept().await {
        let (routes, tls) = (routes.clone(), tls.clone());
        tokio::spawn(async move {
            let http = auto::Builder::new(TokioExecutor::new()).http2_only();
            let svc = TowerToHyperService::new(routes);
            let _ = match tls {
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(s) => http.serve_connection(TokioIo::new(s), svc).await,
                    Err(_) => return,
                },
                None => http.serve_connection(TokioIo::new(tcp), svc).await,
            };
        });
    }
}
