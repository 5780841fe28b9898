//! Element-by-element checks of UForge XML, as strict as the UForge SDK:
//! prefixed root in the UForge namespace, no default namespace, unqualified
//! children, schema order, no unknown elements.

use std::collections::HashMap;

use quick_xml::events::Event;
use quick_xml::Reader;

pub const NS: &str = "http://www.usharesoft.com/uforge";

/// `status` children in schema order (CONTRACT.md).
pub const STATUS_ORDER: &[&str] = &[
    "created",
    "dbId",
    "digest",
    "lastModified",
    "bytesLoaded",
    "bytesTotal",
    "cancelled",
    "complete",
    "detailedError",
    "detailedErrorMsg",
    "error",
    "errorMessage",
    "eta",
    "message",
    "parentUri",
    "percentage",
    "published",
    "totalTime",
    "uri",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Elem {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Elem>,
}

impl Elem {
    pub fn child(&self, name: &str) -> Option<&Elem> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.children.iter().map(|c| c.name.as_str()).collect()
    }
}

/// Parses a whole document into its root element.
pub fn parse(xml: &str) -> Elem {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Elem> = Vec::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => stack.push(elem(&e)),
            Event::Empty(e) => {
                let el = elem(&e);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return el,
                }
            }
            Event::Text(t) => {
                let text = t.decode().expect("text").into_owned();
                let text = quick_xml::escape::unescape(&text)
                    .expect("entities")
                    .into_owned();
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&text);
                } else {
                    assert!(text.trim().is_empty(), "text outside the root: {text:?}");
                }
            }
            Event::GeneralRef(r) => {
                let name = String::from_utf8(r.to_vec()).expect("entity");
                let text = quick_xml::escape::unescape(&format!("&{name};"))
                    .expect("entity")
                    .into_owned();
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&text);
                }
            }
            Event::End(_) => {
                let done = stack.pop().expect("balanced");
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return done,
                }
            }
            Event::Eof => panic!("document ended inside an element"),
            Event::Decl(_)
            | Event::Comment(_)
            | Event::PI(_)
            | Event::DocType(_)
            | Event::CData(_) => {}
        }
    }
}

fn elem(e: &quick_xml::events::BytesStart<'_>) -> Elem {
    let name = String::from_utf8(e.name().as_ref().to_vec()).expect("utf-8 name");
    let attrs = e
        .attributes()
        .map(|a| {
            let a = a.expect("attribute");
            (
                String::from_utf8(a.key.as_ref().to_vec()).expect("attr name"),
                a.unescape_value().expect("attr value").into_owned(),
            )
        })
        .collect();
    Elem {
        name,
        attrs,
        text: String::new(),
        children: Vec::new(),
    }
}

/// Checks the root is `<prefix:local xmlns:prefix="NS">` with no default
/// namespace, and every descendant is unqualified.
pub fn check_root(root: &Elem, local: &str) {
    let (prefix, name) = root
        .name
        .split_once(':')
        .expect("root element must be prefixed");
    assert_eq!(name, local, "root element");
    let ns_attr = format!("xmlns:{prefix}");
    assert!(
        root.attrs.iter().any(|(k, v)| *k == ns_attr && v == NS),
        "root must bind {prefix} to {NS}: {:?}",
        root.attrs
    );
    assert!(
        !root.attrs.iter().any(|(k, _)| k == "xmlns"),
        "no default namespace on the root"
    );
    fn unqualified(e: &Elem) {
        for c in &e.children {
            assert!(
                !c.name.contains(':'),
                "child {} must be unqualified",
                c.name
            );
            assert!(c.attrs.is_empty(), "child {} has attributes", c.name);
            unqualified(c);
        }
    }
    unqualified(root);
}

/// Checks a `status` document and returns its fields by name.
pub fn check_status(xml: &str) -> HashMap<String, String> {
    let root = parse(xml);
    check_root(&root, "status");
    let mut last = None;
    for c in &root.children {
        let pos = STATUS_ORDER
            .iter()
            .position(|n| *n == c.name)
            .unwrap_or_else(|| panic!("unknown status element {}", c.name));
        assert!(
            last.is_none_or(|l| pos > l),
            "{} out of schema order in {xml}",
            c.name
        );
        last = Some(pos);
        assert!(c.children.is_empty(), "{} must be simple", c.name);
    }
    for b in ["cancelled", "complete", "error", "published"] {
        if let Some(c) = root.child(b) {
            assert!(c.text == "true" || c.text == "false", "{b} = {:?}", c.text);
        }
    }
    root.children
        .iter()
        .map(|c| (c.name.clone(), c.text.clone()))
        .collect()
}

/// Checks a `uforgeError` document: every element hammr needs, in order.
pub struct ErrorDoc {
    pub message: String,
    pub message_id: String,
    pub parameters: Vec<String>,
    pub method: String,
    pub uri: String,
    pub status: u16,
}

pub fn check_error(xml: &str) -> ErrorDoc {
    let root = parse(xml);
    check_root(&root, "uforgeError");
    assert_eq!(
        root.names(),
        [
            "localizedErrorMsg",
            "requestMethod",
            "requestUri",
            "statusCode",
            "timestamp"
        ],
        "{xml}"
    );
    let msg = root.child("localizedErrorMsg").unwrap();
    let names = msg.names();
    assert!(
        names == ["message", "messageId"] || names == ["message", "messageId", "parameters"],
        "{names:?}"
    );
    let parameters = msg
        .child("parameters")
        .map(|p| {
            assert!(p.children.iter().all(|c| c.name == "parameter"));
            p.children.iter().map(|c| c.text.clone()).collect()
        })
        .unwrap_or_default();
    let text = |e: &Elem, n: &str| e.child(n).unwrap().text.clone();
    let message = text(msg, "message");
    assert!(!message.is_empty());
    let timestamp = text(&root, "timestamp");
    assert!(
        timestamp.ends_with('Z') && timestamp.len() == 20,
        "{timestamp}"
    );
    ErrorDoc {
        message,
        message_id: text(msg, "messageId"),
        parameters,
        method: text(&root, "requestMethod"),
        uri: text(&root, "requestUri"),
        status: text(&root, "statusCode").parse().expect("statusCode int"),
    }
}
