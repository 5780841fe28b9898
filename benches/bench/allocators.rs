//! Our allocator (`src/allocator.rs`: mimalloc under 1 MiB, glibc above,
//! to give Argon2's 19 MiB back) against mimalloc alone, as the `mimalloc`
//! crate's allocator does it (feature `bench-mimalloc-only`), with
//! mimalloc's default purge delay and with `MIMALLOC_PURGE_DELAY=0`.
//! scripts/bench builds the second binary into `target/bench/mimalloc-only/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::runtime_api::RuntimeApi;
use crate::common::sample_events::lambda_command;
use crate::common::Stack;
use crate::Row;

/// Where scripts/bench puts the mimalloc-only build.
pub(crate) fn mimalloc_only() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/mimalloc-only/publish-cancel")
}

/// Wrong passwords in a row: each one a verification (failures are not
/// cached), each 19 MiB of Argon2 memory allocated and freed.
const VERIFICATIONS: usize = 8;

/// (VmRSS, VmHWM) in MB of `bin` (with `extra` variables) after one warm
/// event and `VERIFICATIONS` failed verifications, and idle 1 s later.
async fn after_verifications(
    stack: &Stack,
    bin: &Path,
    extra: &[(&str, &str)],
    event: &str,
) -> (f64, f64, f64) {
    let runtime = RuntimeApi::start().await;
    let mut env: Vec<(String, String)> = stack
        .lambda_env(&runtime.addr)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut child = lambda_command(bin, &env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary");
    let wrong = event.replace("YWxpY2U6YWxpY2UtcGFzc3dvcmQ=", "YWxpY2U6d3Jvbmc=");
    let _ = runtime.try_invoke(event, Duration::from_secs(30)).await;
    for _ in 0..VERIFICATIONS {
        let _ = runtime.try_invoke(&wrong, Duration::from_secs(30)).await;
    }
    let pid = child.id().unwrap_or(0);
    let read = |field: &str| crate::status_mb(pid, field);
    let (rss, hwm) = (read("VmRSS:"), read("VmHWM:"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = read("VmRSS:");
    child.kill().await.ok();
    (rss, hwm, idle)
}

pub(super) async fn allocators(stack: &Stack, event: &str) -> Vec<Row> {
    let (ours, alone) = (crate::release("publish-cancel"), mimalloc_only());
    if !alone.exists() {
        return vec![Row(
            "allocators: ours vs mimalloc alone".into(),
            "not measured".into(),
            format!("{} is not built (scripts/bench builds it)", alone.display()),
        )];
    }
    let purge_now: &[(&str, &str)] = &[("MIMALLOC_PURGE_DELAY", "0")];
    let (ours_i, alone_i, purged_i) = (
        crate::instructions::per_event_of(stack, &ours, event, &[]).await,
        crate::instructions::per_event_of(stack, &alone, event, &[]).await,
        crate::instructions::per_event_of(stack, &alone, event, purge_now).await,
    );
    let ours_m = after_verifications(stack, &ours, &[], event).await;
    let alone_m = after_verifications(stack, &alone, &[], event).await;
    let purged_m = after_verifications(stack, &alone, purge_now, event).await;
    let mb = |m: (f64, f64, f64)| format!("{:.1} / {:.1} / {:.1} MB", m.0, m.1, m.2);
    crate::plot::bars(
        "allocators",
        "Allocators: memory after 8 Argon2 verifications (MB)",
        "MB",
        &[
            "ours (mimalloc + glibc)",
            "mimalloc alone",
            "mimalloc, purge 0",
        ],
        &[
            ("RSS after".into(), vec![ours_m.0, alone_m.0, purged_m.0]),
            ("peak RSS".into(), vec![ours_m.1, alone_m.1, purged_m.1]),
            (
                "RSS idle 1 s later".into(),
                vec![ours_m.2, alone_m.2, purged_m.2],
            ),
        ],
    );
    vec![
        Row(
            "allocators: instructions per warm repeat cancel, ours / mimalloc alone / mimalloc alone, purge 0".into(),
            format!(
                "{:.3} M / {:.3} M / {:.3} M",
                ours_i / 1e6,
                alone_i / 1e6,
                purged_i / 1e6
            ),
            format!("ours {:.3}× / {:.3}×", ours_i / alone_i, ours_i / purged_i),
        ),
        Row(
            format!(
                "allocators: RSS after {VERIFICATIONS} verifications / peak / idle 1 s later, ours"
            ),
            mb(ours_m),
            "mimalloc under 1 MiB, glibc (mmap, returned on free) above".into(),
        ),
        Row(
            "allocators: the same, mimalloc alone".into(),
            mb(alone_m),
            "MIMALLOC_PURGE_DELAY default (10 ms)".into(),
        ),
        Row(
            "allocators: the same, mimalloc alone, MIMALLOC_PURGE_DELAY=0".into(),
            mb(purged_m),
            "freed memory purged at once".into(),
        ),
    ]
}
