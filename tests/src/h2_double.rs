//! An HTTP/2 server written frame by frame, so that it can refuse a
//! request the way a draining server does at the worst moment (what no
//! real server does on cue): for the retries of the sidecar and of the
//! gateway's HTTP/2 upstreams.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use jose_binding::tls;
use tokio::io::{AsyncRead, AsyncWrite};

/// How the double answers the first request it gets.
#[derive(Clone, Copy, Debug)]
pub enum FirstAnswer {
    /// A draining server's `GOAWAY` naming no stream as processed.
    GoAway,
    /// `RST_STREAM` with `REFUSED_STREAM`, once the request's body arrived.
    RefusedStream,
    /// `RST_STREAM` with `CANCEL`: the server may have acted on it.
    Cancel,
}

/// The double on a loopback port, over TLS 1.3 (the fixtures' `localhost`
/// certificate, ALPN `h2`) when `tls`, else h2c; every request but the
/// first gets a bare 200. Its port and the number of requests (HEADERS
/// frames) it saw.
pub async fn start(first: FirstAnswer, tls: bool) -> (u16, Arc<AtomicUsize>) {
    let acceptor = tls.then(|| {
        let fixtures = crate::fixtures();
        let chain = tls::load_certs(&fixtures.join("server.pem")).unwrap();
        let key = tls::load_key(&fixtures.join("server.key")).unwrap();
        let mut config = tls::server_config(chain, key).unwrap();
        config.alpn_protocols = vec![tls::ALPN_H2.to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            match &acceptor {
                Some(a) => {
                    if let Ok(tls) = a.accept(tcp).await {
                        tokio::spawn(serve(tls, first, counter.clone()));
                    }
                }
                None => {
                    tokio::spawn(serve(tcp, first, counter.clone()));
                }
            }
        }
    });
    (port, seen)
}

/// One connection: frames in, frames out, until it ends.
async fn serve<IO: AsyncRead + AsyncWrite + Unpin>(
    mut tls: IO,
    first: FirstAnswer,
    seen: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const END_STREAM: u8 = 0x1;
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend([kind, flags]);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    }
    let refused = |stream| frame(3, 0, stream, &7u32.to_be_bytes());
    let mut preface = [0u8; 24];
    tls.read_exact(&mut preface).await?;
    tls.write_all(&frame(4, 0, 0, &[])).await?;
    loop {
        let mut head = [0u8; 9];
        tls.read_exact(&mut head).await?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        tls.read_exact(&mut payload).await?;
        let first_request = || seen.load(Ordering::SeqCst) == 1;
        let reply = match kind {
            // SETTINGS, acknowledged.
            4 if flags & 0x1 == 0 => frame(4, 0x1, 0, &[]),
            // HEADERS: a request.
            1 => {
                seen.fetch_add(1, Ordering::SeqCst);
                match first {
                    FirstAnswer::GoAway if first_request() => frame(7, 0, 0, &[0; 8]),
                    FirstAnswer::Cancel if first_request() => {
                        frame(3, 0, stream, &8u32.to_be_bytes())
                    }
                    FirstAnswer::RefusedStream if first_request() => {
                        if flags & END_STREAM == 0 {
                            continue;
                        }
                        refused(stream)
                    }
                    // `:status: 200` (static table entry 8), END_STREAM | END_HEADERS.
                    _ => frame(1, 0x5, stream, &[0x88]),
                }
            }
            // DATA: the last of the first request's body, all received.
            0 if flags & END_STREAM != 0 && first_request() => refused(stream),
            _ => continue,
        };
        tls.write_all(&reply).await?;
        tls.flush().await?;
    }
}
