//! ExportMetricsServiceRequest → rows of the metrics dataset, one per data point of any of the
//! five types; the columns a type does not fill are null.

use arrow_array::ArrayRef;
use arrow_schema::Schema;

use crate::columns::{buffers, type_of, Lists, Numbers, Strings};
use crate::common::{Common, ITEM_DEPTH};
use crate::text::{merge, Merged};
use crate::validate::{self, nested, Message, BUCKETS, EXEMPLAR, KEY_VALUE};
use crate::wire::{each, repeated_fixed64, repeated_varint, utf8, zigzag32, Fields, Result, Value};
use crate::Rows;

const GAUGE: u32 = 5;
const SUM: u32 = 7;
const HISTOGRAM: u32 = 9;
const EXPONENTIAL: u32 = 10;
const SUMMARY: u32 = 11;
const TEMPORALITY: [&[u8]; 3] = [b"", b"delta", b"cumulative"];

/// The message of a metric's data field `n` (one of the five above).
fn data_message(n: u32) -> &'static Message {
    match n {
        GAUGE => &validate::GAUGE,
        SUM => &validate::SUM,
        HISTOGRAM => &validate::HISTOGRAM,
        EXPONENTIAL => &validate::EXPONENTIAL,
        _ => &validate::SUMMARY,
    }
}

/// One data point's type-specific values, reused from point to point.
#[derive(Default)]
struct Point {
    value: Option<f64>,
    count: Option<u64>,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    buckets: Vec<u64>,
    bounds: Vec<u64>, // f64 bits
    scale: i32,
    zero_count: u64,
    positive: (i32, Vec<u64>),
    negative: (i32, Vec<u64>),
    quantiles: Vec<f64>,
    quantile_values: Vec<f64>,
}

#[derive(Default)]
pub struct Metrics {
    time: Numbers<i64>,
    start_time: Numbers<i64>,
    metric_name: Strings,
    metric_description: Strings,
    unit: Strings,
    kind: Strings,
    temporality: Strings,
    is_monotonic: Numbers<bool>,
    value: Numbers<f64>,
    count: Numbers<u64>,
    sum: Numbers<f64>,
    min: Numbers<f64>,
    max: Numbers<f64>,
    bucket_counts: Lists<u64>,
    explicit_bounds: Lists<f64>,
    exp_scale: Numbers<i32>,
    exp_zero_count: Numbers<u64>,
    exp_positive_offset: Numbers<i32>,
    exp_positive_counts: Lists<u64>,
    exp_negative_offset: Numbers<i32>,
    exp_negative_counts: Lists<u64>,
    quantiles: Lists<f64>,
    quantile_values: Lists<f64>,
    flags: Numbers<u32>,
    point: Point,
}

buffers!(Metrics: time, start_time, metric_name, metric_description, unit, kind, temporality,
    is_monotonic, value, count, sum, min, max, bucket_counts, explicit_bounds, exp_scale,
    exp_zero_count, exp_positive_offset, exp_positive_counts, exp_negative_offset,
    exp_negative_counts, quantiles, quantile_values, flags);

impl Metrics {
    fn metric(&mut self, metric: &[u8], common: &mut Common<'_>) -> Result<usize> {
        const DEPTH: u32 = ITEM_DEPTH;
        let (mut name, mut description, mut unit): (&[u8], &[u8], &[u8]) = (b"", b"", b"");
        let mut data: Option<(u32, usize)> = None; // the oneof member that wins, from which field on
        let (mut index, mut members) = (0, 0);
        each(metric, |number, value| {
            match (number, value) {
                (1, Value::Len(b)) => name = utf8(b)?,
                (2, Value::Len(b)) => description = utf8(b)?,
                (3, Value::Len(b)) => unit = utf8(b)?,
                (12, Value::Len(kv)) => nested(kv, &KEY_VALUE, DEPTH)?,
                (n @ (GAUGE | SUM | HISTOGRAM | EXPONENTIAL | SUMMARY), Value::Len(_)) => {
                    members += 1;
                    if data.is_none_or(|(m, _)| m != n) {
                        data = Some((n, index));
                    }
                }
                _ => {}
            }
            index += 1;
            Ok(())
        })?;
        if members > 1 {
            // The oneof members that lost are not read, but upb checks them all the same.
            let winner =
                |n: u32, i: usize| data.is_some_and(|(kind, since)| n == kind && i >= since);
            for (i, field) in Fields::new(metric)
                .map_while(std::result::Result::ok)
                .enumerate()
            {
                if let (n @ (GAUGE | SUM | HISTOGRAM | EXPONENTIAL | SUMMARY), Value::Len(body)) =
                    field
                {
                    if !winner(n, i) {
                        nested(body, data_message(n), DEPTH)?;
                    }
                }
            }
        }
        let Some((kind, since)) = data else {
            return Ok(0);
        };
        // One walk over the winning member's occurrences: its points (checked as they are read)
        // and its temporality and monotonicity, which the last occurrence decides for every row.
        let (mut temporality, mut monotonic, mut rows) = (0i32, false, 0);
        let bodies = Fields::new(metric)
            .map_while(std::result::Result::ok)
            .skip(since)
            .filter_map(|f| match f {
                (n, Value::Len(body)) if n == kind => Some(body),
                _ => None,
            });
        for body in bodies {
            each(body, |number, value| {
                match (number, value) {
                    (1, Value::Len(point)) => {
                        self.data_point(kind, point, common, DEPTH - 2)?;
                        rows += 1;
                    }
                    (2, Value::Varint(v)) => temporality = v as i32,
                    (3, Value::Varint(v)) => monotonic = v != 0,
                    _ => {}
                }
                Ok(())
            })?;
        }
        let (type_name, temporality): (&[u8], &[u8]) = match kind {
            GAUGE => (b"gauge", b""),
            SUMMARY => (b"summary", b""),
            _ => (
                match kind {
                    SUM => b"sum",
                    HISTOGRAM => b"histogram",
                    _ => b"exponential_histogram",
                },
                usize::try_from(temporality)
                    .ok()
                    .and_then(|t| TEMPORALITY.get(t))
                    .unwrap_or(&TEMPORALITY[0]),
            ),
        };
        for _ in 0..rows {
            self.metric_name.push(name);
            self.metric_description.push(description);
            self.unit.push(unit);
            self.kind.push(type_name);
            self.temporality.push(temporality);
            self.is_monotonic
                .push_opt((kind == SUM).then_some(monotonic));
        }
        Ok(rows)
    }

    /// One data point of type `kind`, checked at `depth`.
    fn data_point(
        &mut self,
        kind: u32,
        point: &[u8],
        common: &mut Common<'_>,
        depth: u32,
    ) -> Result<()> {
        let p = &mut self.point;
        (p.value, p.count, p.sum, p.min, p.max) = (None, None, None, None, None);
        (p.scale, p.zero_count, p.positive.0, p.negative.0) = (0, 0, 0, 0);
        for list in [
            &mut p.buckets,
            &mut p.bounds,
            &mut p.positive.1,
            &mut p.negative.1,
        ] {
            list.clear();
        }
        p.quantiles.clear();
        p.quantile_values.clear();
        let (attributes, exemplars, flags_field) = match kind {
            HISTOGRAM => (9, 8, 10),
            EXPONENTIAL => (1, 11, 10),
            SUMMARY => (7, 0, 8), // a summary point has no exemplars
            _ => (7, 5, 8),
        };
        let (mut time, mut start, mut flags) = (0u64, 0u64, 0u32);
        let (mut positive, mut negative): (Merged<'_>, Merged<'_>) = (None, None);
        each(point, |number, value| {
            match (kind, (number, value)) {
                (_, (2, Value::Fixed64(v))) => start = v,
                (_, (3, Value::Fixed64(v))) => time = v,
                (_, (n, Value::Len(kv))) if n == attributes => common.attribute(kv, depth - 1)?,
                (_, (n, Value::Len(exemplar))) if n == exemplars => {
                    nested(exemplar, &EXEMPLAR, depth)?
                }
                (_, (n, Value::Varint(v))) if n == flags_field => flags = v as u32,
                (GAUGE | SUM, (4, Value::Fixed64(v))) => p.value = Some(f64::from_bits(v)),
                (GAUGE | SUM, (6, Value::Fixed64(v))) => p.value = Some(v as i64 as f64),
                (HISTOGRAM | EXPONENTIAL | SUMMARY, (4, Value::Fixed64(v))) => p.count = Some(v),
                (HISTOGRAM | EXPONENTIAL | SUMMARY, (5, Value::Fixed64(v))) => {
                    p.sum = Some(f64::from_bits(v))
                }
                (HISTOGRAM, (11, Value::Fixed64(v))) | (EXPONENTIAL, (12, Value::Fixed64(v))) => {
                    p.min = Some(f64::from_bits(v))
                }
                (HISTOGRAM, (12, Value::Fixed64(v))) | (EXPONENTIAL, (13, Value::Fixed64(v))) => {
                    p.max = Some(f64::from_bits(v))
                }
                (HISTOGRAM, (6, value)) => drop(repeated_fixed64(value, &mut p.buckets)?),
                (HISTOGRAM, (7, value)) => drop(repeated_fixed64(value, &mut p.bounds)?),
                (EXPONENTIAL, (6, Value::Varint(v))) => p.scale = zigzag32(v),
                (EXPONENTIAL, (7, Value::Fixed64(v))) => p.zero_count = v,
                (EXPONENTIAL, (8, Value::Len(b))) => {
                    nested(b, &BUCKETS, depth)?;
                    positive = Some(merge(positive.take(), b));
                }
                (EXPONENTIAL, (9, Value::Len(b))) => {
                    nested(b, &BUCKETS, depth)?;
                    negative = Some(merge(negative.take(), b));
                }
                (SUMMARY, (6, Value::Len(q))) => {
                    let (mut quantile, mut value) = (0u64, 0u64);
                    each(q, |number, field| {
                        match (number, field) {
                            (1, Value::Fixed64(v)) => quantile = v,
                            (2, Value::Fixed64(v)) => value = v,
                            _ => {}
                        }
                        Ok(())
                    })?;
                    p.quantiles.push(f64::from_bits(quantile));
                    p.quantile_values.push(f64::from_bits(value));
                }
                _ => {}
            }
            Ok(())
        })?;
        for (buckets, out) in [(positive, &mut p.positive), (negative, &mut p.negative)] {
            for field in Fields::new(buckets.as_deref().unwrap_or_default())
                .map_while(std::result::Result::ok)
            {
                match field {
                    (1, Value::Varint(v)) => out.0 = zigzag32(v),
                    (2, value) => drop(repeated_varint(value, &mut out.1)),
                    _ => {}
                }
            }
        }
        common.end_attributes();
        self.time.push(time as i64);
        self.start_time
            .push_opt((start != 0).then_some(start as i64));
        self.flags.push(flags);
        self.push_point(kind);
        Ok(())
    }

    /// The type-specific columns of the point just read (nulls where the type has none).
    fn push_point(&mut self, kind: u32) {
        let p = &self.point;
        let number = matches!(kind, GAUGE | SUM);
        self.value.push_opt(if number { p.value } else { None });
        self.count.push_opt(p.count.or((!number).then_some(0)));
        self.sum.push_opt(if kind == SUMMARY {
            p.sum.or(Some(0.0))
        } else {
            p.sum
        });
        self.min.push_opt(p.min);
        self.max.push_opt(p.max);
        if kind == HISTOGRAM {
            self.bucket_counts.push(&p.buckets);
            self.explicit_bounds.push(
                &p.bounds
                    .iter()
                    .map(|b| f64::from_bits(*b))
                    .collect::<Vec<_>>(),
            );
        } else {
            self.bucket_counts.push_null();
            self.explicit_bounds.push_null();
        }
        let exponential = kind == EXPONENTIAL;
        self.exp_scale.push_opt(exponential.then_some(p.scale));
        self.exp_zero_count
            .push_opt(exponential.then_some(p.zero_count));
        self.exp_positive_offset
            .push_opt(exponential.then_some(p.positive.0));
        self.exp_negative_offset
            .push_opt(exponential.then_some(p.negative.0));
        for (counts, side) in [
            (&mut self.exp_positive_counts, &p.positive.1),
            (&mut self.exp_negative_counts, &p.negative.1),
        ] {
            if exponential {
                counts.push(side);
            } else {
                counts.push_null();
            }
        }
        if kind == SUMMARY {
            self.quantiles.push(&p.quantiles);
            self.quantile_values.push(&p.quantile_values);
        } else {
            self.quantiles.push_null();
            self.quantile_values.push_null();
        }
    }
}

impl Rows for Metrics {
    fn item(&mut self, metric: &[u8], _received_ns: i64, common: &mut Common<'_>) -> Result<usize> {
        self.metric(metric, common)
    }

    fn columns(self, schema: &Schema) -> Result<Vec<(&'static str, ArrayRef)>> {
        Ok(vec![
            ("time", self.time.timestamps()),
            ("start_time", self.start_time.timestamps()),
            ("metric_name", self.metric_name.array()?),
            ("metric_description", self.metric_description.array()?),
            ("unit", self.unit.array()?),
            ("type", self.kind.array()?),
            ("temporality", self.temporality.array()?),
            ("is_monotonic", self.is_monotonic.array()),
            ("value", self.value.array()),
            ("count", self.count.array()),
            ("sum", self.sum.array()),
            ("min", self.min.array()),
            ("max", self.max.array()),
            (
                "bucket_counts",
                self.bucket_counts
                    .array(&type_of(schema, "bucket_counts")?)?,
            ),
            (
                "explicit_bounds",
                self.explicit_bounds
                    .array(&type_of(schema, "explicit_bounds")?)?,
            ),
            ("exp_scale", self.exp_scale.array()),
            ("exp_zero_count", self.exp_zero_count.array()),
            ("exp_positive_offset", self.exp_positive_offset.array()),
            (
                "exp_positive_counts",
                self.exp_positive_counts
                    .array(&type_of(schema, "exp_positive_counts")?)?,
            ),
            ("exp_negative_offset", self.exp_negative_offset.array()),
            (
                "exp_negative_counts",
                self.exp_negative_counts
                    .array(&type_of(schema, "exp_negative_counts")?)?,
            ),
            (
                "quantiles",
                self.quantiles.array(&type_of(schema, "quantiles")?)?,
            ),
            (
                "quantile_values",
                self.quantile_values
                    .array(&type_of(schema, "quantile_values")?)?,
            ),
            ("flags", self.flags.array()),
        ])
    }
}
