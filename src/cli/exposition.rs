//! The Prometheus text exposition format (0.0.4) on top of `prometheus-client`'s OpenMetrics
//! encoder: escaped label values, and the line rewriting node_exporter's textfile collector and
//! `promtool check metrics` need.

use std::fmt;
use std::io::{self, Write};

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

/// A label value, escaped as the text format requires (`\`, `"` and newline).
/// `prometheus-client` writes label values verbatim.
#[derive(Clone, Debug)]
pub struct Escaped(pub String);

impl EncodeLabelValue for Escaped {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        use fmt::Write as _;
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Adapts `prometheus-client`'s OpenMetrics text to the Prometheus text format 0.0.4 that
/// node_exporter's textfile collector and `promtool check metrics` read: a counter's HELP and
/// TYPE lines name its `_total` samples, and there is no `# EOF` line.
pub struct PrometheusText<'w, W: Write> {
    /// The first write error, which `fmt::Error` cannot carry.
    pub error: Option<io::Error>,
    out: &'w mut W,
    line: String,
    held_help: Option<String>,
}

impl<'w, W: Write> PrometheusText<'w, W> {
    /// Wraps `out`.
    pub fn new(out: &'w mut W) -> Self {
        Self {
            out,
            line: String::new(),
            held_help: None,
            error: None,
        }
    }

    fn emit(&mut self, line: &str) -> Result<(), fmt::Error> {
        self.out.write_all(line.as_bytes()).map_err(|e| {
            self.error = Some(e);
            fmt::Error
        })
    }

    fn end_line(&mut self) -> Result<(), fmt::Error> {
        let line = std::mem::take(&mut self.line);
        if line == "# EOF\n" {
            return Ok(());
        }
        if line.starts_with("# HELP ") {
            if let Some(held) = self.held_help.replace(line) {
                self.emit(&held)?;
            }
            return Ok(());
        }
        let held = self.held_help.take();
        match line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_suffix(" counter\n"))
        {
            Some(name) => {
                let total = format!("{name}_total");
                if let Some(help) = held {
                    let text = help.trim_start_matches("# HELP ").trim_start_matches(name);
                    self.emit(&format!("# HELP {total}{text}"))?;
                }
                self.emit(&format!("# TYPE {total} counter\n"))
            }
            None => {
                if let Some(help) = held {
                    self.emit(&help)?;
                }
                self.emit(&line)
            }
        }
    }

    /// Writes what is still held and flushes.
    pub fn finish(mut self) -> io::Result<()> {
        if let Some(held) = self.held_help.take() {
            self.out.write_all(held.as_bytes())?;
        }
        self.out.write_all(self.line.as_bytes())?;
        self.out.flush()
    }
}

impl<W: Write> fmt::Write for PrometheusText<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(i) = rest.find('\n') {
            self.line.push_str(&rest[..=i]);
            self.end_line()?;
            rest = &rest[i + 1..];
        }
        self.line.push_str(rest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fmt::Write as _;
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::gauge::ConstGauge;
    use prometheus_client::registry::Registry;
    #[test]
    fn counters_name_their_total_samples_and_eof_is_dropped() {
        let mut out = Vec::new();
        let mut text = PrometheusText::new(&mut out);
        write!(
            text,
            "# HELP a_crashes Crashes.\n# TYPE a_crashes counter\na_crashes_total 3\n\
             # HELP b Gauge.\n# TYPE b gauge\nb 1\n# EOF\n"
        )
        .unwrap();
        text.finish().unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "# HELP a_crashes_total Crashes.\n# TYPE a_crashes_total counter\n\
             a_crashes_total 3\n# HELP b Gauge.\n# TYPE b gauge\nb 1\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut registry = Registry::default();
        #[derive(Debug)]
        struct One;
        impl Collector for One {
            fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
                let g = ConstGauge::new(1i64);
                let mut m = encoder.encode_descriptor("x", "X.", None, g.metric_type())?;
                let labels = [("v", Escaped("a\\b\"c\nd".to_owned()))];
                g.encode(m.encode_family(&labels)?)
            }
        }
        registry.register_collector(Box::new(One));
        let mut s = String::new();
        prometheus_client::encoding::text::encode_registry(&mut s, &registry).unwrap();
        assert!(s.contains(r#"x{v="a\\b\"c\nd"} 1"#), "{s}");
    }
}
