//! Binary sizes and the local server's memory.

use super::*;

/// Binary sizes.
pub(super) fn binary_sizes() -> Vec<Row> {
    let mut rows = Vec::new();
    for (label, bin) in [
        ("publish-cancel", "publish-cancel"),
        ("hello-world reference", "examples/hello_lambda"),
    ] {
        let size = std::fs::metadata(release(bin))
            .map(|m| m.len())
            .unwrap_or(0);
        rows.push(Row(
            format!("release binary, x86_64, stripped: {label}"),
            format!("{:.2} MB", size as f64 / 1e6),
            String::new(),
        ));
    }
    // The deployed artefact (scripts/bench builds it with scripts/build-arm64).
    for name in ["publish-cancel", "reconciler", "automation"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/arm64/aarch64-unknown-linux-gnu/release")
            .join(name);
        if let Ok(m) = std::fs::metadata(&path) {
            rows.push(Row(
                format!("release binary, arm64 (deployed), stripped: {name}"),
                format!("{:.2} MB", m.len() as f64 / 1e6),
                "target ≤ 6 MB (checked by tests/suite/rehearsal.rs)".into(),
            ));
        }
    }
    rows
}

/// Memory over 10 000 requests, release local server.
pub(super) async fn local_server_rss(auth: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let (hwm, rss_after, rss_idle) = local_server_memory(auth).await;
    rows.push(Row(
        format!("peak RSS over {RSS_REQUESTS} requests (local server, release)"),
        format!("{hwm:.1} MB"),
        "VmHWM; includes Argon2's 19 MiB during seeding/first verify".into(),
    ));
    rows.push(Row(
        "RSS after the requests / idle after start".into(),
        format!("{rss_after:.1} MB / {rss_idle:.1} MB"),
        "steady state without Argon2's working memory".into(),
    ));
    rows
}

pub(super) fn memory_api(cached: bool) -> common::MemoryApi {
    common::memory_api(&Seed::parse(BUNDLED).unwrap(), cached)
}

/// Returns (VmHWM, VmRSS after, VmRSS idle) in MB.
pub(super) async fn local_server_memory(auth: &str) -> (f64, f64, f64) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(release("uforge-local"))
        .args(["--port", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = lines.next_line().await.unwrap().unwrap();
    let addr = banner
        .split("http://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let pid = child.id().unwrap();
    let status = |field: &str| crate::status_mb(pid, field);
    let idle = status("VmRSS:");
    for _ in 0..RSS_REQUESTS {
        let r = common::http_client::send(
            &addr,
            "DELETE",
            &cancel_path("alice", 1, 2, 3),
            &[("Authorization", auth)],
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let out = (status("VmHWM:"), status("VmRSS:"), idle);
    child.kill().await.ok();
    out
}
