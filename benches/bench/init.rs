//! Init and the first request of the HTTP Lambda binary against a hello-world Lambda, and the cost of reading the KEKs from Secrets Manager.

use super::*;

/// Init time and first request, vs a hello-world lambda_runtime.
pub(super) async fn init_and_first_request(stack: &Stack, event: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let (mut ours, mut hello, mut first, mut system) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..INIT_RUNS {
        for (reference, roots) in [(false, "amazon"), (true, "amazon"), (false, "system")] {
            let runtime = RuntimeApi::start().await;
            let bin = if reference {
                release("examples/hello_lambda")
            } else {
                release("publish-cancel")
            };
            let started = Instant::now();
            let mut child = lambda_command(&bin, &stack.lambda_env(&runtime.addr))
                .env("UFORGE_TLS_ROOTS", roots)
                .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run `scripts/bench`, which builds the release binaries first");
            let init = ms(runtime.first_next().await - started);
            if reference {
                hello.push(init);
            } else if roots == "system" {
                system.push(init);
            } else {
                ours.push(init);
                let sent = Instant::now();
                let Outcome::Response(_) = runtime.invoke(event).await else {
                    panic!("invocation error")
                };
                first.push(ms(sent.elapsed()));
            }
            child.kill().await.ok();
        }
    }
    let (ours, hello, first, system) = (sorted(ours), sorted(hello), sorted(first), sorted(system));
    rows.push(Row(
        "init: process start → first `/next` (ours, Amazon roots)".into(),
        format!("{:.1} ms", pct(&ours, 0.5)),
        format!(
            "{:.2}× hello-world ({:.1} ms); target ≤ 1.3×",
            pct(&ours, 0.5) / pct(&hello, 0.5),
            pct(&hello, 0.5)
        ),
    ));
    rows.push(Row(
        "init with the system's root certificates".into(),
        format!("{:.1} ms", pct(&system, 0.5)),
        format!(
            "{:.2}× hello-world (`UFORGE_TLS_ROOTS=system`)",
            pct(&system, 0.5) / pct(&hello, 0.5)
        ),
    ));
    rows.push(Row(
        "first invocation (Argon2 + new connections)".into(),
        format!("{:.1} ms", pct(&first, 0.5)),
        "p50 of cold processes".into(),
    ));
    rows
}

/// Init and the first API-key request of a cold process, with the KEK
/// inline (`UFORGE_API_KEY_KEK`) and from Secrets Manager
/// (`UFORGE_API_KEY_KEK_SECRET`, read on that first request): the
/// difference is what run-time KEK reading costs.
pub(super) async fn kek_costs(stack: &Stack) -> Vec<Row> {
    let secrets = aws_sdk_secretsmanager::Client::new(&common::sdk_config().await);
    let secret = format!("bench-kek-{}", std::process::id());
    secrets
        .create_secret()
        .name(&secret)
        .secret_string(base64::engine::general_purpose::STANDARD.encode(common::KEK))
        .send()
        .await
        .expect("create the KEK secret");
    let event = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("events/apigw-rest-cancel-apikey.json"),
    )
    .unwrap();
    let mut out = Vec::new();
    let mut medians = Vec::new();
    for (label, from_secret) in [("inline KEK", false), ("KEK from Secrets Manager", true)] {
        let (mut init, mut first) = (Vec::new(), Vec::new());
        for _ in 0..INIT_RUNS {
            let runtime = RuntimeApi::start().await;
            let mut command =
                lambda_command(&release("publish-cancel"), &stack.lambda_env(&runtime.addr));
            command.env("AWS_LAMBDA_LOG_LEVEL", "WARN");
            if from_secret {
                command
                    .env_remove("UFORGE_API_KEY_KEK")
                    .env("UFORGE_API_KEY_KEK_SECRET", &secret);
            }
            let started = Instant::now();
            let mut child = command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            init.push(ms(runtime.first_next().await - started));
            let sent = Instant::now();
            let Outcome::Response(r) = runtime.invoke(&event).await else {
                panic!("invocation error")
            };
            assert!(r["statusCode"] == 200, "{r}");
            first.push(ms(sent.elapsed()));
            child.kill().await.ok();
        }
        let (init, first) = (sorted(init), sorted(first));
        medians.push((pct(&init, 0.5), pct(&first, 0.5)));
        out.push(Row(
            format!("API-key request in a cold process, {label}: init / first request"),
            format!("{:.1} ms / {:.1} ms", pct(&init, 0.5), pct(&first, 0.5)),
            if from_secret {
                format!(
                    "init {:.2}×, first request +{:.1} ms (client + GetSecretValue ×2) vs inline",
                    medians[1].0 / medians[0].0,
                    medians[1].1 - medians[0].1
                )
            } else {
                "no Argon2 on this path".into()
            },
        ));
    }
    out
}
