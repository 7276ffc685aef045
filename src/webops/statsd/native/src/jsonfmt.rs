//! /render's JSON datapoints (`[[value, epoch seconds], ...]`) written as store/formats.py's
//! Python writer writes them, byte for byte: a 1,000-series day is 1.44 million points, and
//! Python's repr of each float was half of the render's time. The values are read off the list
//! with the GIL held, then written without it (other render threads and the event loop go on).
//! Property tests hold this to the Python writer (tests/statsd/store/test_formats_json.py).

use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyList, PyLong};
use std::fmt::Write;

use crate::digits::Shortest;

/// A point's value as the writer sees it; anything else (a bool, an int past i64) makes the
/// whole series fall back to the Python writer.
enum Value {
    Null,
    Float(f64),
    Int(i64),
}

/// Milliseconds Python's `ms / 1000` divides exactly as f64 does (both correctly rounded).
const EXACT_MS: i64 = 1 << 53;

/// Python's `repr(x)` of a finite float: the shortest digits that read back as `x`, in fixed
/// notation for 1e-4 <= |x| < 1e16 (with `.0` when whole), else `d.ddde+XX` (two exponent
/// digits at least), as CPython's float_repr_style 'short' writes them.
pub fn push_repr(out: &mut String, x: f64, scratch: &mut String) {
    let shortest = Shortest::of(x, scratch);
    if x.is_sign_negative() {
        out.push('-');
    }
    layout(out, shortest.digits(), shortest.exp);
}

/// `digits` (d1 d2 ... dn, the value 0.d1d2...dn x 10^(exp + 1)) laid out as Python's repr does.
fn layout(out: &mut String, digits: &str, exp: i32) {
    let (lead, rest) = digits.split_at(1);
    let decpt = exp + 1;
    if !(-4 < decpt && decpt <= 16) {
        out.push_str(lead);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.unsigned_abs());
        return;
    }
    let n = digits.len() as i32;
    if decpt <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', -decpt as usize));
        out.push_str(digits);
    } else if decpt < n {
        let (whole, fraction) = digits.split_at(decpt as usize);
        out.push_str(whole);
        out.push('.');
        out.push_str(fraction);
    } else {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', (decpt - n) as usize));
        out.push_str(".0");
    }
}

/// An epoch-millisecond stamp as graphite-web's seconds: an int for a whole second, else
/// Python's repr of `ms / 1000`.
fn push_stamp(out: &mut String, ms: i64, scratch: &mut String) {
    if ms.rem_euclid(1000) == 0 {
        let _ = write!(out, "{}", ms.div_euclid(1000));
    } else {
        push_repr(out, ms as f64 / 1000.0, scratch);
    }
}

fn write_points(values: &[Value], start: i64, step: i64, skip_null: bool) -> String {
    let mut out = String::with_capacity(values.len() * 24);
    let mut scratch = String::with_capacity(32);
    let mut first = true;
    for (i, v) in values.iter().enumerate() {
        let finite = match v {
            Value::Null => false,
            Value::Float(x) => x.is_finite(),
            Value::Int(_) => true,
        };
        if skip_null && !finite {
            continue;
        }
        out.push_str(if first { "[" } else { ", [" });
        first = false;
        match v {
            Value::Float(x) if finite => push_repr(&mut out, *x, &mut scratch),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            _ => out.push_str("null"),
        }
        out.push_str(", ");
        push_stamp(&mut out, start + i as i64 * step, &mut scratch);
        out.push(']');
    }
    out
}

/// A series' datapoints as formats.py writes them between `"datapoints": [` and `]`: `[value,
/// seconds]` joined by `, `, null for a gap and for what JSON cannot carry (left out with
/// `skip_null`: noNullPoints). None when a value is not a float, an int or None, or a stamp
/// is past what f64 divides exactly: the Python writer writes that series.
#[pyfunction]
#[pyo3(text_signature = "(values, start, step, skip_null)")]
pub fn json_points(py: Python<'_>, values: &PyList, start: i64, step: i64, skip_null: bool) -> Option<String> {
    let count = values.len() as i64;
    let last = start.checked_add(step.checked_mul(count)?)?;
    if start.abs() >= EXACT_MS || last.abs() >= EXACT_MS {
        return None;
    }
    let (float, int) = (py.get_type::<PyFloat>(), py.get_type::<PyLong>());
    let mut read = Vec::with_capacity(values.len());
    for item in values.iter() {
        let kind = item.get_type();
        read.push(if item.is_none() {
            Value::Null
        } else if kind.is(float) {
            Value::Float(item.downcast::<PyFloat>().ok()?.value())
        } else if kind.is(int) {
            Value::Int(item.extract().ok()?)
        } else {
            return None;
        });
    }
    Some(py.allow_threads(|| write_points(&read, start, step, skip_null)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(x: f64) -> String {
        let (mut out, mut scratch) = (String::new(), String::new());
        push_repr(&mut out, x, &mut scratch);
        out
    }

    #[test]
    fn floats_read_as_python_writes_them() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (123.456, "123.456"),
            (1e15, "1000000000000000.0"),
            (9999999999999998.0, "9999999999999998.0"),
            (1e16, "1e+16"),
            (1.25e22, "1.25e+22"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (-2.5e-300, "-2.5e-300"),
            (1428.5714285714287, "1428.5714285714287"),
            (1223383794756801.0 + 0.25, "1223383794756801.2"), // halfway: to even
            (2f64.powi(-25), "2.9802322387695312e-08"),
        ];
        for (x, text) in cases {
            assert_eq!(repr(x), text, "{x:e}");
        }
    }

    #[test]
    fn stamps_are_whole_seconds_or_their_float() {
        let points = write_points(&[Value::Null, Value::Float(f64::NAN), Value::Int(-3)], 1_500, 500, false);
        assert_eq!(points, "[null, 1.5], [null, 2], [-3, 2.5]");
        assert_eq!(write_points(&[Value::Null, Value::Float(2.0)], 0, 1000, true), "[2.0, 1]");
    }
}
