//! The protobuf wire format, read in place.
//!
//! Hand-written rather than prost: prost decodes into owned structs (a `String` and a `Vec` per
//! field), and the columns only need borrowed slices read once, in order. The rules follow the
//! upb decoder that Python's protobuf uses, so that both accept and reject the same bytes: a known
//! field with an unexpected wire type is an unknown field, groups are skipped, field 0, wire types
//! 6 and 7 and varints longer than ten bytes are corrupt.

pub type Result<T> = std::result::Result<T, String>;

/// One field's value as it sits on the wire.
#[derive(Clone, Copy)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Len(&'a [u8]),
    Group,
}

/// Iterates the fields of one message; corrupt bytes end it with an error.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    /// The offset of the next field: where the last one read ends.
    pub fn pos(&self) -> usize {
        self.pos
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64> {
        if let Some(&byte) = self.buf.get(self.pos) {
            if byte < 0x80 {
                self.pos += 1; // the common case: tags, small lengths and enums are one byte
                return Ok(u64::from(byte));
            }
        }
        self.long_varint()
    }

    /// A varint of two or more bytes (kept out of line, so that the one-byte case inlines small).
    #[inline(never)]
    fn long_varint(&mut self) -> Result<u64> {
        let start = self.pos;
        varint(self.buf, &mut self.pos).ok_or_else(|| match self.pos - start {
            10 => format!("varint longer than 10 bytes at byte {}", self.pos),
            _ => format!("truncated varint at byte {}", self.pos),
        })
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let Some(end) = self.pos.checked_add(n).filter(|end| *end <= self.buf.len()) else {
            return Err(past_the_end(n, self.pos));
        };
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// Skips a group's fields up to its end tag (groups are unknown fields in OTLP).
    fn skip_group(&mut self, number: u64, depth: u32) -> Result<()> {
        if depth == 0 {
            return Err("groups nested too deeply".into());
        }
        loop {
            let tag = self.varint()?;
            let (inner, wire) = (tag >> 3, tag & 7);
            match wire {
                4 if inner == number => return Ok(()),
                3 => self.skip_group(inner, depth - 1)?,
                // upb skips field number 0 inside a group, though it rejects it anywhere else
                _ => {
                    self.checked_value(inner, wire)?;
                }
            }
        }
    }

    #[inline(always)]
    fn value(&mut self, tag: u64) -> Result<Value<'a>> {
        let (number, wire) = (tag >> 3, tag & 7);
        if number == 0 {
            return Err("invalid field number 0".into());
        }
        self.checked_value(number, wire)
    }

    /// The value of field `number` (at most 2^29 - 1) of wire type `wire`.
    #[inline(always)]
    fn checked_value(&mut self, number: u64, wire: u64) -> Result<Value<'a>> {
        if number > u64::from(u32::MAX >> 3) {
            return Err(format!("invalid field number {number}"));
        }
        Ok(match wire {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let n = self.varint()?;
                let n = usize::try_from(n).map_err(|_| format!("length {n} too large"))?;
                Value::Len(self.take(n)?)
            }
            3 => {
                self.skip_group(number, crate::wire::MAX_DEPTH)?;
                Value::Group
            }
            5 => Value::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            )),
            _ => return Err(format!("invalid wire type {wire} for field {number}")),
        })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>)>;

    // Inlined into each walk: called out of line, its result went through memory and the walk
    // waited on it (perf: most of `each`'s own time).
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let item = self.varint().and_then(|tag| {
            let value = self.value(tag)?;
            Ok(((tag >> 3) as u32, value))
        });
        if item.is_err() {
            self.pos = self.buf.len();
        }
        Some(item)
    }
}

/// Kept out of the inlined walk: formatting is the rare path.
#[cold]
#[inline(never)]
fn past_the_end(n: usize, pos: usize) -> String {
    format!("field of {n} bytes at byte {pos} runs past the end")
}

/// The varint at `pos`, moving `pos` past it; None when it is truncated or longer than ten bytes
/// (upb's limit; bits beyond 64 are dropped, as upb drops them).
#[inline]
pub fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

/// How deep messages may nest, as in upb's default: deeper input is rejected, never recursed into.
pub const MAX_DEPTH: u32 = 100;

/// A packed or unpacked repeated scalar: every element, in order.
pub fn repeated_fixed64(value: Value<'_>, out: &mut Vec<u64>) -> Result<bool> {
    match value {
        Value::Fixed64(v) => out.push(v),
        Value::Len(bytes) => {
            if bytes.len() % 8 != 0 {
                return Err("packed fixed64 field of a length not a multiple of 8".into());
            }
            out.extend(
                bytes
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("8"))),
            );
        }
        _ => return Ok(false),
    }
    Ok(true)
}

pub fn repeated_varint(value: Value<'_>, out: &mut Vec<u64>) -> Result<bool> {
    match value {
        Value::Varint(v) => out.push(v),
        Value::Len(bytes) => {
            let mut fields = Fields::new(bytes);
            while fields.pos < bytes.len() {
                out.push(fields.varint()?);
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

pub fn zigzag32(v: u64) -> i32 {
    let v = v as u32;
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

/// A string field's bytes: upb rejects a string that is not UTF-8.
#[inline]
pub fn utf8(bytes: &[u8]) -> Result<&[u8]> {
    if bytes.is_ascii() {
        return Ok(bytes); // most keys and names: a word at a time, without from_utf8's set-up
    }
    match std::str::from_utf8(bytes) {
        Ok(_) => Ok(bytes),
        Err(e) => Err(format!("a string is not UTF-8 ({e})")),
    }
}

/// Each field of a message, checked; the walk stops at the first corrupt byte.
pub fn each<'a>(
    message: &'a [u8],
    mut field: impl FnMut(u32, Value<'a>) -> Result<()>,
) -> Result<()> {
    for item in Fields::new(message) {
        let (number, value) = item?;
        field(number, value)?;
    }
    Ok(())
}
