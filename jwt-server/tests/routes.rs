//! The gateway's routes, from a real `jwt-server --config` with
//! `[[routes]]`: requests by prefix to three upstreams, who may call which
//! route (403, the upstream never reached), a public route, a path no
//! route covers, and the table reloaded under load.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use jose_binding::client::{BoundConnection, HttpVersion, Target};
use jose_binding::Form;
use jose_binding_e2e::upstream::HyperUpstream;
use jose_binding_e2e::{fixtures, TempDir};
use serde_json::json;
use support::Server;

fn routes_file(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("server.toml");
    // Renamed over the old one, as config management ships a file.
    let staging = dir.join(".server.toml.new");
    std::fs::write(&staging, text).unwrap();
    std::fs::rename(&staging, &path).unwrap();
    path
}

/// jwt-server with the fixtures' certificate and keystore and `config`.
fn serve_with(config: &Path) -> Server {
    let keystore = fixtures().join("keystore.toml");
    let (cert, key) = (fixtures().join("server.pem"), fixtures().join("server.key"));
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--keystore",
        keystore.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    Server::start(&args, &fixtures(), &[]).expect("server starts")
}

async fn connect(port: u16, client: &str) -> BoundConnection {
    let target = Target::parse(&format!("https://localhost:{port}")).unwrap();
    let setup = jose_binding_e2e::setup(client, HttpVersion::Http2);
    BoundConnection::connect(&target, &setup).await.unwrap()
}

/// The status of `path` for `c`, with a token over `claims` (or none).
async fn status(
    c: &mut BoundConnection,
    path: &str,
    claims: Option<serde_json::Value>,
) -> (u16, String) {
    let token = claims.map(|cl| c.token(Form::Signed, &cl).unwrap());
    let r = c
        .request(Method::GET, path, token.as_deref())
        .await
        .unwrap();
    let body = r
        .json()
        .map(|j| j["error"].as_str().unwrap_or("").to_owned());
    (r.status, body.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_by_prefix_and_only_allowed_clients_pass() {
    let (a, b, c) = (
        HyperUpstream::start().await,
        HyperUpstream::start().await,
        HyperUpstream::start().await,
    );
    let dir = TempDir::new("routes");
    let config = routes_file(
        &dir,
        &format!(
            r#"
upstream = "{a}"

[[routes]]
prefix = "/orders/"
upstream = "{b}"

[[routes]]
prefix = "/admin/"
upstream = "{c}"
clients = ["client2", "ops-*"]

[[routes]]
prefix = "/reports/"
upstream = "{c}"
require_claims = {{ role = "auditor" }}

[[routes]]
prefix = "/status"
upstream = "{b}"
public = true
"#,
            a = a.url(),
            b = b.url(),
            c = c.url()
        ),
    );
    let mut server = serve_with(&config);
    let mut c1 = connect(server.port, "client1").await;
    let mut c2 = connect(server.port, "client2").await;
    let none = || Some(json!({}));

    // By prefix, the longest first; --config's upstream is the route for /.
    assert_eq!(status(&mut c1, "/orders/7", none()).await.0, 200);
    assert_eq!((a.requests(), b.requests(), c.requests()), (0, 1, 0));
    assert_eq!(status(&mut c1, "/ordersx", none()).await.0, 200);
    assert_eq!(status(&mut c1, "/", none()).await.0, 200);
    assert_eq!((a.requests(), b.requests(), c.requests()), (2, 1, 0));

    // /admin/: client2 may, client1 may not; the upstream never sees it.
    assert_eq!(
        status(&mut c1, "/admin/users", none()).await,
        (403, "forbidden".into())
    );
    assert_eq!(
        c.requests(),
        0,
        "a forbidden request never reaches the upstream"
    );
    assert_eq!(status(&mut c2, "/admin/users", none()).await.0, 200);
    assert_eq!(c.requests(), 1);

    // /reports/: the claim, with its exact value.
    assert_eq!(status(&mut c1, "/reports/q3", none()).await.0, 403);
    let reader = Some(json!({"role": "reader"}));
    assert_eq!(status(&mut c1, "/reports/q3", reader).await.0, 403);
    assert_eq!(c.requests(), 1);
    let auditor = Some(json!({"role": "auditor"}));
    assert_eq!(status(&mut c1, "/reports/q3", auditor).await.0, 200);
    assert_eq!(c.requests(), 2);

    // A public route needs no token; a path that could be read as another
    // goes nowhere; no token elsewhere is still the binding's 401.
    assert_eq!(status(&mut c1, "/status", None).await.0, 200);
    assert_eq!(b.requests(), 2);
    assert_eq!(
        status(&mut c1, "/status/../admin/x", None).await,
        (400, "bad_path".into())
    );
    assert_eq!(
        status(&mut c2, "/orders/%2e%2e/admin/x", none()).await,
        (400, "bad_path".into())
    );
    assert_eq!(status(&mut c1, "/admin/users", None).await.0, 401);
    // Other spellings of /admin/ an upstream may read as it: the route's
    // rules, or nowhere.
    assert_eq!(status(&mut c1, "/ADMIN/users", none()).await.0, 403);
    assert_eq!(status(&mut c1, "/admin", none()).await.0, 403);
    assert_eq!(
        status(&mut c1, "/%61dmin/users", none()).await,
        (400, "bad_path".into())
    );
    assert_eq!(
        status(&mut c1, "/%2561dmin/users", none()).await,
        (400, "bad_path".into())
    );
    assert_eq!(c.requests(), 2);

    let log = server.read_log().join("\n");
    assert!(
        log.contains(r#"outcome=forbidden route="/admin/" refused_because="client_not_allowed""#),
        "{log}"
    );
    assert!(
        log.contains(r#"refused_because="claim_not_matched""#),
        "{log}"
    );

    // Without a route for /, a path no route covers is 404 no_route (after
    // the token: a client without one learns nothing of the table).
    let config_text = std::fs::read_to_string(&config).unwrap();
    let without_root = config_text.replace(&format!("upstream = \"{}\"\n", a.url()), "");
    let staged = dir.join("no-root.toml");
    std::fs::write(&staged, &without_root).unwrap();
    let mut bare = serve_with(&staged);
    let mut c = connect(bare.port, "client1").await;
    assert_eq!(
        status(&mut c, "/elsewhere", none()).await,
        (404, "no_route".into())
    );
    assert_eq!(status(&mut c, "/elsewhere", None).await.0, 401);
    assert_eq!(status(&mut c, "/orders/1", none()).await.0, 200);
    let _ = bare.read_log();
}

/// The route table reloads when the --config file changes, under load:
/// no request fails, the new table is in force within 2 s, and a broken
/// file leaves the table in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_table_reloads_under_load_with_no_failed_request() {
    let (a, b) = (HyperUpstream::start().await, HyperUpstream::start().await);
    let dir = TempDir::new("routes-reload");
    let table = |to: &str| format!("[[routes]]\nprefix = \"/orders/\"\nupstream = \"{to}\"\n");
    let config = routes_file(&dir, &table(&a.url()));
    let mut server = serve_with(&config);
    let port = server.port;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let mut c = connect(port, "client1").await;
                while !stop.load(Ordering::Relaxed) {
                    match status(&mut c, "/orders/1", Some(json!({}))).await.0 {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.requests() > 0 && b.requests() == 0);

    // A broken file: the table in force stays.
    routes_file(
        &dir,
        "[[routes]]\nprefix = \"orders\"\nupstream = \"ftp://x\"\n",
    );
    let broken = tokio::task::block_in_place(|| {
        server.wait_for("routes not reloaded", Duration::from_secs(3))
    });
    assert!(broken.is_some(), "{:?}", server.read_log());
    let before = b.requests();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(b.requests(), before);

    // The new table: in force within 2 s.
    let changed = std::time::Instant::now();
    routes_file(&dir, &table(&b.url()));
    let reloaded =
        tokio::task::block_in_place(|| server.wait_for("routes reloaded", Duration::from_secs(3)));
    assert!(reloaded.is_some(), "{:?}", server.read_log());
    let mut c = connect(port, "client1").await;
    let seen = b.requests();
    assert_eq!(status(&mut c, "/orders/1", Some(json!({}))).await.0, 200);
    assert!(b.requests() > seen);
    let took = changed.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "reload under load: {ok} answered 200, {failed} failed, new table in force after {took:?}"
    );
    assert_eq!(failed, 0);
    assert!(ok > 20, "{ok}");
}

/// The routes file the README shows starts a gateway with those routes.
#[test]
fn the_readmes_routes_file_is_a_working_config() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("```toml\nupstream = ")
        .expect("the README's routes file")
        + 8;
    let end = start + readme[start..].find("```").unwrap();
    let dir = TempDir::new("readme-routes");
    let config = dir.join("server.toml");
    std::fs::write(&config, &readme[start..end]).unwrap();
    let root = fixtures().parent().unwrap().to_owned();
    let mut server = Server::start(
        &[
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
        &root,
        &[],
    )
    .expect("starts with the README's routes");
    let ready = server.read_log().join("\n");
    for route in [
        r#"/orders.v1.Orders/ -> h2c://127.0.0.1:50051"#,
        r#"/admin/ -> http://127.0.0.1:3001"#,
        r#"/ -> http://127.0.0.1:3000"#,
    ] {
        assert!(ready.contains(route), "{route}: {ready}");
    }
}
