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
    pub max_series: usize,
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
    pub refused: u64,
    pub last_seen: f64,
    pub key_counts: Table<u64>,
    pub raw: Vec<Vec<u8>>,
    pub raw_dropped: u64,
    series: usize,
    /// about how many bytes what is held costs: lines left to Python, samples, members, writes
    pub backlog: usize,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.packets == 0 && self.seqs.is_empty()
    }

    /// May a new series be created in this batch? (maxSeries, counted like the reference does)
    fn admit(&mut self, limits: &Limits) -> bool {
        if self.series < limits.max_series {
            self.series += 1;
            self.backlog += 64; // the key, its entry and its Python objects, about
            true
        } else {
            self.refused += 1;
            false
        }
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
                if line.is_empty() {
                    continue;
                }
                match parse_line(line) {
                    Some((key, Sample::Gauge(value, delta))) if !after_slow => {
                        self.metrics += 1;
                        self.count_key(&key, limits);
                        let read = read.get_or_insert_with(|| Read::new(seq));
                        self.gauge(read, &key, value, delta, limits);
                    }
                    Some((key, sample)) if !matches!(sample, Sample::Gauge(..)) => {
                        self.metrics += 1;
                        self.count_key(&key, limits);
                        self.add(&key, sample, limits);
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
                    if self.admit(limits) {
                        self.counters.insert(name.into(), v);
                    }
                }
            },
            Sample::Timer(v, count) => {
                if let Some(t) = self.timers.get_mut(name) {
                    t.samples.push(v);
                    t.count += count;
                } else if self.admit(limits) {
                    self.timers.insert(name.into(), Timer { samples: vec![v], count: 0.0 + count });
                }
            }
            Sample::Set(member) => {
                if let Some(members) = self.sets.get_mut(name) {
                    if !members.contains(member) {
                        members.insert(member.into());
                    }
                } else if self.admit(limits) {
                    let mut members = HashSet::new();
                    members.insert(member.into());
                    self.sets.insert(name.into(), members);
                }
            }
            Sample::Gauge(..) => unreachable!("gauges are recorded per read"),
        }
    }

    fn gauge(&mut self, read: &mut Read, name: &[u8], value: f64, delta: bool, limits: &Limits) {
        self.backlog += 8;
        let op = match read.gauges.get_mut(name) {
            Some(op) => op,
            None => {
                if !self.admit(limits) {
                    return;
                }
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
