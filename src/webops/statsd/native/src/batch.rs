//! What one receiver accumulates between two hand-overs to Python: the same `Batch` a Python
//! reader process builds (aggregate.py), so the daemon merges both the same way.
//!
//! Counters, timers and sets do not care about order and are aggregated here. Gauges do, so their
//! writes are recorded per read (`seq`, one `recvmmsg` call): the absolute value last written and
//! every change after it, in order, which Python replays in read order (exactly: no sum of
//! changes is taken here, so floating point gives what applying them one by one gives). Lines
//! the fast path does not take travel as text with their read, after its gauge writes; once a
//! read has such a line, its later gauge lines go the same way, so gauge order always holds.

use hashbrown::hash_map::DefaultHashBuilder;
use hashbrown::HashSet;
use indexmap::IndexMap;

use crate::parse::{parse_line, Sample};

pub type Key = Box<[u8]>;
/// Series in the order they first came, as Python's dicts (and Etsy's objects) keep them: the
/// console lists and deletes in that order. Hashed with aHash, keyed at random per process, so
/// chosen names cannot make lookups slow.
pub type Table<V> = IndexMap<Key, V, DefaultHashBuilder>;

#[derive(Default)]
pub struct Timer {
    pub samples: Vec<f64>,
    pub count: f64,
}

/// One gauge's writes in one read: the last absolute value, and the changes written after it.
#[derive(Default)]
pub struct GaugeOp {
    pub absolute: Option<f64>,
    pub deltas: Vec<f64>,
}

/// One read's ordered part: its gauge writes (first seen first), then the lines Python parses.
pub struct Read {
    pub seq: u64,
    pub gauges: Table<GaugeOp>,
    pub slow: Vec<u8>,
}

#[derive(Clone, Copy)]
pub struct Limits {
    /// Distinct series a batch may hold before its receiver stops reading until Python takes it.
    /// Whether a series may exist at all is decided by the main process, against every series
    /// the daemon holds (maxSeries): a batch cannot know whether a name is new, so it refuses
    /// none, and this bound only keeps its memory to what the daemon may hold (plus one read).
    pub max_series: usize,
    /// Members a set may hold (maxSetMembers): past it new members are refused and counted.
    pub max_set_members: usize,
    pub key_flush: bool,
    pub keep_packets: usize, // raw datagrams kept for a repeater / dumpMessages (0: none)
    /// Bytes (about) a batch may hold before its receiver stops reading until Python takes it:
    /// then the datagrams wait in the socket's buffer and, past it, the kernel drops and counts
    /// them, as it does for a slow Python reader; memory never grows without bound.
    pub max_backlog: usize,
}

#[derive(Default)]
pub struct Batch {
    pub counters: Table<f64>,
    pub timers: Table<Timer>,
    pub sets: Table<HashSet<Key>>,
    pub reads: Vec<Read>,
    pub seqs: Vec<u64>,
    pub packets: u64,
    pub metrics: u64,
    /// set members refused because their set held max_set_members already (one per sample)
    pub set_members_refused: u64,
    pub last_seen: f64,
    pub key_counts: Table<u64>,
    pub raw: Vec<Vec<u8>>,
    pub raw_dropped: u64,
    /// distinct series held, a gauge once per read that wrote it (`full` bounds it)
    series: usize,
    /// about how many bytes what is held costs: lines left to Python, samples, members, writes
    pub backlog: usize,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.packets == 0 && self.seqs.is_empty()
    }

    /// Must the receiver stop reading until Python takes this batch? When it holds about
    /// max_backlog bytes, or max_series distinct series: then the datagrams wait in the socket
    /// buffer, and nothing that may update a series the daemon holds is refused here.
    pub fn full(&self, limits: &Limits) -> bool {
        self.backlog >= limits.max_backlog || self.series >= limits.max_series
    }

    /// A series new to this batch (not necessarily to the daemon: the main process decides).
    fn new_series(&mut self) {
        self.series += 1;
        self.backlog += 64; // the key, its entry and its Python objects, about
    }

    /// The datagrams of one read, numbered `seq`, received at `now` (seconds since the epoch).
    pub fn ingest<'a>(&mut self, datagrams: impl Iterator<Item = &'a [u8]>, seq: u64, now: f64, limits: &Limits) {
        self.seqs.push(seq);
        self.last_seen = now;
        // The previous read's gauge writes carry on into this one when nothing came between them
        // (the read just before, by this receiver, with no line left to Python): composing writes
        // in order is exact, and Python then replays one write list per series, not one per read.
        let mut read = match self.reads.last() {
            Some(last) if last.seq + 1 == seq && last.slow.is_empty() => self.reads.pop().map(|mut r| {
                r.seq = seq;
                r
            }),
            _ => None,
        };
        let mut after_slow = false;
        let (mut buf, mut samples) = (Vec::new(), Vec::new()); // one line's, reused
        for datagram in datagrams {
            self.packets += 1;
            if limits.keep_packets > 0 {
                if self.raw.len() < limits.keep_packets {
                    self.raw.push(datagram.to_vec());
                } else {
                    self.raw_dropped += 1;
                }
            }
            for line in datagram.split(|&b| b == b'\n') {
                // `\r\n` endings: the reference drops every `\r` of a packet (a line with one
                // elsewhere is left to it)
                let end = line.iter().rposition(|&b| b != b'\r').map_or(0, |i| i + 1);
                let line = &line[..end];
                if line.is_empty() {
                    continue;
                }
                match parse_line(line, &mut buf, &mut samples) {
                    Some(key) if !(after_slow && samples.iter().any(|s| matches!(s, Sample::Gauge(..)))) => {
                        self.metrics += 1;
                        self.count_key(key, limits);
                        for sample in samples.drain(..) {
                            if let Sample::Gauge(value, delta) = sample {
                                let read = read.get_or_insert_with(|| Read::new(seq));
                                self.gauge(read, key, value, delta);
                            } else {
                                self.add(key, sample, limits);
                            }
                        }
                    }
                    _ => {
                        after_slow = true;
                        let read = read.get_or_insert_with(|| Read::new(seq));
                        read.slow.extend_from_slice(line);
                        read.slow.push(b'\n');
                        self.backlog += line.len() + 1;
                    }
                }
            }
        }
        if let Some(read) = read {
            self.reads.push(read);
        }
    }

    fn count_key(&mut self, name: &[u8], limits: &Limits) {
        if limits.key_flush {
            match self.key_counts.get_mut(name) {
                Some(n) => *n += 1,
                None => {
                    self.key_counts.insert(name.into(), 1);
                }
            }
        }
    }

    fn add(&mut self, name: &[u8], sample: Sample<'_>, limits: &Limits) {
        self.backlog += match sample {
            Sample::Timer(..) => 8,
            Sample::Set(member) => member.len() + 16,
            _ => 0,
        };
        match sample {
            Sample::Counter(v) => match self.counters.get_mut(name) {
                Some(sum) => *sum += v,
                None => {
                    self.new_series();
                    self.counters.insert(name.into(), v);
                }
            },
            Sample::Timer(v, count) => {
                if let Some(t) = self.timers.get_mut(name) {
                    t.samples.push(v);
                    t.count += count;
                } else {
                    self.new_series();
                    self.timers.insert(name.into(), Timer { samples: vec![v], count: 0.0 + count });
                }
            }
            Sample::Set(member) => {
                if let Some(members) = self.sets.get_mut(name) {
                    if !members.contains(member) {
                        if members.len() < limits.max_set_members {
                            members.insert(member.into());
                        } else {
                            self.set_members_refused += 1;
                        }
                    }
                } else {
                    self.new_series();
                    let mut members = HashSet::new();
                    members.insert(member.into());
                    self.sets.insert(name.into(), members);
                }
            }
            Sample::Gauge(..) => unreachable!("gauges are recorded per read"),
        }
    }

    fn gauge(&mut self, read: &mut Read, name: &[u8], value: f64, delta: bool) {
        self.backlog += 8;
        let op = match read.gauges.get_mut(name) {
            Some(op) => op,
            None => {
                self.new_series();
                read.gauges.entry(name.into()).or_default()
            }
        };
        if delta {
            op.deltas.push(value);
        } else {
            op.absolute = Some(value);
            op.deltas.clear();
        }
    }
}

impl Read {
    fn new(seq: u64) -> Self {
        Read { seq, gauges: Table::default(), slow: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_series: usize, max_set_members: usize) -> Limits {
        Limits { max_series, max_set_members, key_flush: false, keep_packets: 0, max_backlog: 1 << 20 }
    }

    #[test]
    fn a_batch_at_max_series_refuses_nothing_and_says_it_is_full() {
        // any of these may be a series the daemon holds: only the main process can tell
        let limits = limits(2, 10);
        let mut batch = Batch::default();
        batch.ingest([&b"a:1|c\nb:2|c"[..]].into_iter(), 0, 1.0, &limits);
        assert!(batch.full(&limits));
        batch.ingest([&b"c:3|c\nd:4|ms\ne:x|s\nf:5|g\na:1|c"[..]].into_iter(), 1, 1.0, &limits);
        let counters: Vec<(&[u8], f64)> = batch.counters.iter().map(|(k, v)| (&k[..], *v)).collect();
        assert_eq!(counters, [(&b"a"[..], 2.0), (b"b", 2.0), (b"c", 3.0)]);
        assert!(batch.timers.contains_key(&b"d"[..]) && batch.sets.contains_key(&b"e"[..]));
        assert_eq!(batch.reads[0].gauges[&b"f"[..]].absolute, Some(5.0));
        assert_eq!((batch.metrics, batch.set_members_refused), (7, 0));
        assert!(!Batch::default().full(&limits));
    }

    #[test]
    fn a_full_backlog_also_says_full() {
        let limits = Limits { max_backlog: 100, ..limits(1000, 10) };
        let mut batch = Batch::default();
        batch.ingest([&b"t:1|ms"[..]].into_iter(), 0, 1.0, &limits);
        assert!(!batch.full(&limits));
        batch.ingest([&b"t:0x1|ms\n".repeat(20)[..]].into_iter(), 1, 1.0, &limits); // left to Python
        assert!(batch.full(&limits));
    }

    #[test]
    fn set_members_past_the_cap_are_refused_and_counted() {
        let limits = limits(10, 2);
        let mut batch = Batch::default();
        batch.ingest([&b"s:a|s\ns:b|s\ns:c|s\ns:a|s\ns:c|s\ns:b|s\nt:c|s"[..]].into_iter(), 0, 1.0, &limits);
        let mut kept: Vec<&[u8]> = batch.sets[&b"s"[..]].iter().map(|m| &m[..]).collect();
        kept.sort();
        assert_eq!(kept, [&b"a"[..], b"b"]); // members already held go on; only new ones are refused
        assert_eq!(batch.sets[&b"t"[..]].len(), 1);
        assert_eq!(batch.set_members_refused, 2); // each sample of `c` into the full set
    }

    /// One gauge's writes in a read: (name, absolute, deltas), as Python receives them.
    type Writes = (String, Option<f64>, Vec<f64>);

    fn gauge_ops(batch: &Batch) -> Vec<(u64, Vec<Writes>)> {
        let op = |(k, op): (&Key, &GaugeOp)| (String::from_utf8_lossy(k).into_owned(), op.absolute, op.deltas.clone());
        batch.reads.iter().map(|r| (r.seq, r.gauges.iter().map(op).collect())).collect()
    }

    #[test]
    fn an_absolute_gauge_write_discards_the_changes_before_it() {
        let mut batch = Batch::default();
        batch.ingest([&b"g:+1|g\ng:5|g\ng:+2|g\ng:-0.5|g"[..]].into_iter(), 0, 1.0, &limits(10, 10));
        assert_eq!(gauge_ops(&batch), [(0, vec![("g".into(), Some(5.0), vec![2.0, -0.5])])]);
        // no absolute value in the read: the changes apply to whatever the daemon holds
        let mut batch = Batch::default();
        batch.ingest([&b"h:-1|g"[..], b"h:+3|g"].into_iter(), 0, 1.0, &limits(10, 10));
        assert_eq!(gauge_ops(&batch), [(0, vec![("h".into(), None, vec![-1.0, 3.0])])]);
    }

    #[test]
    fn consecutive_reads_compose_their_gauge_writes_and_a_gap_keeps_them_apart() {
        let limits = limits(10, 10);
        let mut batch = Batch::default();
        batch.ingest([&b"g:1|g"[..]].into_iter(), 4, 1.0, &limits);
        batch.ingest([&b"g:+2|g"[..]].into_iter(), 5, 1.0, &limits); // the read right after: one list
        assert_eq!(gauge_ops(&batch), [(5, vec![("g".into(), Some(1.0), vec![2.0])])]);
        batch.ingest([&b"g:+3|g"[..]].into_iter(), 7, 1.0, &limits); // read 6 went to another receiver
        assert_eq!(
            gauge_ops(&batch),
            [(5, vec![("g".into(), Some(1.0), vec![2.0])]), (7, vec![("g".into(), None, vec![3.0])])]
        );
        assert_eq!(batch.seqs, [4, 5, 7]);
    }

    #[test]
    fn after_a_line_left_to_python_the_reads_gauges_go_to_python_too() {
        // the slow line may write the same gauge: applying fast writes first would reorder them
        let limits = limits(10, 10);
        let mut batch = Batch::default();
        batch.ingest([&b"g:1|g\ng:2|g|#a:b:c\ng:+1|g\nc:1|c"[..]].into_iter(), 0, 1.0, &limits);
        assert_eq!(gauge_ops(&batch), [(0, vec![("g".into(), Some(1.0), vec![])])]);
        assert_eq!(batch.reads[0].slow, b"g:2|g|#a:b:c\ng:+1|g\n");
        // order-free kinds still take the fast path
        assert_eq!(batch.counters[&b"c"[..]], 1.0);
        // and the next read, though consecutive, starts its own write list after the slow lines
        batch.ingest([&b"g:+5|g"[..]].into_iter(), 1, 1.0, &limits);
        assert_eq!(gauge_ops(&batch)[1], (1, vec![("g".into(), None, vec![5.0])]));
    }

    #[test]
    fn key_counts_and_kept_packets_follow_their_settings() {
        let limits = Limits { key_flush: true, keep_packets: 2, ..limits(10, 10) };
        let mut batch = Batch::default();
        batch.ingest([&b"a:1|c\na:2|c"[..], b"b:1|ms", b"a:1|c"].into_iter(), 0, 7.5, &limits);
        assert_eq!(batch.key_counts[&b"a"[..]], 3);
        assert_eq!((batch.raw.len(), batch.raw_dropped, batch.packets, batch.metrics), (2, 1, 3, 4));
        assert_eq!(batch.last_seen, 7.5);
        assert!(!batch.is_empty());
    }
}
