//! The README's run command, for real: the `uforge-local` binary on a
//! loopback port, spoken to over HTTP/1.1.

use crate::common;

use std::process::Stdio;

use common::http_client::send;
use common::xml::{check_error, check_status};
use common::{cancel_path, Stack};
use publish_cancel::adapters::dynamodb::attr;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts the binary with `args` and `env`, returns it and its `host:port`.
async fn start(args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    start_in(Command::new(env!("CARGO_BIN_EXE_uforge-local")), args, env).await
}

/// The same, with at most `files` open file descriptors.
async fn start_limited(files: u32, args: &[&str]) -> (Child, String) {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_uforge-local"));
    start_in(sh, args, &[]).await
}

async fn start_in(mut command: Command, args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut child = command
        .args(["--port", "0"])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start uforge-local");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next_line().await.unwrap().expect("a banner line");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"));
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let curl = lines.next_line().await.unwrap().expect("a curl line");
    assert!(
        curl.contains("curl") && curl.contains("-X DELETE"),
        "{curl}"
    );
    // The rest is the log, kept for the tests that read it.
    let log = LOGS.with(|l| l.clone());
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            log.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    (child, addr)
}

thread_local! {
    /// What the servers a test started logged (tokio tests run on one thread each).
    static LOGS: std::sync::Arc<std::sync::Mutex<String>> = std::sync::Arc::default();
}

/// Everything the servers this test started have logged so far.
fn logs() -> String {
    LOGS.with(|l| l.lock().unwrap().clone())
}

fn basic(login: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"))
    )
}

#[tokio::test]
async fn embedded_default_cancels_then_repeats() {
    let (_server, addr) = start(&[], &[]).await;
    let path = cancel_path("alice", 1, 2, 3);
    let auth = basic("alice", "alice-password");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Accept", "application/xml"),
        ("Content-Type", "application/xml"),
    ];

    let first = send(&addr, "DELETE", &path, &headers).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["content-type"], "application/xml");
    let body = String::from_utf8(first.body).unwrap();
    let status = check_status(&body);
    assert_eq!(status["cancelled"], "true");

    let second = send(&addr, "DELETE", &path, &headers).await;
    assert_eq!(second.status, 200);
    let again = check_status(&String::from_utf8(second.body).unwrap());
    assert_eq!(
        again, status,
        "a repeat returns the stored record unchanged"
    );

    let published = send(&addr, "DELETE", &cancel_path("alice", 1, 2, 5), &headers).await;
    assert_eq!(published.status, 409);
    check_error(&String::from_utf8(published.body).unwrap());

    let wrong = basic("alice", "wrong");
    let denied = send(&addr, "DELETE", &path, &[("Authorization", wrong.as_str())]).await;
    assert_eq!(denied.status, 401);
    assert_eq!(denied.headers["www-authenticate"], "Basic realm=\"UForge\"");

    let get = send(&addr, "GET", &path, &headers).await;
    assert_eq!(get.status, 405);
    assert_eq!(get.headers["allow"], "DELETE");

    // Credentials of every kind, refused or not, are never logged: two
    // Authorization fields, a malformed one, a signed URL.
    let bob = basic("bob", "bob-password");
    let two = [
        ("Authorization", auth.as_str()),
        ("Authorization", bob.as_str()),
    ];
    assert_eq!(send(&addr, "DELETE", &path, &two).await.status, 401);
    let malformed = format!("{auth}:carol-password");
    assert_eq!(
        send(
            &addr,
            "DELETE",
            &path,
            &[("Authorization", malformed.as_str())]
        )
        .await
        .status,
        401
    );
    let signed = format!("{path}?apiKey=PUBKEY123&signature=c2lnbmF0dXJlIG9mIDIwIGJ5dGU%3D");
    assert_eq!(send(&addr, "DELETE", &signed, &[]).await.status, 401);
    // The log is written as each request ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while logs().matches("\n").count() < 8 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let logs = logs();
    assert!(logs.matches("\n").count() >= 8, "{logs}");
    common::assert_no_secrets("the local server's log", &logs, &[]);
}

#[tokio::test]
async fn seed_flag_loads_another_seed() {
    let dir = std::env::temp_dir().join(format!("uforge-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seed = dir.join("seed.json");
    std::fs::write(
        &seed,
        r#"{"users":[{"login":"zoe","password":"zoe-pw","entitlements":["image_publish"]}],
            "publishes":[{"uid":"zoe","aid":8,"itid":8,"pitid":8,"state":"queued"}]}"#,
    )
    .unwrap();
    let (_server, addr) = start(&["--seed", seed.to_str().unwrap()], &[]).await;
    let auth = basic("zoe", "zoe-pw");
    let ok = send(
        &addr,
        "DELETE",
        &cancel_path("zoe", 8, 8, 8),
        &[("Authorization", auth.as_str())],
    )
    .await;
    assert_eq!(ok.status, 200);
    // The bundled users are not there.
    let alice = basic("alice", "alice-password");
    let no = send(
        &addr,
        "DELETE",
        &cancel_path("alice", 1, 2, 3),
        &[("Authorization", alice.as_str())],
    )
    .await;
    assert_eq!(no.status, 401);
}

#[tokio::test]
async fn a_bad_seed_file_is_a_clear_startup_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_uforge-local"))
        .args(["--port", "0", "--seed", "/nonexistent/seed.json"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/seed.json"), "{err}");
}

/// The local server on `stack` with `--backend aws`, reaching AWS at
/// `endpoint`; alice's publish 1/2/3 cancelled through it.
async fn cancel_through_the_aws_backend(stack: &Stack, endpoint: &str) {
    let kek = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(common::KEK)
    };
    let (_server, addr) = start(
        &["--backend", "aws"],
        &[
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("USERS_TABLE", &stack.users_table),
            ("PUBLISHES_TABLE", &stack.publishes_table),
            ("STOP_QUEUE_URL", &stack.queue_url),
            ("UFORGE_API_KEY_KEK", &kek),
        ],
    )
    .await;
    let auth = basic("alice", "alice-password");
    let resp = send(
        &addr,
        "DELETE",
        &cancel_path("alice", 1, 2, 3),
        &[("Authorization", auth.as_str())],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
}

#[tokio::test]
async fn aws_backend_against_the_emulator() {
    let stack = Stack::new().await;
    cancel_through_the_aws_backend(&stack, &common::moto::moto().endpoint).await;
    let item = stack.publish_item("alice", "1/2/3").await.unwrap();
    assert_eq!(item[attr::STATE].as_s().unwrap(), "cancelled");
    assert_eq!(stack.drain().await.len(), 1);
}

/// A machine whose clock is an hour slow, run against real tables, writes
/// AWS's time, read off DynamoDB's answers (`clock`): its claims and
/// `cancelledAt` are comparable with every other writer's.
#[tokio::test]
async fn a_machine_with_a_skewed_clock_writes_aws_s_time() {
    let stack = Stack::new().await;
    let proxy = common::fault_proxy::FaultProxy::start(&common::moto::moto().endpoint).await;
    proxy.inject(
        "DynamoDB",
        common::fault_proxy::Fault::ShiftDate(3600),
        None,
    );
    cancel_through_the_aws_backend(&stack, &proxy.url).await;
    let item = stack.publish_item("alice", "1/2/3").await.unwrap();
    let at: i64 = item[attr::CANCELLED_AT].as_n().unwrap().parse().unwrap();
    let aws_now = publish_cancel::clock::system_secs() as i64 + 3600;
    assert!(
        (aws_now - 10..=aws_now + 1).contains(&at),
        "cancelledAt {at}, AWS's time {aws_now}"
    );
    // Its stop says the same time.
    let stops = stack.drain_stops().await;
    assert_eq!(stops.len(), 1);
    assert_eq!(
        stops[0].cancelled_at,
        publish_cancel::domain::Timestamp(at).to_rfc3339()
    );
}

/// What a wrong password gets: a quick, complete answer from a live server.
async fn still_serving(addr: &str) {
    let path = cancel_path("alice", 1, 2, 3);
    let auth = basic("alice", "wrong");
    let resp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        send(addr, "DELETE", &path, &[("Authorization", &auth)]),
    )
    .await
    .expect("an answer within 10 s");
    assert_eq!(resp.status, 401);
    check_error(std::str::from_utf8(&resp.body).unwrap());
}

/// Out of file descriptors, the server backs off and keeps accepting (it
/// used to print "Too many open files" and exit).
#[tokio::test]
async fn the_server_survives_running_out_of_file_descriptors() {
    let (mut server, addr) = start_limited(48, &["--max-connections", "100000"]).await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        if let Ok(c) = tokio::net::TcpStream::connect(&addr).await {
            idle.push(c);
        }
    }
    assert!(idle.len() > 100, "only {} connections", idle.len());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(server.try_wait().unwrap().is_none(), "the server exited");
    drop(idle);
    still_serving(&addr).await;
    assert!(server.try_wait().unwrap().is_none(), "the server exited");
}

/// A client that sends its request head a byte at a time, or nothing at
/// all, is cut off after the header timeout instead of holding a
/// connection for as long as it likes.
#[tokio::test]
async fn slow_and_silent_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_server, addr) = start(&["--header-timeout-ms", "400"], &[]).await;
    let started = std::time::Instant::now();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"DELETE /api/users/alice/appliances/1/images/2/pimages/3/cancel HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut closed = false;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if slow.write_all(b"x").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) =
            tokio::time::timeout(std::time::Duration::from_millis(1), slow.read(&mut buf)).await
        {
            // hyper answers a timed-out head with nothing or a 408, then closes.
            if n == 0 || buf.starts_with(b"HTTP/1.1 408") {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "a byte-a-second client kept its connection for 4 s");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));

    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(3), silent.read(&mut buf))
        .await
        .expect("a silent connection is closed within 3 s")
        .unwrap_or(0);
    assert!(
        n == 0 || buf.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        &buf[..n]
    );
    still_serving(&addr).await;
}

/// With every connection slot held by idle clients, a new client waits in
/// the backlog and is served as soon as the idle ones are cut off. Timed
/// from the idle clients' own connection (the cause), not from a sleep: a
/// loaded machine can only make the wait longer, never shorter.
#[tokio::test]
async fn connections_beyond_the_limit_wait_their_turn() {
    let header_timeout = std::time::Duration::from_millis(800);
    let (_server, addr) = start(
        &["--max-connections", "2", "--header-timeout-ms", "800"],
        &[],
    )
    .await;
    let idle_since = std::time::Instant::now();
    let _a = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _b = tokio::net::TcpStream::connect(&addr).await.unwrap();
    still_serving(&addr).await;
    // Not before a slot was freed by the header timeout.
    let served = idle_since.elapsed();
    assert!(served >= header_timeout, "served after {served:?}");
}

/// Clients that pipeline requests and never read the answers hold their
/// connections only for the connection's lifetime: with every slot taken
/// by such clients, a new client is served once their time is up.
#[tokio::test]
async fn clients_that_never_read_are_cut_off_at_the_lifetime() {
    use tokio::io::AsyncWriteExt;
    let (_server, addr) = start(
        &["--max-connections", "2", "--max-lifetime-ms", "1500"],
        &[],
    )
    .await;
    let lifetime = std::time::Duration::from_millis(1500);
    let request = b"DELETE /api/users/alice/appliances/1/images/2/pimages/9/cancel HTTP/1.1\r\n\
Host: x\r\nAuthorization: Basic YWxpY2U6d3Jvbmc=\r\n\r\n";
    let mut hogs = Vec::new();
    let hogging_since = std::time::Instant::now();
    for _ in 0..2 {
        let mut hog = tokio::net::TcpStream::connect(&addr).await.unwrap();
        // Pipelined requests, answers never read: the server's writes
        // block once the socket buffers fill.
        let burst = request.repeat(2_000);
        let _ = tokio::time::timeout(std::time::Duration::from_millis(300), hog.write_all(&burst))
            .await;
        hogs.push(hog);
    }
    still_serving(&addr).await;
    // Served, and only once a hog's lifetime was up (not by chance of a
    // free slot): timed from the hogs' connections, the cause, so a loaded
    // machine can only make it later.
    let served = hogging_since.elapsed();
    assert!(served >= lifetime, "served after {served:?}");
    drop(hogs);
}
