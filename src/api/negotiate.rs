//! Content negotiation (`Accept`) and `Prefer: return=minimal`.

/// The two representations UForge serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xml,
    Json,
}

impl Format {
    /// Exact values: the UForge SDK compares the XML one as a string and
    /// skips parsing when a charset parameter follows.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Xml => "application/xml",
            Format::Json => "application/json",
        }
    }
}

/// Longest `Accept` value we parse; longer ones are treated as absent.
const MAX_ACCEPT_LEN: usize = 1024;

/// Picks the representation for the `Accept` values of a request: XML when
/// there is none or when XML and JSON are equally acceptable, `None` (406)
/// when neither is acceptable.
pub fn choose<'a>(accept: impl IntoIterator<Item = &'a [u8]>) -> Option<Format> {
    let mut any = false;
    // (specificity, q) of the most specific range matching each format.
    let mut xml: Option<(u8, u16)> = None;
    let mut json: Option<(u8, u16)> = None;
    for value in accept {
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        if value.len() > MAX_ACCEPT_LEN {
            continue;
        }
        for range in value.split(',') {
            let range = range.trim();
            if range.is_empty() {
                continue;
            }
            any = true;
            let Some((mime, q)) = media_range(range) else {
                continue;
            };
            for (format, best) in [
                ("application/xml", &mut xml),
                ("application/json", &mut json),
            ] {
                if let Some(spec) = matches(&mime, format) {
                    if best.is_none_or(|(s, _)| spec > s) {
                        *best = Some((spec, q));
                    }
                }
            }
        }
    }
    if !any {
        return Some(Format::Xml);
    }
    let qx = xml.map_or(0, |(_, q)| q);
    let qj = json.map_or(0, |(_, q)| q);
    match (qx, qj) {
        (0, 0) => None,
        (x, j) if x >= j => Some(Format::Xml),
        _ => Some(Format::Json),
    }
}

/// `type/subtype;params` → (lowercased `type/subtype`, q in thousandths).
fn media_range(range: &str) -> Option<(String, u16)> {
    let mut parts = range.split(';');
    let mime = parts.next()?.trim().to_ascii_lowercase();
    let (t, s) = mime.split_once('/')?;
    if t.is_empty() || s.is_empty() || (t == "*" && s != "*") {
        return None;
    }
    let mut q = 1000;
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            if k.trim().eq_ignore_ascii_case("q") {
                q = parse_q(v.trim())?;
            }
        }
    }
    Some((mime, q))
}

/// RFC 9110 qvalue: `0`, `1`, `0.xxx`, `1.000`.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_val: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(frac_val),
        "1" if frac_val == 0 => Some(1000),
        _ => None,
    }
}

/// How specifically `range` matches `mime` (2 exact, 1 `type/*`, 0 `*/*`).
fn matches(range: &str, mime: &str) -> Option<u8> {
    if range == mime {
        return Some(2);
    }
    let (rt, rs) = range.split_once('/')?;
    let (mt, _) = mime.split_once('/')?;
    match (rt, rs) {
        ("*", "*") => Some(0),
        (t, "*") if t == mt => Some(1),
        _ => None,
    }
}

/// Whether any `Prefer` value asks for `return=minimal` (RFC 7240).
pub fn wants_minimal<'a>(prefer: impl IntoIterator<Item = &'a [u8]>) -> bool {
    prefer.into_iter().any(|v| {
        std::str::from_utf8(v).is_ok_and(|v| {
            v.split([',', ';'])
                .any(|p| p.trim().eq_ignore_ascii_case("return=minimal"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(values: &[&str]) -> Option<Format> {
        choose(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn accept_table() {
        use Format::*;
        let table: &[(&[&str], Option<Format>)] = &[
            (&[], Some(Xml)),
            (&[""], Some(Xml)),
            (&["application/xml"], Some(Xml)),
            (&["APPLICATION/XML"], Some(Xml)),
            (&["*/*"], Some(Xml)),
            (&["application/*"], Some(Xml)),
            (&["application/json"], Some(Json)),
            (&["application/json, application/xml"], Some(Xml)),
            (&["application/json, application/xml;q=0.9"], Some(Json)),
            (
                &["application/xml;q=0.1, application/json;q=0.2"],
                Some(Json),
            ),
            (&["application/json;q=0.5, */*;q=0.1"], Some(Json)),
            (&["*/*;q=0.8, application/json"], Some(Json)),
            (&["text/html"], None),
            (&["text/*"], None),
            (&["application/xml;q=0"], None),
            (&["*/*, application/xml;q=0"], Some(Json)),
            (&["application/json;q=0, */*"], Some(Xml)),
            (&["garbage"], None),
            (&["application/xml;q=2"], None),
            (&["application/xml;q=abc, application/json"], Some(Json)),
            (&["text/plain", "application/json"], Some(Json)),
            (&["*/json"], None),
            (&["application/xml;q=1, application/json;q=0.9"], Some(Xml)),
            (
                &["application/xml;q=1.000, application/json;q=0.9"],
                Some(Xml),
            ),
            (
                &["application/xml;q=1.5, application/json;q=0.9"],
                Some(Json),
            ),
            (&["application/xml;q=0.1234, application/json"], Some(Json)),
            // Of equally specific ranges, the first counts.
            (
                &["application/json;q=0.1, application/json, application/xml;q=0.5"],
                Some(Xml),
            ),
        ];
        for (values, want) in table {
            assert_eq!(pick(values), *want, "{values:?}");
        }
    }

    /// The UForge SDK compares the XML one as a string.
    #[test]
    fn content_types_are_exact() {
        assert_eq!(Format::Xml.content_type(), "application/xml");
        assert_eq!(Format::Json.content_type(), "application/json");
    }

    /// An `Accept` value up to the limit is read; a longer one is absent.
    #[test]
    fn the_accept_length_limit_is_inclusive() {
        let at_limit = format!("application/json;{}", " ".repeat(MAX_ACCEPT_LEN - 17));
        assert_eq!(at_limit.len(), MAX_ACCEPT_LEN);
        assert_eq!(pick(&[&at_limit]), Some(Format::Json));
        let over = format!("{at_limit} ");
        assert_eq!(pick(&[&over]), Some(Format::Xml));
    }

    #[test]
    fn odd_accept_bytes_never_panic() {
        assert_eq!(choose([&b"\xff\xfe"[..]]), Some(Format::Xml));
        let long = "a/b,".repeat(1000);
        assert_eq!(pick(&[&long]), Some(Format::Xml));
        assert_eq!(pick(&[";;;,,,/"]), None);
    }

    #[test]
    fn prefer_minimal() {
        let yes = |v: &[&str]| wants_minimal(v.iter().map(|v| v.as_bytes()));
        assert!(yes(&["return=minimal"]));
        assert!(yes(&["respond-async, RETURN=MINIMAL"]));
        assert!(yes(&["wait=10", "return=minimal"]));
        assert!(!yes(&["return=representation"]));
        assert!(!yes(&[]));
        assert!(!yes(&["return=minimalist"]));
    }
}
