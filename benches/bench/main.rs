//! The benchmark: `scripts/bench` builds the release binaries, then runs
//! this (harness-less), which prints Markdown tables that scripts/bench writes
//! into docs/measurements.md. Every
//! figure is a median (or percentile) over repeated runs and, where there is
//! a reference, a ratio to it measured in the same run.

// The tests' fixtures; the benchmark uses a part of them.
#[allow(dead_code)]
#[path = "../../tests/common/mod.rs"]
mod common;

mod allocators;
mod automation;
mod baseline;
mod capacity;
mod cpu;
mod footprint;
mod init;
mod instructions;
mod latency;
mod memory_settings;
mod plot;
mod stats;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use automation::*;
use base64::Engine as _;
use baseline::*;
use common::runtime_api::{Outcome, RuntimeApi};
use common::sample_events::{lambda_command, lambda_command_with};
use common::{cancel_path, Req, Stack};
use cpu::*;
use footprint::*;
use init::*;
use instructions::*;
use latency::*;
use memory_settings::*;
use publish_cancel::adapters::dynamodb::{DynamoPublishes, DynamoUsers};
use publish_cancel::adapters::sqs::SqsStopQueue;
use publish_cancel::domain::{CancelStamp, Login, PublishRecord, PublishState, Timestamp};
use publish_cancel::ports::{CancelWrites, StopMessage, StopQueue, Users};
use publish_cancel::seed::{Seed, BUNDLED};
use stats::*;

pub(crate) const INIT_RUNS: usize = 15;
pub(crate) const WARM_REQUESTS: usize = 300;
pub(crate) const RSS_REQUESTS: usize = 10_000;

pub(crate) fn release(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/release")
        .join(name)
}

pub(crate) struct Row(pub String, pub String, pub String);

/// A `/proc/<pid>/status` memory field (`VmRSS:`, `VmHWM:`) in MB; 0 when
/// the process or the field is gone.
pub(crate) fn status_mb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == ARGON2_CHILD) {
        return argon2_child();
    }
    // The capacity simulation drives the library, not the binaries.
    let binaries_needed = std::env::var("UFORGE_BENCH_ONLY").map_or(true, |o| o != "capacity");
    if std::env::args().any(|a| a == "--test")
        || (binaries_needed && !release("publish-cancel").exists())
    {
        eprintln!("the benchmark needs the release binaries: run scripts/bench");
        return;
    }
    let stack = Stack::new().await;
    let event = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("events/apigw-rest-cancel-basic.json"),
    )
    .unwrap();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:alice-password")
    );
    // UFORGE_BENCH_ONLY=baseline,sizes,...: only the sections named (a
    // quick before/after); every section otherwise.
    let only = std::env::var("UFORGE_BENCH_ONLY").ok();
    let run = |section: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|s| s == section))
    };
    let mut rows = Vec::new();
    if run("side") {
        rows.extend(side_by_side(&stack, &event).await);
    }
    if run("init") {
        rows.extend(init_and_first_request(&stack, &event).await);
    }
    if run("kek") {
        rows.extend(kek_costs(&stack).await);
    }
    if run("warm") {
        rows.extend(warm_latency(&stack, &auth).await);
    }
    if run("cpu") {
        rows.extend(handler_cpu().await);
        rows.extend(metric_line_cost());
    }
    if run("timing") {
        rows.extend(unauthorised_timing().await);
    }
    if run("sizes") {
        rows.extend(binary_sizes());
    }
    if run("rss") {
        rows.extend(local_server_rss(&auth).await);
    }
    if run("capacity") {
        rows.extend(capacity::capacity().await);
    }
    if run("alloc") {
        rows.extend(allocators::allocators(&stack, &event).await);
    }
    if run("automation") {
        rows.extend(automation_beside_http(&stack, &event).await);
    }
    if let Some(baseline) = std::env::var_os("UFORGE_BENCH_BASELINE").filter(|_| run("baseline")) {
        rows.extend(against_baseline(Path::new(&baseline)).await);
    }
    let settings = if run("memory") {
        lambda_memory_settings(&stack, &event).await
    } else {
        Err("not asked for (UFORGE_BENCH_ONLY)".into())
    };

    println!("| measure | figure | reference |\n| --- | --- | --- |");
    for Row(a, b, c) in rows {
        println!("| {a} | {b} | {c} |");
    }
    println!();
    match settings {
        Ok(lines) => {
            println!(
                "| Lambda memory (CPU share) | Argon2 verify, p50 | init, p50 | \
                 first invocation, p50 | warm invocation, p50 |"
            );
            println!("| --- | --- | --- | --- | --- |");
            for line in lines {
                println!("{line}");
            }
        }
        Err(why) => println!("Lambda memory settings: not measured ({why})"),
    }
    if let Some(written) = plot::save() {
        eprintln!("plots: {written}");
    }
}
