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
    fields: &'static [(u32, Check)],
}

use Check::{Message as M, PackedFixed64, PackedVarint, Utf8};

pub static ANY_VALUE: Message = Message {
    name: "AnyValue",
    fields: &[(1, Utf8), (5, M(&ARRAY)), (6, M(&KVLIST))],
};
pub static ARRAY: Message = Message {
    name: "ArrayValue",
    fields: &[(1, M(&ANY_VALUE))],
};
pub static KVLIST: Message = Message {
    name: "KeyValueList",
    fields: &[(1, M(&KEY_VALUE))],
};
pub static KEY_VALUE: Message = Message {
    name: "KeyValue",
    fields: &[(1, Utf8), (2, M(&ANY_VALUE))],
};
static ENTITY_REF: Message = Message {
    name: "EntityRef",
    fields: &[(1, Utf8), (2, Utf8), (3, Utf8), (4, Utf8)],
};
pub static RESOURCE: Message = Message {
    name: "Resource",
    fields: &[(1, M(&KEY_VALUE)), (3, M(&ENTITY_REF))],
};
pub static SCOPE: Message = Message {
    name: "InstrumentationScope",
    fields: &[(1, Utf8), (2, Utf8), (3, M(&KEY_VALUE))],
};

pub static STATUS: Message = Message {
    name: "Status",
    fields: &[(2, Utf8)],
};
static EVENT: Message = Message {
    name: "Span.Event",
    fields: &[(2, Utf8), (3, M(&KEY_VALUE))],
};
static LINK: Message = Message {
    name: "Span.Link",
    fields: &[(3, Utf8), (4, M(&KEY_VALUE))],
};
static SPAN: Message = Message {
    name: "Span",
    fields: &[
        (3, Utf8),
        (5, Utf8),
        (9, M(&KEY_VALUE)),
        (11, M(&EVENT)),
        (13, M(&LINK)),
        (15, M(&STATUS)),
    ],
};
static SCOPE_SPANS: Message = Message {
    name: "ScopeSpans",
    fields: &[(1, M(&SCOPE)), (2, M(&SPAN)), (3, Utf8)],
};
static RESOURCE_SPANS: Message = Message {
    name: "ResourceSpans",
    fields: &[(1, M(&RESOURCE)), (2, M(&SCOPE_SPANS)), (3, Utf8)],
};
pub static TRACES: Message = Message {
    name: "ExportTraceServiceRequest",
    fields: &[(1, M(&RESOURCE_SPANS))],
};

pub static EXEMPLAR: Message = Message {
    name: "Exemplar",
    fields: &[(7, M(&KEY_VALUE))],
};
static NUMBER_POINT: Message = Message {
    name: "NumberDataPoint",
    fields: &[(7, M(&KEY_VALUE)), (5, M(&EXEMPLAR))],
};
static HISTOGRAM_POINT: Message = Message {
    name: "HistogramDataPoint",
    fields: &[
        (9, M(&KEY_VALUE)),
        (6, PackedFixed64),
        (7, PackedFixed64),
        (8, M(&EXEMPLAR)),
    ],
};
pub static BUCKETS: Message = Message {
    name: "Buckets",
    fields: &[(2, PackedVarint)],
};
static EXPONENTIAL_POINT: Message = Message {
    name: "ExponentialHistogramDataPoint",
    fields: &[
        (1, M(&KEY_VALUE)),
        (8, M(&BUCKETS)),
        (9, M(&BUCKETS)),
        (11, M(&EXEMPLAR)),
    ],
};
static QUANTILE: Message = Message {
    name: "ValueAtQuantile",
    fields: &[],
};
static SUMMARY_POINT: Message = Message {
    name: "SummaryDataPoint",
    fields: &[(7, M(&KEY_VALUE)), (6, M(&QUANTILE))],
};
pub static GAUGE: Message = Message {
    name: "Gauge",
    fields: &[(1, M(&NUMBER_POINT))],
};
pub static SUM: Message = Message {
    name: "Sum",
    fields: &[(1, M(&NUMBER_POINT))],
};
pub static HISTOGRAM: Message = Message {
    name: "Histogram",
    fields: &[(1, M(&HISTOGRAM_POINT))],
};
pub static EXPONENTIAL: Message = Message {
    name: "ExponentialHistogram",
    fields: &[(1, M(&EXPONENTIAL_POINT))],
};
pub static SUMMARY: Message = Message {
    name: "Summary",
    fields: &[(1, M(&SUMMARY_POINT))],
};
static METRIC: Message = Message {
    name: "Metric",
    fields: &[
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
};
static SCOPE_METRICS: Message = Message {
    name: "ScopeMetrics",
    fields: &[(1, M(&SCOPE)), (2, M(&METRIC)), (3, Utf8)],
};
static RESOURCE_METRICS: Message = Message {
    name: "ResourceMetrics",
    fields: &[(1, M(&RESOURCE)), (2, M(&SCOPE_METRICS)), (3, Utf8)],
};
pub static METRICS: Message = Message {
    name: "ExportMetricsServiceRequest",
    fields: &[(1, M(&RESOURCE_METRICS))],
};

static LOG_RECORD: Message = Message {
    name: "LogRecord",
    fields: &[
        (3, Utf8),
        (5, M(&ANY_VALUE)),
        (6, M(&KEY_VALUE)),
        (12, Utf8),
    ],
};
static SCOPE_LOGS: Message = Message {
    name: "ScopeLogs",
    fields: &[(1, M(&SCOPE)), (2, M(&LOG_RECORD)), (3, Utf8)],
};
static RESOURCE_LOGS: Message = Message {
    name: "ResourceLogs",
    fields: &[(1, M(&RESOURCE)), (2, M(&SCOPE_LOGS)), (3, Utf8)],
};
pub static LOGS: Message = Message {
    name: "ExportLogsServiceRequest",
    fields: &[(1, M(&RESOURCE_LOGS))],
};

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
        let Some((_, need)) = message.fields.iter().find(|(n, _)| *n == number) else {
            continue;
        };
        match need {
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
