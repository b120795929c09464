//! The W3C `baggage` header: application key/value pairs that travel with a request, across
//! services. [`RequestContextLayer`](super::RequestContextLayer) puts a request's baggage into
//! its context; [`PropagateDeadlineLayer`](super::PropagateDeadlineLayer) writes a context's
//! baggage on outgoing requests.
//!
//! Limits (W3C Baggage): at most 64 list-members and 8192 bytes in all. A header set over
//! 8192 bytes is ignored whole; members past the 64th are dropped; malformed members are
//! skipped. Values are percent-decoded (as UTF-8, invalid bytes replaced); member properties
//! are kept as they came.

use http::header::{HeaderMap, HeaderValue};
use std::fmt;

/// The header's name.
pub const HEADER: &str = "baggage";

/// [`HEADER`] as a parsed name: a lookup with it hashes the name but never parses it.
pub(crate) static NAME: http::HeaderName = http::HeaderName::from_static(HEADER);
/// The most list-members one baggage carries.
pub const MAX_MEMBERS: usize = 64;
/// The most bytes the `baggage` headers of one request carry, separators included.
pub const MAX_BYTES: usize = 8192;

/// One list-member: a key, its decoded value and its properties as received.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    key: String,
    value: String,
    properties: String,
}

/// A request's baggage: typed, in the request's context (`ctx.value::<Baggage>()`).
///
/// ```
/// use ctxcore::http::Baggage;
///
/// let baggage = Baggage::parse("userId=alice, region=eu%20west;ttl=9, =broken");
/// assert_eq!(baggage.get("userId"), Some("alice"));
/// assert_eq!(baggage.get("region"), Some("eu west"));
/// assert_eq!(baggage.len(), 2);
/// assert_eq!(baggage.skipped(), 1);
/// assert_eq!(baggage.to_string(), "userId=alice,region=eu%20west;ttl=9");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baggage {
    members: Vec<Member>,
    skipped: usize,
}

impl Baggage {
    /// An empty baggage.
    ///
    /// ```
    /// assert!(ctxcore::http::Baggage::new().is_empty());
    /// ```
    pub fn new() -> Baggage {
        Baggage::default()
    }

    /// This baggage with `key` set to `value` (replacing an earlier value of `key`). A key
    /// that is not an HTTP token, or a 65th member, is not added (and counted as skipped).
    ///
    /// ```
    /// let b = ctxcore::http::Baggage::new().with("tenant", "acme").with("tenant", "umbrella");
    /// assert_eq!(b.get("tenant"), Some("umbrella"));
    /// ```
    pub fn with(mut self, key: &str, value: &str) -> Baggage {
        if let Some(m) = self.members.iter_mut().find(|m| m.key == key) {
            m.value = value.to_owned();
        } else if is_token(key) && self.members.len() < MAX_MEMBERS {
            self.members.push(Member {
                key: key.to_owned(),
                value: value.to_owned(),
                properties: String::new(),
            });
        } else {
            self.skipped += 1;
        }
        self
    }

    /// Parses one header value (a comma-separated list of `key=value;properties`).
    /// Malformed members are skipped and counted; members past the 64th are dropped and
    /// counted. The byte limit is checked by [`from_headers`](Baggage::from_headers).
    ///
    /// ```
    /// let b = ctxcore::http::Baggage::parse("a=1,,b,c=3");
    /// assert_eq!((b.len(), b.skipped()), (2, 1)); // the empty member is allowed, "b" is not
    /// ```
    pub fn parse(header: &str) -> Baggage {
        let mut baggage = Baggage::default();
        baggage.extend_from(header);
        baggage
    }

    fn extend_from(&mut self, header: &str) {
        for raw in header.split(',') {
            if raw.trim_matches(is_ows).is_empty() {
                continue;
            }
            match parse_member(raw) {
                Some(member) if self.members.len() < MAX_MEMBERS => self.members.push(member),
                _ => self.skipped += 1,
            }
        }
    }

    /// The baggage of a request's headers (all its `baggage` headers, in order), or `None`
    /// if there is none, if it has no valid member, or if the headers are over 8192 bytes
    /// in all (then they are ignored whole).
    ///
    /// ```
    /// use ctxcore::http::Baggage;
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("baggage", "k=v".parse().unwrap());
    /// assert_eq!(Baggage::from_headers(&headers).unwrap().get("k"), Some("v"));
    /// headers.insert("baggage", format!("k={}", "v".repeat(9000)).parse().unwrap());
    /// assert_eq!(Baggage::from_headers(&headers), None);
    /// ```
    pub fn from_headers(headers: &HeaderMap) -> Option<Baggage> {
        let mut total = 0;
        let mut baggage = Baggage::default();
        for value in headers.get_all(&NAME) {
            total += value.len() + usize::from(total > 0);
            if total > MAX_BYTES {
                return None;
            }
            // A value with bytes outside visible ASCII is malformed as a whole.
            match value.to_str() {
                Ok(text) => baggage.extend_from(text),
                Err(_) => baggage.skipped += 1,
            }
        }
        (!baggage.is_empty()).then_some(baggage)
    }

    /// The decoded value of `key`.
    ///
    /// ```
    /// assert_eq!(ctxcore::http::Baggage::parse("k=a%2Cb").get("k"), Some("a,b"));
    /// ```
    pub fn get(&self, key: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|m| m.key == key)
            .map(|m| m.value.as_str())
    }

    /// The members as `(key, decoded value)`, in order.
    ///
    /// ```
    /// let b = ctxcore::http::Baggage::parse("a=1,b=2");
    /// assert_eq!(b.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "2")]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.members
            .iter()
            .map(|m| (m.key.as_str(), m.value.as_str()))
    }

    /// How many members there are.
    ///
    /// ```
    /// assert_eq!(ctxcore::http::Baggage::parse("a=1").len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True if there is no member.
    ///
    /// ```
    /// assert!(ctxcore::http::Baggage::parse("").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// How many members were left out: malformed, or past the 64th.
    ///
    /// ```
    /// assert_eq!(ctxcore::http::Baggage::parse("a b=1").skipped(), 1);
    /// ```
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The header value for this baggage, or `None` if it is empty or would be over 8192
    /// bytes.
    ///
    /// ```
    /// let b = ctxcore::http::Baggage::new().with("k", "a b");
    /// assert_eq!(b.to_header_value().unwrap(), "k=a%20b");
    /// ```
    pub fn to_header_value(&self) -> Option<HeaderValue> {
        let text = self.to_string();
        if text.is_empty() || text.len() > MAX_BYTES {
            return None;
        }
        HeaderValue::from_str(&text).ok()
    }
}

impl fmt::Display for Baggage {
    /// The members in header form, values percent-encoded.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&m.key)?;
            f.write_str("=")?;
            for b in m.value.bytes() {
                if is_baggage_octet(b) && b != b'%' {
                    write!(f, "{}", b as char)?;
                } else {
                    write!(f, "%{b:02X}")?;
                }
            }
            if !m.properties.is_empty() {
                write!(f, ";{}", m.properties)?;
            }
        }
        Ok(())
    }
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// RFC 7230 `tchar`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// W3C `baggage-octet`: visible ASCII except `"`, `,`, `;` and `\`.
fn is_baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// `key OWS "=" OWS value *( OWS ";" OWS property )`, or `None` if malformed.
fn parse_member(raw: &str) -> Option<Member> {
    let (head, properties) = match raw.split_once(';') {
        Some((head, props)) => (head, props.trim_matches(is_ows)),
        None => (raw, ""),
    };
    let (key, value) = head.split_once('=')?;
    let key = key.trim_matches(is_ows);
    let value = value.trim_matches(is_ows);
    if !is_token(key) || !value.bytes().all(is_baggage_octet) {
        return None;
    }
    Some(Member {
        key: key.to_owned(),
        value: percent_decode(value)?,
        properties: properties.to_owned(),
    })
}

/// Decodes `%XX` escapes; `None` for a `%` not followed by two hex digits.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_properties_and_escapes() {
        let b = Baggage::parse(" a = 1 ; p1=x;p2 ,b=%E2%82%AC,c=%zz,d=%4");
        assert_eq!(b.get("a"), Some("1"));
        assert_eq!(b.get("b"), Some("€"));
        assert_eq!((b.len(), b.skipped()), (2, 2));
        assert_eq!(b.to_string(), "a=1;p1=x;p2,b=%E2%82%AC");
        assert_eq!(Baggage::parse(&b.to_string()), Baggage { skipped: 0, ..b });
    }

    #[test]
    fn encoding_round_trips_odd_values() {
        let b = Baggage::new().with("k", "50% off, \"quoted\"; \\ ok");
        let back = Baggage::parse(&b.to_string());
        assert_eq!(back.get("k"), Some("50% off, \"quoted\"; \\ ok"));
    }
}
