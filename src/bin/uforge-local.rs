//! The local server: the Lambda's handler on a plain HTTP socket.
//!
//! By default it runs on embedded in-memory stores seeded from a seed file
//! (the bundled `seed/local.json` unless `--seed` says otherwise): no AWS
//! account, no Docker. With `--backend aws` it uses DynamoDB and SQS
//! (real, or an emulator through `AWS_ENDPOINT_URL`) configured like the
//! Lambda, from the environment.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use publish_cancel::api::Api;
use publish_cancel::config::{self, AwsSettings, Env, TlsRoots};
use publish_cancel::frontdoor::local::{serve, Limits};
use publish_cancel::seed::Seed;
use publish_cancel::startup::{self, Options};
use tokio::net::TcpListener;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// In-memory stores loaded from the seed file.
    Memory,
    /// DynamoDB and SQS, configured from the environment.
    Aws,
}

/// Serve UForge's publish-cancel endpoint on a local HTTP port.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Seed file for the in-memory stores [default: the bundled seed/local.json].
    #[arg(long, value_name = "PATH")]
    seed: Option<PathBuf>,
    /// TCP port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to bind. Loopback by default: this is a development server.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    #[arg(long, value_enum, default_value_t = Backend::Memory)]
    backend: Backend,
    /// API base path [default: $UFORGE_BASE_PATH, else /api].
    #[arg(long)]
    base_path: Option<String>,
    /// Connections served at once; more wait in the kernel's backlog.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Milliseconds a connection has to send a request's headers.
    #[arg(long, value_name = "MS", default_value_t = Limits::default().header_timeout.as_millis() as u64)]
    header_timeout_ms: u64,
    /// Milliseconds a connection stays open at most, busy or not.
    #[arg(long, value_name = "MS", default_value_t = Limits::default().max_lifetime.as_millis() as u64)]
    max_lifetime_ms: u64,
}

fn main() -> ExitCode {
    publish_cancel::allocator::return_large_blocks_to_the_os();
    let env = Env::process();
    publish_cancel::logging::init(&env);
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("uforge-local: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, env)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uforge-local: {}", publish_cancel::ErrorChain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

async fn run(args: Args, env: Env) -> Result<(), BoxError> {
    let base = args.base_path.clone().unwrap_or_else(|| env.base_path());
    let listener = TcpListener::bind(SocketAddr::new(args.bind, args.port)).await?;
    let limits = Limits {
        max_connections: args.max_connections,
        header_timeout: std::time::Duration::from_millis(args.header_timeout_ms),
        max_lifetime: std::time::Duration::from_millis(args.max_lifetime_ms),
    };
    let addr = listener.local_addr()?;
    match args.backend {
        Backend::Memory => {
            let text = startup::seed_text(args.seed.as_deref())?;
            let api = startup::memory_service(&Seed::parse(&text)?, Options::new(&base), &env)?.api;
            let stores = match args.seed.as_deref() {
                None => "in-memory stores; bundled seed/local.json".to_owned(),
                Some(path) => format!("in-memory stores; {}", path.display()),
            };
            // Only the bundled seed's password is public, so only its hint
            // names one: an operator's own never goes to a log.
            let credentials = match args.seed {
                None => "alice:alice-password",
                Some(_) => "LOGIN:PASSWORD",
            };
            announce(addr, &base, &stores, credentials);
            serve_until_ctrl_c(listener, Arc::new(api), limits).await
        }
        Backend::Aws => {
            let settings = AwsSettings::from_env(&env)?;
            let sdk = config::sdk::load_sdk_config(TlsRoots::from_env(&env)?).await;
            let api = startup::aws_api(&sdk, settings, Options::new(&base));
            announce(addr, &base, "DynamoDB + SQS", "LOGIN:PASSWORD");
            serve_until_ctrl_c(listener, Arc::new(api), limits).await
        }
    }
}

async fn serve_until_ctrl_c<U, P, Q>(
    listener: TcpListener,
    api: Arc<Api<U, P, Q>>,
    limits: Limits,
) -> Result<(), BoxError>
where
    U: publish_cancel::ports::Users + 'static,
    P: publish_cancel::ports::CancelWrites + publish_cancel::ports::PublishReader + 'static,
    Q: publish_cancel::ports::StopQueue + 'static,
{
    tokio::select! {
        () = serve(listener, api, limits) => Ok(()),
        _ = tokio::signal::ctrl_c() => {
            eprintln!("uforge-local: stopping");
            Ok(())
        }
    }
}

/// Where it listens, and a curl line to try with `credentials`.
fn announce(addr: SocketAddr, base: &str, stores: &str, credentials: &str) {
    use publish_cancel::api::route::{cancel_route, normalise_base};
    let base = normalise_base(base);
    println!("uforge-local listening on http://{addr}{base} ({stores})");
    // The bundled seed's running publish.
    let example = publish_cancel::domain::PublishKey {
        uid: publish_cancel::domain::Login::parse("alice").unwrap_or_else(|_| unreachable!()),
        aid: 1.into(),
        itid: 2.into(),
        pitid: 3.into(),
    };
    let route = cancel_route();
    println!(
        "try: curl -i -X {} -u {credentials} -H 'Accept: application/xml' \
         http://{addr}{base}/{}",
        route.methods[0],
        route.path_for(&example)
    );
}
