//! The receiver's view of an OTLP export request: where each resource entry lies, its key and
//! how many items it holds, checked as upb would parse the request (validate.rs) but without
//! building a message. Decoding a 1000-span request into Python objects (upb) took most of the
//! receiver's work on it; the receiver forwards the bytes and only needs these few facts.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::validate;
use crate::wire::{Fields, Result, Value};

/// From this size on the walk (about 1 us per KB) runs without the GIL; below it, releasing and
/// taking the GIL back would cost more than the walk, and the dispatcher could lose the GIL to
/// the delivery thread in between.
const DETACH_BYTES: usize = 32 * 1024;

/// (start, end, key, items) of one top-level resource entry (field 1, length-delimited).
type Entry = (usize, usize, Option<Vec<u8>>, u64);
/// An `Entry` as Python gets it, the key as bytes.
type PyEntry = (usize, usize, Option<Py<PyBytes>>, u64);

/// The fields of `message` that upb keeps as known, in order (the others are unknown fields).
fn known<'a>(message: &'a [u8]) -> impl Iterator<Item = (u32, Value<'a>)> {
    // the request was validated whole: no field can fail here
    Fields::new(message).map_while(std::result::Result::ok)
}

/// Each length-delimited field `number` of `message`.
fn messages(message: &[u8], number: u32) -> impl Iterator<Item = &[u8]> {
    known(message).filter_map(move |field| match field {
        (n, Value::Len(body)) if n == number => Some(body),
        _ => None,
    })
}

/// The string an AnyValue holds, "" when it holds another kind: occurrences of a message field
/// merge, and the last member of the oneof set wins (a member of the wrong wire type is unknown).
fn string_value<'a>(value: &mut &'a [u8], any: &'a [u8]) {
    for field in known(any) {
        match field {
            (1, Value::Len(text)) => *value = text,
            (2 | 3, Value::Varint(_)) | (4, Value::Fixed64(_)) | (5..=7, Value::Len(_)) => {
                *value = b"";
            }
            _ => {}
        }
    }
}

/// `name/instance` from the resource's attributes (the last of each wins), None without either.
fn resource_key(entry: &[u8], name_key: &[u8], instance_key: &[u8]) -> Option<Vec<u8>> {
    let (mut name, mut instance): (&[u8], &[u8]) = (b"", b"");
    for resource in messages(entry, 1) {
        for attribute in messages(resource, 1) {
            let (mut key, mut value): (&[u8], &[u8]) = (b"", b"");
            for field in known(attribute) {
                match field {
                    (1, Value::Len(text)) => key = text,
                    (2, Value::Len(any)) => string_value(&mut value, any),
                    _ => {}
                }
            }
            if key == name_key {
                name = value;
            } else if key == instance_key {
                instance = value;
            }
        }
    }
    (!name.is_empty() || !instance.is_empty()).then(|| [name, b"/", instance].concat())
}

/// Data points of one Metric: those of its `data` oneof's last member, merged over occurrences.
fn metric_points(metric: &[u8]) -> u64 {
    let (mut member, mut points) = (0, 0);
    for field in known(metric) {
        if let (number @ (5 | 7 | 9 | 10 | 11), Value::Len(data)) = field {
            if number != member {
                (member, points) = (number, 0);
            }
            points += messages(data, 1).count() as u64;
        }
    }
    points
}

fn items(entry: &[u8], metrics: bool) -> u64 {
    messages(entry, 2)
        .map(|scope| {
            if metrics {
                messages(scope, 2).map(metric_points).sum()
            } else {
                messages(scope, 2).count() as u64
            }
        })
        .sum()
}

fn entries(body: &[u8], metrics: bool, name_key: &[u8], instance_key: &[u8]) -> Vec<Entry> {
    let mut fields = Fields::new(body);
    let mut found = Vec::new();
    let mut start = 0;
    while let Some(Ok(field)) = fields.next() {
        if let (1, Value::Len(entry)) = field {
            let key = resource_key(entry, name_key, instance_key);
            found.push((start, fields.pos(), key, items(entry, metrics)));
        }
        start = fields.pos();
    }
    found
}

/// For each resource entry of an export request of `signal` (traces, metrics or logs): (start,
/// end, key, items), the key being `name/instance` from the resource attributes `name_key` and
/// `instance_key`. ValueError with the reason when upb would not parse the request.
#[pyfunction]
pub fn outline(
    py: Python<'_>,
    signal: &str,
    body: &Bound<'_, PyBytes>,
    name_key: &str,
    instance_key: &str,
) -> PyResult<Vec<PyEntry>> {
    let (message, metrics) = match signal {
        "traces" => (&validate::TRACES, false),
        "metrics" => (&validate::METRICS, true),
        "logs" => (&validate::LOGS, false),
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown signal {other:?}: traces, metrics or logs"
            )))
        }
    };
    let bytes = body.as_bytes();
    let walk = || -> Result<Vec<Entry>> {
        validate::validate(bytes, message)?;
        Ok(entries(
            bytes,
            metrics,
            name_key.as_bytes(),
            instance_key.as_bytes(),
        ))
    };
    let found = if bytes.len() >= DETACH_BYTES {
        py.detach(walk)
    } else {
        walk()
    };
    Ok(found
        .map_err(PyValueError::new_err)?
        .into_iter()
        .map(|(start, end, key, items)| {
            (
                start,
                end,
                key.map(|k| PyBytes::new(py, &k).unbind()),
                items,
            )
        })
        .collect())
}
