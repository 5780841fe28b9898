//! The paths this service answers: the one place that says which resources
//! exist, the methods each takes and the entitlement it asks for (so the
//! 404s, the 405's `Allow` and the status object's URIs agree). A route's
//! work is its `Endpoint`'s, in `api::endpoints`.

use http::Method;
use percent_encoding::percent_decode_str;

use crate::domain::{ApplianceId, ImageId, Login, PublishId, PublishKey, IMAGE_PUBLISH};

/// Paths longer than this are not ours (the longest valid one is ~190 bytes).
pub const MAX_PATH_LEN: usize = 512;

/// What a route leads to (`api::endpoints::run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// UForge's `machineImagePublish_cancel`.
    Cancel,
    /// UForge's `machineImagePublishedStatus_get`, what clients poll.
    Status,
}

/// One segment of a route's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    Literal(&'static str),
    /// `{uid}`: a login, percent-decoded.
    Uid,
    /// `{aid}`, `{itid}`, `{pitid}`: `xs:long`s, taken as they are.
    Aid,
    Itid,
    Pitid,
}

/// A resource: its path below the base, the methods it answers (anything
/// else is a 405 naming them in `Allow`), the entitlement its caller must
/// hold, and its name in logs and metrics.
#[derive(Debug)]
pub struct Route {
    pub endpoint: Endpoint,
    pub name: &'static str,
    pub path: &'static [Segment],
    pub methods: &'static [Method],
    pub entitlement: &'static str,
}

use Segment::{Aid, Itid, Literal, Pitid, Uid};

/// Every route of the service.
pub const ROUTES: &[Route] = &[
    Route {
        endpoint: Endpoint::Cancel,
        name: "cancel",
        path: &[
            Literal("users"),
            Uid,
            Literal("appliances"),
            Aid,
            Literal("images"),
            Itid,
            Literal("pimages"),
            Pitid,
            Literal("cancel"),
        ],
        methods: &[Method::DELETE],
        entitlement: IMAGE_PUBLISH,
    },
    Route {
        endpoint: Endpoint::Status,
        name: "status",
        path: &[
            Literal("users"),
            Uid,
            Literal("appliances"),
            Aid,
            Literal("images"),
            Itid,
            Literal("pimages"),
            Pitid,
            Literal("status"),
        ],
        methods: &[Method::GET],
        entitlement: IMAGE_PUBLISH,
    },
];

impl Route {
    /// `Allow`'s value: the methods, comma-separated.
    pub fn allow(&self) -> String {
        let names: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
        names.join(", ")
    }

    fn capture(&self, relative: &str) -> Option<PublishKey> {
        let mut parts = relative.split('/');
        let (mut uid, mut aid, mut itid, mut pitid) = (None, None, None, None);
        for segment in self.path {
            let part = parts.next()?;
            match segment {
                Literal(text) if part == *text => {}
                Literal(_) => return None,
                Uid => {
                    let decoded = percent_decode_str(part).decode_utf8().ok()?;
                    uid = Some(Login::parse(&decoded).ok()?);
                }
                Aid => aid = Some(ApplianceId::parse(part).ok()?),
                Itid => itid = Some(ImageId::parse(part).ok()?),
                Pitid => pitid = Some(PublishId::parse(part).ok()?),
            }
        }
        if parts.next().is_some() {
            return None;
        }
        Some(PublishKey {
            uid: uid?,
            aid: aid?,
            itid: itid?,
            pitid: pitid?,
        })
    }
}

/// The cancel route (UForge's `machineImagePublish_cancel`).
pub fn cancel_route() -> &'static Route {
    &ROUTES[0]
}

impl Route {
    /// This route's path for `key`, relative to the base.
    pub fn path_for(&self, key: &PublishKey) -> String {
        let parts: Vec<String> = self
            .path
            .iter()
            .map(|segment| match segment {
                Literal(text) => (*text).to_owned(),
                // A login's characters are all valid in a path segment.
                Uid => key.uid.to_string(),
                Aid => key.aid.to_string(),
                Itid => key.itid.to_string(),
                Pitid => key.pitid.to_string(),
            })
            .collect();
        parts.join("/")
    }
}

/// The UForge URI of a publish, relative to the base: the cancel route's
/// path without its last segment. The `status` object's `parentUri` and
/// `uri` are made from it.
pub fn publish_uri(key: &PublishKey) -> String {
    let path = cancel_route().path_for(key);
    match path.rsplit_once('/') {
        Some((parent, _)) => parent.to_owned(),
        None => path,
    }
}

/// A path that names a resource of `ROUTES`.
#[derive(Debug, Clone)]
pub struct Matched<'a> {
    pub route: &'static Route,
    pub key: PublishKey,
    /// The path after the base, without the leading slash, as received:
    /// what API-key signatures are computed over.
    pub relative: &'a str,
}

/// Normalises the configured base: `""`, `"/"`, `"api"`, `"/api/"` → `""`
/// or `"/api"`.
pub fn normalise_base(base: &str) -> String {
    let trimmed = base.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

/// Matches `path` (raw, percent-encoded) with or without the `base` prefix,
/// since API Gateway may deliver it either way. Anything else, including
/// ids that are not `xs:long` and logins that cannot exist, is `None` (404).
pub fn route<'a>(base: &str, path: &'a str) -> Option<Matched<'a>> {
    if path.len() > MAX_PATH_LEN {
        return None;
    }
    let rest = match path.strip_prefix(base) {
        Some(rest) if !base.is_empty() && rest.starts_with('/') => rest,
        _ => path,
    };
    let relative = rest.strip_prefix('/')?;
    ROUTES.iter().find_map(|route| {
        route.capture(relative).map(|key| Matched {
            route,
            key,
            relative,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "users/alice/appliances/1/images/2/pimages/3/cancel";

    #[test]
    fn with_or_without_the_base() {
        for (base, path) in [
            ("/api", format!("/api/{P}")),
            ("/api", format!("/{P}")),
            ("", format!("/{P}")),
            ("/uforge/api", format!("/uforge/api/{P}")),
        ] {
            let m = route(base, &path).unwrap_or_else(|| panic!("{base} {path}"));
            assert_eq!(m.relative, P);
            assert_eq!(
                publish_uri(&m.key),
                "users/alice/appliances/1/images/2/pimages/3"
            );
            assert_eq!(cancel_route().path_for(&m.key), P);
        }
    }

    #[test]
    fn the_table_lists_each_route_once_with_its_methods() {
        let path = format!("/api/{P}");
        let m = route("/api", &path).unwrap();
        assert_eq!(m.route.endpoint, Endpoint::Cancel);
        assert_eq!(m.route.methods, [Method::DELETE]);
        assert_eq!(m.route.allow(), "DELETE");
        let status = path.replace("/cancel", "/status");
        let m = route("/api", &status).unwrap();
        assert_eq!(m.route.endpoint, Endpoint::Status);
        assert_eq!(m.route.methods, [Method::GET]);
        assert_eq!(ROUTES.len(), 2);
    }

    #[test]
    fn normalises_bases() {
        for (raw, want) in [
            ("", ""),
            ("/", ""),
            ("api", "/api"),
            ("/api/", "/api"),
            ("/a/b", "/a/b"),
        ] {
            assert_eq!(normalise_base(raw), want);
        }
    }

    #[test]
    fn decodes_the_login_only() {
        let m = route(
            "/api",
            "/api/users/ops%40example.com/appliances/1/images/2/pimages/3/cancel",
        )
        .unwrap();
        assert_eq!(m.key.uid.as_str(), "ops@example.com");
        assert!(route(
            "/api",
            "/api/users/alice/appliances/%31/images/2/pimages/3/cancel"
        )
        .is_none());
    }

    #[test]
    fn everything_else_is_not_found() {
        let long = "9".repeat(600);
        for path in [
            "/",
            "",
            "/api",
            "/api/users/alice/appliances/1/images/2/pimages/3",
            "/api/users/alice/appliances/1/images/2/pimages/3/cancel/",
            "/api/users/alice/appliances/1/images/2/pimages/3/cancel/x",
            "/api//users/alice/appliances/1/images/2/pimages/3/cancel",
            "/api/users//appliances/1/images/2/pimages/3/cancel",
            "/api/users/alice/appliances/x/images/2/pimages/3/cancel",
            "/api/users/alice/appliances/1/images/+2/pimages/3/cancel",
            "/api/users/alice/appliances/1/images/2/pimages/99999999999999999999/cancel",
            "/api/users/al%2Fice/appliances/1/images/2/pimages/3/cancel",
            "/api/users/../appliances/1/images/2/pimages/3/cancel",
            "/api/users/%E2%82%AC/appliances/1/images/2/pimages/3/cancel",
            "/api/users/%FF/appliances/1/images/2/pimages/3/cancel",
            "/api/Users/alice/appliances/1/images/2/pimages/3/cancel",
            "/api/users/alice/appliances/1/images/2/pimages/3/CANCEL",
            "/other/users/alice/appliances/1/images/2/pimages/3/cancel",
            "users/alice/appliances/1/images/2/pimages/3/cancel",
            &format!("/api/users/alice/appliances/{long}/images/2/pimages/3/cancel"),
        ] {
            assert!(route("/api", path).is_none(), "{path}");
        }
    }
}
