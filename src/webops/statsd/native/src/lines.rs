//! Graphite plaintext of a flush's timer statistics: what naming.py's `timer_lines` writes,
//! byte for byte, without a Python string per number and per line.
//!
//! A flush of 10k timers is 140k lines; written from Python each costs a formatted number and an
//! f-string (~1 µs), which made the Graphite backend, not the statistics, the slow part of a
//! flush. Here the summaries' dicts are read as they are (whichever path computed them) and the
//! numbers written with JavaScript's `Number#toString` rules (common/jsnumber.py `number`).

use std::fmt::Write;

use crate::digits::Shortest;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyLong, PyString, PyTuple};
use pyo3::PyTypeInfo;

/// JavaScript's Number#toString of `x` appended to `out`: the shortest digits that read back
/// as `x` (as Python's repr), without an exponent from 1e-7 up to 1e21. `sci`: scratch space.
pub fn js_number(x: f64, out: &mut String, sci: &mut String) {
    if x.is_nan() {
        out.push_str("NaN");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
    } else if x == 0.0 {
        out.push('0');
    } else if x.fract() == 0.0 && x.abs() < 9007199254740992.0 {
        let _ = write!(out, "{}", x as i64); // exact: most of a flush's counts and bounds
    } else {
        if x < 0.0 {
            out.push('-');
        }
        let shortest = Shortest::of(x, sci);
        let (first, rest) = shortest.digits().split_at(1);
        let k = 1 + rest.len() as i32;
        let n = shortest.exp + 1; // x = 0.DIGITS * 10^n
        if k <= n && n <= 21 {
            out.push_str(first);
            out.push_str(rest);
            out.extend(std::iter::repeat_n('0', (n - k) as usize));
        } else if 0 < n && n <= 21 {
            // n < k: the point falls inside the digits
            let n = n as usize;
            out.push_str(first);
            out.push_str(&rest[..n - 1]);
            out.push('.');
            out.push_str(&rest[n - 1..]);
        } else if -6 < n && n <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-n) as usize));
            out.push_str(first);
            out.push_str(rest);
        } else {
            let e = n - 1;
            out.push_str(first);
            if k > 1 {
                out.push('.');
                out.push_str(rest);
            }
            let _ = write!(out, "e{}{}", if e >= 0 { '+' } else { '-' }, e.abs());
        }
    }
}

/// A value as Etsy writes it, or false where it is not a float or an int (bools neither).
fn value(v: &PyAny, out: &mut String, sci: &mut String) -> PyResult<bool> {
    if PyFloat::is_exact_type_of(v) {
        js_number(v.downcast::<PyFloat>()?.value(), out, sci);
    } else if PyLong::is_exact_type_of(v) {
        match v.extract::<i64>() {
            Ok(i) => {
                let _ = write!(out, "{i}");
            }
            Err(_) => out.push_str(v.str()?.to_str()?),
        }
    } else {
        return Ok(false);
    }
    Ok(true)
}

/// naming.timer_lines: `summaries` key -> its statistics (a histogram's a dict of bins),
/// `splits` key -> (head, tail) of its paths, `ts` " <timestamp>\n". None when a value is
/// neither a float nor an int: the Python path writes those.
#[pyfunction]
#[pyo3(text_signature = "(summaries, splits, ts)")]
pub fn timer_lines(summaries: &PyDict, splits: &PyDict, ts: &str) -> PyResult<Option<String>> {
    let mut out = String::with_capacity(summaries.len() * 16 * 48);
    let mut sci = String::with_capacity(32);
    for (key, stats) in summaries.iter() {
        let Some(split) = splits.get_item(key) else { return Ok(None) };
        let split: &PyTuple = split.downcast()?;
        let head = split.get_item(0)?.downcast::<PyString>()?.to_str()?;
        let tail = split.get_item(1)?.downcast::<PyString>()?.to_str()?;
        for (stat, v) in stats.downcast::<PyDict>()?.iter() {
            let stat = stat.downcast::<PyString>()?.to_str()?;
            if let Ok(bins) = v.downcast::<PyDict>() {
                for (bin, n) in bins.iter() {
                    let bin = bin.downcast::<PyString>()?.to_str()?;
                    for part in [head, stat, ".", bin, tail, " "] {
                        out.push_str(part);
                    }
                    if !value(n, &mut out, &mut sci)? {
                        return Ok(None);
                    }
                    out.push_str(ts);
                }
                continue;
            }
            for part in [head, stat, tail, " "] {
                out.push_str(part);
            }
            if !value(v, &mut out, &mut sci)? {
                return Ok(None);
            }
            out.push_str(ts);
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn js(x: f64) -> String {
        let mut s = String::new();
        js_number(x, &mut s, &mut String::new());
        s
    }

    #[test]
    fn numbers_as_javascript_writes_them() {
        let cases = [
            (1.0, "1"),
            (0.1, "0.1"),
            (-0.5, "-0.5"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (0.000001, "0.000001"),
            (1e21, "1e+21"),
            (1.2345e22, "1.2345e+22"),
            (123456789012345680000.0, "123456789012345680000"),
            (81.64965809277261, "81.64965809277261"),
            (-0.0, "0"),
            (9007199254740992.0, "9007199254740992"),
            (f64::INFINITY, "Infinity"),
            (f64::NAN, "NaN"),
        ];
        for (x, text) in cases {
            assert_eq!(js(x), text, "{x}");
        }
    }
}
