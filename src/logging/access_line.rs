//! The access log's own line writer. A line per request is the one log line
//! the request path pays for on every request, so it is written here
//! directly into a reused buffer, with the timestamp's date and time of day
//! formatted once a second, instead of through `tracing-subscriber`'s
//! general formatter (which cost about 3 µs per request, 17 % of a proxied
//! request's CPU in `bench/proxy.sh log`). The lines look as that formatter
//! wrote them: the same keys in the same order, in JSON or as text; a JSON
//! line is that formatter's byte for byte but for the timestamp (strings
//! escaped and numbers written as serde_json does, tested below).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Writes each event it is given as one access log line.
pub(super) struct AccessLines {
    pub(super) sink: super::batches::AccessSink,
    pub(super) json: bool,
}

thread_local! {
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
    /// The last second formatted, and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl<S: Subscriber> Layer<S> for AccessLines {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        LINE.with_borrow_mut(|line| {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            write_line(line, event, self.json, now);
            // Lossy and never blocking: a full queue drops lines and counts
            // them (`switchyard_log_lines_dropped_total{sink="access"}`).
            self.sink.line(line.as_bytes());
        });
    }
}

/// `event` as one line, ended by a newline, in place of what `line` held.
fn write_line(line: &mut String, event: &Event<'_>, json: bool, now: Duration) {
    line.clear();
    let target = event.metadata().target();
    if json {
        line.push_str("{\"timestamp\":\"");
        timestamp(line, now.as_secs(), now.subsec_micros());
        line.push_str("\",\"level\":\"INFO\"");
        event.record(&mut Json { line });
        line.push_str(",\"target\":");
        json_str(line, target);
        line.push('}');
    } else {
        timestamp(line, now.as_secs(), now.subsec_micros());
        line.push_str("  INFO ");
        line.push_str(target);
        line.push(':');
        event.record(&mut Text { line });
    }
    line.push('\n');
}

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`, in UTC.
fn timestamp(line: &mut String, secs: u64, micros: u32) {
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != secs {
            *second = secs;
            text.clear();
            let (y, m, d) = crate::calendar::civil_date((secs / 86_400) as i64);
            let t = secs % 86_400;
            let _ = write!(
                text,
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
                t / 3600,
                t / 60 % 60,
                t % 60
            );
        }
        line.push_str(text);
    });
    // Six digits by hand: `write!` with a width cost 190 instructions a line.
    let mut fraction = *b".000000Z";
    let mut left = micros.min(999_999);
    for digit in fraction[1..7].iter_mut().rev() {
        *digit = b'0' + (left % 10) as u8;
        left /= 10;
    }
    line.push_str(std::str::from_utf8(&fraction).unwrap_or(".000000Z"));
}

/// A JSON string, escaped, in quotes.
fn json_str(line: &mut String, s: &str) {
    line.push('"');
    json_escaped(line, s);
    line.push('"');
}

/// How serde_json (and so `tracing-subscriber`'s JSON formatter) escapes
/// each byte: 0 for none, `u` for `\u00XX`, else the letter after `\`.
static ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// `s` escaped for the inside of a JSON string. Runs of plain bytes are
/// copied whole: most values (paths, names) have nothing to escape.
fn json_escaped(line: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = ESCAPES[b as usize];
        if escape == 0 {
            continue;
        }
        // An escaped byte is ASCII, so `i` is on a character boundary.
        line.push_str(&s[start..i]);
        if escape == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            line.push_str("\\u00");
            line.push(HEX[(b >> 4) as usize] as char);
            line.push(HEX[(b & 0xf) as usize] as char);
        } else {
            line.push('\\');
            line.push(escape as char);
        }
        start = i + 1;
    }
    line.push_str(&s[start..]);
}

/// Debug output written straight into the line, escaped as it comes,
/// instead of into a string of its own first.
struct Escaping<'a>(&'a mut String);

impl std::fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        json_escaped(self.0, s);
        Ok(())
    }
}

/// Fields as JSON members: `,"name":value`, numbers as serde_json writes
/// them (`itoa`, and `ryu` for floats), so that a line is byte for byte
/// what `tracing-subscriber`'s JSON formatter would write (tested below).
struct Json<'a> {
    line: &'a mut String,
}

impl Json<'_> {
    fn key(&mut self, field: &Field) {
        let name = field.name();
        // Field names are Rust identifiers, with nothing to escape.
        if name.bytes().all(|b| ESCAPES[b as usize] == 0) {
            self.line.push_str(",\"");
            self.line.push_str(name);
            self.line.push_str("\":");
        } else {
            self.line.push(',');
            json_str(self.line, name);
            self.line.push(':');
        }
    }
}

impl Visit for Json<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // Display values (`%x`) arrive here too.
        self.key(field);
        self.line.push('"');
        let _ = write!(Escaping(self.line), "{value:?}");
        self.line.push('"');
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        json_str(self.line, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.line.push_str(itoa::Buffer::new().format(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.line.push_str(itoa::Buffer::new().format(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let mut buffer = ryu::Buffer::new();
            let text = buffer.format_finite(value);
            // serde_json writes a positive exponent with its sign: `1e+21`.
            match text.split_once('e') {
                Some((digits, exp)) if !exp.starts_with('-') => {
                    self.line.push_str(digits);
                    self.line.push_str("e+");
                    self.line.push_str(exp);
                }
                _ => self.line.push_str(text),
            }
        } else {
            self.line.push_str("null");
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.push_str(if value { "true" } else { "false" });
    }
}

/// Fields as text: the message, then ` name=value`.
struct Text<'a> {
    line: &'a mut String,
}

impl Visit for Text<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.line, " {value:?}");
        } else {
            let _ = write!(self.line, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.line, " {value}");
        } else if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == '"' || c == '=') {
            let _ = write!(self.line, " {}={value:?}", field.name());
        } else {
            let _ = write!(self.line, " {}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        let mut line = String::new();
        timestamp(&mut line, 1_796_052_419, 42);
        assert_eq!(line, "2026-11-30T15:26:59.000042Z");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut line = String::new();
        json_str(&mut line, "a\"b\\c\nd\u{1}é\u{8}\u{c}\u{1f}\u{7f}");
        assert_eq!(line, "\"a\\\"b\\\\c\\nd\\u0001é\\b\\f\\u001f\u{7f}\"");
        let parsed: String = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed, "a\"b\\c\nd\u{1}é\u{8}\u{c}\u{1f}\u{7f}");
    }

    /// Gives each event to [`write_line`], as the access log's layer does.
    struct Lines(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Lines {
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let mut line = String::new();
            write_line(&mut line, event, true, Duration::ZERO);
            self.0.lock().unwrap().push(line);
        }
    }

    #[derive(Clone, Default)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Written {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The line less its timestamp's value, which the two take apart.
    fn untimed(line: &str) -> String {
        let rest = line.split_once("\",\"level\"").expect("a level after the timestamp").1;
        format!("{{\"timestamp\":\"…\",\"level\"{rest}")
    }

    /// A JSON access line is byte for byte what `tracing-subscriber`'s
    /// JSON formatter (as the log's own lines use it) writes for the same
    /// event: keys in order, strings escaped and numbers written alike.
    #[test]
    fn json_lines_are_what_tracing_subscribers_formatter_writes() {
        use tracing_subscriber::layer::SubscriberExt;
        let ours = Arc::new(Mutex::new(Vec::new()));
        let theirs = Written::default();
        let written = theirs.clone();
        let subscriber = tracing_subscriber::registry().with(Lines(ours.clone())).with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_writer(move || written.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let tags: Vec<&str> = vec!["blocked \"bots\"", "é"];
            tracing::info!(
                target: "switchyard::access",
                method = "GET",
                path = "/a\"b\\c\u{1}\u{8}\u{c}\t\né/\u{7f}",
                route = "default",
                status = 200u16,
                latency_ms = std::hint::black_box(0.283114567f64) * 1000.0,
                slow_ms = 12345.678,
                tiny_ms = 1.5e-7,
                huge_ms = 1.0e21,
                none_ms = f64::NAN,
                bytes = u64::MAX,
                offset = -42i64,
                complete = true,
                shown = %"line\nbreak",
                tags = ?tags,
                "request {}",
                "\"quoted\""
            );
        });
        let ours = ours.lock().unwrap().clone();
        let theirs = String::from_utf8(theirs.0.lock().unwrap().clone()).unwrap();
        assert_eq!(ours.len(), 1);
        assert_eq!(untimed(&ours[0]), untimed(&theirs));
        // And it is JSON, with the values put in.
        let v: serde_json::Value = serde_json::from_str(&ours[0]).unwrap();
        assert_eq!(v["bytes"], u64::MAX);
        assert_eq!(v["tiny_ms"], 1.5e-7);
        assert_eq!(v["none_ms"], serde_json::Value::Null);
        assert_eq!(v["tags"], r#"["blocked \"bots\"", "é"]"#);
    }
}
