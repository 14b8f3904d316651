//! The PROXY protocol reader the listener runs on a balancer's bytes:
//! arbitrary bytes, arriving in arbitrary pieces (the first input byte
//! sets their size). Never a panic; an accepted header is at most
//! MAX_HEADER bytes, and what follows it reaches TLS byte for byte.
#![no_main]

use std::pin::Pin;
use std::task::{Context, Poll};

use jose_binding::server::{read_proxy_header, MAX_HEADER};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// `data` in pieces of `piece` bytes.
struct Pieces<'a> {
    data: &'a [u8],
    piece: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.piece.min(self.data.len()).min(buf.remaining());
        let (now, later) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = later;
        Poll::Ready(Ok(()))
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
}

fuzz_target!(|input: &[u8]| {
    let Some((&piece, data)) = input.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1);
    RUNTIME.with(|rt| {
        rt.block_on(async {
            if let Ok((_, mut rest)) = read_proxy_header(Pieces { data, piece }).await {
                let mut after = Vec::new();
                rest.read_to_end(&mut after).await.expect("in-memory read");
                assert!(data.ends_with(&after));
                assert!(data.len() - after.len() <= MAX_HEADER);
            }
        })
    });
});
