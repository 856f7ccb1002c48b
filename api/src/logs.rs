//! The wire form of task logs, shared by the API server, the agents and clients: the
//! query of a log read and the headers of its answer.

/// Which of a task's two output streams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogStream {
    /// The task's standard output.
    #[default]
    Stdout,
    /// The task's standard error.
    Stderr,
}

impl LogStream {
    /// The name in queries and in the agent's log directory: `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

impl std::str::FromStr for LogStream {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdout" => Ok(LogStream::Stdout),
            "stderr" => Ok(LogStream::Stderr),
            other => Err(format!("stream {other:?} is neither stdout nor stderr")),
        }
    }
}

/// What a log read asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogParams {
    /// Keep streaming as the task writes, until it ends.
    pub follow: bool,
    /// Only the last N lines.
    pub tail_lines: Option<u64>,
    /// Which stream.
    pub stream: LogStream,
}

impl LogParams {
    /// Reads the raw query values of a log read (`follow`, the tail count, `stream`);
    /// `tail_name` is what the tail parameter is called where it came from (the API's
    /// `tailLines`, the agent's `tail`), for the error message.
    ///
    /// # Errors
    /// A message naming the value that is not understood.
    pub fn from_query(
        follow: Option<&str>,
        tail: Option<&str>,
        stream: Option<&str>,
        tail_name: &str,
    ) -> Result<Self, String> {
        let follow = parse_follow(follow)?;
        let tail_lines = match tail {
            None | Some("") => None,
            Some(t) => {
                Some(t.parse::<u64>().map_err(|_| format!("{tail_name}={t:?} must be a number of lines (0 or more)"))?)
            }
        };
        let stream = match stream {
            None | Some("") => LogStream::Stdout,
            Some(s) => s.parse().map_err(|_| format!("stream={s:?} must be stdout or stderr"))?,
        };
        Ok(LogParams { follow, tail_lines, stream })
    }
}

/// A `follow` query value: absent, empty, `false` or `0` is no, `true` or `1` yes.
///
/// # Errors
/// Any other value, with a message naming it.
pub fn parse_follow(value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(format!("follow={other:?} must be true or false")),
    }
}

/// The headers of a log answer: plain text, never cached, never sniffed as anything
/// else (a task chooses the bytes).
pub const LOG_HEADERS: [(&str, &str); 3] = [
    ("content-type", "text/plain; charset=utf-8"),
    ("cache-control", "no-cache"),
    ("x-content-type-options", "nosniff"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_queries_parse_strictly_and_name_the_bad_value() {
        let p = LogParams::from_query(Some("true"), Some("5"), Some("stderr"), "tailLines").expect("parses");
        assert_eq!(p, LogParams { follow: true, tail_lines: Some(5), stream: LogStream::Stderr });
        assert_eq!(LogParams::from_query(None, None, None, "tail").expect("parses"), LogParams::default());
        let e = LogParams::from_query(None, Some("x"), None, "tailLines").expect_err("not a number");
        assert!(e.contains("tailLines=\"x\""), "{e}");
        assert!(LogParams::from_query(Some("yes"), None, None, "tail").is_err());
        assert!(LogParams::from_query(None, None, Some("stdin"), "tail").is_err());
    }
}
