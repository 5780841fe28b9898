//! The one route: `{base}/users/{uid}/appliances/{aid}/images/{itid}/pimages/{pitid}/cancel`.

use percent_encoding::percent_decode_str;

use crate::domain::{ApplianceId, ImageId, Login, PublishId, PublishKey};

/// Paths longer than this are not ours (the longest valid one is ~190 bytes).
pub const MAX_PATH_LEN: usize = 512;

/// A path that names a publish's cancel resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<'a> {
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
    let mut seg = relative.split('/');
    let mut take = || seg.next();
    let parts: [&str; 9] = std::array::from_fn(|_| take().unwrap_or(""));
    if seg.next().is_some() {
        return None;
    }
    let ["users", uid, "appliances", aid, "images", itid, "pimages", pitid, "cancel"] = parts
    else {
        return None;
    };
    let uid = percent_decode_str(uid).decode_utf8().ok()?;
    Some(Matched {
        key: PublishKey {
            uid: Login::parse(&uid).ok()?,
            aid: ApplianceId::parse(aid).ok()?,
            itid: ImageId::parse(itid).ok()?,
            pitid: PublishId::parse(pitid).ok()?,
        },
        relative,
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
            assert_eq!(m.key.uri(), "users/alice/appliances/1/images/2/pimages/3");
        }
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
            assert_eq!(route("/api", path), None, "{path}");
        }
    }
}
