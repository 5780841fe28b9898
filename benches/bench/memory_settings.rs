//! Lambda memory settings, approximated by a cgroup's CPU share: Argon2, init, first and warm invocations per setting.

use super::*;

/// Lambda gives one vCPU at 1769 MB and a proportional share below.
pub(super) const LAMBDA_MEMORY_MB: [u64; 5] = [128, 256, 512, 1024, 1769];
pub(super) const FULL_VCPU_MB: u64 = 1769;
/// Lambda does not publish its scheduling period; with 20 ms, a share of
/// 7 % still runs every 20 ms (1.4 ms at a time) rather than in 7 ms bursts
/// per 100 ms, the kernel default. Jobs of many periods (Argon2) barely care.
pub(super) const CFS_PERIOD_US: u64 = 20_000;
pub(super) const SETTING_RUNS: usize = 5;
pub(super) const SETTING_WARM: usize = 10;
pub(super) const ARGON2_CHILD: &str = "--argon2-child";
pub(super) const ARGON2_VERIFIES: usize = 9;

/// Run as a child inside a limited cgroup: times Argon2 verifications of
/// the production parameters and prints their median in ms.
pub(super) fn argon2_child() {
    let stored = publish_cancel::auth::password::hash("correct horse").unwrap();
    let mut times = Vec::new();
    for _ in 0..ARGON2_VERIFIES {
        let t = Instant::now();
        assert!(publish_cancel::auth::password::verify(
            "correct horse",
            Some(&stored)
        ));
        times.push(ms(t.elapsed()));
    }
    println!("{:.1}", pct(&sorted(times), 0.5));
}

/// A cgroup (v1 `cpu` controller, or v2 with `cpu` enabled) whose CPU
/// bandwidth is a Lambda memory setting's share of one core.
pub(super) struct CpuShare {
    dir: PathBuf,
    procs: PathBuf,
}

impl CpuShare {
    pub(super) fn new(memory_mb: u64) -> Result<CpuShare, String> {
        let quota = (CFS_PERIOD_US * memory_mb / FULL_VCPU_MB).max(1_000);
        let name = format!("uforge-bench-{}-{memory_mb}", std::process::id());
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        let v2 = Path::new("/sys/fs/cgroup");
        let (dir, files) = if v1.join("cpu.cfs_quota_us").exists() {
            let dir = v1.join(name);
            let files = vec![
                ("cpu.cfs_period_us", CFS_PERIOD_US.to_string()),
                ("cpu.cfs_quota_us", quota.to_string()),
            ];
            (dir, files)
        } else {
            let dir = v2.join(name);
            (dir, vec![("cpu.max", format!("{quota} {CFS_PERIOD_US}"))])
        };
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot create a cgroup under {}: {e}", dir.display()))?;
        let share = CpuShare {
            procs: dir.join("cgroup.procs"),
            dir,
        };
        for (file, value) in files {
            std::fs::write(share.dir.join(file), value)
                .map_err(|e| format!("cannot limit the cgroup's CPU ({file}): {e}"))?;
        }
        Ok(share)
    }

    /// `program` started inside the cgroup: a shell joins it, prints the
    /// wall-clock time (ns) on stderr, then execs. Joining took 10-15 ms
    /// here, which is not Lambda's init, so init is timed from that stamp.
    fn command(&self, program: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(r#"echo $$ > "$0" && date +%s%N >&2 && exec "$@""#)
            .arg(&self.procs)
            .arg(program)
            .kill_on_drop(true);
        cmd
    }
}

impl Drop for CpuShare {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Per memory setting: Argon2 verify time, and the Lambda binary's init,
/// first invocation and warm invocations, all under that CPU share
/// (moto, like DynamoDB, runs outside it). One Markdown row per setting.
pub(super) async fn lambda_memory_settings(
    stack: &Stack,
    event: &str,
) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    let mut next_pitid = 100_000_i64;
    // (memory, Argon2, init, first, warm) for the chart.
    let mut curves: Vec<(f64, f64, f64, f64, f64)> = Vec::new();
    for memory_mb in LAMBDA_MEMORY_MB {
        let share = CpuShare::new(memory_mb)?;
        let out = share
            .command(&std::env::current_exe().map_err(|e| e.to_string())?)
            .arg(ARGON2_CHILD)
            .output()
            .await
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let argon2 = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let (mut init, mut first, mut warm) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..SETTING_RUNS {
            let runtime = RuntimeApi::start().await;
            let env = stack.lambda_env(&runtime.addr);
            let (mut child, started) =
                start_lambda(Some(&share), "publish-cancel", env, memory_mb, &runtime).await?;
            init.push(started);
            for i in 0..=SETTING_WARM {
                let pitid = next_pitid;
                next_pitid += 1;
                let rec = PublishRecord::new(common::alice_key(pitid), PublishState::Publishing);
                stack.put_publish(&rec).await;
                let event = event.replace("/pimages/3/", &format!("/pimages/{pitid}/"));
                let sent = Instant::now();
                let Outcome::Response(response) = runtime.invoke(&event).await else {
                    panic!("invocation error")
                };
                assert_eq!(response["statusCode"], 200, "{response}");
                if i == 0 { &mut first } else { &mut warm }.push(ms(sent.elapsed()));
            }
            child.kill().await.ok();
        }
        let (init, first, warm) = (sorted(init), sorted(first), sorted(warm));
        curves.push((
            memory_mb as f64,
            argon2.parse().unwrap_or(0.0),
            pct(&init, 0.5),
            pct(&first, 0.5),
            pct(&warm, 0.5),
        ));
        lines.push(format!(
            "| {memory_mb} MB ({:.3} vCPU) | {argon2} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            memory_mb as f64 / FULL_VCPU_MB as f64,
            pct(&init, 0.5),
            pct(&first, 0.5),
            pct(&warm, 0.5),
        ));
    }
    let curve = |f: fn(&(f64, f64, f64, f64, f64)) -> f64| -> Vec<(f64, f64)> {
        curves.iter().map(|c| (c.0, f(c))).collect()
    };
    crate::plot::lines(
        "memory-settings",
        "The HTTP function across Lambda memory settings (p50)",
        "memory (MB)",
        "ms",
        &[
            ("Argon2 verify", curve(|c| c.1)),
            ("init", curve(|c| c.2)),
            ("first invocation", curve(|c| c.3)),
            ("warm invocation", curve(|c| c.4)),
        ],
    );
    Ok(lines)
}

/// Starts the release Lambda binary `name` with `env` (and the memory
/// setting) under `runtime`, inside `share` when given; returns it once it
/// has polled `/next`, with its init time in ms.
pub(super) async fn start_lambda(
    share: Option<&CpuShare>,
    name: &str,
    env: Vec<(&'static str, String)>,
    memory_mb: u64,
    runtime: &RuntimeApi,
) -> Result<(tokio::process::Child, f64), String> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut cmd = match share {
        Some(share) => lambda_command_with(share.command(&release(name)), &env),
        None => lambda_command(&release(name), &env),
    };
    let spawned = Instant::now();
    let mut child = cmd
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string())
        .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = if share.is_some() {
        let stamp = match stderr.next_line().await {
            Ok(Some(line)) => line.trim().parse::<u128>().ok(),
            _ => None,
        }
        .ok_or("the shell did not join the cgroup")?;
        // The stamp is wall-clock; turn it into an Instant.
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_nanos();
        Instant::now() - Duration::from_nanos(now_ns.saturating_sub(stamp).try_into().unwrap_or(0))
    } else {
        spawned
    };
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    Ok((child, ms(runtime.first_next().await - started)))
}
