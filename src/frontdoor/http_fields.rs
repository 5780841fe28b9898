//! An HTTP event's text read in one pass, keeping only the fields the
//! front door (`super::lambda`) reads; everything else is skipped unread.

use serde_json::Value;

/// The top-level fields of an event `super::lambda` reads: `Shape::of`,
/// `precheck`, `malformed`, `request`, and what the typed events require.
const READ: &[&str] = &[
    "version",
    "httpMethod",
    "path",
    "rawPath",
    "rawQueryString",
    "headers",
    "multiValueHeaders",
    "queryStringParameters",
    "multiValueQueryStringParameters",
];
/// The one object read in part, and the fields of it that are read.
const CONTEXT: &str = "requestContext";
const CONTEXT_READ: &[&str] = &["elb", "http", "stage", "httpMethod"];

/// How deep a kept field may nest (headers nest two levels): deeper, the
/// event is not read, and serde_json's own limit of 128 is never reached,
/// which would fail the runtime's reading of the event.
const KEPT_DEPTH: usize = 16;

/// An HTTP event as this module reads it, in one pass over its text: only
/// the fields this module reads ([`READ`], and [`CONTEXT_READ`] of
/// `requestContext`) are kept, as JSON values; every other field
/// (identity, authorizer, body, ...) is skipped unread: no allocation, no
/// type check, no depth limit. What is kept reads as it would in the whole
/// event (a repeated key: the last one), and anything but an object reads
/// as `null`, which no origin is told by. Reading it never fails on JSON:
/// a kept field nested deeper than [`KEPT_DEPTH`] leaves it unread (`None`).
/// (The runtime reads the event as a `RawEvent` first: reading this type
/// itself through the runtime's path-tracking deserializer cost more than
/// the second pass.)
#[derive(Debug)]
struct HttpFields(Option<Value>);

impl<'de> serde::Deserialize<'de> for HttpFields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let too_deep = std::cell::Cell::new(false);
        let kept = d.deserialize_any(Kept {
            fields: READ,
            too_deep: &too_deep,
        })?;
        Ok(HttpFields((!too_deep.get()).then_some(kept)))
    }
}

/// `HttpFields` of an event's text; `None` when the text is not JSON or a
/// kept field is too deep.
pub fn http_fields(text: &str) -> Option<Value> {
    serde_json::from_str::<HttpFields>(text).ok()?.0
}

/// `HttpFields`' reader of one object, keeping the fields named.
#[derive(Clone, Copy)]
struct Kept<'a> {
    fields: &'static [&'static str],
    too_deep: &'a std::cell::Cell<bool>,
}

/// A kept field's value, as `Value` reads it, to `depth` levels.
#[derive(Clone, Copy)]
struct Bounded<'a> {
    depth: usize,
    too_deep: &'a std::cell::Cell<bool>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Kept<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// A key as it is in the text (borrowed unless it holds an escape).
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(s.into()))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(s.to_owned().into()))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::de::Visitor<'de> for Kept<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    // Anything but an object is not read: skipped.
    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Value::Null)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = serde_json::Map::new();
        while let Some(Key(key)) = map.next_key()? {
            let value = if self.fields.contains(&key.as_ref()) {
                map.next_value_seed(Bounded {
                    depth: KEPT_DEPTH,
                    too_deep: self.too_deep,
                })?
            } else if self.fields == READ && key == CONTEXT {
                map.next_value_seed(Kept {
                    fields: CONTEXT_READ,
                    ..self
                })?
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            };
            kept.insert(key.into_owned(), value);
        }
        Ok(Value::Object(kept))
    }
}

impl<'de> serde::de::Visitor<'de> for Bounded<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    // As `Value` reads them.
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let Some(depth) = self.deeper() else {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            return Ok(Value::Null);
        };
        let mut values = Vec::new();
        while let Some(v) = seq.next_element_seed(Bounded { depth, ..self })? {
            values.push(v);
        }
        Ok(Value::Array(values))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Some(depth) = self.deeper() else {
            while map
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            return Ok(Value::Null);
        };
        let mut values = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            values.insert(key, map.next_value_seed(Bounded { depth, ..self })?);
        }
        Ok(Value::Object(values))
    }
}

impl Bounded<'_> {
    /// The depth left inside this list or object; `None` (and the event
    /// marked too deep) when there is none.
    fn deeper(self) -> Option<usize> {
        let depth = self.depth.checked_sub(1);
        if depth.is_none() {
            self.too_deep.set(true);
        }
        depth
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontdoor::lambda::parse;
    use serde_json::json;

    #[test]
    fn skipped_fields_are_not_read_and_kept_ones_are_as_in_the_whole_event() {
        // Whatever the fields this function does not read hold, however
        // deep: never allocated, never checked.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let text = format!(
            r#"{{"httpMethod": "GET", "path": "/a", "body": {deep},
                "requestContext": {{"httpMethod": "GET", "identity": {deep}, "requestTimeEpoch": "x"}},
                "pathParameters": 7}}"#
        );
        let kept = http_fields(&text).unwrap();
        assert_eq!(
            kept,
            json!({"httpMethod": "GET", "path": "/a", "requestContext": {"httpMethod": "GET"}})
        );
        assert_eq!(parse(kept).unwrap().path, "/a");
        // A repeated key reads as in a whole `Value`: the last one.
        let twice = r#"{"httpMethod": "GET", "httpMethod": "DELETE", "requestContext": {"stage": "a", "stage": "b"}}"#;
        assert_eq!(
            http_fields(twice).unwrap(),
            json!({"httpMethod": "DELETE", "requestContext": {"stage": "b"}})
        );
        // Escaped keys are the keys they spell.
        assert_eq!(
            http_fields(r#"{"p\u0061th": "/x"}"#).unwrap(),
            json!({"path": "/x"})
        );
        // Anything but an object is no origin's event.
        for not_object in [
            "null",
            "[1, {\"httpMethod\": \"GET\"}]",
            "\"GET /\"",
            "42",
            "true",
        ] {
            assert_eq!(http_fields(not_object), Some(Value::Null), "{not_object}");
            assert!(matches!(parse(Value::Null), Err(Ok(_))));
        }
        // A kept field is read to KEPT_DEPTH levels (the headers' object is
        // one of them), never to serde_json's own limit.
        let nested = |n: usize| {
            format!(
                r#"{{"headers": {{"x": {}{}}}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        assert!(http_fields(&nested(KEPT_DEPTH - 1)).is_some());
        assert_eq!(http_fields(&nested(KEPT_DEPTH)), None);
        assert!(serde_json::from_str::<HttpFields>(&nested(200)).is_ok());
        // Not JSON, or a kept field too deep: unread.
        let deep_header = format!(r#"{{"headers": {{"a": {deep}}}}}"#);
        for unreadable in ["", "{", "{} {}", "{\"path\": }", deep_header.as_str()] {
            assert_eq!(http_fields(unreadable), None, "{unreadable:.40}");
        }
    }
}
