//! `jwt-client bench`: a bounded load run against a jwt-server, with the
//! binding and, in the same run, the static-bearer baseline route, so the
//! ratio is the cost of binding on the same server, stack and machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jose_binding::client::{BoundConnection, ClientSetup, Target};
use jose_binding::Form;
use serde_json::{json, Value};

use crate::{ConnArgs, Http};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Server, CA, client and root key (load only loopback or your own test hosts).
    #[command(flatten)]
    conn: ConnArgs,
    /// Token form for the bound run.
    #[arg(long, default_value = "signed")]
    form: Form,
    /// HTTP version to offer.
    #[arg(long, value_enum, default_value_t = Http::H1)]
    http: Http,
    /// Concurrent connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Requests per connection.
    #[arg(long, default_value_t = 500)]
    requests: usize,
    /// Each request on a fresh connection (handshake + key schedule every time)
    /// instead of keep-alive.
    #[arg(long)]
    new_connections: bool,
    /// Also run the baseline: the server's POST /v1/baseline with the static
    /// token in this file (start jwt-server with the same --baseline-token-file).
    #[arg(long, env = "JWT_BASELINE_TOKEN_FILE")]
    baseline_token_file: Option<PathBuf>,
    /// Run only one kind: `bound`, or `baseline` (needs --baseline-token-file),
    /// e.g. to profile each alone (scripts/profile-e2e.sh).
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Rounds of (bound, baseline) runs, interleaved; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Stop each run after this many seconds even if requests remain.
    #[arg(long, default_value_t = 120)]
    max_seconds: u64,
    /// PID of the server on this machine (comma-separated for a server of
    /// several processes, e.g. nginx's workers): report its CPU time per
    /// request for each run (from /proc), beside this tool's own. When the
    /// processes saturate the cores between them, each gets the scheduler's
    /// share and the columns come out alike: they then show the split of the
    /// machine, not of the cost; use --rate (scripts/profile-e2e.sh splits
    /// the cost by function).
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Send at most this many requests a second in all, spread evenly over
    /// the connections, instead of as fast as the server answers. At a rate
    /// both sides can sustain, CPU per request measures cost, not the
    /// scheduler's split of the cores.
    #[arg(long)]
    rate: Option<f64>,
    /// Request this path for both kinds (with a fresh bound token, or the
    /// static token), e.g. a route behind `jwt-server --upstream`, or an
    /// nginx peer; default: POST /v1/claims (bound), POST /v1/baseline.
    #[arg(long)]
    path: Option<String>,
    /// HTTP method with --path.
    #[arg(long, default_value = "POST", requires = "path")]
    method: Method,
    /// Also load a `jwt-client proxy` sidecar at this address (HOST:PORT)
    /// with plain HTTP/1.1 and no token, as an app does: the same method
    /// and path as the bound run, which the sidecar sends on with bound
    /// tokens. Give the sidecar's PID with --server-pid to get its CPU per
    /// request (and --only sidecar to run it alone).
    #[arg(long)]
    via_sidecar: Option<String>,
    /// Results as JSON on stdout (no progress bar).
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Only {
    Bound,
    Baseline,
    Sidecar,
}

#[derive(Clone)]
enum Kind {
    Bound(Form),
    Baseline(Arc<String>),
    /// Plain HTTP to a sidecar at this address.
    Sidecar(Arc<String>),
}

impl Kind {
    fn name(&self) -> String {
        match self {
            Kind::Bound(f) => format!("bound {f}"),
            Kind::Baseline(_) => "baseline (static bearer)".to_owned(),
            Kind::Sidecar(_) => "plain HTTP via the sidecar".to_owned(),
        }
    }
}

struct Stats {
    name: String,
    /// Server CPU (user + system) per successful request, if --server-pid.
    server_cpu_us: Option<f64>,
    /// This process's CPU per successful request: the client's share.
    client_cpu_us: Option<f64>,
    ok: usize,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl Stats {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn pct(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
    fn json(&self) -> Value {
        json!({
            "run": self.name, "ok": self.ok, "errors": self.errors,
            "seconds": self.elapsed.as_secs_f64(), "requests_per_s": self.rps(),
            "p50_ms": self.pct(0.5), "p99_ms": self.pct(0.99), "p999_ms": self.pct(0.999),
            "server_cpu_us_per_request": self.server_cpu_us,
            "client_cpu_us_per_request": self.client_cpu_us,
        })
    }
}

pub async fn run(a: BenchArgs) -> Result<ExitCode, String> {
    let (target, setup) = a.conn.setup(a.http).await?;
    let setup = Arc::new(setup);
    let kinds = plan(&a)?;
    let rounds = run_rounds(&a, &target, &setup, &kinds).await;
    let summary = Summary::of(&kinds, &rounds);
    if a.json {
        print_json(&a, &rounds, &summary);
    } else {
        print_text(&a, &rounds, &summary);
    }
    let failed = rounds.iter().flatten().any(|s| s.errors > 0);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The kinds of run `--only`, `--baseline-token-file` and `--via-sidecar`
/// ask for, bound first and baseline second (the ratio reads them so).
fn plan(a: &BenchArgs) -> Result<Vec<Kind>, String> {
    let mut kinds = Vec::new();
    if a.only.is_none() || a.only == Some(Only::Bound) {
        kinds.push(Kind::Bound(a.form));
    }
    match (&a.baseline_token_file, a.only) {
        (_, Some(Only::Bound | Only::Sidecar)) => {}
        (Some(p), _) => {
            let t = std::fs::read_to_string(p)
                .map_err(|e| format!("--baseline-token-file {}: {e}", p.display()))?;
            kinds.push(Kind::Baseline(Arc::new(t.trim().to_owned())));
        }
        (None, Some(Only::Baseline)) => {
            return Err("--only baseline needs --baseline-token-file".into());
        }
        (None, None) => {}
    }
    match (&a.via_sidecar, a.only) {
        (Some(addr), None | Some(Only::Sidecar)) => {
            kinds.push(Kind::Sidecar(Arc::new(addr.clone())))
        }
        (None, Some(Only::Sidecar)) => return Err("--only sidecar needs --via-sidecar".into()),
        _ => {}
    }
    Ok(kinds)
}

/// Every kind once a round, interleaved so drift on a shared machine hits
/// all alike; `rounds[r][k]` is kind `k` in round `r`.
async fn run_rounds(
    a: &BenchArgs,
    target: &Target,
    setup: &Arc<ClientSetup>,
    kinds: &[Kind],
) -> Vec<Vec<Stats>> {
    let mut rounds = Vec::new();
    for round in 0..a.rounds.max(1) {
        let mut this = Vec::new();
        for kind in kinds {
            if !a.json {
                eprintln!("round {}/{}: {}", round + 1, a.rounds.max(1), kind.name());
            }
            this.push(load(a, target, setup, kind.clone()).await);
        }
        rounds.push(this);
    }
    rounds
}

/// What the rounds come to: per kind the round with the median
/// throughput, and bound over baseline per round and its median.
struct Summary<'a> {
    medians: Vec<&'a Stats>,
    ratios: Vec<f64>,
    median_ratio: Option<f64>,
}

impl<'a> Summary<'a> {
    fn of(kinds: &[Kind], rounds: &'a [Vec<Stats>]) -> Self {
        let medians = (0..kinds.len())
            .map(|k| {
                let mut col: Vec<&Stats> = rounds.iter().map(|r| &r[k]).collect();
                col.sort_by(|x, y| x.rps().total_cmp(&y.rps()));
                col[col.len() / 2]
            })
            .collect();
        // Bound over baseline, when both ran (they are the first two kinds).
        let both = matches!(kinds, [Kind::Bound(_), Kind::Baseline(_), ..]);
        let ratios: Vec<f64> = rounds
            .iter()
            .filter(|_| both)
            .map(|r| r[0].rps() / r[1].rps().max(1e-9))
            .collect();
        let mut sorted = ratios.clone();
        sorted.sort_by(f64::total_cmp);
        let median_ratio = sorted.get(sorted.len() / 2).copied();
        Summary {
            medians,
            ratios,
            median_ratio,
        }
    }
}

fn print_json(a: &BenchArgs, rounds: &[Vec<Stats>], s: &Summary<'_>) {
    let all: Vec<Vec<Value>> = rounds
        .iter()
        .map(|r| r.iter().map(Stats::json).collect())
        .collect();
    let med: Vec<Value> = s.medians.iter().map(|s| s.json()).collect();
    outln!(
        "{}",
        json!({"connections": a.connections, "requests_per_connection": a.requests,
               "new_connections": a.new_connections, "http": format!("{:?}", a.http),
               "rounds": all, "median_runs": med, "ratios": s.ratios,
               "bound_over_baseline_throughput": s.median_ratio})
    );
}

fn print_text(a: &BenchArgs, rounds: &[Vec<Stats>], s: &Summary<'_>) {
    outln!(
        "{} connections x {} requests{}, {:?}, {} rounds (medians)",
        a.connections,
        a.requests,
        if a.new_connections {
            " (a new connection each)"
        } else {
            " (keep-alive)"
        },
        a.http,
        rounds.len()
    );
    outln!(
        "{:<28} {:>10} {:>7} {:>9} {:>9} {:>9} {:>14} {:>14}",
        "run",
        "req/s",
        "errors",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "server us/req",
        "client us/req"
    );
    let us = |c: Option<f64>| c.map(|c| format!("{c:.1}")).unwrap_or_else(|| "-".into());
    for m in &s.medians {
        outln!(
            "{:<28} {:>10.0} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>14} {:>14}",
            m.name,
            m.rps(),
            m.errors,
            m.pct(0.5),
            m.pct(0.99),
            m.pct(0.999),
            us(m.server_cpu_us),
            us(m.client_cpu_us)
        );
    }
    if let Some(r) = s.median_ratio {
        let each: Vec<String> = s.ratios.iter().map(|r| format!("{r:.3}")).collect();
        outln!(
            "bound / baseline throughput: {r:.3} (median of rounds: {})",
            each.join(", ")
        );
    }
}

async fn load(a: &BenchArgs, target: &Target, setup: &Arc<ClientSetup>, kind: Kind) -> Stats {
    let total = (a.connections * a.requests) as u64;
    let bar = if a.json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new(total)
    };
    if let Ok(style) =
        ProgressStyle::with_template("{msg:28} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(kind.name());
    let deadline = Instant::now() + Duration::from_secs(a.max_seconds);
    let cpu_before = processes_cpu_us(&a.server_pid);
    let own_before = process_cpu_us(std::process::id());
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(a.connections);
    // Each connection's share of --rate, as the interval between its requests.
    let every = a
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(a.connections as f64 / r));
    let route = Arc::new(a.path.clone().map(|p| (a.method.clone(), p)));
    for i in 0..a.connections {
        let (target, setup, kind, bar) = (target.clone(), setup.clone(), kind.clone(), bar.clone());
        let (n, fresh, route, conns) =
            (a.requests, a.new_connections, route.clone(), a.connections);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            let mut errors = 0usize;
            let mut conn: Option<Conn> = None;
            let mut pace = every.map(|e| {
                // Connections start spread over one interval, not in step.
                let start = tokio::time::Instant::now() + e.mul_f64(i as f64 / conns as f64);
                let mut t = tokio::time::interval_at(start, e);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            for _ in 0..n {
                if let Some(p) = pace.as_mut() {
                    p.tick().await;
                }
                if Instant::now() > deadline {
                    break;
                }
                let t = Instant::now();
                if fresh || conn.is_none() {
                    conn = match &kind {
                        Kind::Sidecar(addr) => plain_connect(addr).await.map(Conn::Plain),
                        _ => BoundConnection::connect(&target, &setup)
                            .await
                            .ok()
                            .map(Conn::Bound),
                    };
                }
                let ok = match (conn.as_mut(), &kind) {
                    (Some(Conn::Bound(c)), _) => one_request(c, &kind, &route).await,
                    (Some(Conn::Plain(s)), Kind::Sidecar(addr)) => {
                        plain_request(s, addr, &route).await
                    }
                    _ => false,
                };
                if ok {
                    lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                } else {
                    errors += 1;
                    conn = None;
                }
                bar.inc(1);
            }
            (lat, errors)
        }));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for t in tasks {
        match t.await {
            Ok((l, e)) => {
                latencies_us.extend(l);
                errors += e;
            }
            Err(_) => errors += a.requests,
        }
    }
    let elapsed = started.elapsed();
    let cpu_after = processes_cpu_us(&a.server_pid);
    let own_after = process_cpu_us(std::process::id());
    bar.finish_and_clear();
    latencies_us.sort_unstable();
    let ok = latencies_us.len().max(1) as f64;
    Stats {
        server_cpu_us: cpu_before.zip(cpu_after).map(|(b, e)| (e - b) / ok),
        client_cpu_us: own_before.zip(own_after).map(|(b, e)| (e - b) / ok),
        name: kind.name(),
        ok: latencies_us.len(),
        errors,
        elapsed,
        latencies_us,
    }
}

/// The application claims of every bound request: built once, as an
/// application's own claims would be, so the loop times the binding.
static CLAIMS: std::sync::LazyLock<serde_json::Value> =
    std::sync::LazyLock::new(|| json!({"role": "bench"}));

/// A load connection: bound to the server, or plain to a sidecar.
enum Conn {
    Bound(BoundConnection),
    Plain(hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>),
}

async fn plain_connect(
    addr: &str,
) -> Option<hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let _ = tcp.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(send)
}

/// One request to the sidecar as an app sends it: plain, no token.
async fn plain_request(
    s: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    addr: &str,
    route: &Option<(Method, String)>,
) -> bool {
    use http_body_util::BodyExt;
    let (method, path) = match route {
        Some((m, p)) => (m.clone(), p.as_str()),
        None => (Method::POST, "/v1/claims"),
    };
    let Ok(req) = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr)
        .body(http_body_util::Empty::new())
    else {
        return false;
    };
    if s.ready().await.is_err() {
        return false;
    }
    match s.send_request(req).await {
        Ok(resp) => {
            let ok = resp.status() == 200;
            ok && resp.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

async fn one_request(
    c: &mut BoundConnection,
    kind: &Kind,
    route: &Option<(Method, String)>,
) -> bool {
    let reply = match (kind, route) {
        (Kind::Bound(form), None) => c.send(*form, &*CLAIMS).await,
        (Kind::Bound(form), Some((method, path))) => match c.token(*form, &*CLAIMS) {
            Ok(token) => c.request(method.clone(), path, Some(&token)).await,
            Err(_) => return false,
        },
        (Kind::Baseline(token), None) => c.request(Method::POST, "/v1/baseline", Some(token)).await,
        (Kind::Baseline(token), Some((method, path))) => {
            c.request(method.clone(), path, Some(token)).await
        }
        (Kind::Sidecar(_), _) => return false,
    };
    matches!(reply, Ok(r) if r.status == 200)
}

/// The summed CPU time of `pids`, if there are any and all are readable.
fn processes_cpu_us(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| process_cpu_us(*p)).sum()
}

/// CPU time of a process, in microseconds (Linux /proc): the sum over its
/// threads of the nanoseconds each spent on a CPU (schedstat), which a
/// short run at a low rate needs; /proc/PID/stat's 10 ms ticks are too
/// coarse for it. Falls back to the ticks where schedstat is missing.
fn process_cpu_us(pid: u32) -> Option<f64> {
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        let mut ns = 0u64;
        let mut any = false;
        for t in tasks.flatten() {
            let text = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            if let Some(v) = text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
            {
                ns += v;
                any = true;
            }
        }
        if any {
            return Some(ns as f64 / 1000.0);
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14th and 15th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // The kernel's USER_HZ is 100 on every Linux architecture we run on.
    Some(ticks * 10_000.0)
}
