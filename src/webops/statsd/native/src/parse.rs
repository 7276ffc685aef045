//! The statsd line protocol, natively: every line the Python reference (protocol.py, kinds/)
//! reads without a bad value, read to the same samples.
//!
//! This is protocol.py's algorithm on bytes, step for step: the series key (the name before the
//! first `:`, and DogStatsD tags from the first `|#` to the next `|`, appended as Etsy 0.9+ does),
//! the `value|type[|@rate]` parts split at every `:` (Etsy's several values a line), and when that
//! reading has a bad part, the first of these that reads whole: DogStatsD's packed values
//! (`1:2:3|ms`: the last value's type and rate for each), then, when DogStatsD's extra fields
//! (`|c:`, `|card:`, `|e:`, `|T<digit>`) are there, both readings without them. Numbers are JavaScript's `Number()` as jsfmt.to_number reads
//! them (decimal notation with ASCII blanks around it, `0x`/`0o`/`0b` literals).
//!
//! A line is refused, and the reference parses it, when any part of it is bad (it is counted and
//! logged there, with its reason), when its key is one keyNameSanitize would change, when it has
//! a `\r` (the reference drops every `\r` of a packet; receivers strip a line's trailing ones)
//! and for events and service checks. So the two implementations cannot disagree on what a bad
//! line is or why.
//!
//! The shape nearly every line has, `name:value|type[|@rate][|#tags]`, is read first in one
//! scan (`common`), with no allocation and no copy of an untagged key: the general reading takes
//! several passes over a line (its `\r`, its encoding, its `:`s, the tags, the packed reading),
//! which would make the lines clients send most the slowest to read. Only a line that scan does
//! not take whole goes to the general reading, which decides it; both read a common line to the
//! same key and sample (the unit tests check every line they read on both).

/// What a line adds to, with the value already resolved as the Python kinds do.
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

/// A line with more `:` than this is one bad line (protocol.py's MAX_VALUES_PER_LINE).
const MAX_VALUES_PER_LINE: usize = 100;

/// What Python's `float()` strips around a number.
fn float_blank(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
}

/// What Python's `str.strip()` strips in ASCII: float's blanks and the separators \x1c-\x1f.
fn str_blank(b: u8) -> bool {
    float_blank(b) || (0x1c..=0x1f).contains(&b)
}

fn trim(mut s: &[u8], blank: impl Fn(u8) -> bool) -> &[u8] {
    while let [first, tail @ ..] = s {
        if !blank(*first) {
            break;
        }
        s = tail;
    }
    while let [head @ .., last] = s {
        if !blank(*last) {
            break;
        }
        s = head;
    }
    s
}

/// JavaScript's `Number()` for a statsd value or rate, as jsfmt.to_number reads it: `None` where
/// it is no finite number.
pub fn number(s: &[u8]) -> Option<f64> {
    decimal(trim(s, float_blank)).or_else(|| radix(trim(s, str_blank)))
}

/// `[+-]digits[.digits][e[+-]digits]` (either side of the point may be empty, not both): the
/// notation Python's float and Rust read alike; infinite results are no number.
fn decimal(s: &[u8]) -> Option<f64> {
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
    if n == start + digits && digits <= 15 {
        // a whole number below 2^53, the common value: its f64 is exact, as the parse's would be,
        // without the float parser's work
        let v = s[start..].iter().fold(0i64, |v, &d| v * 10 + i64::from(d - b'0')) as f64;
        return Some(if s[0] == b'-' { -v } else { v });
    }
    // only ASCII digits, signs, `.` and `e` are left: valid UTF-8, and a grammar f64 accepts
    let v: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    v.is_finite().then_some(v)
}

/// JavaScript's radix literals `0x1f`, `0o17`, `0b101` (no sign), rounded to the nearest float
/// as Python's `float(int(text, 0))` rounds them; past the largest float, no number.
fn radix(s: &[u8]) -> Option<f64> {
    let bits = match s {
        [b'0', p, _, ..] => match p | 0x20 {
            b'x' => 4,
            b'o' => 3,
            b'b' => 1,
            _ => return None,
        },
        _ => return None,
    };
    // the leading 120-odd bits exactly, and whether any bit after them is set: the last of 128
    // bits standing for the rest rounds exactly as all of them would (53 bits are kept)
    let (mut m, mut exp, mut sticky) = (0u128, 0i32, false);
    for &c in &s[2..] {
        let d = u128::from(char::from(c).to_digit(1 << bits)?);
        if m >> 120 == 0 {
            m = (m << bits) | d;
        } else {
            exp += bits;
            sticky |= d != 0;
        }
    }
    let v = (m | u128::from(sticky)) as f64 * 2f64.powi(exp);
    v.is_finite().then_some(v)
}

/// DogStatsD tags (`k:v,flag`) appended to a series key: `;k=v;flag`, in the order sent
/// (protocol.py's tag_suffix: the first `;` of a tag becomes `_`, its first `:` `=`); false
/// when a tag would leave a character keyNameSanitize changes.
fn tag_suffix(key: &mut Vec<u8>, tags: &[u8]) -> bool {
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
                return false;
            }
            key.push(b);
        }
    }
    true
}

/// A DogStatsD field webops ignores (protocol.py's `_DOGSTATSD_EXTRA`): container id, cardinality,
/// external data, client timestamp.
fn dogstatsd_extra(field: &[u8]) -> bool {
    field.starts_with(b"c:")
        || field.starts_with(b"card:")
        || field.starts_with(b"e:")
        || matches!(field, [b'T', d, ..] if d.is_ascii_digit())
}

/// One `value|type[|@rate][|ignored...]` part (its first three `|` fields, and how many it has)
/// as its sample; `None`: a bad part.
fn value<'a>(fields: &[&'a [u8]; 3], count: usize) -> Option<Sample<'a>> {
    let (code, rate) = typed(fields, count)?;
    sample(fields[0], code, rate)
}

/// A part's type code and rate (protocol.py's `_typed`), from its first three `|` fields and how
/// many it has; `None`: it has no type or a bad rate.
fn typed<'a>(fields: &[&'a [u8]; 3], count: usize) -> Option<(&'a [u8], f64)> {
    if count < 2 {
        return None; // no metric type
    }
    let code = trim(fields[1], str_blank);
    if count == 2 {
        return Some((code, 1.0));
    }
    let rate = match fields[2] {
        [b'@', rest @ ..] if rest.first() != Some(&b'-') => number(rest)?,
        _ => return None,
    };
    (rate > 0.0).then_some((code, rate))
}

/// The sample a value stands for with its type code and rate; `None`: a bad value or type.
fn sample<'a>(raw: &'a [u8], code: &[u8], rate: f64) -> Option<Sample<'a>> {
    // slice patterns of bytes, not of byte strings: compared in place, with no call to memcmp
    Some(match *code {
        [b'c'] => {
            let v = number(raw)? / rate;
            if !v.is_finite() {
                return None;
            }
            Sample::Counter(v)
        }
        [b'm', b's'] | [b'h'] | [b'd'] => {
            let v = number(raw)?;
            if !(v / rate).is_finite() || (code.len() == 2 && v < 0.0) {
                return None;
            }
            Sample::Timer(v, 1.0 / rate)
        }
        [b'g'] => Sample::Gauge(number(raw)?, matches!(raw.first(), Some(b'+' | b'-'))),
        [b's'] => Sample::Set(if raw.is_empty() { b"0" } else { raw }),
        _ => return None,
    })
}

/// The samples of the `|`-separated `fields` read as Etsy reads them, joined and split again at
/// every `:` (protocol.py's `_parse_values`), into `out`; false when a part is bad.
fn values<'a>(fields: impl Iterator<Item = &'a [u8]>, out: &mut Vec<Sample<'a>>) -> bool {
    // the current part's first three fields, and how many it has so far
    let mut part: [&[u8]; 3] = [b""; 3];
    let mut count = 0;
    for field in fields {
        let mut pieces = field.split(|&b| b == b':');
        if let Some(first) = pieces.next() {
            if count < 3 {
                part[count] = first;
            }
            count += 1;
        }
        for piece in pieces {
            match value(&part, count) {
                Some(sample) => out.push(sample),
                None => return false,
            }
            part[0] = piece;
            count = 1;
        }
    }
    value(&part, count).map(|sample| out.push(sample)).is_some()
}

/// The samples of the `|`-separated `fields` read as DogStatsD's packed values (protocol.py's
/// `_parse_packed`): every `:` is in the first field, whose pieces but the last are bare values;
/// the last piece and the fields after it are the last value, whose type and rate (read once)
/// apply to each. Into `out`; false when the fields are not of that form or a value is bad.
fn packed<'a>(mut fields: impl Iterator<Item = &'a [u8]>, out: &mut Vec<Sample<'a>>) -> bool {
    let Some(first) = fields.next() else {
        return false;
    };
    let Some(last_colon) = first.iter().rposition(|&b| b == b':') else {
        return false; // one value: Etsy's reading, which failed
    };
    // the last value's first three fields, and how many it has
    let mut part: [&[u8]; 3] = [&first[last_colon + 1..], b"", b""];
    let mut count = 1;
    for field in fields {
        if field.contains(&b':') {
            return false;
        }
        if count < 3 {
            part[count] = field;
        }
        count += 1;
    }
    let Some((code, rate)) = typed(&part, count) else {
        return false;
    };
    for raw in first.split(|&b| b == b':') {
        match sample(raw, code, rate) {
            Some(sample) => out.push(sample),
            None => return false,
        }
    }
    true
}

/// The series key of a line and its samples (in `out`, emptied first); `None`: the reference
/// must read it (a bad part, a key to sanitize, a `\r`, an event). A key with tags is written
/// to `buf`; one without is the line's name, not copied.
pub fn parse_line<'a: 'k, 'k>(line: &'a [u8], buf: &'k mut Vec<u8>, out: &mut Vec<Sample<'a>>) -> Option<&'k [u8]> {
    out.clear();
    let key = match common(line, buf, out) {
        Some(key) => key,
        None => {
            out.clear();
            general(line, buf, out)?
        }
    };
    Some(match key {
        Key::Name(name) => name,
        Key::Written => buf,
    })
}

/// Where a line's series key is: its name, or (with tags) the name and tags written to a buffer.
enum Key<'a> {
    Name(&'a [u8]),
    Written,
}

/// The key of `name` with DogStatsD `tags` (written to `buf` when there are some); `None` when a
/// tag would leave a character keyNameSanitize changes.
fn key<'a>(name: &'a [u8], tags: &[u8], buf: &mut Vec<u8>) -> Option<Key<'a>> {
    if tags.is_empty() {
        return Some(Key::Name(name));
    }
    buf.clear();
    buf.extend_from_slice(name);
    tag_suffix(buf, tags).then_some(Key::Written)
}

/// `name:value|type[|@rate][|#tags]` with a name of safe characters, one value, and nothing
/// before the tags that is a `:`, a `\r` or beyond ASCII, read in one scan to what `general`
/// reads it to (the same `value`, the same tags); `None`: `general` decides (the line may still
/// be whole), with `out` left to it to empty.
fn common<'a>(line: &'a [u8], buf: &mut Vec<u8>, out: &mut Vec<Sample<'a>>) -> Option<Key<'a>> {
    let mut i = 0;
    while i < line.len() && SAFE[line[i] as usize] {
        i += 1;
    }
    if line.get(i) != Some(&b':') {
        return None;
    }
    let (name, rest) = (&line[..i], &line[i + 1..]);
    // the value's first three `|` fields, how many there are, and where the tags' `|#` is
    let (mut fields, mut count, mut start, mut end) = ([&rest[..0]; 3], 0, 0, rest.len());
    for (j, &b) in rest.iter().enumerate() {
        match b {
            b'|' if rest.get(j + 1) == Some(&b'#') => {
                end = j;
                break;
            }
            b'|' if count == 2 => return None, // a field after the rate
            b'|' => {
                fields[count] = &rest[start..j];
                count += 1;
                start = j + 1;
            }
            b':' | b'\r' | 0x80..=0xff => return None,
            _ => {}
        }
    }
    fields[count] = &rest[start..end];
    let sample = value(&fields, count + 1)?;
    // the tags up to the end: a `|` there (fields after the tags) is no safe character either
    let key = key(name, rest.get(end + 2..).unwrap_or_default(), buf)?;
    out.push(sample);
    Some(key)
}

/// Any line, as protocol.py reads it (several values, DogStatsD's fields and packed values, tags
/// anywhere), with its tags written to `buf`, into the emptied `out`; `None`: the reference must
/// read it.
fn general<'a>(line: &'a [u8], buf: &mut Vec<u8>, out: &mut Vec<Sample<'a>>) -> Option<Key<'a>> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, rest) = (&line[..colon], &line[colon + 1..]);
    if !name.iter().all(|&b| SAFE[b as usize]) || rest.contains(&b'\r') {
        return None;
    }
    if !rest.is_ascii() {
        std::str::from_utf8(rest).ok()?; // a set member must be the text the reference decodes
    }
    // the tags, from the first `|#` to the next `|`; the fields after them belong to the rest
    let (key, head, tail) = match rest.windows(2).position(|w| w == b"|#") {
        Some(at) => {
            let after = &rest[at + 2..];
            let (tags, tail): (&[u8], &[u8]) = match after.iter().position(|&b| b == b'|') {
                Some(end) => (&after[..end], &after[end + 1..]),
                None => (after, b""),
            };
            (key(name, tags, buf)?, &rest[..at], tail)
        }
        None => (Key::Name(name), rest, &b""[..]),
    };
    if head.is_empty() && tail.is_empty() {
        return None; // no value
    }
    let colons = head.iter().chain(tail).filter(|&&b| b == b':').count();
    if colons >= MAX_VALUES_PER_LINE {
        return None;
    }
    let split = |s: &'a [u8]| s.split(|&b| b == b'|');
    let fields = || split(head).chain(Some(tail).filter(|t| !t.is_empty()).into_iter().flat_map(split));
    // Etsy's reading; when it fails, the other readings in protocol.py's order: the first whole
    if values(fields(), out) {
        return Some(key);
    }
    out.clear();
    if packed(fields(), out) {
        return Some(key);
    }
    // DogStatsD's extra fields: both readings without them
    let marked =
        |f: &[u8]| f.starts_with(b"c:") || f.starts_with(b"card:") || f.starts_with(b"e:") || f.starts_with(b"T");
    if !fields().skip(1).any(marked) {
        return None;
    }
    if fields().any(|f| matches!(f, [b'T', d, ..] if *d >= 0x80)) {
        return None; // `T` and a digit beyond ASCII: Python's `\d` says a timestamp, ours would not
    }
    let plain = || fields().enumerate().filter(|(i, f)| *i < 2 || !dogstatsd_extra(f)).map(|(_, f)| f);
    out.clear();
    if values(plain(), out) {
        return Some(key);
    }
    out.clear();
    packed(plain(), out).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        for (text, want) in [
            ("1", 1.0),
            ("-2.5", -2.5),
            ("+3", 3.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("1e3", 1000.0),
            ("1.e2", 100.0),
            (" 7\t", 7.0),
            ("0x1F", 31.0),
            ("\x1c0b101 ", 5.0),
            ("0o17", 15.0),
            ("1e-400", 0.0),
        ] {
            assert_eq!(number(text.as_bytes()), Some(want), "{text}");
        }
        for text in
            ["", ".", "-", "1e", " 1 x", "inf", "nan", "1e999", "1_0", "e5", "+0x1", "0x", "0x1.5", "\x1c1", "0b2"]
        {
            assert_eq!(number(text.as_bytes()), None, "{text}");
        }
        // radix literals of any length round as Python's float(int(text, 0)) does
        let long = format!("0x{}", "f".repeat(200));
        assert_eq!(number(long.as_bytes()), Some(6.668014432879854e240));
        assert_eq!(number(format!("0x{}", "f".repeat(300)).as_bytes()), None);
        // whole numbers of up to 15 digits are read without the float parser, the same
        for text in ["0", "007", "-12", "+12", "999999999999999", "1000000000000000", "9007199254740993"] {
            assert_eq!(number(text.as_bytes()), text.parse::<f64>().ok(), "{text}");
        }
        assert!(number(b"-0").is_some_and(|v| v == 0.0 && v.is_sign_negative()));
        assert_eq!(number(b"0x20000000000001"), Some(9007199254740992.0)); // a tie: to even
        assert_eq!(number(b"0x20000000000003"), Some(9007199254740996.0));
        let sticky = format!("0x20000000000001{}1", "0".repeat(40));
        assert_eq!(number(sticky.as_bytes()), Some((9007199254740994.0f64) * 2f64.powi(164)));
    }

    type Reader = for<'a> fn(&'a [u8], &mut Vec<u8>, &mut Vec<Sample<'a>>) -> Option<Key<'a>>;

    /// A line read by one of the readers alone, its key copied.
    fn read(reader: Reader, line: &[u8]) -> Option<(Vec<u8>, Vec<Sample<'_>>)> {
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        match reader(line, &mut buf, &mut out)? {
            Key::Name(name) => Some((name.to_vec(), out)),
            Key::Written => Some((buf, out)),
        }
    }

    /// A line as the receivers read it, checked against the general reading alone: the common
    /// shape's scan changes no line's meaning, only how fast it is read.
    fn parse(line: &[u8]) -> Option<(Vec<u8>, Vec<Sample<'_>>)> {
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        let whole = parse_line(line, &mut buf, &mut out).map(|key| (key.to_vec(), out));
        assert_eq!(whole, read(general, line), "{}", String::from_utf8_lossy(line));
        whole
    }

    #[test]
    fn common_shape() {
        use Sample::*;
        // the one scan takes `name:value|type[|@rate][|#tags]`, as the general reading does
        for (line, key, sample) in [
            (&b"t:12|ms|#env:prod"[..], &b"t;env=prod"[..], Timer(12.0, 1.0)),
            (b":1|c", b"", Counter(1.0)), // an empty name
            (b"a:1|c|@.5", b"a", Counter(2.0)),
            (b"a:1|c|@0.5|#t", b"a;t", Counter(2.0)),
            (b"s:u1|s|@0.1|#env:prod", b"s;env=prod", Set(b"u1")),
            (b"s:|s", b"s", Set(b"0")),
            (b"r:1|c|#a;b:c,,k:", b"r;a_b=c;k=", Counter(1.0)), // tags with `:` and `;`
            (b"r:1|c|#", b"r", Counter(1.0)),
            (b"r:1|c|#,", b"r", Counter(1.0)),
            (b"g:-1|g", b"g", Gauge(-1.0, true)),
            (b"a: 1 | c |@ 0.5", b"a", Counter(2.0)),
            (b"a:0x10|h", b"a", Timer(16.0, 1.0)),
            (b"a:#x|s|#t", b"a;t", Set(b"#x")), // `#` starts the tags only after a `|`
        ] {
            let want = Some((key.to_vec(), vec![sample]));
            assert_eq!(read(common, line), want, "{}", String::from_utf8_lossy(line));
            assert_eq!(parse(line), want);
        }
        // the rest is the general reading's to decide, whole or not
        for line in [
            &b"a b:1|c"[..], // a key to sanitize
            b"a/b:1|c",
            b"a:1|c\r", // a trailing `\r` (receivers strip it before parsing)
            b"a:1\r|c",
            b"a:1|c|#t\r",
            b"a:1|c|#t:v:w", // a tag's second `:` is sanitized
            b"u:jos\xc3\xa9|s",
            b"a:x|c",
            b"a:1",
            b"a:1|zz",
            b"a:1|c|@0",
            b"a:1|c|@0.5|zz",
            b"a:1|c:2|c",
            b"a:1:2|c",
            b"a:1|c|#t|c:x",
            b"a:1|c|#t|@0.5",
            b"a:1|c|T1",
            b"_e{1,1}:a|b",
        ] {
            assert_eq!(read(common, line), None, "{}", String::from_utf8_lossy(line));
            parse(line);
        }
    }

    #[test]
    fn lines() {
        let one = |key: &[u8], sample| Some((key.to_vec(), vec![sample]));
        assert_eq!(parse(b"a.b:2|c|@0.5"), one(b"a.b", Sample::Counter(4.0)));
        assert_eq!(parse(b"t:3|ms"), one(b"t", Sample::Timer(3.0, 1.0)));
        assert_eq!(parse(b"g:-1|g"), one(b"g", Sample::Gauge(-1.0, true)));
        assert_eq!(parse(b"g: +1|g"), one(b"g", Sample::Gauge(1.0, false))); // a blank first: absolute
        assert_eq!(parse(b"s:|s"), one(b"s", Sample::Set(b"0")));
        assert_eq!(parse(b":1|c"), one(b"", Sample::Counter(1.0)));
        assert_eq!(parse(b"r:1|c|#env:prod,canary"), one(b"r;env=prod;canary", Sample::Counter(1.0)));
        assert_eq!(parse(b"r:1|c|@0.5|#a;b:c:d"), None); // the second `:` stays, and sanitizing drops it
        assert_eq!(parse(b"r:1|c|#a;b:c,"), one(b"r;a_b=c", Sample::Counter(1.0)));
        assert_eq!(parse(b"r:1|c|#,"), one(b"r", Sample::Counter(1.0)));
        // Etsy's several values, each with its type and rate; fields after the rate are ignored
        assert_eq!(
            parse(b"a:1|ms:2|ms|@0.5:x|s|@0.1|#env:prod"),
            Some((b"a;env=prod".to_vec(), vec![Sample::Timer(1.0, 1.0), Sample::Timer(2.0, 2.0), Sample::Set(b"x")]))
        );
        assert_eq!(parse(b"a:1|c|@0.5|zz"), one(b"a", Sample::Counter(2.0)));
        assert_eq!(parse(b"a: 0x10 | c |@ .5"), one(b"a", Sample::Counter(32.0)));
        // DogStatsD's extra fields, in any order, before or after the tags
        for line in [
            &b"x:1|c|#t:1|c:abc"[..],
            b"x:1|c|c:abc|#t:1",
            b"x:1|c|T1700000000|#t:1",
            b"x:1|c|#t:1|e:it:has:colons|card:low|c:abc|T1",
        ] {
            assert_eq!(parse(line), one(b"x;t=1", Sample::Counter(1.0)), "{}", String::from_utf8_lossy(line));
        }
        assert_eq!(parse(b"x:1|c|T1|@0.5|c:a"), one(b"x", Sample::Counter(2.0)));
        // DogStatsD's packed values: the last one's type and rate for each, extra fields or not
        let timers = |n: f64| vec![Sample::Timer(1.0, n), Sample::Timer(2.0, n), Sample::Timer(3.0, n)];
        assert_eq!(parse(b"a:1:2:3|ms"), Some((b"a".to_vec(), timers(1.0))));
        assert_eq!(parse(b"a:1:2:3|ms|@0.5|#t:v"), Some((b"a;t=v".to_vec(), timers(2.0))));
        assert_eq!(parse(b"a:1:2:3|ms|#t:v|c:abc|T1"), Some((b"a;t=v".to_vec(), timers(1.0))));
        assert_eq!(parse(b"a:1:2:3|ms|T1|@0.5|c:a:b"), Some((b"a".to_vec(), timers(2.0))));
        assert_eq!(
            parse(b"g:1:+2: -3|g"),
            Some((
                b"g".to_vec(),
                vec![Sample::Gauge(1.0, false), Sample::Gauge(2.0, true), Sample::Gauge(-3.0, false)]
            ))
        );
        assert_eq!(parse(b"s::x|s"), Some((b"s".to_vec(), vec![Sample::Set(b"0"), Sample::Set(b"x")])));
        assert_eq!(parse("u:josé|s".as_bytes()), one(b"u", Sample::Set("josé".as_bytes())));
        for slow in [
            &b"a b:1|c"[..],
            b"a:1:x|ms",     // packed with a bad value: Etsy's reading, with its bad parts, counted there
            b"a:1:2|c:3|ms", // packed values take one type
            b"a:1:2",
            b"a:1:2|zz",
            b"a:1:2|c|@-1",
            b"a:-1:2|ms",
            b"a:1|c:x|c",
            b"a:1|c|#t:v|c:x:y|z",
            b"a:1|x",
            b"a:1",
            b"a:|#t",
            b"a:-1|ms",
            b"a:1|c|@0",
            b"a:1|c|@-1",
            b"a:1|c|@ -1",
            b"a:1|c|c",
            b"a:1\r|c",
            b"a:1|c\r",
            b"_e{1,1}:a|b",
            b"_sc|a|0",
            b"a:1e308|c|@1e-10",
            b"a:x\xff|s",
            "a:1|c|T\u{0661}:2|c|c:x".as_bytes(),
        ] {
            assert_eq!(parse(slow), None, "{}", String::from_utf8_lossy(slow));
        }
        let many = format!("a:{}", "1|c:".repeat(100) + "1|c");
        assert_eq!(parse(many.as_bytes()), None);
        let most = format!("a:{}", "1|c:".repeat(99) + "1|c");
        assert_eq!(parse(most.as_bytes()).map(|(_, s)| s.len()), Some(100));
        assert_eq!(parse(format!("a:{}1|ms", "1:".repeat(100)).as_bytes()), None);
        let most = format!("a:{}1|ms", "1:".repeat(99));
        assert_eq!(parse(most.as_bytes()).map(|(_, s)| s.len()), Some(100));
    }
}
