//! Operator CLI: users, entitlements, API keys and publish records, on
//! DynamoDB (tables and queue from the same environment as the Lambda) or on
//! a local server's seed file (`--seed PATH`). Passwords are read from stdin
//! or a prompt, never from the command line; API secrets are printed once.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use publish_cancel::adapters::sqs::SqsStopQueue;
use publish_cancel::admin::{self, AdminError, AdminStore, Progress, SeedFileAdmin};
use publish_cancel::api::negotiate::Format;
use publish_cancel::api::render;
use publish_cancel::auth::password;
use publish_cancel::config::{self, AdminSettings, Env};
use publish_cancel::domain::{
    Login, PublishKey, PublishRecord, PublishState, Timestamp, IMAGE_PUBLISH,
};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Administer the users and publishes of the UForge publish-cancel service"
)]
struct Cli {
    /// Work on this seed file (the local server's) instead of DynamoDB.
    #[arg(long, global = true, value_name = "PATH")]
    seed: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Users and their entitlements.
    #[command(subcommand)]
    User(UserCmd),
    /// API key pairs.
    #[command(subcommand, name = "apikey")]
    ApiKey(ApiKeyCmd),
    /// Publish records.
    #[command(subcommand)]
    Publish(PublishCmd),
    /// Create the tables and the queue (emulator or scratch account), named
    /// by USERS_TABLE, PUBLISHES_TABLE and --queue-name; prints the exports.
    Setup {
        #[arg(long, default_value = "uforge-stop")]
        queue_name: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCmd {
    /// Create a user. The password is read from stdin (one line) or prompted for.
    Create {
        login: String,
        /// Entitlements to grant (repeatable) [default: image_publish].
        #[arg(long = "entitlement", value_name = "NAME")]
        entitlements: Vec<String>,
        /// Create the user disabled.
        #[arg(long)]
        inactive: bool,
        /// No password: the user authenticates with API keys only.
        #[arg(long)]
        no_password: bool,
    },
    /// Replace a user's password (read from stdin or prompted for).
    SetPassword {
        login: String,
    },
    Disable {
        login: String,
    },
    Enable {
        login: String,
    },
    Grant {
        login: String,
        entitlement: String,
    },
    Revoke {
        login: String,
        entitlement: String,
    },
    /// Show a user (never a hash or a secret).
    Show {
        login: String,
    },
}

#[derive(Debug, Subcommand)]
enum ApiKeyCmd {
    /// Issue a new key pair; the secret is printed once and cannot be shown again.
    Issue {
        login: String,
    },
    /// Import an existing UForge key pair (migration); the secret is read
    /// from stdin or prompted for, like a password.
    Import {
        login: String,
        public_key: String,
    },
    Revoke {
        login: String,
        public_key: String,
    },
    /// After a KEK rotation: re-seal every API secret under the current KEK
    /// (DynamoDB only), so the previous KEK can be retired.
    Reseal,
}

#[derive(Debug, Args)]
struct PublishIds {
    uid: String,
    aid: i64,
    itid: i64,
    pitid: i64,
}

#[derive(Debug, Subcommand)]
enum PublishCmd {
    /// Create or replace a publish record in a given state (queued,
    /// publishing, published or failed: a cancel is the service's to make).
    /// A cancelled record is replaced only with --force.
    Put {
        #[command(flatten)]
        ids: PublishIds,
        #[arg(long)]
        state: String,
        /// Replace a cancelled record; a stop still pending (or parked) is
        /// sent first to STOP_QUEUE_URL, and the put refused if it cannot be.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        percentage: Option<i32>,
        #[arg(long)]
        message: Option<String>,
        #[arg(long)]
        error_message: Option<String>,
    },
    /// Print a publish's UForge status (XML, or JSON with --json).
    Show {
        #[command(flatten)]
        ids: PublishIds,
        #[arg(long)]
        json: bool,
    },
    /// Scan the publishes table (DynamoDB only): backfill the audit fields
    /// of records cancelled before they existed, list items that cannot be
    /// read, and with --requeue-undeliverable put parked stops back to
    /// pending for the reconciler.
    Repair {
        /// Report only; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Put stops SQS refused for good back to pending (after fixing why).
        #[arg(long)]
        requeue_undeliverable: bool,
    },
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uforge-admin: {}", publish_cancel::ErrorChain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    if let Command::Setup { queue_name } = &cli.command {
        return setup(queue_name).await;
    }
    match &cli.seed {
        Some(_) if matches!(cli.command, Command::ApiKey(ApiKeyCmd::Reseal)) => {
            Err("a seed file keeps API secrets in clear: there is nothing to re-seal".into())
        }
        Some(_) if matches!(cli.command, Command::Publish(PublishCmd::Repair { .. })) => {
            Err("repair works on the DynamoDB publishes table; a seed file is read whole, with the same defaults".into())
        }
        Some(path) => execute(&SeedFileAdmin::new(path.clone()), None, cli.command).await,
        None => {
            let settings = AdminSettings::from_env(&Env::process())?;
            let sdk = config::sdk::load_sdk_config(settings.tls_roots).await;
            let queue = publish_cancel::startup::admin_stop_queue(&sdk, &settings);
            let store = publish_cancel::startup::dynamo_admin(&sdk, settings);
            if let Command::Publish(PublishCmd::Repair {
                dry_run,
                requeue_undeliverable,
            }) = cli.command
            {
                let mut progress = Progress::stderr("repair");
                let done = until_interrupted(store.repair_publishes_with(
                    dry_run,
                    requeue_undeliverable,
                    &mut |r| progress.update(r.counts()),
                ))
                .await;
                let Some(r) = done else {
                    return Err(interrupted(&mut progress));
                };
                let r = r?;
                progress.finish();
                for (item, why) in &r.unreadable {
                    println!("unreadable: {item}: {why}");
                }
                let verb = if dry_run { "would be " } else { "" };
                println!(
                    "scanned {} item(s): {} legacy cancel(s) {verb}backfilled, {} pending stop(s) {verb}brought into the reconciler's index, {} pending mark(s) {verb}moved to their shard, {} cancel time(s) in milliseconds {verb}rewritten in seconds, {} parked stop(s) {verb}re-queued, {} unreadable",
                    r.scanned,
                    r.backfilled,
                    r.indexed,
                    r.resharded,
                    r.retimed,
                    r.requeued,
                    r.unreadable.len()
                );
                return Ok(());
            }
            if let Command::ApiKey(ApiKeyCmd::Reseal) = cli.command {
                let mut progress = Progress::stderr("reseal");
                let done = until_interrupted(
                    store.reseal_api_keys_with(&mut |r| progress.update(r.counts())),
                )
                .await;
                let Some(r) = done else {
                    return Err(interrupted(&mut progress));
                };
                let r = r?;
                progress.finish();
                println!(
                    "re-sealed {} API secret(s); {} already under the current KEK; {} changed meanwhile (left alone)",
                    r.resealed, r.current, r.skipped
                );
                return Ok(());
            }
            execute(&store, queue.as_ref(), cli.command).await
        }
    }
}

/// `work`, unless Ctrl-C (SIGINT) comes first: then `None`, and the write
/// in flight is dropped (a conditional write is applied whole or not at
/// all).
async fn until_interrupted<T>(work: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::select! {
        done = work => Some(done),
        _ = tokio::signal::ctrl_c() => None,
    }
}

/// What an interrupted scan says: the last counts, and what a re-run does.
fn interrupted<W: std::io::Write>(
    progress: &mut Progress<W>,
) -> Box<dyn std::error::Error + Send + Sync> {
    progress.finish();
    let c = progress.counts();
    format!(
        "interrupted after {} item(s) ({} fixed): every item is fixed or untouched (each fix is one conditional write); run it again to do the rest",
        c.scanned, c.fixed
    )
    .into()
}

/// A status message as every store and representation carries it
/// (`domain::is_display_text`).
fn display_text(flag: &str, text: String) -> Result<String, AdminError> {
    if publish_cancel::domain::is_display_text(&text) {
        Ok(text)
    } else {
        Err(AdminError::Invalid(format!(
            "{flag}: at most 1024 characters, without control characters or Unicode noncharacters"
        )))
    }
}

fn login(s: &str) -> Result<Login, AdminError> {
    Login::parse(s).map_err(|_| AdminError::Invalid(format!("{s:?} is not a valid login")))
}

fn key(ids: &PublishIds) -> Result<PublishKey, AdminError> {
    Ok(PublishKey {
        uid: login(&ids.uid)?,
        aid: ids.aid.into(),
        itid: ids.itid.into(),
        pitid: ids.pitid.into(),
    })
}

/// One line from stdin, or a no-echo prompt (asked twice) on a terminal.
fn read_secret(prompt: &str) -> Result<String, BoxError> {
    let pw = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt)?;
        let again = rpassword::prompt_password("Repeat it: ")?;
        if first != again {
            return Err("the two entries differ".into());
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if pw.is_empty() {
        return Err("empty input".into());
    }
    if pw.len() > publish_cancel::auth::basic::MAX_PASSWORD_LEN {
        return Err("longer than the server accepts".into());
    }
    Ok(pw)
}

fn hash_new_password() -> Result<String, BoxError> {
    let pw = read_secret("New password: ")?;
    Ok(password::hash(&pw).map_err(|e| format!("hashing: {e}"))?)
}

async fn execute(
    store: &impl AdminStore,
    queue: Option<&SqsStopQueue>,
    command: Command,
) -> Result<(), BoxError> {
    match command {
        Command::User(cmd) => match cmd {
            UserCmd::Create {
                login: l,
                entitlements,
                inactive,
                no_password,
            } => {
                let l = login(&l)?;
                let hash = if no_password {
                    None
                } else {
                    Some(hash_new_password()?)
                };
                let entitlements = if entitlements.is_empty() {
                    vec![IMAGE_PUBLISH.to_owned()]
                } else {
                    entitlements
                };
                store
                    .create_user(&l, hash, &entitlements, !inactive)
                    .await?;
                println!("created user {l}");
            }
            UserCmd::SetPassword { login: l } => {
                let l = login(&l)?;
                store.set_password(&l, hash_new_password()?).await?;
                println!("password of {l} replaced");
            }
            UserCmd::Disable { login: l } => {
                store.set_active(&login(&l)?, false).await?;
                println!("disabled {l}");
            }
            UserCmd::Enable { login: l } => {
                store.set_active(&login(&l)?, true).await?;
                println!("enabled {l}");
            }
            UserCmd::Grant {
                login: l,
                entitlement,
            } => {
                store.grant(&login(&l)?, &entitlement).await?;
                println!("granted {entitlement} to {l}");
            }
            UserCmd::Revoke {
                login: l,
                entitlement,
            } => {
                store.revoke(&login(&l)?, &entitlement).await?;
                println!("revoked {entitlement} from {l}");
            }
            UserCmd::Show { login: l } => {
                let l = login(&l)?;
                let u = store.user(&l).await?.ok_or(AdminError::NoSuchUser(l))?;
                println!("login:        {}", u.login);
                println!("active:       {}", u.active);
                println!(
                    "password:     {}",
                    if u.has_password { "set" } else { "none" }
                );
                println!("entitlements: {}", u.entitlements.join(", "));
                println!("api keys:     {}", u.api_keys.join(", "));
            }
        },
        Command::ApiKey(cmd) => match cmd {
            ApiKeyCmd::Issue { login: l } => {
                let l = login(&l)?;
                let (public, secret) = admin::new_key_pair()?;
                store.add_api_key(&l, &public, &secret).await?;
                println!("public key: {public}");
                println!("secret key: {secret}");
                eprintln!("The secret key is shown once; store it now.");
            }
            ApiKeyCmd::Import {
                login: l,
                public_key,
            } => {
                let valid = !public_key.is_empty()
                    && public_key.len() <= publish_cancel::auth::signed_url::MAX_PUBLIC_KEY_LEN
                    && public_key.bytes().all(|b| b.is_ascii_graphic());
                if !valid {
                    return Err("the public key must be 1 to 128 printable ASCII characters".into());
                }
                let secret = read_secret("Secret key: ")?;
                store.add_api_key(&login(&l)?, &public_key, &secret).await?;
                println!("imported {public_key}");
            }
            ApiKeyCmd::Revoke {
                login: l,
                public_key,
            } => {
                store.remove_api_key(&login(&l)?, &public_key).await?;
                println!("revoked {public_key}");
            }
            ApiKeyCmd::Reseal => unreachable!("handled before a store is chosen"),
        },
        Command::Publish(cmd) => match cmd {
            PublishCmd::Put {
                ids,
                state,
                force,
                percentage,
                message,
                error_message,
            } => {
                let state: PublishState = state.parse()?;
                let mut record = PublishRecord::new(key(&ids)?, state);
                let now = Timestamp::now();
                record.created = Some(now);
                record.last_modified = Some(now);
                record.percentage = percentage;
                record.message = message.map(|m| display_text("--message", m)).transpose()?;
                record.error_message = error_message
                    .map(|m| display_text("--error-message", m))
                    .transpose()?;
                let report = admin::put_publish(store, queue, &record, force).await?;
                if let Some(id) = &report.resent_stop {
                    eprintln!(
                        "uforge-admin: forced: its pending stop (request id {id}) was sent again before publish {} was replaced",
                        record.key
                    );
                }
                if let (true, Some(was)) = (force, report.replaced) {
                    eprintln!(
                        "uforge-admin: forced: replaced publish {} (was {was})",
                        record.key
                    );
                }
                println!("publish {} is {state}", record.key);
            }
            PublishCmd::Show { ids, json } => {
                let k = key(&ids)?;
                let record = store
                    .publish(&k)
                    .await?
                    .ok_or_else(|| AdminError::Invalid(format!("no publish {k}")))?;
                let format = if json { Format::Json } else { Format::Xml };
                println!(
                    "{}",
                    String::from_utf8_lossy(&render::status(&record, format))
                );
                println!("state: {}", record.state);
            }
            PublishCmd::Repair { .. } => unreachable!("handled before a store is chosen"),
        },
        Command::Setup { .. } => unreachable!("handled before a store is chosen"),
    }
    Ok(())
}

async fn setup(queue_name: &str) -> Result<(), BoxError> {
    let config::SetupSettings {
        users_table: users,
        publishes_table: publishes,
        tls_roots,
    } = config::SetupSettings::from_env(&Env::process())?;
    let sdk = config::sdk::load_sdk_config(tls_roots).await;
    admin::create_tables(&aws_sdk_dynamodb::Client::new(&sdk), &users, &publishes).await?;
    let queue_url = admin::create_queue(&aws_sdk_sqs::Client::new(&sdk), queue_name).await?;
    println!("export {}={users}", config::ENV_USERS_TABLE);
    println!("export {}={publishes}", config::ENV_PUBLISHES_TABLE);
    println!("export {}={queue_url}", config::ENV_STOP_QUEUE_URL);
    Ok(())
}
