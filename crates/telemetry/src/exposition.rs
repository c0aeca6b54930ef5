//! The two exposition formats of `/metrics`, and which one a scraper asked for.
//!
//! Prometheus text format 0.0.4 is the default. A scraper that sends
//! `Accept: application/openmetrics-text` (Prometheus itself does) gets
//! OpenMetrics 1.0: counters are typed by their family name without the
//! `_total` suffix, `unknown` replaces `untyped`, bucket bounds are written
//! as floats (`le="1.0"`), and the body ends with `# EOF`.

use std::fmt::Write;

use prometheus::proto::{Metric, MetricFamily, MetricType};

/// A `/metrics` body format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposition {
    /// `text/plain; version=0.0.4`.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Exposition {
    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an `Accept` header prefers: OpenMetrics when it is listed
    /// with a weight at least that of every other acceptable type, the
    /// Prometheus text format otherwise (including no header and `*/*`).
    pub fn negotiate(accept: Option<&str>) -> Exposition {
        let Some(accept) = accept else {
            return Exposition::Prometheus;
        };
        let mut openmetrics: Option<f32> = None;
        let mut others: f32 = 0.0;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if media == "application/openmetrics-text" {
                openmetrics = Some(openmetrics.map_or(q, |o| o.max(q)));
            } else if !media.is_empty() {
                others = others.max(q);
            }
        }
        match openmetrics {
            Some(q) if q > 0.0 && q >= others => Exposition::OpenMetrics,
            _ => Exposition::Prometheus,
        }
    }
}

/// Encodes `families` as OpenMetrics 1.0 text.
pub fn encode_openmetrics(families: &[MetricFamily]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    for mf in families {
        // A family with no series yet still gets its metadata lines.
        let name = mf.name();
        let kind = mf.get_field_type();
        // An OpenMetrics counter family is named without its `_total` suffix,
        // which every sample then carries. A counter not named so is exposed
        // as `unknown` under its own name rather than renamed.
        let (family, type_name) = match kind {
            MetricType::COUNTER => match name.strip_suffix("_total") {
                Some(base) => (base, "counter"),
                None => (name, "unknown"),
            },
            MetricType::GAUGE => (name, "gauge"),
            MetricType::HISTOGRAM => (name, "histogram"),
            MetricType::SUMMARY => (name, "summary"),
            MetricType::UNTYPED => (name, "unknown"),
        };
        let _ = writeln!(out, "# TYPE {family} {type_name}");
        if !mf.help().is_empty() {
            let _ = writeln!(out, "# HELP {family} {}", escape(mf.help()));
        }
        for m in mf.get_metric() {
            match kind {
                MetricType::COUNTER => {
                    sample(&mut out, name, "", m, None, m.get_counter().get_value())
                }
                MetricType::GAUGE => sample(&mut out, name, "", m, None, m.get_gauge().get_value()),
                #[allow(deprecated)] // the only accessor of untyped values
                MetricType::UNTYPED => {
                    sample(&mut out, name, "", m, None, m.get_untyped().get_value())
                }
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    let mut inf_seen = false;
                    for b in h.get_bucket() {
                        let bound = b.upper_bound();
                        inf_seen |= bound == f64::INFINITY;
                        let le = float(bound);
                        let count = b.cumulative_count() as f64;
                        sample(&mut out, name, "_bucket", m, Some(("le", &le)), count);
                    }
                    if !inf_seen {
                        let count = h.get_sample_count() as f64;
                        sample(&mut out, name, "_bucket", m, Some(("le", "+Inf")), count);
                    }
                    sample(&mut out, name, "_sum", m, None, h.get_sample_sum());
                    sample(
                        &mut out,
                        name,
                        "_count",
                        m,
                        None,
                        h.get_sample_count() as f64,
                    );
                }
                MetricType::SUMMARY => {
                    let s = m.get_summary();
                    for q in s.get_quantile() {
                        let quantile = float(q.quantile());
                        sample(
                            &mut out,
                            name,
                            "",
                            m,
                            Some(("quantile", &quantile)),
                            q.value(),
                        );
                    }
                    sample(&mut out, name, "_sum", m, None, s.sample_sum());
                    sample(&mut out, name, "_count", m, None, s.sample_count() as f64);
                }
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    m: &Metric,
    extra: Option<(&str, &str)>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    let labels = m.get_label();
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        let pairs = labels
            .iter()
            .map(|l| (l.name(), l.value()))
            .chain(extra)
            .enumerate();
        for (i, (k, v)) in pairs {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v));
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&float(value));
    if m.timestamp_ms() != 0 {
        // OpenMetrics timestamps are in seconds.
        let _ = write!(out, " {}", m.timestamp_ms() as f64 / 1000.0);
    }
    out.push('\n');
}

/// A float as OpenMetrics writes it: `+Inf`, `-Inf`, `NaN`, and a decimal
/// point on whole numbers (`1.0`), so bucket bounds read as floats.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        v.to_string()
    }
}

/// Escapes `\`, newline and `"` in help text and label values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

    #[test]
    fn prometheus_asks_for_openmetrics_and_gets_it() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Exposition::negotiate(Some(prom)), Exposition::OpenMetrics);
        assert_eq!(Exposition::negotiate(None), Exposition::Prometheus);
        assert_eq!(Exposition::negotiate(Some("*/*")), Exposition::Prometheus);
        assert_eq!(
            Exposition::negotiate(Some("text/plain;version=0.0.4")),
            Exposition::Prometheus
        );
        // Listed but weighed below the text format.
        assert_eq!(
            Exposition::negotiate(Some("application/openmetrics-text;q=0.3, text/plain;q=0.9")),
            Exposition::Prometheus
        );
        assert_eq!(
            Exposition::negotiate(Some("application/openmetrics-text;q=0")),
            Exposition::Prometheus
        );
    }

    #[test]
    fn openmetrics_body_types_counters_by_family_and_ends_with_eof() {
        let r = Registry::new();
        let c = IntCounterVec::new(
            Opts::new("sf_things_total", "Things, \"quoted\"\nand broken."),
            &["kind"],
        )
        .unwrap();
        r.register(Box::new(c.clone())).unwrap();
        c.with_label_values(&["a\"b"]).inc_by(3);
        let g = IntGauge::new("sf_level", "A level.").unwrap();
        r.register(Box::new(g.clone())).unwrap();
        g.set(-2);
        let h = prometheus::Histogram::with_opts(
            HistogramOpts::new("sf_wait_seconds", "Waits.").buckets(vec![0.5, 1.0]),
        )
        .unwrap();
        r.register(Box::new(h.clone())).unwrap();
        h.observe(0.7);

        let body = encode_openmetrics(&r.gather());
        let expected = "\
# TYPE sf_level gauge
# HELP sf_level A level.
sf_level -2.0
# TYPE sf_things counter
# HELP sf_things Things, \\\"quoted\\\"\\nand broken.
sf_things_total{kind=\"a\\\"b\"} 3.0
# TYPE sf_wait_seconds histogram
# HELP sf_wait_seconds Waits.
sf_wait_seconds_bucket{le=\"0.5\"} 0.0
sf_wait_seconds_bucket{le=\"1.0\"} 1.0
sf_wait_seconds_bucket{le=\"+Inf\"} 1.0
sf_wait_seconds_sum 0.7
sf_wait_seconds_count 1.0
# EOF
";
        assert_eq!(body, expected);
    }
}
