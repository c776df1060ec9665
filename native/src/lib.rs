//! OTLP export requests, as Kafka records carry them, straight into Arrow record batches in
//! talonflow's flat dataset schemas (schemas/datasets.py): one call per poll, without the GIL.
//!
//! Records are read in place, field by field, into column buffers (columns.rs) that become the
//! batch, and checked in the same walk as Python's protobuf checks them (validate.rs). A poll with
//! a record it would reject is read again with each record validated first, so that the bad one
//! costs no rows and becomes a dead letter with the reason `validate` names.

mod columns;
mod common;
mod grpc_bridge;
mod grpc_serve;
mod grpc_wire;
mod logs;
mod metrics;
mod outline;
mod spans;
mod text;
mod validate;
mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow_array::{Array, ArrayRef, Int32Array, RecordBatch};
use arrow_data::ArrayData;
use arrow_pyarrow::PyArrowType;
use arrow_schema::{Schema, SchemaRef};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use columns::{Buffers, Grow};
use common::{Common, Promotion};

// Column buffers grow to megabytes per call; glibc's malloc hands such blocks back to the kernel
// on free, so every poll paid page faults on fresh memory again (a third of the time, by perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_e`, mimalloc.h; libmimalloc-sys
/// names no constant for it).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory mapped for 10 s instead of mimalloc's 1 s before handing it back: a poll
/// frees its columns when Python drops the batch, and on a loaded machine the next poll often came
/// more than a second later, so it faulted in and zeroed fresh (huge) pages again, a fifth of the
/// decode's time by perf. 10 s of idle still gives the memory back.
fn keep_freed_memory() {
    // SAFETY: mi_option_set only stores the value; any option index and value are allowed.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 10_000) };
}
use wire::Result;

/// What a signal adds to the shared columns: its rows, and its own columns.
trait Rows: Default + Buffers {
    /// Reads one span, metric or log record; returns how many rows it added, or why upb would
    /// reject the record.
    fn item(&mut self, item: &[u8], received_ns: i64, common: &mut Common<'_>) -> Result<usize>;
    /// The signal's own columns, by name.
    fn columns(self, schema: &Schema) -> Result<Vec<(&'static str, ArrayRef)>>;
}

#[derive(Clone, Copy)]
enum Signal {
    Spans,
    Metrics,
    Logs,
}

/// The buffer lengths of a decoder's last call and the request bytes they came from: the next call
/// reserves as much, scaled to its own bytes, so that each column is allocated once.
#[derive(Default)]
struct SizeHints {
    bytes: usize,
    lens: Vec<usize>,
}

impl SizeHints {
    fn reserve<R: Rows>(&self, bytes: usize, rows: &mut R, common: &mut Common<'_>) {
        let columns = buffers(rows, common);
        if self.bytes == 0 || self.lens.len() != columns.len() {
            return;
        }
        for (column, len) in columns.into_iter().zip(&self.lens) {
            let scaled = (*len as u128 * bytes as u128 / self.bytes as u128) as usize;
            column.reserve_total(scaled + scaled / 8 + 16); // room for a poll a little denser
        }
    }

    fn record<R: Rows>(&mut self, bytes: usize, rows: &mut R, common: &mut Common<'_>) {
        self.bytes = bytes;
        self.lens = buffers(rows, common).iter().map(|b| b.filled()).collect();
    }
}

fn buffers<'a, R: Rows>(rows: &'a mut R, common: &'a mut Common<'_>) -> Vec<&'a mut dyn Grow> {
    let mut out = Vec::new();
    rows.buffers(&mut out);
    common.buffers(&mut out);
    out
}

/// What `decode` returns: the rows, which record each row came from, and the rejected records.
type Decoded = (RecordBatch, Int32Array, Vec<(usize, String)>);

fn decode_all<R: Rows>(
    values: &[&[u8]],
    received_ns: &[i64],
    message: &'static validate::Message,
    promotion: &Promotion,
    schema: &SchemaRef,
    hints: &Mutex<SizeHints>,
) -> Result<Decoded> {
    let bytes = values.iter().map(|v| v.len()).sum();
    let hinted = |rows: &mut R, common: &mut Common<'_>| {
        if let Ok(hints) = hints.lock() {
            hints.reserve(bytes, rows, common);
        }
    };
    let mut rows = R::default();
    let mut common = Common::new(promotion);
    hinted(&mut rows, &mut common);
    let mut rejected = Vec::new();
    let read = |index: usize, rows: &mut R, common: &mut Common<'_>| {
        common.walk(values[index], index as i32, |item, common| {
            rows.item(item, received_ns[index], common)
        })
    };
    if (0..values.len())
        .try_for_each(|i| read(i, &mut rows, &mut common))
        .is_err()
    {
        // The slow path, for polls holding a record upb rejects: the columns cannot take back
        // the part of it already read, so read the poll again without it.
        (rows, common) = (R::default(), Common::new(promotion));
        hinted(&mut rows, &mut common);
        for (index, value) in values.iter().enumerate() {
            match validate::validate(value, message) {
                Ok(()) => read(index, &mut rows, &mut common)
                    .map_err(|e| format!("the decoder rejects what upb accepts: {e}"))?,
                Err(reason) => rejected.push((index, reason)),
            }
        }
    }
    if let Ok(mut hints) = hints.lock() {
        hints.record(bytes, &mut rows, &mut common);
    }
    let record_of_row = Int32Array::from(std::mem::take(&mut common.record_of_row));
    let mut columns = HashMap::new();
    common.finish(schema, &mut columns)?;
    columns.extend(
        rows.columns(schema)?
            .into_iter()
            .map(|(name, array)| (name.to_string(), array)),
    );
    let arrays = schema
        .fields()
        .iter()
        .map(|field| {
            columns
                .remove(field.name())
                .ok_or_else(|| format!("the decoder has no column {}", field.name()))
        })
        .collect::<Result<Vec<_>>>()?;
    let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| e.to_string())?;
    Ok((batch, record_of_row, rejected))
}

/// Decodes the export requests of one signal into batches of one dataset schema.
#[pyclass(frozen)]
struct Decoder {
    signal: Signal,
    schema: SchemaRef,
    promotion: Promotion,
    hints: Mutex<SizeHints>,
}

#[pymethods]
impl Decoder {
    /// `signal` is spans, metrics or logs; `promoted` is (column, keys in order of preference) and
    /// `resource` (column, resource key), so that column names stay in schemas/.
    #[new]
    fn new(
        signal: &str,
        schema: PyArrowType<Schema>,
        promoted: Vec<(String, Vec<String>)>,
        resource: Vec<(String, String)>,
    ) -> PyResult<Self> {
        let signal = match signal {
            "spans" => Signal::Spans,
            "metrics" => Signal::Metrics,
            "logs" => Signal::Logs,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown signal {other:?}: spans, metrics or logs"
                )))
            }
        };
        let schema = Arc::new(schema.0);
        let promotion =
            Promotion::new(&schema, promoted, resource).map_err(PyValueError::new_err)?;
        Ok(Decoder {
            signal,
            schema,
            promotion,
            hints: Mutex::default(),
        })
    }

    /// (batch, record index of each row, [(record index, reason)] of the records rejected whole).
    /// `received_ns` is each record's Kafka time, the last fallback of a log record's time.
    #[allow(clippy::type_complexity)]
    fn decode(
        &self,
        py: Python<'_>,
        values: Vec<Bound<'_, PyBytes>>,
        received_ns: Vec<i64>,
    ) -> PyResult<(
        PyArrowType<RecordBatch>,
        PyArrowType<ArrayData>,
        Vec<(usize, String)>,
    )> {
        if values.len() != received_ns.len() {
            return Err(PyValueError::new_err(
                "values and received_ns differ in length",
            ));
        }
        let slices: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        let decoded = py.detach(|| match self.signal {
            Signal::Spans => decode_all::<spans::Spans>(
                &slices,
                &received_ns,
                &validate::TRACES,
                &self.promotion,
                &self.schema,
                &self.hints,
            ),
            Signal::Metrics => decode_all::<metrics::Metrics>(
                &slices,
                &received_ns,
                &validate::METRICS,
                &self.promotion,
                &self.schema,
                &self.hints,
            ),
            Signal::Logs => decode_all::<logs::Logs>(
                &slices,
                &received_ns,
                &validate::LOGS,
                &self.promotion,
                &self.schema,
                &self.hints,
            ),
        });
        let (batch, record_of_row, rejected) = decoded.map_err(PyValueError::new_err)?;
        Ok((
            PyArrowType(batch),
            PyArrowType(record_of_row.to_data()),
            rejected,
        ))
    }
}

#[pymodule]
fn talonflow_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    keep_freed_memory();
    module.add_class::<Decoder>()?;
    module.add_class::<grpc_serve::GrpcServer>()?;
    module.add_function(wrap_pyfunction!(outline::outline, module)?)?;
    Ok(())
}
