//! Reads AWS's time off every DynamoDB answer (`crate::clock`): an SDK
//! interceptor noting when each attempt left and what its answer's `Date`
//! says.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use aws_smithy_types::date_time::{DateTime, Format};

/// The interceptor; add it to a client's configuration.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServiceTime;

/// Calls made so far, process-wide: the clock is read off the first and
/// then every `EVERY`th (a clock drifts in hours, not between two calls,
/// and each reading is two clock reads, a header parse and a store into
/// the call's configuration: a few thousand instructions).
static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
const EVERY: u64 = 64;

/// When the current attempt left (this machine's clock, seconds).
#[derive(Debug, Clone, Copy)]
struct SentAt(f64);

impl Storable for SentAt {
    type Storer = StoreReplace<Self>;
}

impl Intercept for ServiceTime {
    fn name(&self) -> &'static str {
        "ServiceTime"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n.is_multiple_of(EVERY) {
            cfg.interceptor_state()
                .store_put(SentAt(crate::clock::system_secs()));
        }
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Only the calls `read_before_transmit` chose are read.
        let Some(sent) = cfg.load::<SentAt>().copied() else {
            return Ok(());
        };
        let received = crate::clock::system_secs();
        let date = context
            .response()
            .headers()
            .get("date")
            .and_then(|d| DateTime::from_str(d, Format::HttpDate).ok());
        if let Some(date) = date {
            crate::clock::observe(date.secs(), sent.0, received);
        }
        // What the clock does never fails a call.
        Ok(())
    }
}
