//! What spans, points and log records share: the request → resource → scope → item nesting,
//! resource and scope columns, the attribute map and the promoted attribute columns.
//!
//! Every read is checked as upb would check it (validate.rs), in the same walk that fills the
//! columns: an error means the record is not what Python's protobuf accepts.

use std::collections::HashMap;

use arrow_array::ArrayRef;
use arrow_schema::{DataType, Schema};

use crate::columns::{type_of, Buffers, Grow, Maps, Numbers, Strings};
use crate::text::{key_value, merge, render, simple_key_value, Merged};
use crate::validate::{nested, RESOURCE, SCOPE};
use crate::wire::{each, utf8, Fields, Result, Value, MAX_DEPTH};

/// The depth upb checks a span, metric or log record at: request → resource → scope → item.
pub const ITEM_DEPTH: u32 = MAX_DEPTH - 3;

/// Which attribute keys fill which typed columns (from schemas/datasets.py, never spelled here).
pub struct Promotion {
    columns: Vec<(String, bool)>, // (column, parse as int64)
    // (key, column index, rank: lower is preferred), indexed by the key's length: a key is
    // compared only with the promoted keys of its length, mostly none or one
    by_length: Vec<Vec<(Vec<u8>, usize, usize)>>,
    resource: Vec<(String, Vec<u8>)>, // (column, resource attribute key)
}

impl Promotion {
    pub fn new(
        schema: &Schema,
        promoted: Vec<(String, Vec<String>)>,
        resource: Vec<(String, String)>,
    ) -> Result<Self> {
        let mut columns = Vec::new();
        let mut by_length: Vec<Vec<(Vec<u8>, usize, usize)>> = Vec::new();
        for (index, (column, preferred)) in promoted.into_iter().enumerate() {
            let field = schema.field_with_name(&column).map_err(|e| e.to_string())?;
            let is_int = match field.data_type() {
                DataType::Int64 => true,
                DataType::Utf8 => false,
                other => {
                    return Err(format!(
                        "promoted column {column} must be string or int64, not {other}"
                    ))
                }
            };
            for (rank, key) in preferred.into_iter().enumerate() {
                if by_length.len() <= key.len() {
                    by_length.resize_with(key.len() + 1, Vec::new);
                }
                by_length[key.len()].push((key.into_bytes(), index, rank));
            }
            columns.push((column, is_int));
        }
        let resource = resource
            .into_iter()
            .map(|(column, key)| (column, key.into_bytes()))
            .collect();
        Ok(Promotion {
            columns,
            by_length,
            resource,
        })
    }
}

/// Whether two keys of the same length are equal: eight bytes at a time, the last eight first
/// (where keys of one length mostly differ: `.name`, `.model`, `_code`), inlined; slice equality
/// called memcmp for each candidate (8 % of a span's decode by perf; this is 1-3 % faster).
#[inline]
fn same_key(key: &[u8], promoted: &[u8]) -> bool {
    let n = key.len();
    if n < 8 || promoted.len() != n {
        return key == promoted;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8"));
    word(key, n - 8) == word(promoted, n - 8)
        && (0..n - 8)
            .step_by(8)
            .all(|at| word(key, at) == word(promoted, at))
}

/// A promoted attribute column: the value of the preferred key, as text or as an integer.
enum Promoted {
    Text(Strings),
    Int(Numbers<i64>),
}

impl Promoted {
    #[inline]
    fn push(&mut self, text: Option<&[u8]>) {
        match self {
            Promoted::Text(strings) => match text {
                Some(t) => strings.push(t),
                None => strings.push_null(),
            },
            // Rust's integer syntax is polars' strict=False cast: "+12" and "012" read, " 12" does
            // not; text that is not ASCII is no integer, and ASCII needs no UTF-8 check
            Promoted::Int(ints) => ints.push_opt(text.filter(|t| t.is_ascii()).and_then(|t| {
                // SAFETY: ASCII is UTF-8
                unsafe { std::str::from_utf8_unchecked(t) }.parse().ok()
            })),
        }
    }
}

impl Buffers for Promoted {
    fn buffers<'a>(&'a mut self, out: &mut Vec<&'a mut dyn Grow>) {
        match self {
            Promoted::Text(strings) => strings.buffers(out),
            Promoted::Int(ints) => ints.buffers(out),
        }
    }
}

/// The shared columns of one dataset for one call.
pub struct Common<'p> {
    promotion: &'p Promotion,
    attributes: Maps,
    promoted: Vec<Promoted>,
    best: Vec<Option<(usize, usize)>>, // per promoted column, for the row being read: (rank, entry)
    resources: Maps,                   // one row per resource seen
    resource_values: Vec<Vec<Option<usize>>>, // per resource column, per resource: its entry
    resource_attributes: Maps,
    resource_columns: Vec<Strings>,
    scope_name: Strings,
    scope_version: Strings,
    pub record_of_row: Vec<i32>,
}

impl<'p> Common<'p> {
    pub fn new(promotion: &'p Promotion) -> Self {
        let promoted = promotion.columns.len();
        let resource = promotion.resource.len();
        Common {
            promotion,
            attributes: Maps::default(),
            promoted: promotion
                .columns
                .iter()
                .map(|(_, is_int)| match is_int {
                    true => Promoted::Int(Numbers::default()),
                    false => Promoted::Text(Strings::default()),
                })
                .collect(),
            best: vec![None; promoted],
            resources: Maps::default(),
            resource_values: vec![Vec::new(); resource],
            resource_attributes: Maps::default(),
            resource_columns: (0..resource).map(|_| Strings::default()).collect(),
            scope_name: Strings::default(),
            scope_version: Strings::default(),
            record_of_row: Vec::new(),
        }
    }

    /// One KeyValue of the row being read, checked at `depth`.
    pub fn attribute(&mut self, kv: &[u8], depth: u32) -> Result<()> {
        let entry = self.attributes.entries();
        let (key, valid) = put(&mut self.attributes, kv, Some(depth))?;
        let Some(candidates) = self.promotion.by_length.get(key.len()).filter(|_| valid) else {
            return Ok(());
        };
        for (promoted_key, column, rank) in candidates {
            if same_key(key, promoted_key)
                && self.best[*column].is_none_or(|(best, _)| *rank < best)
            {
                self.best[*column] = Some((*rank, entry));
            }
        }
        Ok(())
    }

    /// Ends the attributes of the row being read, and fills its promoted columns.
    pub fn end_attributes(&mut self) {
        self.attributes.end_row();
        for (column, best) in self.promoted.iter_mut().zip(self.best.iter_mut()) {
            column.push(
                best.take()
                    .and_then(|(_, entry)| self.attributes.values.get(entry)),
            );
        }
    }

    /// Registers a resource (its merged encoding, each part checked); returns its index for
    /// `rows_done`.
    fn resource(&mut self, resource: &[u8]) -> usize {
        let start = self.resources.entries();
        for kv in fields_of(resource, 1) {
            // checked before, as a whole: cannot fail
            let _ = put(&mut self.resources, kv, None);
        }
        self.resources.end_row();
        let end = self.resources.entries();
        for ((_, wanted), found) in self
            .promotion
            .resource
            .iter()
            .zip(&mut self.resource_values)
        {
            // the last occurrence wins, as in a dict built from the pairs
            let last = (start..end)
                .rev()
                .find(|i| self.resources.keys.get(*i) == Some(wanted.as_slice()));
            found.push(last);
        }
        self.resources.rows() - 1
    }

    fn rows_done(&mut self, resource: usize, scope: (&[u8], &[u8]), rows: usize, record: i32) {
        self.resource_attributes
            .copy_row(&self.resources, resource, rows);
        for (column, found) in self.resource_columns.iter_mut().zip(&self.resource_values) {
            let value = found[resource].and_then(|entry| self.resources.values.get(entry));
            for _ in 0..rows {
                match value {
                    Some(v) => column.push(v),
                    None => column.push_null(),
                }
            }
        }
        for _ in 0..rows {
            self.scope_name.push(scope.0);
            self.scope_version.push(scope.1);
        }
        self.record_of_row.extend(std::iter::repeat_n(record, rows));
    }

    /// Walks request → resource (field 1) → scope (field 1) → items (field 2 at both levels),
    /// calling `item` for every item; `item` returns how many rows it added. Each resource and
    /// scope is checked whole (they are small); items check themselves as they are read.
    pub fn walk(
        &mut self,
        request: &[u8],
        record: i32,
        mut item: impl FnMut(&[u8], &mut Self) -> Result<usize>,
    ) -> Result<()> {
        let depth = MAX_DEPTH - 1; // a resource's: ResourceSpans, ResourceMetrics, ResourceLogs
        each(request, |number, resource_x| {
            let (1, Value::Len(resource_x)) = (number, resource_x) else {
                return Ok(());
            };
            let mut resource: Merged<'_> = None;
            each(resource_x, |number, value| {
                match (number, value) {
                    (1, Value::Len(body)) => {
                        nested(body, &RESOURCE, depth)?;
                        resource = Some(merge(resource.take(), body));
                    }
                    (3, Value::Len(url)) => drop(utf8(url)?),
                    _ => {}
                }
                Ok(())
            })?;
            let resource = self.resource(resource.as_deref().unwrap_or_default());
            for scope_x in fields_of(resource_x, 2) {
                self.scope(scope_x, resource, record, &mut item)?;
            }
            Ok(())
        })
    }

    fn scope(
        &mut self,
        scope_x: &[u8],
        resource: usize,
        record: i32,
        item: &mut impl FnMut(&[u8], &mut Self) -> Result<usize>,
    ) -> Result<()> {
        let depth = MAX_DEPTH - 2; // ScopeSpans, ScopeMetrics, ScopeLogs
        let (mut name, mut version): (&[u8], &[u8]) = (b"", b"");
        let mut rows = 0;
        each(scope_x, |number, value| {
            match (number, value) {
                (1, Value::Len(scope)) => {
                    nested(scope, &SCOPE, depth)?;
                    for field in Fields::new(scope).map_while(std::result::Result::ok) {
                        match field {
                            (1, Value::Len(s)) => name = s,
                            (2, Value::Len(s)) => version = s,
                            _ => {}
                        }
                    }
                }
                (2, Value::Len(body)) => rows += item(body, self)?,
                (3, Value::Len(url)) => drop(utf8(url)?),
                _ => {}
            }
            Ok(())
        })?;
        self.rows_done(resource, (name, version), rows, record);
        Ok(())
    }

    /// The shared columns, by name, for the batch.
    pub fn finish(self, schema: &Schema, out: &mut HashMap<String, ArrayRef>) -> Result<()> {
        for ((column, _), values) in self.promotion.columns.iter().zip(self.promoted) {
            let array = match values {
                Promoted::Int(ints) => ints.int64(),
                Promoted::Text(strings) => strings.array()?,
            };
            out.insert(column.clone(), array);
        }
        for ((column, _), values) in self.promotion.resource.iter().zip(self.resource_columns) {
            out.insert(column.clone(), values.array()?);
        }
        let attributes_type = type_of(schema, "attributes")?;
        let resource_type = type_of(schema, "resource_attributes")?;
        out.insert(
            "attributes".into(),
            self.attributes.array(&attributes_type)?,
        );
        out.insert(
            "resource_attributes".into(),
            self.resource_attributes.array(&resource_type)?,
        );
        out.insert("scope_name".into(), self.scope_name.array()?);
        out.insert("scope_version".into(), self.scope_version.array()?);
        Ok(())
    }
}

impl Buffers for Common<'_> {
    fn buffers<'a>(&'a mut self, out: &mut Vec<&'a mut dyn Grow>) {
        self.attributes.buffers(out);
        self.promoted.buffers(out);
        self.resource_attributes.buffers(out);
        self.resource_columns.buffers(out);
        self.scope_name.buffers(out);
        self.scope_version.buffers(out);
        out.push(&mut self.record_of_row);
    }
}

/// Appends one KeyValue to `map`, checked at depth `check` if given; returns its key and whether
/// its value is text (not null).
pub fn put<'a>(map: &mut Maps, kv: &'a [u8], check: Option<u32>) -> Result<(&'a [u8], bool)> {
    if let Some((key, string)) = simple_key_value(kv, &mut map.values.data) {
        if check.is_some() {
            utf8(key)?;
            string.map(utf8).transpose()?;
        }
        map.keys.push(key);
        map.values.end(true);
        return Ok((key, true));
    }
    let (key, value, value_check) = key_value(kv, check)?;
    let valid = map.entry(key, |out| match value {
        Some(v) => render(&v, out, value_check),
        None => Ok(false),
    })?;
    Ok((key, valid))
}

/// The bodies of every length-delimited field `number` of a (validated) message, in order.
pub fn fields_of(message: &[u8], number: u32) -> impl Iterator<Item = &[u8]> {
    Fields::new(message)
        .map_while(std::result::Result::ok)
        .filter_map(move |field| match field {
            (n, Value::Len(body)) if n == number => Some(body),
            _ => None,
        })
}
