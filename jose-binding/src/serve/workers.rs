//! Threads that serve connections, each driving its own single-threaded
//! runtime ([`ServerOptions::connection_threads`]).
//!
//! The accept loop hands each admitted connection to the next thread in
//! turn; from then on the connection, its requests, the gateway's upstream
//! connections for them and their timers all live on that thread. On a
//! shared multi-threaded runtime the same request crosses threads several
//! times (the connection's task, the upstream connection's task, a parked
//! worker woken to steal), each crossing a futex wake-up; here none does.
//! docs/BENCHMARKS.md, "The gateway and the sidecar at production cost",
//! has the measurement.
//!
//! [`ServerOptions::connection_threads`]: crate::serve::server::ServerOptions::connection_threads

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, watch};

/// Work for a thread: run on it, inside its runtime.
type Job = Box<dyn FnOnce() + Send>;

/// The serving threads, or none (connections are spawned where the accept
/// loop runs).
pub(crate) struct Workers {
    threads: Vec<mpsc::UnboundedSender<Job>>,
    handles: Vec<std::thread::JoinHandle<()>>,
    next: AtomicUsize,
}

impl Workers {
    /// No threads of its own: [`Workers::serve`] spawns on the caller's
    /// runtime.
    pub(crate) fn here() -> Workers {
        Workers {
            threads: Vec::new(),
            handles: Vec::new(),
            next: AtomicUsize::new(0),
        }
    }

    /// `n` threads, each running until the accept loop has dropped these
    /// workers and `stop` says so (the tasks still on a thread end with
    /// it, as they do when the server's own runtime ends).
    pub(crate) fn start(n: usize, stop: watch::Receiver<bool>) -> io::Result<Workers> {
        let mut threads = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
            let mut stop = stop.clone();
            let handle = std::thread::Builder::new()
                .name(format!("jose-binding-conn-{i}"))
                .spawn(move || {
                    ON_CONNECTION_THREAD.set(true);
                    runtime.block_on(async move {
                        while let Some(job) = rx.recv().await {
                            // A job only spawns; should it ever panic, the
                            // thread must live on for the connections after.
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                        let _ = stop.wait_for(|stopped| *stopped).await;
                    });
                })?;
            threads.push(tx);
            handles.push(handle);
        }
        Ok(Workers {
            threads,
            handles,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `serve` with `io` on the next thread (or here, without
    /// threads); `serve` spawns the connection's task there.
    pub(crate) fn serve<IO: Detach>(&self, io: IO, serve: impl FnOnce(IO) + Send + 'static) {
        if self.threads.is_empty() {
            return serve(io);
        }
        // The socket leaves this runtime's reactor and joins the thread's.
        let Ok(detached) = io.detach() else {
            return;
        };
        let mut job: Job = Box::new(move || {
            if let Ok(io) = IO::attach(detached) {
                serve(io);
            }
        });
        // A thread that is gone hands its turn to the next; with none
        // left the connection is served here.
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..self.threads.len() {
            match self.threads[(first + k) % self.threads.len()].send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => job = back,
            }
        }
        job();
    }

    /// The threads, to wait for once stopped; they take no more work.
    pub(crate) fn finish(self) -> Vec<std::thread::JoinHandle<()>> {
        self.handles
    }
}

thread_local! {
    static ON_CONNECTION_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is one of [`Workers::start`]'s: whatever a task
/// here starts stays here, so per-thread state (the gateway's upstream
/// clients) is worth keeping.
#[cfg_attr(not(feature = "gateway"), allow(dead_code))]
pub(crate) fn on_connection_thread() -> bool {
    ON_CONNECTION_THREAD.get()
}

/// A tokio socket that can move from one runtime's reactor to another's.
pub(crate) trait Detach: Sized + Send + 'static {
    /// The socket outside any reactor.
    type Std: Send + 'static;
    fn detach(self) -> io::Result<Self::Std>;
    /// Registers it with the current runtime's reactor.
    fn attach(std: Self::Std) -> io::Result<Self>;
}

impl Detach for tokio::net::TcpStream {
    type Std = std::net::TcpStream;

    fn detach(self) -> io::Result<Self::Std> {
        self.into_std()
    }

    fn attach(std: Self::Std) -> io::Result<Self> {
        std.set_nonblocking(true)?;
        tokio::net::TcpStream::from_std(std)
    }
}

impl Detach for tokio::net::UnixStream {
    type Std = std::os::unix::net::UnixStream;

    fn detach(self) -> io::Result<Self::Std> {
        self.into_std()
    }

    fn attach(std: Self::Std) -> io::Result<Self> {
        std.set_nonblocking(true)?;
        tokio::net::UnixStream::from_std(std)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Stops `workers` and waits for each thread to end (a thread that
    /// died panics the test here).
    fn stop_and_join(workers: Workers, stopped: watch::Sender<bool>) {
        let threads = workers.finish();
        stopped.send(true).unwrap();
        for t in threads {
            t.join().unwrap();
        }
    }

    /// A connection handed over is served on a worker thread, a different
    /// one in turn, and the threads end once stopped.
    #[tokio::test]
    async fn connections_go_to_the_threads_in_turn_and_the_threads_end() {
        let (stopped, stop) = watch::channel(false);
        let workers = Workers::start(2, stop).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut clients = Vec::new();
        for i in 0..4u8 {
            let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
            client.write_all(&[i]).await.unwrap();
            clients.push(client);
            let (server, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            workers.serve(server, move |mut io| {
                let name = std::thread::current().name().map(str::to_owned);
                let flavor = tokio::runtime::Handle::current().runtime_flavor();
                assert!(on_connection_thread());
                // Read through the thread's own reactor.
                tokio::spawn(async move {
                    let mut byte = [0];
                    io.read_exact(&mut byte).await.unwrap();
                    let _ = tx.send((byte[0], name, flavor));
                });
            });
        }
        assert!(!on_connection_thread());
        let mut names = vec![String::new(); 4];
        for _ in 0..4 {
            let (i, name, flavor) = rx.recv().await.unwrap();
            assert_eq!(flavor, tokio::runtime::RuntimeFlavor::CurrentThread);
            names[usize::from(i)] = name.unwrap();
        }
        assert_eq!(
            names,
            [
                "jose-binding-conn-0",
                "jose-binding-conn-1",
                "jose-binding-conn-0",
                "jose-binding-conn-1"
            ]
        );
        stop_and_join(workers, stopped);
    }

    /// A job that panics leaves its thread serving the next connections.
    #[tokio::test]
    async fn a_panicking_job_does_not_take_its_thread_down() {
        let (stopped, stop) = watch::channel(false);
        let workers = Workers::start(1, stop).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        for i in 0..2u8 {
            let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            workers.serve(server, move |_| {
                if i == 0 {
                    panic!("a job that panics");
                }
                let _ = tx.send(std::thread::current().name().map(str::to_owned));
            });
        }
        let served_by = rx.recv().await.unwrap();
        assert_eq!(served_by.as_deref(), Some("jose-binding-conn-0"));
        stop_and_join(workers, stopped);
    }
}
