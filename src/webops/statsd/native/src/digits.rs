//! The shortest decimal digits that read back as a float, chosen as CPython's repr and
//! JavaScript's Number#toString both choose them, for the two writers that lay them out
//! differently: jsonfmt.rs (Python's repr, /render's JSON) and lines.rs (JavaScript's, Etsy's
//! Graphite lines). Rust's `{:e}` gives the shortest digits too, but where |x| lies exactly
//! halfway between two candidates it takes the one above; both Python and JavaScript take the
//! even one (1223383794756801.25 is `...801.2`).

use std::fmt::Write;

/// The shortest digits of a float: `digits[..len]` is d1 d2 ... dn, |x| = d1.d2...dn x 10^exp.
pub struct Shortest {
    digits: [u8; 24],
    len: usize,
    pub exp: i32,
}

impl Shortest {
    /// The digits of |x|; `x` finite and not zero. `scratch`: reused space for Rust's text.
    pub fn of(x: f64, scratch: &mut String) -> Self {
        let x = x.abs();
        scratch.clear();
        let _ = write!(scratch, "{x:e}"); // d.ddde-5
        let (mantissa, exp) = scratch.split_once('e').unwrap_or((scratch.as_str(), "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let mut digits = [0u8; 24];
        let mut len = 0;
        for &b in mantissa.as_bytes().iter().filter(|b| b.is_ascii_digit()) {
            digits[len] = b;
            len += 1;
        }
        if let Some(even) = tie_to_even(x, len) {
            let text = even.to_string();
            // a carry (999.5 -> 1000) is a shorter string, which the shortest digits would have been
            if text.len() == len && format!("{text}e{}", exp - len as i32 + 1).parse() == Ok(x) {
                digits[..len].copy_from_slice(text.as_bytes());
            }
        }
        Shortest { digits, len, exp }
    }

    pub fn digits(&self) -> &str {
        std::str::from_utf8(&self.digits[..self.len]).unwrap_or("0")
    }
}

/// When x lies exactly halfway between two `n`-digit decimals (its exact value has n + 1
/// significant digits, the last a 5), the even one of them.
fn tie_to_even(x: f64, n: usize) -> Option<u128> {
    let bits = x.to_bits();
    let (fraction, biased) = (bits & ((1 << 52) - 1), (bits >> 52) as i32);
    let (mut m, mut e) = if biased == 0 { (fraction, -1074) } else { (fraction | 1 << 52, biased - 1075) };
    if m == 0 {
        return None;
    }
    e += m.trailing_zeros() as i32;
    m >>= m.trailing_zeros();
    // x = m / 2^k = m * 5^k / 10^k: its significant digits are those of m * 5^k (odd, no trailing 0)
    let k = u32::try_from(-e).ok().filter(|&k| (1..=26).contains(&k))?;
    let exact = m as u128 * 5u128.pow(k);
    let low = 10u128.checked_pow(n as u32)?;
    if exact < low || exact >= low * 10 {
        return None;
    }
    let below = exact / 10;
    Some(if below.is_multiple_of(2) { below } else { below + 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shortest(x: f64) -> (String, i32) {
        let s = Shortest::of(x, &mut String::new());
        (s.digits().to_string(), s.exp)
    }

    #[test]
    fn ties_go_to_the_even_digit_as_in_python_and_javascript() {
        assert_eq!(shortest(1223383794756801.0 + 0.25), ("12233837947568012".to_string(), 15));
        assert_eq!(shortest(0.5), ("5".to_string(), -1));
        assert_eq!(shortest(-1e-5), ("1".to_string(), -5));
        assert_eq!(shortest(123.456), ("123456".to_string(), 2));
    }
}
