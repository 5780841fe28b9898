//! The clock our timestamps follow: this machine's, corrected by how far
//! it is from AWS's.
//!
//! Claims on a pending stop compare timestamps written by different
//! machines (docs/developing.md, "Stop delivery"). The local server or the
//! operator CLI run against real tables on a laptop whose clock is 20 s
//! slow would take over live claims; hours fast, it would hide a stop for
//! hours. Every DynamoDB answer carries AWS's time (`Date`, to the second,
//! `adapters::service_time`): once an answer shows this machine's clock
//! off by more than `TOLERANCE_SECS`, every timestamp we write follows AWS's.
//! (Lambda's clocks are synchronised: there the offset stays 0.)

use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds added to this machine's clock. Process-wide: the clock is.
static OFFSET: AtomicI64 = AtomicI64::new(0);

/// A difference AWS's answers cannot tell from none: the `Date` header is
/// to the second, and our own reading of the clock is another.
pub const TOLERANCE_SECS: f64 = 1.0;

/// Seconds since the Unix epoch, UTC, by AWS's clock as far as it is known.
pub fn now_secs() -> i64 {
    (system_secs() as i64).saturating_add(OFFSET.load(Ordering::Relaxed))
}

/// This machine's clock, in seconds since the Unix epoch.
pub fn system_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The offset an answer stamped `service_secs` (its `Date`) calls for, when
/// it differs from `current`: the request left at `sent` and its answer
/// came at `received` (this machine's clock). AWS stamped the answer
/// between the two, in the second `service_secs` names, so the true offset
/// lies in `[service_secs - received, service_secs + 1 - sent]`; a slow
/// answer widens that range and never calls for a correction.
pub fn correction(current: i64, service_secs: i64, sent: f64, received: f64) -> Option<i64> {
    let low = service_secs as f64 - received;
    let high = service_secs as f64 + 1.0 - sent;
    let current_f = current as f64;
    let off = current_f < low - TOLERANCE_SECS || current_f > high + TOLERANCE_SECS;
    off.then(|| ((low + high) / 2.0).round() as i64)
}

/// Takes in an answer of AWS's (see `correction`).
pub fn observe(service_secs: i64, sent: f64, received: f64) {
    let current = OFFSET.load(Ordering::Relaxed);
    if let Some(new) = correction(current, service_secs, sent, received) {
        OFFSET.store(new, Ordering::Relaxed);
        tracing::warn!(
            offset_secs = new,
            "this machine's clock is off AWS's by {} s: the timestamps written follow AWS's",
            -new
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_synchronised_clock_is_left_alone() {
        // Answered within 30 ms, stamped in the second it was sent in.
        for sent in [1000.0, 1000.5, 1000.97] {
            assert_eq!(correction(0, 1000, sent, sent + 0.03), None, "{sent}");
        }
        // A slow answer (3 s) widens the range; still nothing to correct.
        assert_eq!(correction(0, 1001, 1000.2, 1003.2), None);
        assert_eq!(correction(0, 1003, 1000.2, 1003.2), None);
    }

    #[test]
    fn a_clock_off_by_more_than_the_tolerance_follows_aws() {
        // 20 s slow: AWS says 1020 when we read 1000.
        assert_eq!(correction(0, 1020, 1000.0, 1000.05), Some(20));
        // Hours fast.
        assert_eq!(correction(0, 1000, 8200.4, 8200.5), Some(-7200));
        // Corrected, the same answers call for nothing more.
        assert_eq!(correction(20, 1020, 1000.0, 1000.05), None);
        assert_eq!(correction(-7200, 1000, 8200.4, 8200.5), None);
        // And a clock set right again is followed back.
        assert_eq!(correction(20, 1000, 1000.1, 1000.2), Some(0));
    }

    #[test]
    fn within_the_tolerance_nothing_moves() {
        // Possibly 1.0-2.1 s off: within a second of none, left alone.
        assert_eq!(correction(0, 1001, 999.9, 1000.0), None);
        // Surely 3.3-4.4 s off: followed.
        assert_eq!(correction(0, 1003, 999.6, 999.7), Some(4));
    }
}
