//! UForge's `status` and `uforgeError` representations, in XML and JSON.
//!
//! XML: the root is in the UForge namespace *with a prefix*, children are
//! unqualified and in schema order. The SDK rejects a default namespace,
//! unknown elements and any other order. Written with quick-xml's event
//! writer (`Xml`); JSON with serde_json.

use std::io::Write as _;

use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use serde::ser::{SerializeMap, Serializer};

use super::negotiate::Format;
use crate::domain::{PublishRecord, PublishState, Timestamp};

pub const NAMESPACE: &str = "http://www.usharesoft.com/uforge";

/// A value of one `status` field, typed as in the schema.
#[derive(Debug, Clone, PartialEq)]
enum Value<'a> {
    Str(&'a str),
    Owned(String),
    Bool(bool),
    Long(i64),
    Time(Timestamp),
}

/// The `status` fields of a publish, in the schema's order.
fn status_fields(rec: &PublishRecord) -> Vec<(&'static str, Value<'_>)> {
    use Value::*;
    let state = rec.state;
    let mut f = Vec::with_capacity(16);
    if let Some(t) = rec.created {
        f.push(("created", Time(t)));
    }
    f.push(("dbId", Long(rec.key.pitid.get())));
    if let Some(t) = rec.last_modified {
        f.push(("lastModified", Time(t)));
    }
    if let Some(b) = rec.bytes_loaded {
        f.push(("bytesLoaded", Long(b)));
    }
    if let Some(b) = rec.bytes_total {
        f.push(("bytesTotal", Long(b)));
    }
    f.push(("cancelled", Bool(state == PublishState::Cancelled)));
    f.push(("complete", Bool(state == PublishState::Published)));
    f.push(("error", Bool(state == PublishState::Failed)));
    if let Some(m) = &rec.error_message {
        f.push(("errorMessage", Str(m)));
    }
    if let Some(m) = &rec.message {
        f.push(("message", Str(m)));
    }
    let uri = super::route::publish_uri(&rec.key);
    f.push(("parentUri", Owned(uri.clone())));
    if let Some(p) = rec.percentage {
        f.push(("percentage", Long(p.into())));
    }
    f.push(("published", Bool(state == PublishState::Published)));
    f.push(("uri", Owned(format!("{uri}/status"))));
    f
}

/// A publish's `status` object, what every route answers on success.
pub fn status(rec: &PublishRecord, format: Format) -> Vec<u8> {
    let fields = status_fields(rec);
    match format {
        Format::Xml => {
            // One buffer: each value written into it, no string per field.
            let mut out = Xml::root("ns0:status");
            for (name, value) in &fields {
                match value {
                    Value::Str(s) => out.element(name, s),
                    Value::Owned(s) => out.element(name, s),
                    Value::Bool(b) => out.element(name, if *b { "true" } else { "false" }),
                    Value::Long(n) => out.number(name, *n),
                    Value::Time(t) => out.element(name, &t.to_rfc3339()),
                }
            }
            out.close_root()
        }
        Format::Json => {
            let mut out = Vec::with_capacity(256);
            let mut ser = serde_json::Serializer::new(&mut out);
            let written = (|| {
                let mut map = ser.serialize_map(Some(fields.len()))?;
                for (name, value) in &fields {
                    match value {
                        Value::Str(s) => map.serialize_entry(name, s)?,
                        Value::Owned(s) => map.serialize_entry(name, s)?,
                        Value::Bool(b) => map.serialize_entry(name, b)?,
                        Value::Long(n) => map.serialize_entry(name, n)?,
                        Value::Time(t) => map.serialize_entry(name, &t.to_rfc3339())?,
                    }
                }
                map.end()
            })();
            // Writing strings, booleans and integers into a Vec cannot fail.
            debug_assert!(written.is_ok());
            out
        }
    }
}

/// A `uforgeError`: what went wrong, for whom, and when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UforgeError {
    pub localized_error_msg: LocalizedErrorMsg,
    pub request_method: String,
    pub request_uri: String,
    pub status_code: u16,
    #[serde(serialize_with = "rfc3339")]
    pub timestamp: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalizedErrorMsg {
    pub message: String,
    pub message_id: &'static str,
    #[serde(skip_serializing_if = "Parameters::is_empty")]
    pub parameters: Parameters,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Parameters {
    pub parameter: Vec<String>,
}

impl Parameters {
    fn is_empty(&self) -> bool {
        self.parameter.is_empty()
    }
}

fn rfc3339<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339())
}

impl UforgeError {
    pub fn render(&self, format: Format) -> Vec<u8> {
        match format {
            Format::Json => serde_json::to_vec(self).unwrap_or_default(),
            Format::Xml => {
                let mut out = Xml::root("ns0:uforgeError");
                let msg = &self.localized_error_msg;
                out.start("localizedErrorMsg");
                out.element("message", &msg.message);
                out.element("messageId", msg.message_id);
                if !msg.parameters.is_empty() {
                    out.start("parameters");
                    for p in &msg.parameters.parameter {
                        out.element("parameter", p);
                    }
                    out.end("parameters");
                }
                out.end("localizedErrorMsg");
                out.element("requestMethod", &self.request_method);
                out.element("requestUri", &self.request_uri);
                out.number("statusCode", self.status_code.into());
                out.element("timestamp", &self.timestamp.to_rfc3339());
                out.close_root()
            }
        }
    }
}

/// A representation being written: quick-xml's writer on one buffer.
/// Writing into a `Vec` cannot fail, so its `io::Result`s are dropped.
/// What quick-xml does not do is done here: it writes any character it
/// is given, and XML 1.0 cannot carry most control characters even
/// escaped, so `element` drops them first.
struct Xml {
    writer: quick_xml::Writer<Vec<u8>>,
    root: &'static str,
}

impl Xml {
    /// `<{root} xmlns:ns0="…">`, `root` prefixed (`ns0:status`).
    fn root(root: &'static str) -> Xml {
        let mut writer = quick_xml::Writer::new(Vec::with_capacity(512));
        let start = BytesStart::new(root).with_attributes([("xmlns:ns0", NAMESPACE)]);
        let _ = writer.write_event(Event::Start(start));
        Xml { writer, root }
    }

    fn start(&mut self, name: &str) {
        let _ = self.writer.write_event(Event::Start(BytesStart::new(name)));
    }

    fn end(&mut self, name: &str) {
        let _ = self.writer.write_event(Event::End(BytesEnd::new(name)));
    }

    /// `<name>text</name>`, the text escaped (quick-xml's `escape`: `<`,
    /// `>`, `&`, `'`, `"`) and stripped of what XML cannot carry.
    fn element(&mut self, name: &str, text: &str) {
        let text = if text.chars().any(not_xml_char) {
            std::borrow::Cow::Owned(text.chars().filter(|c| !not_xml_char(*c)).collect())
        } else {
            std::borrow::Cow::Borrowed(text)
        };
        self.start(name);
        let _ = self.writer.write_event(Event::Text(BytesText::new(&text)));
        self.end(name);
    }

    /// `<name>n</name>`: digits need no escaping, and no string is made.
    fn number(&mut self, name: &str, n: i64) {
        self.start(name);
        let _ = write!(self.writer.get_mut(), "{n}");
        self.end(name);
    }

    fn close_root(mut self) -> Vec<u8> {
        let _ = self
            .writer
            .write_event(Event::End(BytesEnd::new(self.root)));
        self.writer.into_inner()
    }
}

fn not_xml_char(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CancelStamp, Login, PublishKey};

    fn record() -> PublishRecord {
        let key = PublishKey {
            uid: Login::parse("alice").unwrap(),
            aid: 1.into(),
            itid: 2.into(),
            pitid: 3.into(),
        };
        let mut r = PublishRecord::new(key, PublishState::Publishing);
        r.percentage = Some(40);
        r.cancelled(
            &CancelStamp::new(
                "r".into(),
                Timestamp(1_795_718_847),
                crate::domain::CancelAudit::http(&r.key.uid),
            ),
            &crate::domain::AttemptToken::from_bytes([0; 16]),
        )
        .unwrap()
    }

    #[test]
    fn status_xml_matches_the_contract_example() {
        let xml = String::from_utf8(status(&record(), Format::Xml)).unwrap();
        assert_eq!(
            xml,
            "<ns0:status xmlns:ns0=\"http://www.usharesoft.com/uforge\"><dbId>3</dbId>\
             <lastModified>2026-11-26T18:47:27Z</lastModified><cancelled>true</cancelled>\
             <complete>false</complete><error>false</error><message>Publish cancelled</message>\
             <parentUri>users/alice/appliances/1/images/2/pimages/3</parentUri>\
             <percentage>40</percentage><published>false</published>\
             <uri>users/alice/appliances/1/images/2/pimages/3/status</uri></ns0:status>"
        );
    }

    #[test]
    fn status_json_has_the_same_fields_and_types() {
        let v: serde_json::Value =
            serde_json::from_slice(&status(&record(), Format::Json)).unwrap();
        assert_eq!(v["cancelled"], true);
        assert_eq!(v["complete"], false);
        assert_eq!(v["percentage"], 40);
        assert_eq!(v["dbId"], 3);
        assert_eq!(v["lastModified"], "2026-11-26T18:47:27Z");
        assert_eq!(
            v["uri"],
            "users/alice/appliances/1/images/2/pimages/3/status"
        );
        assert!(v.get("created").is_none());
    }

    #[test]
    fn text_is_escaped() {
        let mut r = record();
        r.message = Some("<b>&\"x\"</b>".into());
        let xml = String::from_utf8(status(&r, Format::Xml)).unwrap();
        assert!(
            xml.contains("<message>&lt;b&gt;&amp;&quot;x&quot;&lt;/b&gt;</message>"),
            "{xml}"
        );
    }

    #[test]
    fn control_characters_are_dropped_from_xml() {
        let mut r = record();
        r.message = Some("a\u{0}b\u{1b}c\td".into());
        let xml = String::from_utf8(status(&r, Format::Xml)).unwrap();
        assert!(xml.contains("<message>abc\td</message>"), "{xml}");
    }

    #[test]
    fn uforge_error_in_both_formats() {
        let e = UforgeError {
            localized_error_msg: LocalizedErrorMsg {
                message: "Publish is already published".into(),
                message_id: "publish.cancel.finished",
                parameters: Parameters {
                    parameter: vec!["published".into()],
                },
            },
            request_method: "DELETE".into(),
            request_uri: "/api/users/a&b".into(),
            status_code: 409,
            timestamp: Timestamp(0),
        };
        let xml = String::from_utf8(e.render(Format::Xml)).unwrap();
        assert_eq!(
            xml,
            "<ns0:uforgeError xmlns:ns0=\"http://www.usharesoft.com/uforge\"><localizedErrorMsg>\
             <message>Publish is already published</message><messageId>publish.cancel.finished</messageId>\
             <parameters><parameter>published</parameter></parameters></localizedErrorMsg>\
             <requestMethod>DELETE</requestMethod><requestUri>/api/users/a&amp;b</requestUri>\
             <statusCode>409</statusCode><timestamp>1970-01-01T00:00:00Z</timestamp></ns0:uforgeError>"
        );
        let v: serde_json::Value = serde_json::from_slice(&e.render(Format::Json)).unwrap();
        assert_eq!(v["statusCode"], 409);
        assert_eq!(
            v["localizedErrorMsg"]["message"],
            "Publish is already published"
        );
        assert_eq!(
            v["localizedErrorMsg"]["parameters"]["parameter"][0],
            "published"
        );
        assert_eq!(v["requestMethod"], "DELETE");
    }
}
