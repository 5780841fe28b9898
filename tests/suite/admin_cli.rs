//! The operator CLI, as an operator runs it: on a seed file for the local
//! server, and on DynamoDB/SQS (moto) for the Lambda.

use crate::common;

use std::process::Stdio;

use common::{body_text, cancel_path, Req};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs uforge-admin with `args`, `stdin` and `env`.
async fn admin(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Out {
    let mut child = Command::new(env!("CARGO_BIN_EXE_uforge-admin"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("uforge-admin");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs uforge-admin with `args` and `env` on a pseudo-terminal (util-linux
/// `script`), as an operator at a terminal: everything it wrote there.
async fn admin_on_a_terminal(args: &[&str], env: &[(&str, &str)]) -> String {
    let command = std::iter::once(env!("CARGO_BIN_EXE_uforge-admin"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("script (util-linux)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn secret_from(out: &Out) -> (String, String) {
    let field = |name: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {}", out.stdout))
    };
    (field("public key:"), field("secret key:"))
}

#[tokio::test]
async fn passwords_never_come_from_the_command_line() {
    let out = admin(
        &[
            "--seed",
            "/tmp/unused.json",
            "user",
            "create",
            "eve",
            "--password",
            "pw",
        ],
        "",
        &[],
    )
    .await;
    assert!(!out.ok);
    assert!(out.stderr.contains("--password"), "{}", out.stderr);
}

#[tokio::test]
async fn seed_file_administration() {
    let dir = std::env::temp_dir().join(format!("uforge-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seed = dir.join("seed.json");
    let _ = std::fs::remove_file(&seed);
    let s = seed.to_str().unwrap();

    let created = admin(&["--seed", s, "user", "create", "erin"], "erin-pw\n", &[]).await;
    assert!(created.ok, "{}", created.stderr);
    let text = std::fs::read_to_string(&seed).unwrap();
    assert!(
        !text.contains("erin-pw"),
        "plain password written to the seed"
    );
    assert!(text.contains("$argon2id$"));
    assert!(
        !admin(&["--seed", s, "user", "create", "erin"], "x\n", &[])
            .await
            .ok,
        "duplicate user"
    );

    let issued = admin(&["--seed", s, "apikey", "issue", "erin"], "", &[]).await;
    assert!(issued.ok, "{}", issued.stderr);
    let (public, secret) = secret_from(&issued);
    let put = admin(
        &[
            "--seed",
            s,
            "publish",
            "put",
            "erin",
            "1",
            "1",
            "1",
            "--state",
            "publishing",
            "--percentage",
            "5",
        ],
        "",
        &[],
    )
    .await;
    assert!(put.ok, "{}", put.stderr);
    let show = admin(&["--seed", s, "user", "show", "erin"], "", &[]).await;
    assert!(
        show.stdout.contains("image_publish") && show.stdout.contains(&public),
        "{}",
        show.stdout
    );
    assert!(
        !show.stdout.contains(&secret) && !show.stdout.contains("argon2"),
        "show leaks: {}",
        show.stdout
    );

    // The seed drives a real server: the password and the key both work.
    let text = std::fs::read_to_string(&seed).unwrap();
    let parsed = publish_cancel::seed::Seed::parse(&text).unwrap();
    let api = common::memory_api(&parsed, false);
    let call = |req: Req| {
        let api = &api;
        async move { common::call(api, &req).await }
    };
    let path = cancel_path("erin", 1, 1, 1);
    assert_eq!(
        call(Req::delete(path.clone()).basic("erin", "erin-pw"))
            .await
            .status(),
        200
    );
    assert_eq!(
        call(Req::delete(path.clone()).signed(&public, &secret))
            .await
            .status(),
        200
    );

    assert!(
        admin(&["--seed", s, "apikey", "revoke", "erin", &public], "", &[])
            .await
            .ok
    );
    assert!(
        !admin(&["--seed", s, "apikey", "revoke", "erin", &public], "", &[])
            .await
            .ok,
        "revoking twice"
    );
    assert!(
        admin(&["--seed", s, "user", "disable", "erin"], "", &[])
            .await
            .ok
    );
    let text = std::fs::read_to_string(&seed).unwrap();
    assert!(
        !text.contains(&public) && text.contains("\"active\": false"),
        "{text}"
    );
}

#[tokio::test]
async fn dynamodb_administration_drives_the_endpoint() {
    let moto = &common::moto::moto().endpoint;
    let tag = format!("{}-admin", std::process::id());
    let users_table = format!("users-{tag}");
    let publishes_table = format!("publishes-{tag}");
    let kek = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(common::KEK)
    };
    let env = [
        ("AWS_ENDPOINT_URL", moto.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("USERS_TABLE", users_table.as_str()),
        ("PUBLISHES_TABLE", publishes_table.as_str()),
        ("UFORGE_API_KEY_KEK", kek.as_str()),
    ];
    let setup = admin(&["setup", "--queue-name", &format!("stop-{tag}")], "", &env).await;
    assert!(setup.ok, "{}", setup.stderr);
    let queue_url = setup
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("export STOP_QUEUE_URL="))
        .expect("queue url export")
        .to_owned();

    let created = admin(
        &["user", "create", "frank", "--entitlement", "image_publish"],
        "frank-pw\n",
        &env,
    )
    .await;
    assert!(created.ok, "{}", created.stderr);
    let issued = admin(&["apikey", "issue", "frank"], "", &env).await;
    assert!(issued.ok, "{}", issued.stderr);
    let (public, secret) = secret_from(&issued);
    let put = admin(
        &[
            "publish", "put", "frank", "4", "5", "6", "--state", "queued",
        ],
        "",
        &env,
    )
    .await;
    assert!(put.ok, "{}", put.stderr);

    let sdk = common::sdk_config().await;
    let api = publish_cancel::startup::aws_api(
        &sdk,
        common::aws_settings(&users_table, &publishes_table, &queue_url),
        publish_cancel::startup::Options::new("/api"),
    );
    let call = |req: Req| {
        let api = &api;
        async move { common::call(api, &req).await }
    };
    let path = cancel_path("frank", 4, 5, 6);
    let resp = call(Req::delete(path.clone()).signed(&public, &secret)).await;
    assert_eq!(resp.status(), 200, "{}", body_text(&resp));
    // A key pair migrated from UForge keeps working.
    let imported = admin(
        &["apikey", "import", "frank", "PUBKEY123"],
        "SECRETKEY456\n",
        &env,
    )
    .await;
    assert!(imported.ok, "{}", imported.stderr);
    // What was read from stdin is never printed back: not a password, not
    // an imported secret (an issued one is shown once, by design).
    for out in [&created, &imported] {
        let printed = format!("{}{}", out.stdout, out.stderr);
        common::assert_no_secrets("uforge-admin's output", &printed, &["frank-pw"]);
    }
    assert_eq!(
        call(Req::delete(path.clone()).signed("PUBKEY123", "SECRETKEY456"))
            .await
            .status(),
        200
    );
    let show = admin(&["publish", "show", "frank", "4", "5", "6"], "", &env).await;
    assert!(
        show.stdout.contains("<cancelled>true</cancelled>")
            && show.stdout.contains("state: cancelled"),
        "{}",
        show.stdout
    );

    // Revocations take effect on the next request.
    assert!(
        admin(&["apikey", "revoke", "frank", &public], "", &env)
            .await
            .ok
    );
    assert_eq!(
        call(Req::delete(path.clone()).signed(&public, &secret))
            .await
            .status(),
        401
    );
    assert_eq!(
        call(Req::delete(path.clone()).basic("frank", "frank-pw"))
            .await
            .status(),
        200
    );
    assert!(
        admin(&["user", "revoke", "frank", "image_publish"], "", &env)
            .await
            .ok
    );
    assert_eq!(
        call(Req::delete(path.clone()).basic("frank", "frank-pw"))
            .await
            .status(),
        403
    );
    assert!(
        admin(&["user", "grant", "frank", "image_publish"], "", &env)
            .await
            .ok
    );
    assert!(admin(&["user", "disable", "frank"], "", &env).await.ok);
    assert_eq!(
        call(Req::delete(path.clone()).basic("frank", "frank-pw"))
            .await
            .status(),
        401
    );
    assert!(admin(&["user", "enable", "frank"], "", &env).await.ok);
    let changed = admin(&["user", "set-password", "frank"], "frank-pw-2\n", &env).await;
    assert!(changed.ok, "{}", changed.stderr);
    common::assert_no_secrets(
        "uforge-admin set-password's output",
        &format!("{}{}", changed.stdout, changed.stderr),
        &["frank-pw"],
    );
    assert_eq!(
        call(Req::delete(path.clone()).basic("frank", "frank-pw"))
            .await
            .status(),
        401
    );
    assert_eq!(
        call(Req::delete(path).basic("frank", "frank-pw-2"))
            .await
            .status(),
        200
    );
    assert!(
        !admin(&["user", "disable", "nobody"], "", &env).await.ok,
        "unknown user is an error"
    );
}

/// `publish repair` on hand-written items in moto: a legacy cancel gets its
/// audit backfilled (with the defaults it already read as), an item with a
/// state we do not know is listed with its key, a parked stop goes back to
/// pending, a pending stop outside the reconciler's index (no
/// `cancelledAt`) is brought into it; `--dry-run` writes nothing. Then the
/// reconciler sends those stops, keyed by the items' primary keys whatever
/// their `aid`/`itid`/`pitid` copies say. Messages the services would
/// refuse are refused at the door.
#[tokio::test]
async fn publish_repair_backfills_lists_and_requeues() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use publish_cancel::adapters::dynamodb::attr;

    let stack = common::Stack::new().await;
    let moto = &common::moto::moto().endpoint;
    let env = [
        ("AWS_ENDPOINT_URL", moto.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("USERS_TABLE", stack.users_table.as_str()),
        ("PUBLISHES_TABLE", stack.publishes_table.as_str()),
    ];
    let s = |v: &str| AttributeValue::S(v.into());
    let n = |v: i64| AttributeValue::N(v.to_string());
    let put = |pitid: i64, extra: Vec<(&'static str, AttributeValue)>| {
        let mut attrs = vec![
            (attr::UID, s("alice")),
            (attr::PUBLISH_KEY, s(&format!("1/2/{pitid}"))),
            (attr::AID, n(1)),
            (attr::ITID, n(2)),
            (attr::PITID, n(pitid)),
            (attr::STATE, s("cancelled")),
        ];
        attrs.extend(extra);
        let stack = &stack;
        async move { stack.put_raw_publish(&attrs).await }
    };
    put(
        901,
        vec![
            (attr::CANCEL_REQUEST_ID, s("legacy")),
            (attr::CANCELLED_AT, n(5)),
        ],
    )
    .await;
    put(902, vec![(attr::STATE, s("paused"))]).await;
    put(
        903,
        vec![
            (attr::CANCEL_REQUEST_ID, s("parked")),
            (attr::CANCELLED_AT, n(6)),
            (attr::CANCEL_SOURCE, s("sqs")),
            (attr::CANCELLED_BY, s("AIDAEXAMPLE")),
            (attr::STOP_UNDELIVERABLE, s("InvalidMessageContents")),
        ],
    )
    .await;

    // Pending, but never given a `cancelledAt` (by hand): not in the index.
    put(
        904,
        vec![
            (attr::CANCEL_REQUEST_ID, s("handmade")),
            (attr::LAST_MODIFIED, n(7)),
            (attr::STOP_PENDING, s("pending")),
        ],
    )
    .await;
    // Pending, its key's copies wrong: the primary key is the key.
    put(
        905,
        vec![
            (attr::AID, n(999)),
            (attr::CANCEL_REQUEST_ID, s("miscopied")),
            (attr::CANCELLED_AT, n(8)),
            (attr::STOP_PENDING, s("pending")),
        ],
    )
    .await;

    // Pending, its mark a value no shard has (foreign tooling): read as
    // pending, in no shard the reconciler reads.
    put(
        906,
        vec![
            (attr::CANCEL_REQUEST_ID, s("foreign-mark")),
            (attr::CANCELLED_AT, n(9)),
            (attr::STOP_PENDING, s("yes")),
        ],
    )
    .await;
    // Pending, its time in milliseconds: past every cutoff of the index.
    let millis = publish_cancel::domain::Timestamp::now().0 * 1000 - 3_600_000;
    put(
        907,
        vec![
            (attr::CANCEL_REQUEST_ID, s("in-millis")),
            (attr::CANCELLED_AT, n(millis)),
            (attr::STOP_PENDING, s("pending-0")),
        ],
    )
    .await;

    let before = stack.tables().await;
    let dry = admin(
        &["publish", "repair", "--dry-run", "--requeue-undeliverable"],
        "",
        &env,
    )
    .await;
    assert!(dry.ok, "{}", dry.stderr);
    assert!(
        dry.stdout
            .contains("5 legacy cancel(s) would be backfilled"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("1 parked stop(s) would be re-queued"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .contains("1 pending stop(s) would be brought into the reconciler's index"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("publishKey=\"1/2/902\""),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .contains("1 pending mark(s) would be moved to their shard")
            && dry
                .stdout
                .contains("1 cancel time(s) in milliseconds would be rewritten in seconds"),
        "{}",
        dry.stdout
    );
    assert_eq!(stack.tables().await, before, "a dry run writes nothing");
    // Its progress, on a pipe: plain lines on the error stream, the last
    // with the final counts; the results alone on the standard output.
    let progress: Vec<&str> = dry
        .stderr
        .lines()
        .filter(|l| l.starts_with("repair: "))
        .collect();
    assert!(!progress.is_empty(), "{}", dry.stderr);
    assert!(
        !dry.stderr.contains('\r') && !dry.stderr.contains('\x1b'),
        "{:?}",
        dry.stderr
    );
    let scanned = dry
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("scanned "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_default()
        .to_owned();
    assert!(
        progress
            .last()
            .unwrap()
            .starts_with(&format!("repair: {scanned} scanned, 9 fixed, 1 failed")),
        "{progress:?} vs {}",
        dry.stdout
    );
    assert!(!dry.stdout.contains("repair: "), "{}", dry.stdout);
    // On a terminal: one line rewritten in place, then the results.
    let tty = admin_on_a_terminal(
        &["publish", "repair", "--dry-run", "--requeue-undeliverable"],
        &env,
    )
    .await;
    assert!(
        tty.contains("\rrepair: ") && tty.contains("items/s\x1b[K"),
        "{tty:?}"
    );
    assert!(tty.contains("would be backfilled"), "{tty:?}");
    assert_eq!(stack.tables().await, before, "a dry run writes nothing");

    let done = admin(&["publish", "repair", "--requeue-undeliverable"], "", &env).await;
    assert!(done.ok, "{}", done.stderr);
    let legacy = stack.publish_item("alice", "1/2/901").await.unwrap();
    assert_eq!(legacy[attr::CANCEL_SOURCE].as_s().unwrap(), "http");
    assert_eq!(legacy[attr::CANCELLED_BY].as_s().unwrap(), "alice");
    let parked = stack.publish_item("alice", "1/2/903").await.unwrap();
    assert!(parked.contains_key(attr::STOP_PENDING));
    assert!(!parked.contains_key(attr::STOP_UNDELIVERABLE));
    assert_eq!(parked[attr::CANCEL_SOURCE].as_s().unwrap(), "sqs", "kept");
    assert_eq!(
        stack.publish_item("alice", "1/2/902").await.unwrap()[attr::STATE]
            .as_s()
            .unwrap(),
        "paused",
        "an unreadable item is reported, never rewritten"
    );
    assert_eq!(
        stack.publish_item("alice", "1/2/904").await.unwrap()[attr::CANCELLED_AT]
            .as_n()
            .unwrap(),
        "7",
        "the stamp's time, as the record already read"
    );
    // A second run has nothing left to do.
    let again = admin(&["publish", "repair"], "", &env).await;
    assert!(
        again.stdout.contains("0 legacy cancel(s) backfilled")
            && again.stdout.contains("0 pending stop(s) brought")
            && again.stdout.contains("0 pending mark(s) moved")
            && again
                .stdout
                .contains("0 cancel time(s) in milliseconds rewritten"),
        "{}",
        again.stdout
    );

    // The reconciler now sends each pending stop, to the right key, with
    // the record's id, and clears the right item.
    let cancel = publish_cancel::cancel::Canceller {
        publishes: publish_cancel::adapters::dynamodb::DynamoPublishes::new(
            stack.dynamo.clone(),
            &stack.publishes_table,
        ),
        queue: publish_cancel::adapters::sqs::SqsStopQueue::new(
            stack.sqs.clone(),
            &stack.queue_url,
        ),
    };
    let report = publish_cancel::reconcile::reconcile(
        &cancel,
        publish_cancel::domain::Timestamp::now,
        publish_cancel::reconcile::Plan {
            grace: std::time::Duration::from_secs(60),
            page: 10,
            in_flight: 64,
        },
        std::time::Instant::now() + std::time::Duration::from_secs(30),
        &Default::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.resent, 5, "{report:?}");
    let mut sent: Vec<(i64, i64, String)> = stack
        .drain()
        .await
        .iter()
        .map(|m| {
            let stop: publish_cancel::ports::StopMessage =
                serde_json::from_str(m.body().unwrap()).unwrap();
            (stop.aid, stop.pitid, stop.request_id)
        })
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            (1, 903, "parked".to_owned()),
            (1, 904, "handmade".to_owned()),
            (1, 905, "miscopied".to_owned()),
            (1, 906, "foreign-mark".to_owned()),
            (1, 907, "in-millis".to_owned())
        ]
    );
    for pitid in [903, 904, 905, 906, 907] {
        let item = stack
            .publish_item("alice", &format!("1/2/{pitid}"))
            .await
            .unwrap();
        assert!(!item.contains_key(attr::STOP_PENDING), "{pitid}");
    }

    // Texts the services refuse never get in.
    for bad in ["stop \u{ffff}", "a\u{1b}[31m", &"x".repeat(1025)] {
        let out = admin(
            &[
                "publish",
                "put",
                "alice",
                "1",
                "2",
                "950",
                "--state",
                "queued",
                "--message",
                bad,
            ],
            "",
            &env,
        )
        .await;
        assert!(
            !out.ok && out.stderr.contains("--message"),
            "{bad:?}: {}",
            out.stderr
        );
    }
}

/// Issue 25 (2): `publish put` never undoes a cancel behind the service's
/// back: it refuses to make a cancelled record (no stamp, no stop), refuses
/// to replace one (its pending stop would be lost with its mark), and with
/// `--force` first sends the stop its workers may not have had, or refuses
/// if it cannot. Each refusal writes nothing.
#[tokio::test]
async fn publish_put_never_undoes_a_cancel() {
    use publish_cancel::adapters::dynamodb::attr;
    use publish_cancel::domain::{
        CancelAudit, CancelStamp, PublishRecord, PublishState, Timestamp,
    };

    let stack = common::Stack::new().await;
    let moto = &common::moto::moto().endpoint;
    let env = [
        ("AWS_ENDPOINT_URL", moto.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("USERS_TABLE", stack.users_table.as_str()),
        ("PUBLISHES_TABLE", stack.publishes_table.as_str()),
    ];
    // A cancel whose process died before its stop was sent.
    let key = common::alice_key(4);
    let pending = PublishRecord::new(key.clone(), PublishState::Queued)
        .cancelled(
            &CancelStamp::new(
                "died-before-sending".into(),
                Timestamp(Timestamp::now().0 - 600),
                CancelAudit::http(&key.uid),
            ),
            &publish_cancel::cancel::new_attempt(),
        )
        .unwrap();
    stack.put_publish(&pending).await;
    let before = stack.tables().await;

    let put = |pitid: &'static str, state: &'static str, force: bool| {
        let mut args = vec!["publish", "put", "alice", "1", "2", pitid, "--state", state];
        if force {
            args.push("--force");
        }
        args
    };
    let refused = admin(&put("4", "publishing", false), "", &env).await;
    assert!(
        !refused.ok
            && refused.stderr.contains("is cancelled")
            && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    let made = admin(&put("960", "cancelled", true), "", &env).await;
    assert!(
        !made.ok && made.stderr.contains("--state cancelled"),
        "{}",
        made.stderr
    );
    // Forced, but with nowhere to send the pending stop.
    let nowhere = admin(&put("4", "publishing", true), "", &env).await;
    assert!(
        !nowhere.ok && nowhere.stderr.contains("STOP_QUEUE_URL"),
        "{}",
        nowhere.stderr
    );
    assert_eq!(stack.tables().await, before, "every refusal wrote nothing");
    assert_eq!(stack.queue_depth().await, 0);

    // Forced, with the queue: the stop goes first, then the record.
    let mut with_queue = env.to_vec();
    with_queue.push(("STOP_QUEUE_URL", stack.queue_url.as_str()));
    let forced = admin(&put("4", "publishing", true), "", &with_queue).await;
    assert!(forced.ok, "{}", forced.stderr);
    assert!(
        forced.stderr.contains("forced") && forced.stderr.contains("died-before-sending"),
        "{}",
        forced.stderr
    );
    let stops = stack.drain().await;
    assert_eq!(stops.len(), 1);
    assert!(stops[0].body().unwrap().contains("died-before-sending"));
    let item = stack.publish_item("alice", "1/2/4").await.unwrap();
    assert_eq!(item[attr::STATE].as_s().unwrap(), "publishing");
    assert!(!item.contains_key(attr::STOP_PENDING));

    // A running record is replaced as before, without --force.
    let plain = admin(&put("3", "failed", false), "", &env).await;
    assert!(plain.ok, "{}", plain.stderr);
}
