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
use arrow_buffer::{
    BooleanBuffer, Buffer, NullBuffer, NullBufferBuilder, OffsetBuffer, ScalarBuffer,
};
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

/// Validity that allocates nothing until the first null: most columns have none.
fn validity() -> NullBufferBuilder {
    NullBufferBuilder::new(0)
}

/// Offsets kept as i32 from the start (no conversion pass); `total` is the last one, checked once:
/// the offsets only grow, so when the last fits, every one does.
fn offsets(offsets: Vec<i32>, total: usize) -> Result<OffsetBuffer<i32>> {
    if i32::try_from(total).is_err() {
        return Err(format!(
            "a poll of more than 2 GiB in one column ({total} bytes or items): poll fewer records"
        ));
    }
    // SAFETY: the offsets start at 0 and only grow (each is a buffer's length as it was then),
    // and none wrapped, since the last fits; `new` would check every one again.
    Ok(unsafe { OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)) })
}

/// A growing buffer, seen apart from its element type.
pub trait Grow {
    fn filled(&self) -> usize;
    /// Room for `total` elements in all, in one allocation.
    fn reserve_total(&mut self, total: usize);
}

impl<T> Grow for Vec<T> {
    fn filled(&self) -> usize {
        self.len()
    }

    fn reserve_total(&mut self, total: usize) {
        self.reserve_exact(total.saturating_sub(self.len()));
    }
}

/// Columns whose buffers a call can size ahead from the previous call's lengths (lib.rs,
/// `SizeHints`): grown by doubling from empty, every buffer was copied again at each doubling
/// (sized ahead: points and log records about 1.25x per CPU-second, spans a few percent).
pub trait Buffers {
    /// Every growing buffer, always in the same order.
    fn buffers<'a>(&'a mut self, out: &mut Vec<&'a mut dyn Grow>);
}

/// `Buffers` for a struct: its column fields, in order.
macro_rules! buffers {
    ($type:ty: $($field:ident),+ $(,)?) => {
        impl crate::columns::Buffers for $type {
            fn buffers<'a>(&'a mut self, out: &mut Vec<&'a mut dyn crate::columns::Grow>) {
                $(crate::columns::Buffers::buffers(&mut self.$field, out);)+
            }
        }
    };
}
pub(crate) use buffers;

impl Buffers for Strings {
    fn buffers<'a>(&'a mut self, out: &mut Vec<&'a mut dyn Grow>) {
        out.push(&mut self.data);
        out.push(&mut self.starts);
    }
}

impl<T: Copy + Default> Buffers for Numbers<T> {
    fn buffers<'a>(&'a mut self, out: &mut Vec<&'a mut dyn Grow>) {
        out.push(&mut self.values);
    }
}

impl<T: Copy + Default> Buffers for Lists<T> {
    fn buffers<'a>(&'a mut self, out: &mut Vec<&'a mut dyn Grow>) {
        self.items.buffers(out);
        out.push(&mut self.starts);
    }
}

impl Buffers for StructLists {
    fn buffers<'a>(&'a mut self, out: &mut Vec<&'a mut dyn Grow>) {
        out.push(&mut self.starts);
    }
}

impl<T: Buffers> Buffers for Vec<T> {
    fn buffers<'a>(&'a mut self, out: &mut Vec<&'a mut dyn Grow>) {
        for column in self {
            column.buffers(out);
        }
    }
}

impl Buffers for Maps {
    fn buffers<'a>(&'a mut self, out: &mut Vec<&'a mut dyn Grow>) {
        self.keys.buffers(out);
        self.values.buffers(out);
        out.push(&mut self.starts);
    }
}

/// The end of a value or row as an i32 offset; wraps past 2 GiB, which `offsets` then rejects.
#[inline]
fn end(len: usize) -> i32 {
    len as i32
}

/// The two lowercase hex digits of every byte.
const HEX: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [DIGITS[i >> 4], DIGITS[i & 15]];
        i += 1;
    }
    table
};

/// A nullable Utf8 column.
pub struct Strings {
    pub data: Vec<u8>,
    starts: Vec<i32>, // one more than values: the first is 0
    valid: NullBufferBuilder,
}

impl Default for Strings {
    fn default() -> Self {
        Strings {
            data: Vec::new(),
            starts: vec![0],
            valid: validity(),
        }
    }
}

impl Strings {
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    #[inline]
    pub fn push(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        self.end(true);
    }

    pub fn push_null(&mut self) {
        self.end(false);
    }

    /// Ends the value whose bytes were appended to `data` directly. Inlined into every push:
    /// called, the pushes of keys and values spent a tenth of a span's decode saving and restoring
    /// registers (perf).
    #[inline(always)]
    pub fn end(&mut self, valid: bool) {
        self.starts.push(end(self.data.len()));
        self.valid.append(valid);
    }

    /// Lowercase hex, as OTLP/JSON spells trace and span ids: two digits per byte from a table,
    /// written into the grown buffer in place.
    pub fn push_hex(&mut self, bytes: &[u8]) {
        let start = self.data.len();
        self.data.resize(start + 2 * bytes.len(), 0);
        for (out, b) in self.data[start..].chunks_exact_mut(2).zip(bytes) {
            out.copy_from_slice(&HEX[usize::from(*b)]);
        }
        self.end(true);
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.valid
            .is_valid(i)
            .then(|| &self.data[self.starts[i] as usize..self.starts[i + 1] as usize])
    }

    /// Appends values `range` of `other` (its bytes in one copy), `times` times over.
    pub fn extend_from(&mut self, other: &Strings, range: std::ops::Range<usize>, times: usize) {
        let (first, last) = (other.starts[range.start], other.starts[range.end]);
        let bytes = &other.data[first as usize..last as usize];
        for _ in 0..times {
            let shift = end(self.data.len()).wrapping_sub(first);
            self.data.extend_from_slice(bytes);
            self.starts.extend(
                other.starts[range.start + 1..=range.end]
                    .iter()
                    .map(|s| s.wrapping_add(shift)),
            );
            if other.valid.as_slice().is_none() {
                self.valid.append_n_non_nulls(range.len());
            } else {
                for i in range.clone() {
                    self.valid.append(other.valid.is_valid(i));
                }
            }
        }
    }

    pub fn array(mut self) -> Result<ArrayRef> {
        let offsets = offsets(self.starts, self.data.len())?;
        debug_assert!(std::str::from_utf8(&self.data).is_ok());
        // SAFETY: what `try_new` would check again holds by construction, and that check read
        // every byte a second time. The values are whole and UTF-8: each string field copied here
        // was checked as upb checks it in the walk (a poll with a rejected record is read again
        // from records validated whole), and the decoder itself writes only ASCII (hex ids,
        // numbers, JSON punctuation and escapes, base64). `offsets` checked the offsets; every
        // value appended one validity bit.
        let array = unsafe {
            StringArray::new_unchecked(offsets, Buffer::from_vec(self.data), self.valid.finish())
        };
        Ok(Arc::new(array))
    }
}

/// A nullable primitive column.
pub struct Numbers<T> {
    values: Vec<T>,
    valid: NullBufferBuilder,
}

impl<T: Copy + Default> Default for Numbers<T> {
    fn default() -> Self {
        Numbers {
            values: Vec::new(),
            valid: validity(),
        }
    }
}

impl<T: Copy + Default> Numbers<T> {
    #[inline]
    pub fn push(&mut self, value: T) {
        self.values.push(value);
        self.valid.append_non_null();
    }

    pub fn push_opt(&mut self, value: Option<T>) {
        self.values.push(value.unwrap_or_default());
        self.valid.append(value.is_some());
    }

    fn nulls(&mut self) -> Option<NullBuffer> {
        self.valid.finish()
    }
}

macro_rules! numbers_array {
    ($native:ty, $arrow:ty) => {
        impl Numbers<$native> {
            pub fn array(mut self) -> ArrayRef {
                let nulls = self.nulls();
                Arc::new(PrimitiveArray::<$arrow>::new(
                    ScalarBuffer::from(self.values),
                    nulls,
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
    pub fn int64(mut self) -> ArrayRef {
        let nulls = self.nulls();
        Arc::new(PrimitiveArray::<Int64Type>::new(
            ScalarBuffer::from(self.values),
            nulls,
        ))
    }

    /// Nanoseconds since the epoch as `timestamp[ns, UTC]`.
    pub fn timestamps(mut self) -> ArrayRef {
        let nulls = self.nulls();
        Arc::new(
            PrimitiveArray::<TimestampNanosecondType>::new(ScalarBuffer::from(self.values), nulls)
                .with_timezone("UTC"),
        )
    }
}

impl Numbers<bool> {
    pub fn array(mut self) -> ArrayRef {
        let nulls = self.nulls();
        Arc::new(BooleanArray::new(BooleanBuffer::from(self.values), nulls))
    }
}

/// A nullable list of primitives.
pub struct Lists<T> {
    items: Numbers<T>,
    starts: Vec<i32>,
    valid: NullBufferBuilder,
}

impl<T: Copy + Default> Default for Lists<T> {
    fn default() -> Self {
        Lists {
            items: Numbers::default(),
            starts: vec![0],
            valid: validity(),
        }
    }
}

impl<T: Copy + Default> Lists<T> {
    pub fn push(&mut self, items: &[T]) {
        self.items.values.extend_from_slice(items);
        self.items.valid.append_n_non_nulls(items.len());
        self.starts.push(end(self.items.values.len()));
        self.valid.append_non_null();
    }

    pub fn push_null(&mut self) {
        self.starts.push(end(self.items.values.len()));
        self.valid.append_null();
    }
}

macro_rules! lists_array {
    ($native:ty) => {
        impl Lists<$native> {
            pub fn array(mut self, list_type: &DataType) -> Result<ArrayRef> {
                let DataType::List(item) = list_type else {
                    return Err(format!("expected a list type, the schema has {list_type}"));
                };
                let total = self.items.values.len();
                let list = ListArray::try_new(
                    item.clone(),
                    offsets(self.starts, total)?,
                    self.items.array(),
                    self.valid.finish(),
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
pub struct Maps {
    pub keys: Strings,
    pub values: Strings,
    starts: Vec<i32>,
}

impl Default for Maps {
    fn default() -> Self {
        Maps {
            keys: Strings::default(),
            values: Strings::default(),
            starts: vec![0],
        }
    }
}

impl Maps {
    pub fn rows(&self) -> usize {
        self.starts.len() - 1
    }

    /// Where the next row's entries start.
    pub fn entries(&self) -> usize {
        self.keys.len()
    }

    /// Appends one entry: the value's text is rendered by `render`, false meaning null.
    #[inline]
    pub fn entry(
        &mut self,
        key: &[u8],
        render: impl FnOnce(&mut Vec<u8>) -> Result<bool>,
    ) -> Result<bool> {
        self.keys.push(key);
        let valid = render(&mut self.values.data)?;
        self.values.end(valid);
        Ok(valid)
    }

    pub fn end_row(&mut self) {
        self.starts.push(end(self.keys.len()));
    }

    /// The entries of row `row` as index range.
    pub fn row(&self, row: usize) -> std::ops::Range<usize> {
        self.starts[row] as usize..self.starts[row + 1] as usize
    }

    /// Appends a copy of `other`'s row `row`, `times` times.
    pub fn copy_row(&mut self, other: &Maps, row: usize, times: usize) {
        let range = other.row(row);
        self.keys.extend_from(&other.keys, range.clone(), times);
        self.values.extend_from(&other.values, range.clone(), times);
        for _ in 0..times {
            let last = self.starts[self.starts.len() - 1];
            self.starts.push(last.wrapping_add(range.len() as i32));
        }
    }

    pub fn array(self, map_type: &DataType) -> Result<ArrayRef> {
        let DataType::Map(entries, sorted) = map_type else {
            return Err(format!("expected a map type, the schema has {map_type}"));
        };
        let DataType::Struct(fields) = entries.data_type() else {
            return Err("a map's entries are a struct".into());
        };
        let total = self.keys.len();
        let entry_struct = StructArray::try_new(
            fields.clone(),
            vec![self.keys.array()?, self.values.array()?],
            None,
        )
        .map_err(|e| e.to_string())?;
        let map = MapArray::try_new(
            entries.clone(),
            offsets(self.starts, total)?,
            entry_struct,
            None,
            *sorted,
        )
        .map_err(|e| e.to_string())?;
        Ok(Arc::new(map))
    }
}

/// A list<struct<...>> column whose struct children are built by the caller.
pub struct StructLists {
    starts: Vec<i32>,
    items: usize,
}

impl Default for StructLists {
    fn default() -> Self {
        StructLists {
            starts: vec![0],
            items: 0,
        }
    }
}

impl StructLists {
    pub fn item(&mut self) {
        self.items += 1;
    }

    pub fn end_row(&mut self) {
        self.starts.push(end(self.items));
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
        let list = ListArray::try_new(
            item.clone(),
            offsets(self.starts, self.items)?,
            Arc::new(items),
            None,
        )
        .map_err(|e| e.to_string())?;
        Ok(Arc::new(list))
    }
}
