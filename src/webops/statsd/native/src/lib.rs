//! `webops.statsd._native`: the statsd daemon's hot path, in Rust (memory-safe parsing of
//! untrusted datagrams). Receiver threads read the UDP sockets with `recvmmsg`, split and parse
//! the lines, and pre-aggregate them without the GIL; Python takes the batches (`Intake.take`)
//! and merges them exactly as it merges a Python reader process's (aggregate.py, hotpath.py).

mod batch;
mod digits;
mod jsonfmt;
mod lines;
mod parse;
mod recv;
mod stats;

use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PySet, PyString};

use batch::{Batch, Limits};
use recv::{Order, Shared};

/// What a receiver's batch may hold, about, before it waits for Python to take it (Limits).
const MAX_BACKLOG: usize = 64 << 20;

/// Receiver threads over a set of UDP sockets (file descriptors Python owns), or none: then
/// `feed` hands it datagrams (the differential tests do that). The text signatures let mypy's
/// stubtest check `_native.pyi` against what is built (test_hotpath.py).
#[pyclass(
    module = "webops.statsd._native",
    text_signature = "(fds, threads, max_series, max_set_members, key_flush=False, keep_packets=0, after=None, \
                      max_backlog=...)"
)]
struct Intake {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

fn text<'p>(py: Python<'p>, key: &[u8]) -> &'p PyString {
    // keys are ASCII and members UTF-8 (parse.rs leaves anything else to Python)
    PyString::new(py, std::str::from_utf8(key).unwrap_or(""))
}

/// One receiver's batch as Python takes it: a typed object with named fields (stubbed in
/// `_native.pyi`, so mypy checks hotpath.to_batch against it), which `hotpath.to_batch` turns
/// into the `Batch` a Python reader hands over.
#[pyclass(frozen, module = "webops.statsd._native")]
struct Taken {
    /// counter key -> sum of `value / rate`
    #[pyo3(get)]
    counters: Py<PyDict>,
    /// timer key -> (samples, count: the sum of `1 / rate`)
    #[pyo3(get)]
    timers: Py<PyDict>,
    /// set key -> members (at most max_set_members)
    #[pyo3(get)]
    sets: Py<PyDict>,
    /// one per read with gauge writes or lines left to Python: (seq, {gauge key: (absolute
    /// value or None, deltas after it)}, lines left to the Python parser)
    #[pyo3(get)]
    reads: Py<PyList>,
    /// every read number in this batch
    #[pyo3(get)]
    seqs: Py<PyList>,
    /// datagrams received
    #[pyo3(get)]
    packets: u64,
    /// lines taken by the fast path (those left to Python are counted where Python parses them)
    #[pyo3(get)]
    metrics: u64,
    /// samples of set members refused because their set was full (maxSetMembers)
    #[pyo3(get)]
    set_members_refused: u64,
    /// when the last read came (seconds since the epoch)
    #[pyo3(get)]
    last_seen: f64,
    /// key -> lines, for keyFlush (empty unless it is on)
    #[pyo3(get)]
    key_counts: Py<PyDict>,
    /// raw datagrams kept for a repeater or dumpMessages (keep_packets at most)
    #[pyo3(get)]
    raw: Py<PyList>,
    /// datagrams not kept because `raw` held keep_packets already
    #[pyo3(get)]
    raw_dropped: u64,
}

fn convert(py: Python<'_>, b: Batch) -> PyResult<Taken> {
    let counters = PyDict::new(py);
    for (k, v) in b.counters {
        counters.set_item(text(py, &k), v)?;
    }
    let timers = PyDict::new(py);
    for (k, t) in b.timers {
        timers.set_item(text(py, &k), (PyList::new(py, t.samples), t.count))?;
    }
    let sets = PyDict::new(py);
    for (k, members) in b.sets {
        let set = PySet::empty(py)?;
        for m in members.iter() {
            set.add(text(py, m))?;
        }
        sets.set_item(text(py, &k), set)?;
    }
    let reads = PyList::empty(py);
    for r in b.reads {
        let gauges = PyDict::new(py);
        for (k, op) in r.gauges {
            gauges.set_item(text(py, &k), (op.absolute, PyList::new(py, op.deltas)))?;
        }
        reads.append((r.seq, gauges, PyBytes::new(py, &r.slow)))?;
    }
    let key_counts = PyDict::new(py);
    for (k, n) in b.key_counts {
        key_counts.set_item(text(py, &k), n)?;
    }
    Ok(Taken {
        counters: counters.into(),
        timers: timers.into(),
        sets: sets.into(),
        reads: reads.into(),
        seqs: PyList::new(py, b.seqs).into(),
        packets: b.packets,
        metrics: b.metrics,
        set_members_refused: b.set_members_refused,
        last_seen: b.last_seen,
        key_counts: key_counts.into(),
        raw: PyList::new(py, b.raw.iter().map(|p| PyBytes::new(py, p))).into(),
        raw_dropped: b.raw_dropped,
    })
}

#[pymethods]
impl Intake {
    /// `threads` receivers over `fds`; `after`: the intake this one replaces (its read numbers
    /// and its turn at the sockets carry on, so gauge order holds across a reload).
    /// `max_series` bounds what one batch holds (Limits); the main process decides maxSeries.
    #[new]
    #[args(key_flush = "false", keep_packets = "0", after = "None", max_backlog = "MAX_BACKLOG")]
    #[allow(clippy::too_many_arguments)] // the constructor Python calls, one argument per setting
    fn new(
        fds: Vec<RawFd>,
        threads: usize,
        max_series: usize,
        max_set_members: usize,
        key_flush: bool,
        keep_packets: usize,
        after: Option<&Intake>,
        max_backlog: usize,
    ) -> PyResult<Self> {
        if threads > 64 {
            return Err(PyValueError::new_err("at most 64 receiver threads"));
        }
        let order = match after {
            Some(prev) => prev.shared.order.clone(),
            None => Arc::new(Order { turn: Mutex::new(()), next_seq: AtomicU64::new(0) }),
        };
        let workers = if fds.is_empty() { 0 } else { threads };
        let shared = Arc::new(Shared {
            order,
            stop: AtomicBool::new(false),
            batches: (0..workers.max(1)).map(|_| Mutex::new(Batch::default())).collect(),
            limits: Limits { max_series, max_set_members, key_flush, keep_packets, max_backlog },
            held_back: AtomicU64::new(0),
        });
        let mut handles = Vec::new();
        for me in 0..workers {
            let (s, f) = (shared.clone(), fds.clone());
            let handle = std::thread::Builder::new()
                .name(format!("statsd-recv-{me}"))
                .spawn(move || recv::run(s, me, f))
                .map_err(|e| PyValueError::new_err(format!("cannot start a receiver thread: {e}")))?;
            handles.push(handle);
        }
        Ok(Intake { shared, threads: handles })
    }

    /// Aggregate datagrams as if the next read had brought them (no sockets needed).
    #[pyo3(text_signature = "($self, datagrams, now)")]
    fn feed(&self, py: Python<'_>, datagrams: Vec<&[u8]>, now: f64) {
        let shared = &self.shared;
        let owned: Vec<Vec<u8>> = datagrams.iter().map(|d| d.to_vec()).collect();
        py.allow_threads(|| {
            let seq = shared.order.next_seq.fetch_add(1, Ordering::SeqCst);
            let mut batch = shared.batches[0].lock().unwrap_or_else(|p| p.into_inner());
            batch.ingest(owned.iter().map(|d| d.as_slice()), seq, now, &shared.limits);
        });
    }

    /// Everything aggregated since the last call, one `Taken` per receiver that has something.
    #[pyo3(text_signature = "($self)")]
    fn take(&self, py: Python<'_>) -> PyResult<Vec<Taken>> {
        let taken: Vec<Batch> = py.allow_threads(|| {
            self.shared
                .batches
                .iter()
                .map(|m| std::mem::take(&mut *m.lock().unwrap_or_else(|p| p.into_inner())))
                .filter(|b| !b.is_empty())
                .collect()
        });
        taken.into_iter().map(|b| convert(py, b)).collect()
    }

    /// Reads skipped since start because a batch was full (Batch::full: Python had not taken it).
    #[pyo3(text_signature = "($self)")]
    fn held_back(&self) -> u64 {
        self.shared.held_back.load(Ordering::Relaxed)
    }

    /// How many receiver threads are alive (a panic in one would show here).
    #[pyo3(text_signature = "($self)")]
    fn running(&self) -> usize {
        self.threads.iter().filter(|t| !t.is_finished()).count()
    }

    /// Stop the receivers once they have read what the sockets hold; `take` still has it all.
    #[pyo3(text_signature = "($self)")]
    fn stop(&mut self, py: Python<'_>) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let threads = std::mem::take(&mut self.threads);
        py.allow_threads(|| {
            for t in threads {
                let _ = t.join();
            }
        });
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

/// Parse one line the way the receivers do: None when the reference must read it, else
/// `{"key": ..., "samples": [...]}`, each sample a dict named by its fields (`kind` c: `value`
/// (already divided by the rate); ms: `value`, `count`; g: `value`, `delta`; s: `member`): the
/// property tests check it against protocol.py.
#[pyfunction]
#[pyo3(text_signature = "(line)")]
fn parse_line(py: Python<'_>, line: &[u8]) -> PyResult<PyObject> {
    use parse::Sample::*;
    let (mut buf, mut samples) = (Vec::new(), Vec::new());
    let Some(key) = parse::parse_line(line, &mut buf, &mut samples) else {
        return Ok(py.None());
    };
    let list = PyList::empty(py);
    for sample in samples {
        let d = PyDict::new(py);
        match sample {
            Counter(v) => d.set_item("kind", "c").and(d.set_item("value", v))?,
            Timer(v, n) => d.set_item("kind", "ms").and(d.set_item("value", v)).and(d.set_item("count", n))?,
            Gauge(v, delta) => d.set_item("kind", "g").and(d.set_item("value", v)).and(d.set_item("delta", delta))?,
            Set(m) => d.set_item("kind", "s").and(d.set_item("member", text(py, m)))?,
        }
        list.append(d)?;
    }
    let parsed = PyDict::new(py);
    parsed.set_item("key", text(py, key))?;
    parsed.set_item("samples", list)?;
    Ok(parsed.into())
}

#[pymodule]
fn _native(_py: Python<'_>, m: &PyModule) -> PyResult<()> {
    m.add_class::<Intake>()?;
    m.add_class::<Taken>()?;
    m.add_class::<stats::TimerPlan>()?;
    m.add_function(wrap_pyfunction!(parse_line, m)?)?;
    m.add_function(wrap_pyfunction!(jsonfmt::json_points, m)?)?;
    m.add_function(wrap_pyfunction!(lines::timer_lines, m)?)?;
    m.add("VLEN", recv::VLEN)?;
    Ok(())
}
