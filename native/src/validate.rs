//! What Python's protobuf (upb) accepts, as a table of the OTLP messages.
//!
//! A record is accepted exactly when upb would parse it: every nested message well-formed, every
//! string field valid UTF-8 (the fields the columns skip too, such as exemplars and entity refs),
//! packed fields complete, nesting at most `MAX_DEPTH` deep. The decoder checks the fields it reads
//! as it reads them and hands the parts it skips to `nested`; `validate` walks a whole record only
//! to name the fault of one the decoder rejected (reasons name the innermost message at fault).

use crate::wire::{Fields, Result, Value, MAX_DEPTH};

/// What a field needs checked; fields not listed need nothing beyond well-formed wire bytes.
enum Check {
    Utf8,
    Message(&'static Message),
    PackedVarint,
    PackedFixed64,
}

pub struct Message {
    name: &'static str,
    /// What field n needs, for n below `SLOTS` (every OTLP field number is): a table rather than
    /// a search of a list, as the walk looks a need up for every length-delimited field.
    needs: [Option<&'static Check>; SLOTS],
}

const SLOTS: usize = 16;

impl Message {
    /// The message `name` whose fields `fields` need checking.
    const fn new(name: &'static str, fields: &'static [(u32, Check)]) -> Self {
        let mut needs = [None; SLOTS];
        let mut i = 0;
        while i < fields.len() {
            needs[fields[i].0 as usize] = Some(&fields[i].1);
            i += 1;
        }
        Message { name, needs }
    }
}

use Check::{Message as M, PackedFixed64, PackedVarint, Utf8};

pub static ANY_VALUE: Message =
    Message::new("AnyValue", &[(1, Utf8), (5, M(&ARRAY)), (6, M(&KVLIST))]);
pub static ARRAY: Message = Message::new("ArrayValue", &[(1, M(&ANY_VALUE))]);
pub static KVLIST: Message = Message::new("KeyValueList", &[(1, M(&KEY_VALUE))]);
pub static KEY_VALUE: Message = Message::new("KeyValue", &[(1, Utf8), (2, M(&ANY_VALUE))]);
static ENTITY_REF: Message =
    Message::new("EntityRef", &[(1, Utf8), (2, Utf8), (3, Utf8), (4, Utf8)]);
pub static RESOURCE: Message = Message::new("Resource", &[(1, M(&KEY_VALUE)), (3, M(&ENTITY_REF))]);
pub static SCOPE: Message = Message::new(
    "InstrumentationScope",
    &[(1, Utf8), (2, Utf8), (3, M(&KEY_VALUE))],
);

pub static STATUS: Message = Message::new("Status", &[(2, Utf8)]);
static EVENT: Message = Message::new("Span.Event", &[(2, Utf8), (3, M(&KEY_VALUE))]);
static LINK: Message = Message::new("Span.Link", &[(3, Utf8), (4, M(&KEY_VALUE))]);
static SPAN: Message = Message::new(
    "Span",
    &[
        (3, Utf8),
        (5, Utf8),
        (9, M(&KEY_VALUE)),
        (11, M(&EVENT)),
        (13, M(&LINK)),
        (15, M(&STATUS)),
    ],
);
static SCOPE_SPANS: Message =
    Message::new("ScopeSpans", &[(1, M(&SCOPE)), (2, M(&SPAN)), (3, Utf8)]);
static RESOURCE_SPANS: Message = Message::new(
    "ResourceSpans",
    &[(1, M(&RESOURCE)), (2, M(&SCOPE_SPANS)), (3, Utf8)],
);
pub static TRACES: Message = Message::new("ExportTraceServiceRequest", &[(1, M(&RESOURCE_SPANS))]);

pub static EXEMPLAR: Message = Message::new("Exemplar", &[(7, M(&KEY_VALUE))]);
static NUMBER_POINT: Message =
    Message::new("NumberDataPoint", &[(7, M(&KEY_VALUE)), (5, M(&EXEMPLAR))]);
static HISTOGRAM_POINT: Message = Message::new(
    "HistogramDataPoint",
    &[
        (9, M(&KEY_VALUE)),
        (6, PackedFixed64),
        (7, PackedFixed64),
        (8, M(&EXEMPLAR)),
    ],
);
pub static BUCKETS: Message = Message::new("Buckets", &[(2, PackedVarint)]);
static EXPONENTIAL_POINT: Message = Message::new(
    "ExponentialHistogramDataPoint",
    &[
        (1, M(&KEY_VALUE)),
        (8, M(&BUCKETS)),
        (9, M(&BUCKETS)),
        (11, M(&EXEMPLAR)),
    ],
);
static QUANTILE: Message = Message::new("ValueAtQuantile", &[]);
static SUMMARY_POINT: Message =
    Message::new("SummaryDataPoint", &[(7, M(&KEY_VALUE)), (6, M(&QUANTILE))]);
pub static GAUGE: Message = Message::new("Gauge", &[(1, M(&NUMBER_POINT))]);
pub static SUM: Message = Message::new("Sum", &[(1, M(&NUMBER_POINT))]);
pub static HISTOGRAM: Message = Message::new("Histogram", &[(1, M(&HISTOGRAM_POINT))]);
pub static EXPONENTIAL: Message =
    Message::new("ExponentialHistogram", &[(1, M(&EXPONENTIAL_POINT))]);
pub static SUMMARY: Message = Message::new("Summary", &[(1, M(&SUMMARY_POINT))]);
static METRIC: Message = Message::new(
    "Metric",
    &[
        (1, Utf8),
        (2, Utf8),
        (3, Utf8),
        (5, M(&GAUGE)),
        (7, M(&SUM)),
        (9, M(&HISTOGRAM)),
        (10, M(&EXPONENTIAL)),
        (11, M(&SUMMARY)),
        (12, M(&KEY_VALUE)),
    ],
);
static SCOPE_METRICS: Message = Message::new(
    "ScopeMetrics",
    &[(1, M(&SCOPE)), (2, M(&METRIC)), (3, Utf8)],
);
static RESOURCE_METRICS: Message = Message::new(
    "ResourceMetrics",
    &[(1, M(&RESOURCE)), (2, M(&SCOPE_METRICS)), (3, Utf8)],
);
pub static METRICS: Message =
    Message::new("ExportMetricsServiceRequest", &[(1, M(&RESOURCE_METRICS))]);

static LOG_RECORD: Message = Message::new(
    "LogRecord",
    &[
        (3, Utf8),
        (5, M(&ANY_VALUE)),
        (6, M(&KEY_VALUE)),
        (12, Utf8),
    ],
);
static SCOPE_LOGS: Message = Message::new(
    "ScopeLogs",
    &[(1, M(&SCOPE)), (2, M(&LOG_RECORD)), (3, Utf8)],
);
static RESOURCE_LOGS: Message = Message::new(
    "ResourceLogs",
    &[(1, M(&RESOURCE)), (2, M(&SCOPE_LOGS)), (3, Utf8)],
);
pub static LOGS: Message = Message::new("ExportLogsServiceRequest", &[(1, M(&RESOURCE_LOGS))]);

/// Ok when `bytes` parse as `message`; else the reason, naming the innermost message at fault.
pub fn validate(bytes: &[u8], message: &'static Message) -> Result<()> {
    check(bytes, message, MAX_DEPTH)
}

/// Checks `body`, a field of type `inner` of a message checked at `depth`, as `validate` would.
pub fn nested(body: &[u8], inner: &'static Message, depth: u32) -> Result<()> {
    if depth == 0 {
        return Err(format!(
            "{}: nested more than {MAX_DEPTH} messages deep",
            inner.name
        ));
    }
    check(body, inner, depth - 1)
}

fn check(bytes: &[u8], message: &Message, depth: u32) -> Result<()> {
    for field in Fields::new(bytes) {
        let (number, value) = field.map_err(|e| format!("{}: {e}", message.name))?;
        let Value::Len(body) = value else { continue };
        let Some(Some(need)) = message.needs.get(number as usize) else {
            continue;
        };
        match need {
            // ASCII first: most strings are, and the check inlines where from_utf8 is a call
            Check::Utf8 if body.is_ascii() => {}
            Check::Utf8 => {
                if let Err(e) = std::str::from_utf8(body) {
                    return Err(format!(
                        "{}: field {number} is not UTF-8 ({e})",
                        message.name
                    ));
                }
            }
            Check::Message(inner) => nested(body, inner, depth)?,
            Check::PackedVarint => {
                crate::wire::repeated_varint(value, &mut Vec::new())
                    .map_err(|e| format!("{}: {e}", message.name))?;
            }
            Check::PackedFixed64 => {
                if body.len() % 8 != 0 {
                    return Err(format!(
                        "{}: packed field {number} is not whole 8-byte items",
                        message.name
                    ));
                }
            }
        }
    }
    Ok(())
}
