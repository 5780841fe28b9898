//! Warm latency through the local HTTP front door against the bare SDK round trip, and the timing of 401s (unknown login vs wrong password).

use super::*;

/// Warm latency through the local HTTP front door vs the SDK floor.
pub(super) async fn warm_latency(stack: &Stack, auth: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let fresh = |offset: i64| async move {
        for i in 0..WARM_REQUESTS as i64 {
            let rec = PublishRecord::new(common::alice_key(offset + i), PublishState::Publishing);
            stack.put_publish(&rec).await;
        }
    };
    fresh(10_000).await;
    fresh(20_000).await;
    let api = Arc::new(
        stack
            .api_via(
                &common::moto::moto().endpoint,
                &common::moto::moto().endpoint,
            )
            .await,
    );
    let addr = common::serve_locally(api.clone()).await;
    // Warm the credential cache and the connections.
    common::http_client::send(
        &addr,
        "DELETE",
        &cancel_path("alice", 1, 2, 4),
        &[("Authorization", auth)],
    )
    .await;
    let (mut front, mut floor) = (Vec::new(), Vec::new());
    let users = DynamoUsers::new(stack.dynamo.clone(), &stack.users_table);
    let publishes = DynamoPublishes::new(stack.dynamo.clone(), &stack.publishes_table);
    let queue = SqsStopQueue::new(stack.sqs.clone(), &stack.queue_url);
    let alice = Login::parse("alice").unwrap();
    for i in 0..WARM_REQUESTS as i64 {
        // Interleaved, so both see the same machine noise.
        let t = Instant::now();
        let r = common::http_client::send(
            &addr,
            "DELETE",
            &cancel_path("alice", 1, 2, 10_000 + i),
            &[("Authorization", auth)],
        )
        .await;
        front.push(ms(t.elapsed()));
        assert_eq!(r.status, 200);
        let t = Instant::now();
        let stamp = CancelStamp::new(
            format!("floor-{i}").into(),
            Timestamp::now(),
            publish_cancel::domain::CancelAudit::http(&alice),
        );
        users.get(&alice).await.unwrap().unwrap();
        let k = common::alice_key(20_000 + i);
        let attempt = publish_cancel::cancel::new_attempt();
        publishes.cancel(&k, &stamp, &attempt).await.unwrap();
        queue.send(&StopMessage::new(&k, &stamp)).await.unwrap();
        publishes.stop_sent(&k, &attempt).await.unwrap();
        floor.push(ms(t.elapsed()));
    }
    let (front, floor) = (sorted(front), sorted(floor));
    rows.push(Row(
        "warm cancel via local HTTP front door, p50".into(),
        format!("{:.2} ms", pct(&front, 0.5)),
        format!(
            "{:.2}× SDK floor ({:.2} ms); target ≤ 1.10×",
            pct(&front, 0.5) / pct(&floor, 0.5),
            pct(&floor, 0.5)
        ),
    ));
    rows.push(Row(
        "warm cancel via local HTTP front door, p99".into(),
        format!("{:.2} ms", pct(&front, 0.99)),
        format!(
            "{:.2}× SDK floor p99 ({:.2} ms)",
            pct(&front, 0.99) / pct(&floor, 0.99),
            pct(&floor, 0.99)
        ),
    ));
    rows
}

/// 401 timing: unknown login vs wrong password.
pub(super) async fn unauthorised_timing() -> Vec<Row> {
    let mut rows = Vec::new();
    let api = memory_api(false);
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for _ in 0..60 {
        for (login, out) in [("nobody", &mut unknown), ("alice", &mut wrong)] {
            let req = Req::delete(cancel_path(login, 1, 2, 3)).basic(login, "not-the-password");
            let t = Instant::now();
            assert_eq!(common::call(&api, &req).await.status(), 401);
            out.push(ms(t.elapsed()));
        }
    }
    let (unknown, wrong) = (sorted(unknown), sorted(wrong));
    rows.push(Row(
        "401 unknown login, p50 [p10–p90]".into(),
        format!(
            "{:.1} ms [{:.1}–{:.1}]",
            pct(&unknown, 0.5),
            pct(&unknown, 0.1),
            pct(&unknown, 0.9)
        ),
        format!(
            "{:.3}× the wrong-password 401",
            pct(&unknown, 0.5) / pct(&wrong, 0.5)
        ),
    ));
    rows.push(Row(
        "401 wrong password, p50 [p10–p90]".into(),
        format!(
            "{:.1} ms [{:.1}–{:.1}]",
            pct(&wrong, 0.5),
            pct(&wrong, 0.1),
            pct(&wrong, 0.9)
        ),
        "both verify one Argon2id hash".into(),
    ));
    rows
}
