//! A gigabyte each way through a real `jwt-server --upstream` process in
//! front of nginx: the body streams, and the gateway's memory stays
//! bounded whatever the size (`cargo test -p jwt-server --test
//! gateway_stream -- --nocapture` prints the figures for docs/BENCHMARKS.md).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use jose_binding::client::{BoundConnection, HttpVersion, Target};
use jose_binding::Form;
use jose_binding_e2e::process::ServerProcess;
use jose_binding_e2e::setup;
use jose_binding_e2e::upstream::{HyperUpstream, Nginx};
use tower_service::Service;

const BIN: &str = env!("CARGO_BIN_EXE_jwt-server");
const GIB: u64 = 1 << 30;
/// Most the gateway's peak RSS may grow over its idle size while a
/// gigabyte passes each way (measured: see docs/BENCHMARKS.md).
const RSS_GROWTH_BOUND_KIB: u64 = 8 * 1024;

/// `left` bytes of zeros in 64 KiB frames, made as they are asked for.
struct Zeros {
    left: u64,
    chunk: Bytes,
}

impl Body for Zeros {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n as usize)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

async fn send<B>(
    conn: BoundConnection,
    method: Method,
    path: &str,
    body: B,
) -> http::Response<hyper::body::Incoming>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<jose_binding::server::BoxError>,
{
    let (mut sender, issuer) = conn.into_service();
    let token = issuer.issue(Form::Signed, &serde_json::json!({})).unwrap();
    let req = sender
        .request_builder(method, path)
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(body)
        .unwrap();
    std::future::poll_fn(|cx| Service::<Request<Full<Bytes>>>::poll_ready(&mut sender, cx))
        .await
        .unwrap();
    sender.call(req).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_each_way_with_bounded_memory() {
    let hyper = HyperUpstream::start().await;
    let (nginx, _) = Nginx::streaming("stream", &hyper.url(), GIB);
    let gateway = ServerProcess::start(BIN.as_ref(), &["--upstream", &nginx.url()], "info");
    let target = Target::parse(&format!("https://localhost:{}", gateway.port)).unwrap();

    // Warm up (TLS, pools, the allocator's first arenas), then the idle size.
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let c = BoundConnection::connect(&target, &setup("client1", version))
            .await
            .unwrap();
        let r = send(
            c,
            Method::GET,
            "/upload",
            Full::new(Bytes::from_static(b"x")),
        )
        .await;
        assert_eq!(r.status(), 200);
        r.into_body().collect().await.unwrap();
    }
    let idle = gateway.status("VmRSS:");

    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let start = Instant::now();
        let c = BoundConnection::connect(&target, &setup("client1", version))
            .await
            .unwrap();
        let resp = send(c, Method::GET, "/big", Full::new(Bytes::new())).await;
        assert_eq!(resp.status(), 200, "{version:?}");
        let mut body = resp.into_body();
        let mut got = 0u64;
        while let Some(f) = body.frame().await {
            got += f.unwrap().data_ref().map_or(0, |d| d.len() as u64);
        }
        assert_eq!(got, GIB, "{version:?} download");
        let down = start.elapsed();

        let start = Instant::now();
        let before = hyper
            .seen
            .uploaded
            .load(std::sync::atomic::Ordering::SeqCst);
        let c = BoundConnection::connect(&target, &setup("client1", version))
            .await
            .unwrap();
        let zeros = Zeros {
            left: GIB,
            chunk: Bytes::from(vec![0u8; 64 * 1024]),
        };
        let resp = send(c, Method::POST, "/upload", zeros).await;
        assert_eq!(resp.status(), 200, "{version:?}");
        let answer = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(answer, GIB.to_string().as_bytes(), "{version:?} upload");
        let after = hyper
            .seen
            .uploaded
            .load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(after - before, GIB);
        let up = start.elapsed();
        let peak = gateway.status("VmHWM:");
        println!(
            "{version:?}: 1 GiB down in {:.1} s, up in {:.1} s; gateway RSS idle {} KiB, peak so far {} KiB (+{} KiB)",
            down.as_secs_f64(),
            up.as_secs_f64(),
            idle,
            peak,
            peak.saturating_sub(idle)
        );
        assert!(
            peak.saturating_sub(idle) <= RSS_GROWTH_BOUND_KIB,
            "{version:?}: the gateway's RSS grew by {} KiB",
            peak - idle
        );
    }
}
