//! ExportLogsServiceRequest → rows of the logs dataset.

use arrow_array::ArrayRef;
use arrow_schema::Schema;

use crate::columns::{buffers, Numbers, Strings};
use crate::common::{Common, ITEM_DEPTH};
use crate::text::{merge, render, Merged};
use crate::validate::{nested, ANY_VALUE};
use crate::wire::{each, utf8, Result, Value};
use crate::Rows;

#[derive(Default)]
pub struct Logs {
    time: Numbers<i64>,
    observed_time: Numbers<i64>,
    severity_number: Numbers<i32>,
    severity_text: Strings,
    body: Strings,
    event_name: Strings,
    trace_id: Strings,
    span_id: Strings,
    flags: Numbers<u32>,
}

buffers!(Logs: time, observed_time, severity_number, severity_text, body, event_name, trace_id,
    span_id, flags);

impl Logs {
    fn log(&mut self, log: &[u8], received_ns: i64, common: &mut Common<'_>) -> Result<()> {
        const DEPTH: u32 = ITEM_DEPTH;
        let (mut time, mut observed, mut severity, mut flags) = (0u64, 0u64, 0i32, 0u32);
        let (mut text, mut event, mut trace_id, mut span_id): (&[u8], &[u8], &[u8], &[u8]) =
            (b"", b"", b"", b"");
        let mut body: Merged<'_> = None;
        let mut bodies = 0;
        each(log, |number, value| {
            match (number, value) {
                (1, Value::Fixed64(v)) => time = v,
                (11, Value::Fixed64(v)) => observed = v,
                (2, Value::Varint(v)) => severity = v as i32,
                (3, Value::Len(b)) => text = utf8(b)?,
                (5, Value::Len(b)) => {
                    // upb checks each occurrence alone: their concatenation may hide a cut field
                    if let (1, Some(before)) = (bodies, &body) {
                        nested(before, &ANY_VALUE, DEPTH)?;
                    }
                    if bodies > 0 {
                        nested(b, &ANY_VALUE, DEPTH)?;
                    }
                    bodies += 1;
                    body = Some(merge(body.take(), b));
                }
                (6, Value::Len(kv)) => common.attribute(kv, DEPTH - 1)?,
                (8, Value::Fixed32(v)) => flags = v,
                (9, Value::Len(b)) => trace_id = b,
                (10, Value::Len(b)) => span_id = b,
                (12, Value::Len(b)) => event = utf8(b)?,
                _ => {}
            }
            Ok(())
        })?;
        common.end_attributes();
        // the record's time, else its observed time, else when Kafka received it
        let at = [time, observed]
            .into_iter()
            .find(|t| *t != 0)
            .map_or(received_ns, |t| t as i64);
        self.time.push(at);
        self.observed_time
            .push_opt((observed != 0).then_some(observed as i64));
        self.severity_number.push(severity);
        self.severity_text.push(text);
        let check = (bodies == 1).then_some(DEPTH - 1); // a repeated body was checked above
        let valid = match body.as_deref() {
            Some(b) => render(b, &mut self.body.data, check)?,
            None => false,
        };
        self.body.end(valid);
        self.event_name.push(event);
        self.trace_id.push_hex(trace_id);
        self.span_id.push_hex(span_id);
        self.flags.push(flags);
        Ok(())
    }
}

impl Rows for Logs {
    fn item(&mut self, log: &[u8], received_ns: i64, common: &mut Common<'_>) -> Result<usize> {
        self.log(log, received_ns, common)?;
        Ok(1)
    }

    fn columns(self, _schema: &Schema) -> Result<Vec<(&'static str, ArrayRef)>> {
        Ok(vec![
            ("time", self.time.timestamps()),
            ("observed_time", self.observed_time.timestamps()),
            ("severity_number", self.severity_number.array()),
            ("severity_text", self.severity_text.array()?),
            ("body", self.body.array()?),
            ("event_name", self.event_name.array()?),
            ("trace_id", self.trace_id.array()?),
            ("span_id", self.span_id.array()?),
            ("flags", self.flags.array()),
        ])
    }
}
