//! Port contract tests: one suite of behaviours per port (`Users`,
//! `Publishes`, `StopQueue`, `AdminStore`, `KekSource`), run against every
//! adapter: in memory (or the seed file, or fixed KEKs) and DynamoDB, SQS or
//! Secrets Manager on the emulator. The local server and the unit
//! tests run on the first, production on the second: this is what says they
//! behave alike.

use std::future::Future;

use publish_cancel::adapters::dynamodb::{DynamoPublishes, DynamoUsers};
use publish_cancel::adapters::memory::{MemoryPublishes, MemoryQueue, MemoryUsers};
use publish_cancel::adapters::sqs::SqsStopQueue;
use publish_cancel::auth::{KekSource, Sealer};
use publish_cancel::domain::{
    ApiKey, AttemptToken, AuditText, CancelAudit, CancelSource, CancelStamp, Claim, Login,
    PublishKey, PublishRecord, PublishState, Timestamp, User,
};
use publish_cancel::ports::{
    AdminStore, CancelFound, CancelWrites, PendingStops, PublishReader, Replacing, StopMessage,
    StopQueue, Users,
};

use crate::common::{self, Stack};

/// What a contract needs besides the port: putting data in, seeing what
/// was sent.
trait Arrange {
    fn put_user(&self, user: &User) -> impl Future<Output = ()>;
    fn put_publish(&self, record: &PublishRecord) -> impl Future<Output = ()>;
    /// Every stop message sent since the last call.
    fn take_stops(&self) -> impl Future<Output = Vec<StopMessage>>;
}

struct InMemory {
    users: MemoryUsers,
    publishes: MemoryPublishes,
    queue: MemoryQueue,
    /// How many of the queue's messages `take_stops` has returned.
    taken: std::cell::Cell<usize>,
}

impl InMemory {
    fn new() -> Self {
        InMemory {
            users: MemoryUsers::default(),
            publishes: MemoryPublishes::default(),
            queue: MemoryQueue::default(),
            taken: std::cell::Cell::new(0),
        }
    }
}

impl Arrange for InMemory {
    async fn put_user(&self, user: &User) {
        self.users.put(user.clone());
    }

    async fn put_publish(&self, record: &PublishRecord) {
        self.publishes.put(record.clone());
    }

    async fn take_stops(&self) -> Vec<StopMessage> {
        // The memory queue keeps everything: return what is new.
        let all = self.queue.sent();
        let taken = self.taken.replace(all.len());
        all[taken.min(all.len())..].to_vec()
    }
}

impl Arrange for Stack {
    async fn put_user(&self, user: &User) {
        Stack::put_user(self, user).await
    }

    async fn put_publish(&self, record: &PublishRecord) {
        Stack::put_publish(self, record).await
    }

    async fn take_stops(&self) -> Vec<StopMessage> {
        self.drain()
            .await
            .iter()
            .map(|m| serde_json::from_str(m.body().expect("a body")).expect("a stop message"))
            .collect()
    }
}

fn key(uid: &str, aid: i64, itid: i64, pitid: i64) -> PublishKey {
    PublishKey {
        uid: Login::parse(uid).unwrap(),
        aid: aid.into(),
        itid: itid.into(),
        pitid: pitid.into(),
    }
}

/// A stamp whose audit uses every field, so the contract sees them kept.
fn stamp(id: &str, at: i64) -> CancelStamp {
    let text = |t: &str| AuditText::parse(t).unwrap();
    CancelStamp::new(
        id.into(),
        Timestamp(at),
        CancelAudit {
            source: CancelSource::Sqs,
            cancelled_by: text(&format!("sender-of-{id}")),
            reason: Some(text(&format!("reason {id}"))),
            requested_by: Some(text("budget-watchdog")),
            origin: Some(text("account 123456789012 source acme.watchdog")),
        },
    )
}

// --- the contracts ---

async fn users_contract(users: &impl Users, arrange: &impl Arrange) {
    let login = Login::parse("contract-user").unwrap();
    assert_eq!(users.get(&login).await.unwrap(), None, "an unknown login");
    let mut user = User {
        login: login.clone(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        active: true,
        entitlements: vec!["image_publish".into(), "image_generate".into()],
        api_keys: vec![ApiKey {
            public_key: "PUB".into(),
            sealed_secret: "v2:00112233:AAAA".into(),
        }],
    };
    arrange.put_user(&user).await;
    let got = users.get(&login).await.unwrap().expect("the user");
    assert_eq!(got.login, user.login);
    assert_eq!(got.password_hash, user.password_hash);
    assert!(got.active);
    let mut entitlements = got.entitlements.clone();
    entitlements.sort();
    assert_eq!(entitlements, ["image_generate", "image_publish"]);
    assert_eq!(got.api_keys, user.api_keys);

    // Changes are seen on the next read (no caching in the adapter).
    user.active = false;
    user.password_hash = None;
    user.api_keys.clear();
    arrange.put_user(&user).await;
    let got = users.get(&login).await.unwrap().expect("the user");
    assert!(!got.active);
    assert_eq!(got.password_hash, None);
    assert!(got.api_keys.is_empty());
}

async fn publishes_contract(
    publishes: &(impl CancelWrites + PendingStops + PublishReader),
    arrange: &impl Arrange,
) {
    let running = key("contract-owner", 70, 80, 1);
    let queued = key("contract-owner", 70, 80, 2);
    let published = key("contract-owner", 70, 80, 3);
    let failed = key("contract-owner", 70, 80, 4);
    for (k, state) in [
        (&running, PublishState::Publishing),
        (&queued, PublishState::Queued),
        (&published, PublishState::Published),
        (&failed, PublishState::Failed),
    ] {
        let mut record = PublishRecord::new(k.clone(), state);
        record.percentage = Some(40);
        record.created = Some(Timestamp(5));
        arrange.put_publish(&record).await;
    }

    // A running publish is cancelled in one step: state, time, message,
    // stamp, a pending stop claimed by the attempt, the attempt itself;
    // the rest of the record is kept.
    let (a, b, c) = (attempt(1), attempt(2), attempt(3));
    let first = stamp("first", 1_000);
    let CancelFound::Cancelled(after) = publishes.cancel(&running, &first, &a).await.unwrap()
    else {
        panic!("a running publish is cancelled");
    };
    assert_eq!(after.state, PublishState::Cancelled);
    assert_eq!(after.cancel, Some(first.clone()));
    assert_eq!(after.cancel_attempt.as_ref(), Some(&a));
    assert!(after.stop_pending);
    assert_eq!(after.stop_claim, Some(Claim::by(&a, first.at)));
    assert_eq!(after.last_modified, Some(first.at));
    assert_eq!(
        after.message.as_deref(),
        Some(PublishRecord::CANCELLED_MESSAGE)
    );
    assert_eq!(
        (after.percentage, after.created),
        (Some(40), Some(Timestamp(5)))
    );
    let q = attempt(9);
    assert!(matches!(
        publishes
            .cancel(&queued, &stamp("q", 1_001), &q)
            .await
            .unwrap(),
        CancelFound::Cancelled(_)
    ));

    // A second cancel changes nothing and reports the first one's stamp and
    // attempt: another attempt can tell it is not its own, the first can.
    let CancelFound::AlreadyCancelled(again) = publishes
        .cancel(&running, &stamp("second", 2_000), &b)
        .await
        .unwrap()
    else {
        panic!("a cancelled publish is already cancelled");
    };
    assert_eq!(again, after);
    assert_ne!(again.cancel_attempt.as_ref(), Some(&b));
    // The status route's read: the record as stored, or none.
    assert_eq!(publishes.read(&running).await.unwrap(), Some(after.clone()));
    assert_eq!(
        publishes
            .read(&key("contract-owner", 70, 80, 99))
            .await
            .unwrap(),
        None
    );

    // Finished publishes are reported as they are, unchanged.
    for (k, state) in [
        (&published, PublishState::Published),
        (&failed, PublishState::Failed),
    ] {
        let CancelFound::Finished(record) =
            publishes.cancel(k, &stamp("f", 3_000), &b).await.unwrap()
        else {
            panic!("{state} is finished");
        };
        assert_eq!((record.state, record.cancel), (state, None));
        assert!(!record.stop_pending);
    }

    // The whole key: the same pitid elsewhere is another publish.
    for other in [
        key("contract-owner", 71, 80, 1),
        key("contract-owner", 70, 81, 1),
        key("contract-other", 70, 80, 1),
        key("contract-owner", 70, 80, 99),
    ] {
        assert_eq!(
            publishes
                .cancel(&other, &stamp("x", 4_000), &b)
                .await
                .unwrap(),
            CancelFound::NotFound,
            "{other}"
        );
    }

    // Pending stops: cancelled before the cutoff, not yet confirmed,
    // oldest first, a page at a time.
    assert_eq!(
        pending_keys(publishes, Timestamp(1_001), 10).await,
        std::slice::from_ref(&running),
        "before the cutoff only"
    );
    assert_eq!(
        pending_keys(publishes, Timestamp(5_000), 10).await,
        [running.clone(), queued.clone()]
    );
    assert_eq!(
        pending_keys(publishes, Timestamp(5_000), 1).await,
        [running.clone(), queued.clone()],
        "pages of one reach every pending stop, in order"
    );
    let page = every_shard(publishes, Timestamp(5_000)).await;
    assert!(page
        .records
        .iter()
        .all(|r| r.stop_pending && r.state == PublishState::Cancelled));
    assert!(page.unreadable.is_empty());

    // Claims. The cancel's write holds one for its attempt: another attempt
    // gets it only once it is stale; its own attempt again at once (a
    // retried claim whose answer was lost); of two at one moment, one.
    let claim = |by: &AttemptToken, at: i64| Claim::by(by, Timestamp(at));
    let take = |k: &PublishKey, c: Claim, stale: i64| {
        let k = k.clone();
        async move {
            publishes
                .claim_stop(&k, &c, Timestamp(stale), Timestamp(1))
                .await
                .unwrap()
                .inspect(|r| assert_eq!(r.stop_claim.as_ref(), Some(&c), "the record as claimed"))
                .is_some()
        }
    };
    assert!(!take(&running, claim(&b, 1_010), 1_000).await);
    assert!(take(&running, claim(&a, 1_010), 1_000).await, "its own");
    assert!(take(&running, claim(&b, 1_040), 1_011).await);
    assert!(!take(&running, claim(&c, 1_040), 1_011).await);
    // Ending an attempt is for its holder only: a lapsed holder's late
    // release, clearing or parking writes nothing.
    for lapsed in [
        publishes.release_stop(&running, &a).await.unwrap(),
        publishes.stop_sent(&running, &a).await.unwrap(),
        publishes
            .stop_undeliverable(&running, &a, "late")
            .await
            .unwrap(),
    ] {
        assert!(!lapsed);
    }
    assert!(
        !take(&running, claim(&c, 1_041), 1_011).await,
        "b still holds it"
    );
    // Released after a failed send: claimable at once.
    assert!(publishes.release_stop(&running, &b).await.unwrap());
    assert!(take(&running, claim(&c, 1_041), 1_011).await);
    // Never for a record that is not pending, or absent.
    for k in [&published, &key("contract-owner", 70, 80, 97)] {
        assert!(!take(k, claim(&c, 9_000), 9_000).await);
    }

    // Confirming a stop clears the mark and the claim; twice, or for no
    // record, writes and creates nothing.
    assert!(publishes.stop_sent(&running, &c).await.unwrap());
    assert!(!publishes.stop_sent(&running, &c).await.unwrap());
    assert!(!publishes
        .stop_sent(&key("contract-owner", 70, 80, 98), &c)
        .await
        .unwrap());
    assert_eq!(
        pending_keys(publishes, Timestamp(5_000), 10).await,
        std::slice::from_ref(&queued)
    );
    let CancelFound::AlreadyCancelled(cleared) = publishes
        .cancel(&running, &stamp("third", 6_000), &b)
        .await
        .unwrap()
    else {
        panic!("still cancelled");
    };
    assert!(!cleared.stop_pending);
    assert_eq!(cleared.stop_claim, None);
    assert!(!take(&running, claim(&c, 9_000), 9_000).await);

    // A stop the queue refuses for good is parked by its claim's holder:
    // no longer pending, the reason kept (bounded), never claimable.
    assert!(!publishes
        .stop_undeliverable(&queued, &b, "not the holder")
        .await
        .unwrap());
    assert!(publishes
        .stop_undeliverable(&queued, &q, &"refused ".repeat(200))
        .await
        .unwrap());
    assert!(pending_keys(publishes, Timestamp(5_000), 10)
        .await
        .is_empty());
    let CancelFound::AlreadyCancelled(parked) = publishes
        .cancel(&queued, &stamp("fourth", 7_000), &b)
        .await
        .unwrap()
    else {
        panic!("still cancelled");
    };
    assert!(!parked.stop_pending);
    let why = parked.stop_undeliverable.expect("the reason");
    assert!(why.starts_with("refused") && why.chars().count() <= 512);
    assert!(!take(&queued, claim(&c, 9_000), 9_000).await);
    // Parking a record that is not pending changes nothing.
    assert!(!publishes
        .stop_undeliverable(&running, &c, "late")
        .await
        .unwrap());
    assert_eq!(
        publishes
            .cancel(&key("contract-owner", 70, 80, 98), &stamp("y", 1), &b)
            .await
            .unwrap(),
        CancelFound::NotFound,
        "stop_sent and stop_undeliverable created no record"
    );
    let CancelFound::AlreadyCancelled(untouched) = publishes
        .cancel(&running, &stamp("fifth", 8_000), &b)
        .await
        .unwrap()
    else {
        panic!("still cancelled");
    };
    assert_eq!(untouched.stop_undeliverable, None);

    // Issue 33 (5): a record carrying an earlier cancel's fields (its
    // audit texts, a parked stop's reason) that runs again is cancelled as
    // the domain says: the new cancel's audit only, nothing parked. Both
    // adapters alike (DynamoDB kept the stale fields, and the record then
    // looked parked).
    let again = key("contract-owner", 70, 80, 6);
    let mut stale = PublishRecord::new(again.clone(), PublishState::Queued);
    stale.cancel = Some(stamp("long-ago", 500));
    stale.stop_undeliverable = Some("refused long ago".into());
    arrange.put_publish(&stale).await;
    let bare = CancelStamp::new(
        "bare".into(),
        Timestamp(2_000),
        CancelAudit::http(&again.uid),
    );
    let CancelFound::Cancelled(fresh) = publishes.cancel(&again, &bare, &a).await.unwrap() else {
        panic!("a queued record is cancelled");
    };
    assert_eq!(fresh.stop_undeliverable, None, "not parked");
    assert!(fresh.stop_pending);
    assert_eq!(
        fresh.cancel.as_ref(),
        Some(&bare),
        "this cancel's audit only"
    );
    assert_eq!(publishes.read(&again).await.unwrap().as_ref(), Some(&fresh));
    // Ending an attempt needs a cancelled record: on a record put back to
    // running with the mark and the claim left on it (by hand), nothing.
    let mut running_again = fresh.clone();
    running_again.state = PublishState::Publishing;
    arrange.put_publish(&running_again).await;
    assert!(!publishes.stop_sent(&again, &a).await.unwrap());
    assert!(!publishes.release_stop(&again, &a).await.unwrap());
    let mut done = fresh.clone();
    done.stop_pending = false;
    done.stop_claim = None;
    arrange.put_publish(&done).await;

    // A pending mark on a publish that is not cancelled (only by hand) is
    // never a stop to send: listed apart, never claimable.
    let odd = key("contract-owner", 70, 80, 5);
    let mut marked = PublishRecord::new(odd.clone(), PublishState::Publishing);
    marked.cancel = Some(stamp("by-hand", 1_500));
    marked.stop_pending = true;
    arrange.put_publish(&marked).await;
    let page = every_shard(publishes, Timestamp(5_000)).await;
    assert!(page.records.is_empty(), "{:?}", page.records);
    assert_eq!(page.unreadable.len(), 1, "{:?}", page.unreadable);
    assert!(!take(&odd, claim(&c, 9_000), 9_000).await);
}

fn attempt(n: u8) -> AttemptToken {
    AttemptToken::from_bytes([n; 16])
}

/// Every pending stop before `cutoff`, each shard read `page` at a time,
/// oldest first over all shards (each shard is oldest first: checked).
async fn pending_keys(
    publishes: &impl PendingStops,
    cutoff: Timestamp,
    page: usize,
) -> Vec<PublishKey> {
    let mut records = Vec::new();
    for shard in publishes.shards() {
        let mut cursor = None;
        let mut shard_records: Vec<PublishRecord> = Vec::new();
        let mut pages = 0;
        loop {
            pages += 1;
            assert!(pages < 100, "pending_stops never reached its last page");
            let got = publishes
                .pending_stops(shard, cutoff, cursor.as_ref(), page)
                .await
                .unwrap();
            assert!(got.records.len() <= page);
            shard_records.extend(got.records);
            match got.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let times: Vec<i64> = shard_records
            .iter()
            .map(|r| r.cancel.as_ref().map_or(0, |s| s.at.0))
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{shard}: {times:?}");
        records.extend(shard_records);
    }
    records.sort_by_key(|r| r.cancel.as_ref().map_or(0, |s| s.at.0));
    records.into_iter().map(|r| r.key).collect()
}

/// One page of every shard before `cutoff`, merged.
async fn every_shard(
    publishes: &impl PendingStops,
    cutoff: Timestamp,
) -> publish_cancel::ports::PendingPage {
    let mut all = publish_cancel::ports::PendingPage::default();
    for shard in publishes.shards() {
        let page = publishes
            .pending_stops(shard, cutoff, None, 100)
            .await
            .unwrap();
        all.records.extend(page.records);
        all.unreadable.extend(page.unreadable);
    }
    all
}

async fn stop_queue_contract(queue: &impl StopQueue, arrange: &impl Arrange) {
    arrange.take_stops().await;
    let sent = [
        StopMessage::new(&key("contract-owner", 1, 2, 3), &stamp("s1", 1_795_718_847)),
        StopMessage::new(&key("contract-owner", 1, 2, 4), &stamp("s2", 1_795_718_848)),
    ];
    for stop in &sent {
        queue.send(stop).await.unwrap();
    }
    let mut got = arrange.take_stops().await;
    got.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    assert_eq!(got, sent, "each stop arrives once, as sent");
    // The wire form is the documented schema, whatever the queue.
    let json: serde_json::Value = serde_json::from_str(&sent[0].to_json()).unwrap();
    assert_eq!(json["type"], StopMessage::KIND);
    assert_eq!(json["schemaVersion"], StopMessage::SCHEMA_VERSION);
}

// --- in memory ---

#[tokio::test]
async fn memory_users_keep_the_users_contract() {
    let m = InMemory::new();
    users_contract(&m.users, &m).await;
}

#[tokio::test]
async fn memory_publishes_keep_the_publishes_contract() {
    let m = InMemory::new();
    publishes_contract(&m.publishes, &m).await;
}

#[tokio::test]
async fn memory_queue_keeps_the_stop_queue_contract() {
    let m = InMemory::new();
    stop_queue_contract(&m.queue, &m).await;
}

// --- DynamoDB and SQS, on the emulator ---

#[tokio::test]
async fn dynamodb_users_keep_the_users_contract() {
    let stack = Stack::new().await;
    let users = DynamoUsers::new(stack.dynamo.clone(), &stack.users_table);
    users_contract(&users, &stack).await;
}

#[tokio::test]
async fn dynamodb_publishes_keep_the_publishes_contract() {
    let stack = Stack::new().await;
    let publishes = DynamoPublishes::new(stack.dynamo.clone(), &stack.publishes_table);
    publishes_contract(&publishes, &stack).await;
}

#[tokio::test]
async fn sqs_queue_keeps_the_stop_queue_contract() {
    for fifo in [false, true] {
        let stack = Stack::with(common::StackOptions {
            fifo,
            ..Default::default()
        })
        .await;
        let queue = SqsStopQueue::new(stack.sqs.clone(), &stack.queue_url);
        stop_queue_contract(&queue, &stack).await;
    }
}

// --- the operator's port: AdminStore, on DynamoDB and on a seed file ---

async fn admin_store_contract(admin: &impl AdminStore) {
    use publish_cancel::ports::AdminError;
    let bob = Login::parse("contract-admin-bob").unwrap();
    let nobody = Login::parse("contract-admin-nobody").unwrap();
    assert_eq!(admin.user(&bob).await.unwrap(), None);
    admin
        .create_user(&bob, None, &["image_publish".to_owned()], true)
        .await
        .unwrap();
    assert!(matches!(
        admin.create_user(&bob, None, &[], true).await,
        Err(AdminError::UserExists(_))
    ));
    let summary = admin.user(&bob).await.unwrap().expect("created");
    assert_eq!(
        (
            summary.active,
            summary.has_password,
            summary.entitlements.clone()
        ),
        (true, false, vec!["image_publish".to_owned()])
    );
    admin
        .set_password(
            &bob,
            publish_cancel::auth::password::hash("pw-of-bob").unwrap(),
        )
        .await
        .unwrap();
    admin.set_active(&bob, false).await.unwrap();
    admin.grant(&bob, "other_right").await.unwrap();
    admin.revoke(&bob, "image_publish").await.unwrap();
    admin
        .add_api_key(&bob, "PUBCONTRACT", "SECRETCONTRACT")
        .await
        .unwrap();
    let summary = admin.user(&bob).await.unwrap().unwrap();
    assert_eq!(
        (
            summary.active,
            summary.has_password,
            summary.entitlements.clone(),
            summary.api_keys.clone()
        ),
        (
            false,
            true,
            vec!["other_right".to_owned()],
            vec!["PUBCONTRACT".to_owned()]
        )
    );
    admin.remove_api_key(&bob, "PUBCONTRACT").await.unwrap();
    assert!(matches!(
        admin.remove_api_key(&bob, "PUBCONTRACT").await,
        Err(AdminError::NoSuchKey(..))
    ));
    assert!(admin.user(&bob).await.unwrap().unwrap().api_keys.is_empty());
    for change in [
        admin.set_active(&nobody, true).await,
        admin.grant(&nobody, "image_publish").await,
    ] {
        assert!(
            matches!(change, Err(AdminError::NoSuchUser(_))),
            "{change:?}"
        );
    }

    let k = key("contract-admin-bob", 1, 2, 3);
    assert_eq!(admin.publish(&k).await.unwrap(), None);
    let mut record = PublishRecord::new(k.clone(), PublishState::Publishing);
    record.percentage = Some(40);
    record.message = Some("Publishing".into());
    admin
        .put_publish(&record, Replacing::Nothing)
        .await
        .unwrap();
    assert_eq!(admin.publish(&k).await.unwrap(), Some(record.clone()));
    // Conditional: a new record over an existing one, or a replacement of
    // a record other than it was read, writes nothing.
    let mut next = record.clone();
    next.percentage = Some(60);
    assert!(matches!(
        admin.put_publish(&next, Replacing::Nothing).await,
        Err(AdminError::Changed(_))
    ));
    let mut stale = record.clone();
    stale.state = PublishState::Queued;
    assert!(matches!(
        admin.put_publish(&next, Replacing::Read(&stale)).await,
        Err(AdminError::Changed(_))
    ));
    assert_eq!(admin.publish(&k).await.unwrap(), Some(record.clone()));
    admin
        .put_publish(&next, Replacing::Read(&record))
        .await
        .unwrap();
    assert_eq!(admin.publish(&k).await.unwrap(), Some(next));
}

#[tokio::test]
async fn seed_file_admin_keeps_the_admin_store_contract() {
    let dir = std::env::temp_dir().join(format!("uforge-contract-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("seed.json");
    let _ = std::fs::remove_file(&path);
    admin_store_contract(&publish_cancel::admin::SeedFileAdmin::new(path)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn dynamodb_admin_keeps_the_admin_store_contract() {
    let stack = Stack::new().await;
    let admin = publish_cancel::admin::DynamoAdmin::new(
        stack.dynamo.clone(),
        stack.users_table.clone(),
        stack.publishes_table.clone(),
        Some(publish_cancel::auth::FixedKeks::shared(common::sealer())),
    );
    admin_store_contract(&admin).await;
}

// --- where the KEKs come from: KekSource, fixed and from Secrets Manager ---

/// The current KEK seals; a secret sealed under it opens with the answer
/// to a request for its key id; one sealed under a KEK the source does not
/// hold does not open.
async fn kek_source_contract(source: &dyn KekSource, current: [u8; 32]) {
    let sealer = source.sealer(None).await.expect("the current KEKs");
    let sealed = sealer.seal("alice", "PUB", b"secret").unwrap();
    let ours = Sealer::new(&current);
    assert_eq!(ours.open("alice", "PUB", &sealed).unwrap(), b"secret");
    let again = source
        .sealer(Some(ours.current_id()))
        .await
        .expect("asked by key id");
    assert_eq!(again.open("alice", "PUB", &sealed).unwrap(), b"secret");
    let foreign = Sealer::new(&[7u8; 32])
        .seal("alice", "PUB", b"secret")
        .unwrap();
    assert!(again.open("alice", "PUB", &foreign).is_err());
}

#[tokio::test]
async fn fixed_keks_keep_the_kek_source_contract() {
    let source = publish_cancel::auth::FixedKeks::shared(Sealer::new(&common::KEK));
    kek_source_contract(source.as_ref(), common::KEK).await;
}

#[tokio::test]
async fn secrets_manager_keks_keep_the_kek_source_contract() {
    use base64::Engine as _;
    let sdk = common::sdk_config().await;
    let name = format!("contract-kek-{}", std::process::id());
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(&name)
        .secret_string(base64::engine::general_purpose::STANDARD.encode(common::KEK))
        .send()
        .await
        .unwrap();
    let source = publish_cancel::adapters::secrets_manager::SecretsManagerKeks::shared(&sdk, &name);
    kek_source_contract(source.as_ref(), common::KEK).await;
}
