//! The fast path of the statsd line protocol: lines whose meaning is certain.
//!
//! A line is taken here only when it is `name:value|type[|@rate][|#tags]` with a series key (the
//! name, and the tags as Etsy 0.9+ appends them) that keyNameSanitize leaves as it is, a value in
//! plain decimal notation, a known type and a valid rate: what real clients send nearly all the
//! time. Everything else (several values, DogStatsD's extra fields, JavaScript number forms,
//! events, non-ASCII, bad lines) is `None`, and the Python reference parses it, so the two
//! implementations cannot disagree on what a line means or why it is bad.

use std::borrow::Cow;

/// What a fast line adds to, with the value already resolved as the Python kinds do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample<'a> {
    /// `value / rate`, added to the counter
    Counter(f64),
    /// a timer sample and the count it stands for (`1 / rate`)
    Timer(f64, f64),
    /// a gauge write: the value, and whether it is a `+N` / `-N` change
    Gauge(f64, bool),
    /// a set member
    Set(&'a [u8]),
}

/// keyNameSanitize's safe characters (`[A-Za-z0-9_.;=-]`): a name made of them only is its own key.
static SAFE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b';' | b'=' | b'-');
        c += 1;
    }
    t
};

/// A number in the notation every reader (JavaScript's Number, Python's float, Rust) reads alike:
/// `[+-]digits[.digits][e[+-]digits]` (either side of the point may be empty, not both).
/// Infinite results are left to the reference, which calls them bad.
pub fn number(s: &[u8]) -> Option<f64> {
    let n = s.len();
    let mut i = usize::from(matches!(s.first(), Some(b'+' | b'-')));
    let start = i;
    while i < n && s[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - start;
    if i < n && s[i] == b'.' {
        i += 1;
        let frac = i;
        while i < n && s[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - frac;
    }
    if digits == 0 {
        return None;
    }
    if i < n && (s[i] | 0x20) == b'e' {
        i += 1;
        if i < n && matches!(s[i], b'+' | b'-') {
            i += 1;
        }
        let exp = i;
        while i < n && s[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp {
            return None;
        }
    }
    if i != n {
        return None;
    }
    // only ASCII digits, signs, `.` and `e` are left: valid UTF-8, and a grammar f64 accepts
    let v: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    v.is_finite().then_some(v)
}

/// The series key of `name` with DogStatsD tags (`k:v,flag`): `name;k=v;flag`, in the order sent
/// (protocol.py's tag_suffix: the first `;` of a tag becomes `_`, its first `:` `=`); `None`
/// when a tag would leave a character keyNameSanitize changes.
fn tagged_key(name: &[u8], tags: &[u8]) -> Option<Vec<u8>> {
    let mut key = Vec::with_capacity(name.len() + tags.len() + 4);
    key.extend_from_slice(name);
    for tag in tags.split(|&b| b == b',').filter(|t| !t.is_empty()) {
        key.push(b';');
        let (mut semicolon, mut colon) = (false, false);
        for &b in tag {
            let b = match b {
                b';' if !semicolon => {
                    semicolon = true;
                    b'_'
                }
                b':' if !colon => {
                    colon = true;
                    b'='
                }
                _ => b,
            };
            if !SAFE[b as usize] {
                return None;
            }
            key.push(b);
        }
    }
    Some(key)
}

/// The series key and sample of a fast line; `None`: the reference must read it.
pub fn parse_line(line: &[u8]) -> Option<(Cow<'_, [u8]>, Sample<'_>)> {
    let mut i = 0;
    while i < line.len() && SAFE[line[i] as usize] {
        i += 1;
    }
    if i == 0 || i == line.len() || line[i] != b':' {
        return None;
    }
    let (name, mut rest) = (&line[..i], &line[i + 1..]);
    let mut key = Cow::Borrowed(name);
    if let Some(at) = rest.windows(2).position(|w| w == b"|#") {
        let tags = &rest[at + 2..];
        if tags.contains(&b'|') {
            return None; // DogStatsD fields after the tags
        }
        if tags.iter().any(|&b| b != b',') {
            key = Cow::Owned(tagged_key(name, tags)?);
        }
        rest = &rest[..at];
    }
    // `value|type[|@rate]`: no second value, no DogStatsD fields, nothing non-ASCII
    let mut bars = [0usize; 2];
    let mut nbars = 0;
    for (j, &b) in rest.iter().enumerate() {
        match b {
            b'|' => {
                if nbars == 2 {
                    return None;
                }
                bars[nbars] = j;
                nbars += 1;
            }
            b':' | b'\r' | 0x80..=0xff => return None,
            _ => {}
        }
    }
    if nbars == 0 {
        return None;
    }
    let raw = &rest[..bars[0]];
    let code = if nbars == 1 { &rest[bars[0] + 1..] } else { &rest[bars[0] + 1..bars[1]] };
    let rate = if nbars == 2 {
        let text = &rest[bars[1] + 1..];
        if text.first() != Some(&b'@') || text.get(1) == Some(&b'-') {
            return None;
        }
        let r = number(&text[1..])?;
        if r <= 0.0 {
            return None;
        }
        r
    } else {
        1.0
    };
    let sample = match code {
        b"c" => {
            let v = number(raw)? / rate;
            if !v.is_finite() {
                return None;
            }
            Sample::Counter(v)
        }
        b"ms" | b"h" | b"d" => {
            let v = number(raw)?;
            if !(v / rate).is_finite() || (code == b"ms" && v < 0.0) {
                return None;
            }
            Sample::Timer(v, 1.0 / rate)
        }
        b"g" => Sample::Gauge(number(raw)?, matches!(raw.first(), Some(b'+' | b'-'))),
        b"s" => Sample::Set(if raw.is_empty() { b"0" } else { raw }),
        _ => return None,
    };
    Some((key, sample))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        for (text, want) in [("1", 1.0), ("-2.5", -2.5), ("+3", 3.0), (".5", 0.5), ("5.", 5.0), ("1e3", 1000.0)] {
            assert_eq!(number(text.as_bytes()), Some(want), "{text}");
        }
        for text in ["", ".", "-", "1e", "0x10", " 1", "1 ", "inf", "nan", "1e999", "1_0", "e5"] {
            assert_eq!(number(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn lines() {
        let key = |line| parse_line(line).map(|(k, s)| (k.into_owned(), s));
        assert_eq!(key(b"a.b:2|c|@0.5"), Some((b"a.b".to_vec(), Sample::Counter(4.0))));
        assert_eq!(key(b"t:3|ms"), Some((b"t".to_vec(), Sample::Timer(3.0, 1.0))));
        assert_eq!(key(b"g:-1|g"), Some((b"g".to_vec(), Sample::Gauge(-1.0, true))));
        assert_eq!(key(b"s:|s"), Some((b"s".to_vec(), Sample::Set(b"0"))));
        assert_eq!(key(b"r:1|c|#env:prod,canary"), Some((b"r;env=prod;canary".to_vec(), Sample::Counter(1.0))));
        assert_eq!(key(b"r:1|c|@0.5|#a;b:c:d"), None); // the second `:` stays, and sanitizing drops it
        assert_eq!(key(b"r:1|c|#a;b:c,"), Some((b"r;a_b=c".to_vec(), Sample::Counter(1.0))));
        assert_eq!(key(b"r:1|c|#,"), Some((b"r".to_vec(), Sample::Counter(1.0))));
        for slow in [
            &b"a b:1|c"[..],
            b":1|c",
            b"a:1|c:2|c",
            b"a:1|c|#t:v|c:x",
            b"a:1|c:2|c|#t",
            b"a:1|x",
            b"a:1",
            b"a:-1|ms",
            b"a:1|c|@0",
            b"a:1|c|@-1",
            b"a:1|c|c:xyz",
            b"a:1\r|c",
            b"_e{1,1}:a|b",
            b"a:1e308|c|@1e-10",
        ] {
            assert_eq!(parse_line(slow), None, "{}", String::from_utf8_lossy(slow));
        }
    }
}
