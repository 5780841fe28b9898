//! The DynamoDB client every binary uses: the SDK's own, with its endpoint
//! resolution remembered for every table.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::endpoint::{
    DefaultResolver, Endpoint, EndpointFuture, Params, ResolveEndpoint,
};
use aws_sdk_dynamodb::Client;

/// A DynamoDB client for `sdk`, as `Client::new` builds it but for the
/// endpoint resolver ([`EndpointMemo`]) and the reading of AWS's time off
/// every answer (`adapters::service_time`).
pub fn client(sdk: &SdkConfig) -> Client {
    let config = aws_sdk_dynamodb::config::Builder::from(sdk)
        .endpoint_resolver(EndpointMemo::default())
        .interceptor(super::super::service_time::ServiceTime)
        .build();
    Client::from_conf(config)
}

/// Parameter sets remembered: one per table and region a process uses.
const ENTRIES: usize = 8;

/// The SDK's resolver, remembering the endpoint of each parameter set it
/// resolved (a pure function of them). The SDK's own remembers only the
/// last set, and the table is one of the parameters: a client serving the
/// users and the publishes tables resolved its endpoint afresh on every
/// call (about 11 k instructions, a URL parsed each time).
#[derive(Debug, Default)]
pub struct EndpointMemo {
    resolver: DefaultResolver,
    seen: Mutex<Vec<(Params, Endpoint)>>,
}

impl EndpointMemo {
    fn seen(&self) -> std::sync::MutexGuard<'_, Vec<(Params, Endpoint)>> {
        // Entries are plain values: a panic elsewhere cannot corrupt them.
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ResolveEndpoint for EndpointMemo {
    fn resolve_endpoint<'a>(&'a self, params: &'a Params) -> EndpointFuture<'a> {
        if let Some((_, endpoint)) = self.seen().iter().find(|(seen, _)| seen == params) {
            return EndpointFuture::ready(Ok(endpoint.clone()));
        }
        let mut resolving = self.resolver.resolve_endpoint(params);
        // The default resolver answers at once; one that did not would be
        // awaited by the SDK as usual, and not remembered.
        match Pin::new(&mut resolving).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(endpoint)) => {
                let mut seen = self.seen();
                if seen.len() < ENTRIES {
                    seen.push((params.clone(), endpoint.clone()));
                }
                EndpointFuture::ready(Ok(endpoint))
            }
            Poll::Ready(Err(e)) => EndpointFuture::ready(Err(e)),
            Poll::Pending => resolving,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(resolver: &impl ResolveEndpoint, params: &Params) -> Result<Endpoint, String> {
        let mut future = resolver.resolve_endpoint(params);
        match Pin::new(&mut future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => result.map_err(|e| e.to_string()),
            Poll::Pending => Err("pending".into()),
        }
    }

    /// Each parameter set resolves as the SDK's resolver does, first time
    /// and remembered, beyond the memo's room too, errors included.
    #[test]
    fn the_memo_answers_as_the_sdk_s_resolver() {
        let table = |region: &str, table: &str| {
            format!("arn:aws:dynamodb:{region}:123456789012:table/{table}")
        };
        let mut sets = Vec::new();
        for region in ["us-east-1", "eu-west-3", "cn-north-1", "us-gov-west-1"] {
            for (fips, dual) in [(false, false), (true, false), (false, true)] {
                for name in ["users", "publishes"] {
                    sets.push(
                        Params::builder()
                            .region(region)
                            .use_fips(fips)
                            .use_dual_stack(dual)
                            .resource_arn(table(region, name))
                            .build()
                            .unwrap(),
                    );
                }
            }
        }
        sets.push(
            Params::builder()
                .region("us-east-1")
                .endpoint("http://127.0.0.1:5000")
                .build()
                .unwrap(),
        );
        sets.push(
            Params::builder()
                .region("us-east-1")
                .endpoint("not a url")
                .build()
                .unwrap(),
        );
        assert!(sets.len() > ENTRIES);
        let (memo, sdk) = (EndpointMemo::default(), DefaultResolver::new());
        for round in 0..3 {
            for params in &sets {
                let want = resolve(&sdk, params);
                assert_eq!(
                    format!("{:?}", resolve(&memo, params)),
                    format!("{want:?}"),
                    "round {round}: {params:?}"
                );
            }
        }
        assert_eq!(memo.seen().len(), ENTRIES);
        assert!(memo
            .seen()
            .iter()
            .all(|(p, e)| resolve(&sdk, p).as_ref() == Ok(e)));
    }
}
