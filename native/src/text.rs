//! An OTLP AnyValue as the text of an attribute map value, byte for byte as the datasets define it
//! (schemas/datasets.py): strings as they are, numbers as Python prints them, bools as
//! true/false, bytes, arrays and maps as compact JSON (`json.dumps(..., separators=(",", ":"),
//! ensure_ascii=False)`, bytes in base64, a map's repeated key keeping its first place and last
//! value). Hand-written: the output must equal Python's float repr and json escaping exactly,
//! which no JSON crate promises.

use std::borrow::Cow;
use std::collections::HashMap;

use base64::Engine;

use crate::validate::{nested, ANY_VALUE, ARRAY, KVLIST};
use crate::wire::{utf8, Fields, Result, Value};

/// The oneof member that an AnyValue ends with (the last one on the wire wins).
#[derive(Clone, Copy)]
enum Member<'a> {
    Unset,
    Str(&'a [u8]),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    /// array_value (5) or kvlist_value (6): every occurrence from field index `since` on merges.
    Nested(u32, usize),
}

/// The member an AnyValue ends with; with `check`, the value is checked as upb checks it at that
/// depth (every string member UTF-8, nested arrays and maps whole), else it was checked before.
fn member(any: &[u8], check: Option<u32>) -> Result<Member<'_>> {
    let mut last = Member::Unset;
    for (index, field) in Fields::new(any).enumerate() {
        last = match field? {
            (1, Value::Len(s)) => Member::Str(if check.is_some() { utf8(s)? } else { s }),
            (2, Value::Varint(v)) => Member::Bool(v != 0),
            (3, Value::Varint(v)) => Member::Int(v as i64),
            (4, Value::Fixed64(v)) => Member::Double(f64::from_bits(v)),
            (7, Value::Len(b)) => Member::Bytes(b),
            (8, Value::Varint(v)) => Member::Int(i64::from(v as i32)), // string_value_strindex
            (n @ (5 | 6), Value::Len(body)) => {
                if let Some(depth) = check {
                    let inner = if n == 5 { &ARRAY } else { &KVLIST };
                    nested(body, inner, depth)?;
                }
                match last {
                    Member::Nested(m, since) if m == n => Member::Nested(m, since),
                    _ => Member::Nested(n, index),
                }
            }
            _ => last,
        };
    }
    Ok(last)
}

/// The items of a merged array_value or kvlist_value: field 1 of every occurrence, in order.
fn nested_items(any: &[u8], number: u32, since: usize) -> impl Iterator<Item = &[u8]> {
    Fields::new(any)
        .map_while(Result::ok)
        .skip(since)
        .filter_map(move |field| match field {
            (n, Value::Len(body)) if n == number => Some(body),
            _ => None,
        })
        .flat_map(|body| {
            Fields::new(body)
                .map_while(Result::ok)
                .filter_map(|field| match field {
                    (1, Value::Len(item)) => Some(item),
                    _ => None,
                })
        })
}

/// Appends the map text of an AnyValue, checked at depth `check` if given (see `member`); false
/// when the value is unset (a null, not text).
pub fn render(any: &[u8], out: &mut Vec<u8>, check: Option<u32>) -> Result<bool> {
    Ok(text(member(any, check)?, any, out))
}

/// Appends the map text of `member`, the member `any` ends with; false when unset.
#[inline]
fn text(member: Member<'_>, any: &[u8], out: &mut Vec<u8>) -> bool {
    match member {
        Member::Unset => return false,
        Member::Str(s) => out.extend_from_slice(s),
        Member::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Member::Int(i) => integer(i, out),
        Member::Double(d) => python_float(d, false, out),
        Member::Bytes(_) | Member::Nested(..) => json(any, out),
    }
    true
}

/// Decimal digits straight into the column's bytes (itoa: no fmt machinery, no String).
#[inline]
fn integer(i: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
}

/// A KeyValue in the shape SDKs write it: key, then one scalar value (string, bool, int or
/// double), each length below 128, nothing else. Such a KeyValue reads in a few comparisons
/// instead of two field walks; any other shape is None and takes the general path, which reads
/// it the same. Appends the value's map text to `out`; returns the key and, for a string value,
/// its bytes, which the caller still checks as UTF-8 when upb would.
#[inline]
pub fn simple_key_value<'a>(
    kv: &'a [u8],
    out: &mut Vec<u8>,
) -> Option<(&'a [u8], Option<&'a [u8]>)> {
    let [0x0a, key_len, rest @ ..] = kv else {
        return None;
    };
    let key_len = usize::from(*key_len);
    if key_len >= 0x80 || rest.len() < key_len {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    let [0x12, any_len, any @ ..] = rest else {
        return None;
    };
    if usize::from(*any_len) != any.len() {
        return None; // also a length of two bytes or more: its first byte is at least 0x80
    }
    let member = match any {
        [0x0a, len, s @ ..] if usize::from(*len) == s.len() => Member::Str(s),
        [tag @ (0x10 | 0x18), varint @ ..] => {
            let mut pos = 0;
            let v = crate::wire::varint(varint, &mut pos)?;
            if pos != varint.len() {
                return None;
            }
            if *tag == 0x10 {
                Member::Bool(v != 0)
            } else {
                Member::Int(v as i64)
            }
        }
        [0x21, bits @ ..] => Member::Double(f64::from_le_bytes(bits.try_into().ok()?)),
        _ => return None,
    };
    let string = match member {
        Member::Str(s) => Some(s),
        _ => None,
    };
    text(member, any, out);
    Some((key, string))
}

/// A singular message field, merged over its occurrences (None when absent).
pub type Merged<'a> = Option<Cow<'a, [u8]>>;

/// A KeyValue's key and value; a repeated `value` field merges, as protobuf merges messages.
/// With `check` (the KeyValue's depth) the key is checked, and so is each value when it repeats;
/// the depth returned is where the value is still to be checked (`render`), if at all.
pub fn key_value(kv: &[u8], check: Option<u32>) -> Result<(&[u8], Merged<'_>, Option<u32>)> {
    let mut key: &[u8] = b"";
    let mut value: Merged<'_> = None;
    let mut repeated = false;
    for field in Fields::new(kv) {
        match field? {
            (1, Value::Len(k)) => key = if check.is_some() { utf8(k)? } else { k },
            (2, Value::Len(v)) => {
                if let (Some(depth), Some(before)) = (check, &value) {
                    // upb checks each occurrence alone: their concatenation may hide a cut field
                    if !repeated {
                        nested(before, &ANY_VALUE, depth)?;
                    }
                    nested(v, &ANY_VALUE, depth)?;
                    repeated = true;
                }
                value = Some(merge(value, v));
            }
            _ => {}
        }
    }
    let value_check = check.filter(|_| !repeated).map(|depth| depth - 1);
    Ok((key, value, value_check))
}

/// A singular message field seen again: the merged message is the two encodings back to back.
pub fn merge<'a>(previous: Merged<'a>, next: &'a [u8]) -> Cow<'a, [u8]> {
    match previous {
        None => Cow::Borrowed(next),
        Some(before) => {
            let mut joined = before.into_owned();
            joined.extend_from_slice(next);
            Cow::Owned(joined)
        }
    }
}

fn json(any: &[u8], out: &mut Vec<u8>) {
    match member(any, None).unwrap_or(Member::Unset) {
        Member::Unset => out.extend_from_slice(b"null"),
        Member::Str(s) => json_string(s, out),
        Member::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Member::Int(i) => integer(i, out),
        Member::Double(d) => python_float(d, true, out),
        Member::Bytes(b) => {
            out.push(b'"');
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(b)
                    .as_bytes(),
            );
            out.push(b'"');
        }
        Member::Nested(5, since) => {
            out.push(b'[');
            for (i, item) in nested_items(any, 5, since).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json(item, out);
            }
            out.push(b']');
        }
        Member::Nested(_, since) => json_object(nested_items(any, 6, since), out),
    }
}

/// A kvlist as a Python dict prints: a repeated key keeps its first place and takes the last value.
fn json_object<'a>(items: impl Iterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    let mut entries: Vec<(&[u8], Merged<'_>)> = Vec::new();
    let mut place: HashMap<&[u8], usize> = HashMap::new();
    for item in items {
        let Ok((key, value, _)) = key_value(item, None) else {
            continue; // checked before: cannot happen
        };
        match place.get(key) {
            Some(&i) => entries[i].1 = value,
            None => {
                place.insert(key, entries.len());
                entries.push((key, value));
            }
        }
    }
    out.push(b'{');
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_string(key, out);
        out.push(b':');
        match value {
            Some(v) => json(v, out),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

fn json_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &byte in s {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => out.extend_from_slice(format!("\\u{byte:04x}").as_bytes()),
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

/// `repr(float)`: the shortest round-tripping digits, fixed notation for exponents -4..15.
pub fn python_float(x: f64, in_json: bool, out: &mut Vec<u8>) {
    if x.is_nan() {
        out.extend_from_slice(if in_json { b"NaN" } else { b"nan" });
        return;
    }
    if x.is_infinite() {
        let text: &[u8] = match (x > 0.0, in_json) {
            (true, true) => b"Infinity",
            (true, false) => b"inf",
            (false, true) => b"-Infinity",
            (false, false) => b"-inf",
        };
        out.extend_from_slice(text);
        return;
    }
    if x.is_sign_negative() {
        out.push(b'-');
    }
    // Python's repr: the fewest digits that read back as `x`, and of those the nearest to `x`,
    // an exact tie going to the even digit. Rust's `{:e}` gives the same count of digits but breaks
    // that tie upwards, so round `x` itself to that many digits (half to even) and keep the result
    // if it reads back as `x`; else the tie's other side was the only one that does (2**-24).
    let shortest = format!("{:e}", x.abs());
    let count = shortest
        .split_once('e')
        .map_or(1, |(m, _)| m.bytes().filter(u8::is_ascii_digit).count());
    let rounded = format!("{:.*e}", count - 1, x.abs());
    let sci = if rounded.parse::<f64>() == Ok(x.abs()) {
        rounded
    } else {
        shortest
    }; // e.g. "1.5e-5"
    let (mantissa, exponent) = sci.split_once('e').expect("LowerExp has an exponent");
    let digits: Vec<u8> = mantissa.bytes().filter(|b| *b != b'.').collect();
    let exponent: i32 = exponent.parse().expect("LowerExp exponent is an integer");
    let point = exponent + 1; // digits before the decimal point
    let n = digits.len() as i32;
    if (-3..=16).contains(&point) {
        if point <= 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-point) as usize));
            out.extend_from_slice(&digits);
        } else if point >= n {
            out.extend_from_slice(&digits);
            out.extend(std::iter::repeat_n(b'0', (point - n) as usize));
            out.extend_from_slice(b".0");
        } else {
            out.extend_from_slice(&digits[..point as usize]);
            out.push(b'.');
            out.extend_from_slice(&digits[point as usize..]);
        }
    } else {
        out.push(digits[0]);
        if n > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.extend_from_slice(
            format!(
                "e{}{:02}",
                if exponent < 0 { '-' } else { '+' },
                exponent.abs()
            )
            .as_bytes(),
        );
    }
}
