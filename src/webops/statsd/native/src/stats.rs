//! Timer statistics of a whole flush in one call: Etsy's process_metrics for timers, float for
//! float what the Python reference computes (timerstats.py `timer_stats`, `_histogram`,
//! `filter_stats` and the non-finite rule of `Timers.summarize`).
//!
//! Python's per-timer overhead (a dict, a cumulative list, a generator per statistic) made the
//! flush of 10k timers take ~0.5 s; here Python prepares what depends on the config once per
//! flush (`TimerPlan`: the statistics' names, which of them calculatedTimerMetrics keeps, the
//! histogram bins), the samples are read, the maths runs without the GIL (the event loop keeps
//! taking datagrams meanwhile), and the dicts are built with one string object per name.
//!
//! Bit-identical results follow from doing the same IEEE operations in the same order: sums left
//! to right (`itertools.accumulate`, `sum`), a stable sort (Python's sort is stable, so samples
//! that compare equal, `-0.0` and `0.0`, keep their order), no fused multiply-add.

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList, PyLong, PyString};
use pyo3::AsPyPointer;
use pyo3::PyTypeInfo;

/// One percentile's statistics (Etsy's `count_90`, `mean_90`, `upper_90`, `sum_90`, `sum_squares_90`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PctStats {
    pub count: usize,
    pub mean: f64,
    pub bound: f64,
    pub sum: f64,
    pub sum_squares: f64,
}

/// A timer's statistics over its sorted samples (at least one); `count` and `count_ps` are the
/// caller's (they come from the sample-rate-weighted count, not from the samples).
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// per percentile, in the config's order; None where Etsy skips it (no value within it)
    pub pcts: Vec<Option<PctStats>>,
    pub std: f64,
    pub upper: f64,
    pub lower: f64,
    pub sum: f64,
    pub sum_squares: f64,
    pub mean: f64,
    pub median: f64,
    /// values per bin, for the bins given
    pub histogram: Vec<usize>,
}

impl Stats {
    /// Every float statistic is finite (a sum near 1e308 overflows; Python leaves such a timer out).
    fn finite(&self) -> bool {
        let pcts =
            self.pcts.iter().flatten().all(|p| [p.mean, p.bound, p.sum, p.sum_squares].iter().all(|v| v.is_finite()));
        pcts && [self.std, self.upper, self.lower, self.sum, self.sum_squares, self.mean, self.median]
            .iter()
            .all(|v| v.is_finite())
    }
}

/// JavaScript's Math.round: halves go up.
pub fn js_round(x: f64) -> f64 {
    (x + 0.5).floor()
}

/// The samples sorted as Python's stable `list.sort` orders them, and where each came from.
pub fn sorted(samples: &[f64]) -> Vec<(f64, u32)> {
    let mut pairs: Vec<(f64, u32)> = samples.iter().enumerate().map(|(i, &v)| (v, i as u32)).collect();
    // stable, and `<` as Python compares floats (NaN never reaches here: parsers refuse it)
    pairs.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    pairs
}

/// timerstats.timer_stats for sorted, non-empty `values`; `bins`: bounds, None for "inf".
pub fn timer_stats(values: &[f64], pcts: &[f64], bins: &[Option<f64>]) -> Stats {
    let n = values.len();
    let (lo, hi) = (values[0], values[n - 1]);
    let mut cumul = Vec::with_capacity(n);
    let mut cumul_sq = Vec::with_capacity(n);
    let (mut total, mut total_sq) = (0.0, 0.0);
    for (i, &v) in values.iter().enumerate() {
        // accumulate's first element is the value itself (0.0 + -0.0 would be 0.0)
        total = if i == 0 { v } else { total + v };
        total_sq = if i == 0 { v * v } else { total_sq + v * v };
        cumul.push(total);
        cumul_sq.push(total_sq);
    }
    let pcts = pcts
        .iter()
        .map(|&pct| {
            if n == 1 {
                return Some(PctStats { count: 1, mean: lo, bound: hi, sum: lo, sum_squares: lo * lo });
            }
            let k = js_round(pct.abs() / 100.0 * n as f64) as usize;
            if k == 0 {
                return None;
            }
            let (bound, sum, sum_squares) = if pct > 0.0 {
                (values[k - 1], cumul[k - 1], cumul_sq[k - 1])
            } else {
                let before = (n - k).checked_sub(1);
                let (b, b_sq) = before.map_or((0.0, 0.0), |b| (cumul[b], cumul_sq[b]));
                (values[n - k], total - b, total_sq - b_sq)
            };
            Some(PctStats { count: k, mean: sum / k as f64, bound, sum, sum_squares })
        })
        .collect();
    let mean = total / n as f64;
    // Python's sum() of floats: 0 + the first, then left to right (squares are never -0.0)
    let squared_deviations = values.iter().fold(0.0, |acc, v| acc + (v - mean) * (v - mean));
    let mid = n / 2;
    let median = if n % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 };
    Stats {
        pcts,
        std: (squared_deviations / n as f64).sqrt(),
        upper: hi,
        lower: lo,
        sum: total,
        sum_squares: total_sq,
        mean,
        median,
        histogram: histogram(values, bins),
    }
}

/// timerstats._histogram: values per `[previous bound, bound)`, past the last bound left out.
pub fn histogram(values: &[f64], bins: &[Option<f64>]) -> Vec<usize> {
    let (mut i, n) = (0, values.len());
    bins.iter()
        .map(|bound| {
            let start = i;
            match bound {
                None => i = n,
                Some(b) => {
                    while i < n && values[i] < *b {
                        i += 1
                    }
                }
            }
            i - start
        })
        .collect()
}

/// A statistic's name as a Python string (made once per flush), or None where
/// calculatedTimerMetrics leaves it out.
type Name = Option<Py<PyString>>;

struct Percentile {
    pct: f64,
    /// count_, mean_, upper_ or lower_, sum_, sum_squares_ + the percentile's suffix
    names: [Name; 5],
}

struct Histogram {
    metric: String,
    bounds: Vec<Option<f64>>,
    labels: Vec<Py<PyString>>,
}

/// What a flush's timer statistics depend on besides the samples: made by timerstats.py from
/// the config (names with Etsy's spelling, the calculatedTimerMetrics filter), once per flush.
#[pyclass(frozen, module = "webops.statsd._native")]
#[pyo3(text_signature = "(per_second, percentiles, keep, histograms)")]
pub struct TimerPlan {
    per_second: f64,
    percentiles: Vec<Percentile>,
    /// std, upper, lower, count, count_ps, sum, sum_squares, mean, median, histogram
    fixed: [Name; 10],
    histograms: Vec<Histogram>,
}

const FIXED: [&str; 10] =
    ["std", "upper", "lower", "count", "count_ps", "sum", "sum_squares", "mean", "median", "histogram"];
const PCT_FIELDS: [&str; 5] = ["count", "mean", "bound", "sum", "sum_squares"];

fn item<'p>(d: &'p PyDict, key: &str) -> PyResult<&'p PyAny> {
    d.get_item(key).ok_or_else(|| PyValueError::new_err(format!("missing {key:?}")))
}

#[pymethods]
impl TimerPlan {
    /// `percentiles`: [{pct, count, mean, bound, sum, sum_squares}] with the stats' names;
    /// `keep`: the names calculatedTimerMetrics keeps, None for all; `histograms`:
    /// [{metric, bounds: [float or None for "inf"], labels: ["bin_..."]}], the first whose
    /// metric is in a key applies.
    #[new]
    fn new(
        py: Python<'_>,
        per_second: f64,
        percentiles: Vec<&PyDict>,
        keep: Option<Vec<String>>,
        histograms: Vec<&PyDict>,
    ) -> PyResult<Self> {
        let name = |s: &str| -> Name {
            keep.as_ref().is_none_or(|k| k.iter().any(|w| w == s)).then(|| PyString::new(py, s).into())
        };
        let mut pcts = Vec::new();
        for p in percentiles {
            let pct: f64 = item(p, "pct")?.extract()?;
            if !(-100.0..=100.0).contains(&pct) {
                return Err(PyValueError::new_err(format!("percentile {pct} outside -100..100")));
            }
            let mut names: [Name; 5] = Default::default();
            for (slot, field) in names.iter_mut().zip(PCT_FIELDS) {
                *slot = name(&item(p, field)?.extract::<String>()?);
            }
            pcts.push(Percentile { pct, names });
        }
        let mut hists = Vec::new();
        for h in histograms {
            let bounds: Vec<Option<f64>> = item(h, "bounds")?.extract()?;
            let labels: Vec<&PyString> = item(h, "labels")?.extract()?;
            if labels.len() != bounds.len() {
                return Err(PyValueError::new_err("one label per bound"));
            }
            let labels = labels.into_iter().map(Into::into).collect();
            hists.push(Histogram { metric: item(h, "metric")?.extract()?, bounds, labels });
        }
        Ok(TimerPlan { per_second, percentiles: pcts, fixed: FIXED.map(name), histograms: hists })
    }

    /// Timers.summarize over `table` (key -> TimerSeries): {summaries: {key: stats}, non_finite:
    /// [keys left out]}, or None when a sample is not a float (then the reference computes it,
    /// whose results would be ints). Sorts each timer's samples in place, as the reference does.
    #[pyo3(text_signature = "($self, table)")]
    fn summarize(&self, py: Python<'_>, table: &PyDict) -> PyResult<Option<Py<PyDict>>> {
        let Some(mut timers) = read(py, table)? else { return Ok(None) };
        let pcts: Vec<f64> = self.percentiles.iter().map(|p| p.pct).collect();
        let bins: Vec<Option<usize>> = timers
            .iter()
            .map(|t| {
                self.histograms
                    .iter()
                    .position(|h| t.key.contains(h.metric.as_str()))
                    .filter(|&i| !self.histograms[i].bounds.is_empty())
            })
            .collect();
        let work: Vec<(Vec<f64>, &[Option<f64>])> = timers
            .iter_mut()
            .zip(&bins)
            .map(|(t, b)| (std::mem::take(&mut t.samples), b.map_or(&[][..], |i| &self.histograms[i].bounds[..])))
            .collect();
        let computed: Vec<Option<(Stats, Vec<u32>)>> = py.allow_threads(|| {
            work.iter()
                .map(|(samples, bounds)| {
                    if samples.is_empty() {
                        return None;
                    }
                    let pairs = sorted(samples);
                    let values: Vec<f64> = pairs.iter().map(|p| p.0).collect();
                    Some((timer_stats(&values, &pcts, bounds), pairs.into_iter().map(|p| p.1).collect()))
                })
                .collect()
        });
        let summaries = PyDict::new(py);
        let non_finite = PyList::empty(py);
        let template = self.template(py)?;
        for ((t, c), b) in timers.iter().zip(computed).zip(bins) {
            let Some((stats, order)) = c else {
                let data = PyDict::new(py);
                self.set(data, 3, 0)?;
                self.set(data, 4, 0)?;
                summaries.set_item(t.py_key, data)?;
                continue;
            };
            reorder(t.list, &order);
            let count_ps = t.count.map(|c| c / self.per_second);
            let count_finite = t.count.is_some_and(|c| c.is_finite() || !t.count_is_float);
            if !(stats.finite() && count_finite && count_ps.is_some_and(f64::is_finite)) {
                non_finite.append(t.py_key)?;
                continue;
            }
            summaries.set_item(t.py_key, self.data(py, template, &stats, t.py_count, count_ps.unwrap_or(0.0), b)?)?;
        }
        let out = PyDict::new(py);
        out.set_item("summaries", summaries)?;
        out.set_item("non_finite", non_finite)?;
        Ok(Some(out.into()))
    }
}

impl TimerPlan {
    fn set(&self, data: &PyDict, fixed: usize, value: impl ToPyObject) -> PyResult<()> {
        match &self.fixed[fixed] {
            Some(name) => data.set_item(name, value),
            None => Ok(()),
        }
    }

    /// A timer's dict with every name it can have but the histogram, in the reference's order,
    /// all None: each timer's is a copy of it (PyDict_Copy copies the hashed table as it is,
    /// where 14 inserts into a new dict would hash and grow it twice).
    fn template<'p>(&self, py: Python<'p>) -> PyResult<&'p PyDict> {
        let template = PyDict::new(py);
        let pct_names = self.percentiles.iter().flat_map(|p| &p.names);
        for name in pct_names.chain(&self.fixed[..9]).flatten() {
            template.set_item(name, py.None())?;
        }
        Ok(template)
    }

    /// Take out of a timer's dict the names of the percentiles no value falls within (Etsy
    /// leaves them out), but those another percentile of the config (`[1, 1]`) has set.
    fn leave_out_skipped(&self, py: Python<'_>, data: &PyDict, s: &Stats) -> PyResult<()> {
        let set = |name: &PyString| -> bool {
            self.percentiles.iter().zip(&s.pcts).any(|(p, stats)| {
                stats.is_some() && p.names.iter().flatten().any(|n| n.as_ref(py).compare(name).is_ok_and(|o| o.is_eq()))
            })
        };
        for (p, _) in self.percentiles.iter().zip(&s.pcts).filter(|(_, stats)| stats.is_none()) {
            for name in p.names.iter().flatten().map(|n| n.as_ref(py)) {
                if data.contains(name)? && !set(name) {
                    data.del_item(name)?;
                }
            }
        }
        Ok(())
    }

    /// One timer's dict, in the reference's key order, without what calculatedTimerMetrics leaves out.
    fn data<'p>(
        &self,
        py: Python<'p>,
        template: &'p PyDict,
        s: &Stats,
        count: &PyAny,
        count_ps: f64,
        bins: Option<usize>,
    ) -> PyResult<&'p PyDict> {
        let data = template.copy()?;
        let mut skipped = false;
        for (p, stats) in self.percentiles.iter().zip(&s.pcts) {
            let Some(ps) = stats else {
                skipped = true;
                continue;
            };
            let values: [PyObject; 5] = [
                ps.count.into_py(py),
                ps.mean.into_py(py),
                ps.bound.into_py(py),
                ps.sum.into_py(py),
                ps.sum_squares.into_py(py),
            ];
            for (name, value) in p.names.iter().zip(values) {
                if let Some(name) = name {
                    data.set_item(name, value)?;
                }
            }
        }
        if skipped {
            self.leave_out_skipped(py, data, s)?;
        }
        let values = [s.std, s.upper, s.lower];
        for (i, v) in values.into_iter().enumerate() {
            self.set(data, i, v)?;
        }
        self.set(data, 3, count)?;
        self.set(data, 4, count_ps)?;
        for (i, v) in [s.sum, s.sum_squares, s.mean, s.median].into_iter().enumerate() {
            self.set(data, 5 + i, v)?;
        }
        if let (Some(i), Some(name)) = (bins, &self.fixed[9]) {
            let histogram = PyDict::new(py);
            for (label, n) in self.histograms[i].labels.iter().zip(&s.histogram) {
                histogram.set_item(label, n)?;
            }
            data.set_item(name, histogram)?;
        }
        Ok(data)
    }
}

/// One timer as read from its TimerSeries.
struct Timer<'p> {
    key: &'p str,
    py_key: &'p PyAny,
    list: &'p PyList,
    samples: Vec<f64>,
    py_count: &'p PyAny,
    /// None where the count is an int too large for a float (the reference overflows there too)
    count: Option<f64>,
    count_is_float: bool,
}

/// The table's timers, or None when a sample is not a float or a count not a number.
fn read<'p>(py: Python<'p>, table: &'p PyDict) -> PyResult<Option<Vec<Timer<'p>>>> {
    let mut timers = Vec::with_capacity(table.len());
    for (key, series) in table.iter() {
        let Ok(list) = series.getattr(intern!(py, "samples"))?.downcast::<PyList>() else { return Ok(None) };
        let mut samples = Vec::with_capacity(list.len());
        for i in 0..list.len() {
            // Read in place: a flush has ~1M samples, and pyo3's list iterator takes a reference
            // to each and keeps it in the GIL pool until the call ends.
            // SAFETY: i < len, the GIL is held and nothing runs that could change the list.
            let item = unsafe { ffi::PyList_GET_ITEM(list.as_ptr(), i as ffi::Py_ssize_t) };
            // SAFETY: item is a live object (the list holds it); checked to be an exact float.
            if unsafe { ffi::PyFloat_CheckExact(item) } == 0 {
                return Ok(None);
            }
            samples.push(unsafe { ffi::PyFloat_AS_DOUBLE(item) });
        }
        let py_count = series.getattr(intern!(py, "count"))?;
        let count_is_float = PyFloat::is_exact_type_of(py_count);
        if !count_is_float && !PyLong::is_exact_type_of(py_count) {
            return Ok(None);
        }
        let count = py_count.extract::<f64>().ok();
        timers.push(Timer {
            key: key.downcast::<PyString>()?.to_str()?,
            py_key: key,
            list,
            samples,
            py_count,
            count,
            count_is_float,
        });
    }
    Ok(Some(timers))
}

/// Put the list's own float objects in sorted order (the console and /metrics' histograms read
/// the samples sorted after a flush, as the reference leaves them).
fn reorder(list: &PyList, order: &[u32]) {
    if order.iter().enumerate().all(|(i, &j)| i == j as usize) || list.len() != order.len() {
        return;
    }
    let list = list.as_ptr();
    // SAFETY: every index is < len (order is a permutation of 0..len), the GIL is held and no
    // Python code runs in between; a permutation leaves each item held by the list exactly once,
    // so no reference count changes.
    unsafe {
        let items: Vec<*mut ffi::PyObject> =
            order.iter().map(|&j| ffi::PyList_GET_ITEM(list, j as ffi::Py_ssize_t)).collect();
        for (i, item) in items.into_iter().enumerate() {
            ffi::PyList_SET_ITEM(list, i as ffi::Py_ssize_t, item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(values: &[f64], pcts: &[f64], bins: &[Option<f64>]) -> Stats {
        let v: Vec<f64> = sorted(values).into_iter().map(|p| p.0).collect();
        timer_stats(&v, pcts, bins)
    }

    #[test]
    fn one_to_ten_with_positive_negative_and_fractional_thresholds() {
        let values: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let s = stats(&values, &[90.0, -10.0, 99.9, 1.0], &[]);
        assert_eq!(s.pcts[0], Some(PctStats { count: 9, mean: 5.0, bound: 9.0, sum: 45.0, sum_squares: 285.0 }));
        assert_eq!(s.pcts[1], Some(PctStats { count: 1, mean: 10.0, bound: 10.0, sum: 10.0, sum_squares: 100.0 }));
        assert_eq!(s.pcts[2].map(|p| (p.count, p.bound, p.mean)), Some((10, 10.0, 5.5)));
        assert_eq!(s.pcts[3], None); // round(0.1) == 0 values: Etsy skips the threshold
        assert_eq!((s.upper, s.lower, s.sum, s.sum_squares, s.mean, s.median), (10.0, 1.0, 55.0, 385.0, 5.5, 5.5));
        assert_eq!(s.std, 8.25f64.sqrt());
    }

    #[test]
    fn rounding_is_javascript_math_round() {
        assert_eq!((js_round(4.5), js_round(2.5), js_round(-0.5)), (5.0, 3.0, 0.0));
        assert_eq!(stats(&[1.0, 2.0, 3.0, 4.0, 5.0], &[90.0], &[]).pcts[0].map(|p| (p.count, p.bound)), Some((5, 5.0)));
    }

    #[test]
    fn a_top_percentile_covering_every_value() {
        let s = stats(&[1.0, 2.0, 3.0], &[-100.0], &[]);
        assert_eq!(s.pcts[0].map(|p| (p.count, p.sum, p.bound)), Some((3, 6.0, 1.0)));
    }

    #[test]
    fn single_value() {
        let s = stats(&[7.0], &[90.0, 1.0], &[]);
        let one = Some(PctStats { count: 1, mean: 7.0, bound: 7.0, sum: 7.0, sum_squares: 49.0 });
        assert_eq!(s.pcts, vec![one, one]); // even a percentile that rounds to no value
        assert_eq!((s.median, s.std), (7.0, 0.0));
    }

    #[test]
    fn histogram_bins_take_values_below_each_bound() {
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(stats(&values, &[], &[Some(3.0), Some(7.5), None]).histogram, vec![2, 5, 3]);
        assert_eq!(stats(&values, &[], &[Some(5.0)]).histogram, vec![4]); // past the last bin: left out
        assert_eq!(stats(&values, &[], &[Some(5.0), Some(2.0)]).histogram, vec![4, 0]);
    }

    #[test]
    fn the_sort_is_stable_as_pythons() {
        assert_eq!(sorted(&[0.0, -0.0, -1.0]).iter().map(|p| p.1).collect::<Vec<_>>(), vec![2, 0, 1]);
        let s = stats(&[-0.0], &[90.0], &[]);
        assert!(s.sum.is_sign_negative() && s.mean.is_sign_negative()); // accumulate starts at the value
    }

    #[test]
    fn overflow_is_noticed() {
        let s = stats(&[1e308, 1e308], &[90.0], &[]);
        assert!(s.sum.is_infinite() && !s.finite());
        assert!(!stats(&[1e308, 1.0], &[90.0], &[]).finite()); // sum_squares overflows
        assert!(stats(&[1e150, 1.0], &[90.0], &[]).finite());
    }
}
