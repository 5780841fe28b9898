//! Log setup for every binary: Lambda's advanced logging controls
//! (`AWS_LAMBDA_LOG_FORMAT=JSON`, `AWS_LAMBDA_LOG_LEVEL`), else `RUST_LOG`.
//!
//! This replaces `lambda_http`'s `tracing` feature, whose default subscriber
//! parses `RUST_LOG` with tracing-subscriber's `EnvFilter` and so links a
//! regex engine into the function. We only ever filter by level.

use tracing_subscriber::filter::LevelFilter;

/// Installs the global subscriber: to stdout, no timestamps (CloudWatch
/// stamps each line), no ANSI colours, JSON when Lambda asks for it.
pub fn init(env: &crate::config::Env) {
    let json = env
        .get("AWS_LAMBDA_LOG_FORMAT")
        .is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let level = env
        .get("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|| env.get("RUST_LOG"))
        .map(|v| level_of(&v))
        .unwrap_or(LevelFilter::INFO);
    let builder = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_max_level(level)
        .with_writer(std::io::stdout);
    // A second call (tests start several servers in one process) keeps the first.
    let _ = if json {
        // The current span (the runtime's, with the request id) but not
        // the list of every span: one copy of the same fields per line.
        builder.json().with_span_list(false).try_init()
    } else {
        builder.try_init()
    };
}

/// The level of a Lambda log level (`TRACE` … `FATAL`) or of a `RUST_LOG`
/// value: its first bare level (`warn,hyper=debug` → WARN). Per-target
/// directives are not supported; anything unrecognised means INFO.
pub fn level_of(value: &str) -> LevelFilter {
    value
        .split(',')
        .map(str::trim)
        .find(|d| !d.is_empty() && !d.contains('='))
        .and_then(|d| {
            if d.eq_ignore_ascii_case("fatal") {
                Some(LevelFilter::ERROR)
            } else {
                d.parse().ok()
            }
        })
        .unwrap_or(LevelFilter::INFO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_and_rust_log_levels() {
        for (value, level) in [
            ("TRACE", LevelFilter::TRACE),
            ("DEBUG", LevelFilter::DEBUG),
            ("INFO", LevelFilter::INFO),
            ("WARN", LevelFilter::WARN),
            ("ERROR", LevelFilter::ERROR),
            ("FATAL", LevelFilter::ERROR),
            ("warn", LevelFilter::WARN),
            ("off", LevelFilter::OFF),
            ("hyper=debug, error", LevelFilter::ERROR),
            ("hyper=debug", LevelFilter::INFO),
            ("loud", LevelFilter::INFO),
            ("", LevelFilter::INFO),
        ] {
            assert_eq!(level_of(value), level, "{value:?}");
        }
    }
}
