//! The `grpc-timeout` request header of gRPC over HTTP/2: how long the caller is willing to
//! wait, as 1 to 8 ASCII digits and one unit (`H` hours, `M` minutes, `S` seconds,
//! `m` milliseconds, `u` microseconds, `n` nanoseconds).
//!
//! ```
//! use ctxcore::http::grpc_timeout;
//! use http::HeaderValue;
//! use std::time::Duration;
//!
//! assert_eq!(grpc_timeout::parse(&HeaderValue::from_static("250m")), Some(Duration::from_millis(250)));
//! assert_eq!(grpc_timeout::parse(&HeaderValue::from_static("-1S")), None);
//! assert_eq!(grpc_timeout::encode(Duration::from_millis(1500)), "1500000u");
//! ```

use http::HeaderValue;
use std::time::Duration;

/// The header's name.
pub const HEADER: &str = "grpc-timeout";

/// [`HEADER`] as a parsed name: a lookup with it hashes the name but never parses it.
pub(crate) static NAME: http::HeaderName = http::HeaderName::from_static(HEADER);

/// The largest value the header can carry: 8 digits.
const MAX_VALUE: u64 = 99_999_999;

/// Units from the finest to the coarsest, with their length in nanoseconds.
const UNITS: [(u8, u64); 6] = [
    (b'n', 1),
    (b'u', 1_000),
    (b'm', 1_000_000),
    (b'S', 1_000_000_000),
    (b'M', 60 * 1_000_000_000),
    (b'H', 3_600 * 1_000_000_000),
];

/// The timeout a `grpc-timeout` value names, or `None` if it is malformed: anything but 1 to
/// 8 ASCII digits followed by one of `H M S m u n` (no sign, no spaces). The largest value,
/// `99999999H` (over 11,000 years), is valid and does not overflow.
///
/// ```
/// use ctxcore::http::grpc_timeout::parse;
/// use http::HeaderValue;
/// use std::time::Duration;
///
/// assert_eq!(parse(&HeaderValue::from_static("1H")), Some(Duration::from_secs(3600)));
/// assert_eq!(parse(&HeaderValue::from_static("123456789S")), None); // 9 digits
/// assert_eq!(parse(&HeaderValue::from_static("1x")), None);
/// assert!(parse(&HeaderValue::from_static("99999999H")).is_some());
/// ```
pub fn parse(v: &HeaderValue) -> Option<Duration> {
    let bytes = v.as_bytes();
    let (&unit, digits) = bytes.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    let (_, nanos) = UNITS.iter().find(|(u, _)| *u == unit)?;
    // At most 99_999_999 * 3.6e12 ns = 3.6e20 ns: past u64, so split into seconds.
    let per_sec = 1_000_000_000;
    Some(if *nanos >= per_sec {
        Duration::from_secs(value * (nanos / per_sec))
    } else {
        Duration::from_nanos(value * nanos)
    })
}

/// A `grpc-timeout` value for `t`: the finest unit in which `t` fits in 8 digits, rounded up,
/// so the value is never shorter than `t`. A `t` past `99999999H` is encoded as that.
///
/// ```
/// use ctxcore::http::grpc_timeout::{encode, parse};
/// use std::time::Duration;
///
/// assert_eq!(encode(Duration::from_nanos(1)), "1n");
/// assert_eq!(encode(Duration::from_millis(100)), "100000u");
/// assert_eq!(encode(Duration::from_secs(3600)), "3600000m");
/// let t = Duration::from_nanos(123_456_789_123);
/// assert!(parse(&encode(t)).unwrap() >= t);
/// assert_eq!(encode(Duration::MAX), "99999999H");
/// ```
pub fn encode(t: Duration) -> HeaderValue {
    let nanos = t.as_nanos();
    let (unit, value) = UNITS
        .iter()
        .find_map(|&(unit, len)| {
            let value = nanos.div_ceil(u128::from(len));
            (value <= u128::from(MAX_VALUE)).then_some((unit, value as u64))
        })
        .unwrap_or((b'H', MAX_VALUE));
    let mut text = value.to_string().into_bytes();
    text.push(unit);
    HeaderValue::from_bytes(&text).expect("digits and a letter are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &[u8]) -> Option<Duration> {
        parse(&HeaderValue::from_bytes(s).unwrap())
    }

    #[test]
    fn every_unit() {
        assert_eq!(parsed(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parsed(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(parsed(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parsed(b"2m"), Some(Duration::from_millis(2)));
        assert_eq!(parsed(b"2u"), Some(Duration::from_micros(2)));
        assert_eq!(parsed(b"2n"), Some(Duration::from_nanos(2)));
        assert_eq!(parsed(b"00000000n"), Some(Duration::ZERO));
    }

    #[test]
    fn round_trip_never_shorter() {
        for nanos in [
            0u64,
            1,
            999,
            1_000,
            1_001,
            99_999_999,
            100_000_000,
            123_456_789_123,
        ] {
            let t = Duration::from_nanos(nanos);
            let back = parse(&encode(t)).unwrap();
            assert!(back >= t, "{t:?} -> {:?} -> {back:?}", encode(t));
        }
        let t = Duration::from_secs(99_999_999 * 3600);
        assert_eq!(encode(t), "99999999H");
        assert_eq!(parse(&encode(t)), Some(t));
    }
}
