//! Growing column buffers and their Arrow arrays.
//!
//! Plain vectors rather than arrow's builders: attribute values are rendered straight into the
//! string buffer (no intermediate String), and resource maps are copied per row as byte ranges.

use std::sync::Arc;

use arrow_array::types::{
    Float64Type, Int32Type, Int64Type, TimestampNanosecondType, UInt32Type, UInt64Type,
};
use arrow_array::{
    ArrayRef, BooleanArray, ListArray, MapArray, PrimitiveArray, StringArray, StructArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Fields, Schema};

use crate::wire::Result;

/// The type the dataset schema gives column `name`.
pub fn type_of(schema: &Schema, name: &str) -> Result<DataType> {
    Ok(schema
        .field_with_name(name)
        .map_err(|e| e.to_string())?
        .data_type()
        .clone())
}

fn nulls(valid: Vec<bool>) -> Option<NullBuffer> {
    if valid.iter().all(|v| *v) {
        None
    } else {
        Some(NullBuffer::new(BooleanBuffer::from(valid)))
    }
}

fn offsets(offsets: Vec<usize>) -> Result<OffsetBuffer<i32>> {
    let last = *offsets.last().unwrap_or(&0);
    if i32::try_from(last).is_err() {
        return Err(format!(
            "a poll of more than 2 GiB in one column ({last} bytes or items): poll fewer records"
        ));
    }
    Ok(OffsetBuffer::new(ScalarBuffer::from(
        offsets.into_iter().map(|o| o as i32).collect::<Vec<_>>(),
    )))
}

/// A nullable Utf8 column.
#[derive(Default)]
pub struct Strings {
    pub data: Vec<u8>,
    ends: Vec<usize>,
    valid: Vec<bool>,
}

impl Strings {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        self.end(true);
    }

    pub fn push_null(&mut self) {
        self.end(false);
    }

    /// Ends the value whose bytes were appended to `data` directly.
    pub fn end(&mut self, valid: bool) {
        self.ends.push(self.data.len());
        self.valid.push(valid);
    }

    /// Lowercase hex, as OTLP/JSON spells trace and span ids.
    pub fn push_hex(&mut self, bytes: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for b in bytes {
            self.data.push(DIGITS[usize::from(b >> 4)]);
            self.data.push(DIGITS[usize::from(b & 15)]);
        }
        self.end(true);
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.valid[i].then(|| &self.data[start..self.ends[i]])
    }

    pub fn array(self) -> Result<ArrayRef> {
        let mut starts = Vec::with_capacity(self.ends.len() + 1);
        starts.push(0);
        starts.extend(self.ends);
        let array = StringArray::try_new(
            offsets(starts)?,
            Buffer::from_vec(self.data),
            nulls(self.valid),
        )
        .map_err(|e| e.to_string())?;
        Ok(Arc::new(array))
    }
}

/// A nullable primitive column.
pub struct Numbers<T> {
    values: Vec<T>,
    valid: Vec<bool>,
}

impl<T: Copy + Default> Default for Numbers<T> {
    fn default() -> Self {
        Numbers {
            values: Vec::new(),
            valid: Vec::new(),
        }
    }
}

impl<T: Copy + Default> Numbers<T> {
    pub fn push(&mut self, value: T) {
        self.values.push(value);
        self.valid.push(true);
    }

    pub fn push_opt(&mut self, value: Option<T>) {
        self.values.push(value.unwrap_or_default());
        self.valid.push(value.is_some());
    }
}

macro_rules! numbers_array {
    ($native:ty, $arrow:ty) => {
        impl Numbers<$native> {
            pub fn array(self) -> ArrayRef {
                Arc::new(PrimitiveArray::<$arrow>::new(
                    ScalarBuffer::from(self.values),
                    nulls(self.valid),
                ))
            }
        }
    };
}
numbers_array!(i32, Int32Type);
numbers_array!(u32, UInt32Type);
numbers_array!(u64, UInt64Type);
numbers_array!(f64, Float64Type);

impl Numbers<i64> {
    pub fn int64(self) -> ArrayRef {
        Arc::new(PrimitiveArray::<Int64Type>::new(
            ScalarBuffer::from(self.values),
            nulls(self.valid),
        ))
    }

    /// Nanoseconds since the epoch as `timestamp[ns, UTC]`.
    pub fn timestamps(self) -> ArrayRef {
        Arc::new(
            PrimitiveArray::<TimestampNanosecondType>::new(
                ScalarBuffer::from(self.values),
                nulls(self.valid),
            )
            .with_timezone("UTC"),
        )
    }
}

impl Numbers<bool> {
    pub fn array(self) -> ArrayRef {
        Arc::new(BooleanArray::new(
            BooleanBuffer::from(self.values),
            nulls(self.valid),
        ))
    }
}

/// A nullable list of primitives.
pub struct Lists<T> {
    items: Numbers<T>,
    ends: Vec<usize>,
    valid: Vec<bool>,
}

impl<T: Copy + Default> Default for Lists<T> {
    fn default() -> Self {
        Lists {
            items: Numbers::default(),
            ends: Vec::new(),
            valid: Vec::new(),
        }
    }
}

impl<T: Copy + Default> Lists<T> {
    pub fn push(&mut self, items: &[T]) {
        for item in items {
            self.items.push(*item);
        }
        self.ends.push(self.items.values.len());
        self.valid.push(true);
    }

    pub fn push_null(&mut self) {
        self.ends.push(self.items.values.len());
        self.valid.push(false);
    }
}

macro_rules! lists_array {
    ($native:ty) => {
        impl Lists<$native> {
            pub fn array(self, list_type: &DataType) -> Result<ArrayRef> {
                let DataType::List(item) = list_type else {
                    return Err(format!("expected a list type, the schema has {list_type}"));
                };
                let mut starts = vec![0];
                starts.extend(self.ends);
                let list = ListArray::try_new(
                    item.clone(),
                    offsets(starts)?,
                    self.items.array(),
                    nulls(self.valid),
                )
                .map_err(|e| e.to_string())?;
                Ok(Arc::new(list))
            }
        }
    };
}
lists_array!(u64);
lists_array!(f64);

/// Rows of `map<string, string>`: keys and values of every row back to back.
#[derive(Default)]
pub struct Maps {
    pub keys: Strings,
    pub values: Strings,
    ends: Vec<usize>,
}

impl Maps {
    pub fn rows(&self) -> usize {
        self.ends.len()
    }

    /// Where the next row's entries start.
    pub fn entries(&self) -> usize {
        self.keys.len()
    }

    /// Appends one entry: the value's text is rendered by `render`, false meaning null.
    pub fn entry(&mut self, key: &[u8], render: impl FnOnce(&mut Vec<u8>) -> bool) {
        self.keys.push(key);
        let valid = render(&mut self.values.data);
        self.values.end(valid);
    }

    pub fn end_row(&mut self) {
        self.ends.push(self.keys.len());
    }

    /// The entries of row `row` as index range.
    pub fn row(&self, row: usize) -> std::ops::Range<usize> {
        (if row == 0 { 0 } else { self.ends[row - 1] })..self.ends[row]
    }

    /// Appends a copy of `other`'s row `row`, `times` times.
    pub fn copy_row(&mut self, other: &Maps, row: usize, times: usize) {
        let range = other.row(row);
        for _ in 0..times {
            for i in range.clone() {
                self.keys.push(other.keys.get(i).unwrap_or_default());
                match other.values.get(i) {
                    Some(v) => self.values.push(v),
                    None => self.values.push_null(),
                }
            }
            self.end_row();
        }
    }

    pub fn array(self, map_type: &DataType) -> Result<ArrayRef> {
        let DataType::Map(entries, sorted) = map_type else {
            return Err(format!("expected a map type, the schema has {map_type}"));
        };
        let DataType::Struct(fields) = entries.data_type() else {
            return Err("a map's entries are a struct".into());
        };
        let mut starts = vec![0];
        starts.extend(self.ends);
        let entry_struct = StructArray::try_new(
            fields.clone(),
            vec![self.keys.array()?, self.values.array()?],
            None,
        )
        .map_err(|e| e.to_string())?;
        let map = MapArray::try_new(
            entries.clone(),
            offsets(starts)?,
            entry_struct,
            None,
            *sorted,
        )
        .map_err(|e| e.to_string())?;
        Ok(Arc::new(map))
    }
}

/// A list<struct<...>> column whose struct children are built by the caller.
#[derive(Default)]
pub struct StructLists {
    ends: Vec<usize>,
    items: usize,
}

impl StructLists {
    pub fn item(&mut self) {
        self.items += 1;
    }

    pub fn end_row(&mut self) {
        self.ends.push(self.items);
    }

    pub fn array(self, list_type: &DataType, children: Vec<ArrayRef>) -> Result<ArrayRef> {
        let DataType::List(item) = list_type else {
            return Err(format!("expected a list type, the schema has {list_type}"));
        };
        let DataType::Struct(fields) = item.data_type() else {
            return Err("expected a list of structs".into());
        };
        let fields: Fields = fields.clone();
        let items = StructArray::try_new(fields, children, None).map_err(|e| e.to_string())?;
        let mut starts = vec![0];
        starts.extend(self.ends);
        let list = ListArray::try_new(item.clone(), offsets(starts)?, Arc::new(items), None)
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(list))
    }
}
