//! gRPC over HTTP/2 as the OTLP services use it: one length-prefixed message each way, the status
//! in trailers. Only what a unary call needs; the receiver logic stays in Python.

use std::io::Read;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use flate2::read::GzDecoder;
use http::{HeaderMap, HeaderName, HeaderValue};

pub const OK: u16 = 0;
pub const INTERNAL: u16 = 13;
pub const UNIMPLEMENTED: u16 = 12;
pub const RESOURCE_EXHAUSTED: u16 = 8;
pub const UNAVAILABLE: u16 = 14;

/// The three services, in the order the Python side numbers them (receiver/grpc_server.py).
const METHODS: [&str; 3] = [
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
];

/// A call's final status: the code, its message, and binary trailers (name, raw bytes).
pub struct Status {
    pub code: u16,
    pub message: String,
    pub details: Vec<(String, Vec<u8>)>,
}

impl Status {
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Status {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }
}

/// Which of the three services a request path names, if any.
pub fn service_of(path: &str) -> Option<u8> {
    METHODS.iter().position(|m| *m == path).map(|i| i as u8)
}

/// How the request's message is compressed, from `grpc-encoding`.
pub fn gzip_encoded(headers: &HeaderMap) -> Result<bool, Status> {
    match headers.get("grpc-encoding").map(|v| v.as_bytes()) {
        None | Some(b"identity") => Ok(false),
        Some(b"gzip") => Ok(true),
        Some(other) => Err(Status::new(
            UNIMPLEMENTED,
            format!(
                "grpc-encoding {} is not supported (identity, gzip)",
                String::from_utf8_lossy(other)
            ),
        )),
    }
}

fn too_large(size: usize, max: usize) -> Status {
    Status::new(
        RESOURCE_EXHAUSTED,
        format!("received message larger than max ({size} vs. {max})"),
    )
}

/// The message length its 5-byte prefix announces, once the prefix has arrived.
fn announced(read: &[u8]) -> Option<usize> {
    let prefix = read.get(1..5)?;
    Some(u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize)
}

/// Refuses a request whose first message, or whose bytes so far, are over `max` (plus prefix);
/// else the size of the framed message, once its prefix has come (to size the buffer once).
pub fn check_size(read: &[u8], max: usize) -> Result<Option<usize>, Status> {
    let length = announced(read);
    if let Some(length) = length.filter(|length| *length > max) {
        return Err(too_large(length, max));
    }
    if read.len() > max.saturating_add(5) {
        return Err(too_large(read.len() - 5, max));
    }
    Ok(length.map(|length| length + 5))
}

/// The request message out of its framing. An empty body is an empty message (what a client
/// with nothing to say may send); a gzip message may inflate to at most `max` bytes, so a gzip
/// bomb costs no more than an honest request at the limit. An uncompressed message is the body's
/// own bytes past the prefix, not a copy (376 KB at 1,000 spans).
pub fn unframe(body: Vec<u8>, gzip: bool, max: usize) -> Result<Bytes, Status> {
    if body.is_empty() {
        return Ok(Bytes::new());
    }
    let Some(length) = announced(&body) else {
        return Err(Status::new(INTERNAL, "truncated gRPC message prefix"));
    };
    let message = &body[5..];
    if length > max {
        return Err(too_large(length, max));
    }
    if message.len() != length {
        return Err(Status::new(
            INTERNAL,
            format!(
                "gRPC message length {length} but {} bytes follow (one message per call)",
                message.len()
            ),
        ));
    }
    match (body[0], gzip) {
        (0, _) => Ok(Bytes::from(body).slice(5..)),
        (1, true) => {
            let mut inflated = Vec::with_capacity(length.saturating_mul(4).min(max));
            GzDecoder::new(message)
                .take(max as u64 + 1)
                .read_to_end(&mut inflated)
                .map_err(|err| Status::new(INTERNAL, format!("gzip message: {err}")))?;
            if inflated.len() > max {
                return Err(too_large(inflated.len(), max));
            }
            Ok(inflated.into())
        }
        (1, false) => Err(Status::new(
            INTERNAL,
            "compressed message without a grpc-encoding",
        )),
        (flag, _) => Err(Status::new(
            INTERNAL,
            format!("gRPC message flag {flag} is not 0 or 1"),
        )),
    }
}

/// The response message with its 5-byte prefix (uncompressed).
pub fn frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put_slice(message);
    framed.freeze()
}

/// `grpc-message` as the spec wants it: bytes outside printable ASCII, and '%', as %XX.
fn percent_encode(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The trailers that end the call: status, message, and each `-bin` detail in unpadded base64.
pub fn trailers(status: &Status) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert("grpc-status", HeaderValue::from(status.code));
    if !status.message.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&percent_encode(&status.message)) {
            map.insert("grpc-message", value);
        }
    }
    for (name, raw) in &status.details {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&STANDARD_NO_PAD.encode(raw)),
        ) {
            map.append(name, value);
        }
    }
    map
}
