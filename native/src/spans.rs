//! ExportTraceServiceRequest → rows of the spans dataset.

use arrow_array::ArrayRef;
use arrow_schema::Schema;

use crate::columns::{buffers, type_of, Maps, Numbers, Strings, StructLists};
use crate::common::{put, Common, ITEM_DEPTH};
use crate::text::{merge, Merged};
use crate::validate::{nested, STATUS};
use crate::wire::{each, utf8, Fields, Result, Value};
use crate::Rows;

const KINDS: [&[u8]; 6] = [
    b"UNSPECIFIED",
    b"INTERNAL",
    b"SERVER",
    b"CLIENT",
    b"PRODUCER",
    b"CONSUMER",
];
const STATUS_CODES: [&[u8]; 3] = [b"UNSET", b"OK", b"ERROR"];

#[derive(Default)]
pub struct Spans {
    start_time: Numbers<i64>,
    end_time: Numbers<i64>,
    duration_ns: Numbers<i64>,
    trace_id: Strings,
    span_id: Strings,
    parent_span_id: Strings,
    trace_state: Strings,
    name: Strings,
    kind: Strings,
    status_code: Strings,
    status_message: Strings,
    events: StructLists,
    event_time: Numbers<i64>,
    event_name: Strings,
    event_attributes: Maps,
    links: StructLists,
    link_trace_id: Strings,
    link_span_id: Strings,
    link_attributes: Maps,
}

buffers!(Spans: start_time, end_time, duration_ns, trace_id, span_id, parent_span_id, trace_state,
    name, kind, status_code, status_message, events, event_time, event_name, event_attributes, links,
    link_trace_id, link_span_id, link_attributes);

impl Spans {
    fn span(&mut self, span: &[u8], common: &mut Common<'_>) -> Result<()> {
        const DEPTH: u32 = ITEM_DEPTH;
        let [mut trace_id, mut span_id, mut parent, mut state, mut name]: [&[u8]; 5] = [b""; 5];
        let (mut kind, mut start, mut end) = (0i32, 0u64, 0u64);
        let mut status: Merged<'_> = None;
        each(span, |number, value| {
            match (number, value) {
                (1, Value::Len(b)) => trace_id = b,
                (2, Value::Len(b)) => span_id = b,
                (3, Value::Len(b)) => state = utf8(b)?,
                (4, Value::Len(b)) => parent = b,
                (5, Value::Len(b)) => name = utf8(b)?,
                (6, Value::Varint(v)) => kind = v as i32,
                (7, Value::Fixed64(v)) => start = v,
                (8, Value::Fixed64(v)) => end = v,
                (9, Value::Len(kv)) => common.attribute(kv, DEPTH - 1)?,
                (11, Value::Len(event)) => self.event(event, DEPTH - 1)?,
                (13, Value::Len(link)) => self.link(link, DEPTH - 1)?,
                (15, Value::Len(b)) => {
                    nested(b, &STATUS, DEPTH)?;
                    status = Some(merge(status.take(), b));
                }
                _ => {}
            }
            Ok(())
        })?;
        common.end_attributes();
        self.events.end_row();
        self.links.end_row();
        let (mut code, mut message): (i32, &[u8]) = (0, b"");
        for field in
            Fields::new(status.as_deref().unwrap_or_default()).map_while(std::result::Result::ok)
        {
            match field {
                (2, Value::Len(b)) => message = b,
                (3, Value::Varint(v)) => code = v as i32,
                _ => {}
            }
        }
        // Times beyond i64 wrap to negative nanoseconds, which the time bounds then reject.
        self.start_time.push(start as i64);
        self.end_time.push(end as i64);
        self.duration_ns
            .push((end as i64).wrapping_sub(start as i64));
        self.trace_id.push_hex(trace_id);
        self.span_id.push_hex(span_id);
        self.parent_span_id.push_hex(parent);
        self.trace_state.push(state);
        self.name.push(name);
        self.kind.push(
            usize::try_from(kind)
                .ok()
                .and_then(|k| KINDS.get(k))
                .unwrap_or(&KINDS[0]),
        );
        let code = usize::try_from(code).ok().and_then(|c| STATUS_CODES.get(c));
        self.status_code.push(code.unwrap_or(&STATUS_CODES[0]));
        self.status_message.push(message);
        Ok(())
    }

    /// A Span.Event, checked at `depth`.
    fn event(&mut self, event: &[u8], depth: u32) -> Result<()> {
        let (mut time, mut name): (u64, &[u8]) = (0, b"");
        each(event, |number, value| {
            match (number, value) {
                (1, Value::Fixed64(v)) => time = v,
                (2, Value::Len(b)) => name = utf8(b)?,
                (3, Value::Len(kv)) => drop(put(&mut self.event_attributes, kv, Some(depth - 1))?),
                _ => {}
            }
            Ok(())
        })?;
        self.event_attributes.end_row();
        self.event_time.push(time as i64);
        self.event_name.push(name);
        self.events.item();
        Ok(())
    }

    /// A Span.Link, checked at `depth`.
    fn link(&mut self, link: &[u8], depth: u32) -> Result<()> {
        let (mut trace_id, mut span_id): (&[u8], &[u8]) = (b"", b"");
        each(link, |number, value| {
            match (number, value) {
                (1, Value::Len(b)) => trace_id = b,
                (2, Value::Len(b)) => span_id = b,
                (3, Value::Len(state)) => drop(utf8(state)?),
                (4, Value::Len(kv)) => drop(put(&mut self.link_attributes, kv, Some(depth - 1))?),
                _ => {}
            }
            Ok(())
        })?;
        self.link_attributes.end_row();
        self.link_trace_id.push_hex(trace_id);
        self.link_span_id.push_hex(span_id);
        self.links.item();
        Ok(())
    }
}

impl Rows for Spans {
    fn item(&mut self, span: &[u8], _received_ns: i64, common: &mut Common<'_>) -> Result<usize> {
        self.span(span, common)?;
        Ok(1)
    }

    fn columns(self, schema: &Schema) -> Result<Vec<(&'static str, ArrayRef)>> {
        let (events_type, links_type) = (type_of(schema, "events")?, type_of(schema, "links")?);
        let map_type = type_of(schema, "attributes")?;
        let events = vec![
            self.event_time.timestamps(),
            self.event_name.array()?,
            self.event_attributes.array(&map_type)?,
        ];
        let links = vec![
            self.link_trace_id.array()?,
            self.link_span_id.array()?,
            self.link_attributes.array(&map_type)?,
        ];
        Ok(vec![
            ("start_time", self.start_time.timestamps()),
            ("end_time", self.end_time.timestamps()),
            ("duration_ns", self.duration_ns.int64()),
            ("trace_id", self.trace_id.array()?),
            ("span_id", self.span_id.array()?),
            ("parent_span_id", self.parent_span_id.array()?),
            ("trace_state", self.trace_state.array()?),
            ("name", self.name.array()?),
            ("kind", self.kind.array()?),
            ("status_code", self.status_code.array()?),
            ("status_message", self.status_message.array()?),
            ("events", self.events.array(&events_type, events)?),
            ("links", self.links.array(&links_type, links)?),
        ])
    }
}
