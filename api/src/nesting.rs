//! How deeply a JSON or YAML document nests, checked before it is decoded.
//!
//! Decoding a YAML document nested 100,000 levels deep (`[[[[…`) takes a minute of CPU:
//! the YAML scanner's work per token grows with the depth, and the whole document is
//! parsed before the decoder's own recursion limit can refuse it. Here the YAML parser's
//! events are read one at a time and the check stops at the first level past the limit,
//! so a refusal costs as much as the first few kilobytes of the document. Nothing a
//! Corral object holds comes near the limit.

use std::mem::MaybeUninit;

use unsafe_libyaml_norway as unsafe_yaml;

/// Deepest nesting of objects and arrays (mappings and sequences) accepted.
pub const MAX_NESTING_DEPTH: usize = 100;

/// A document nested deeper than allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "it nests objects and arrays more than {max} levels deep (at line {line}, column {column}); flatten the document"
)]
pub struct TooDeep {
    /// The limit.
    pub max: usize,
    /// Where the first level past it opens (1-based).
    pub line: usize,
    /// Its column (1-based).
    pub column: usize,
}

/// Checks that the JSON document `input` nests at most `max` levels. Malformed JSON
/// passes: the decoder reports it.
pub fn check_json(input: &[u8], max: usize) -> Result<(), TooDeep> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let (mut line, mut line_start) = (1usize, 0usize);
    for (i, &b) in input.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(TooDeep { max, line, column: i - line_start + 1 });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'\n' => (line, line_start) = (line + 1, i + 1),
            _ => {}
        }
    }
    Ok(())
}

/// Checks that every document of the YAML stream `input` nests at most `max` levels,
/// reading it with the same parser the decoder uses. Malformed YAML passes up to its
/// first error: the decoder reports it.
pub fn check_yaml(input: &[u8], max: usize) -> Result<(), TooDeep> {
    // The parser refers to itself once given its input, so it lives on the heap and
    // never moves.
    let mut parser: Box<MaybeUninit<unsafe_yaml::yaml_parser_t>> = Box::new(MaybeUninit::uninit());
    let p = parser.as_mut_ptr();
    // SAFETY: `p` points to memory owned by `parser`, which outlives every use below;
    // `input` outlives the parser, which is deleted before this function returns.
    unsafe {
        if unsafe_yaml::yaml_parser_initialize(p).fail {
            return Ok(());
        }
        unsafe_yaml::yaml_parser_set_encoding(p, unsafe_yaml::YAML_UTF8_ENCODING);
        unsafe_yaml::yaml_parser_set_input_string(p, input.as_ptr(), input.len() as u64);
    }
    let mut depth = 0usize;
    let outcome = loop {
        let mut event = MaybeUninit::<unsafe_yaml::yaml_event_t>::uninit();
        let e = event.as_mut_ptr();
        // SAFETY: a successful `yaml_parser_parse` initializes `*e`, which is read
        // and then deleted once; a failed one leaves nothing to delete.
        let (kind, mark) = unsafe {
            if unsafe_yaml::yaml_parser_parse(p, e).fail {
                break Ok(());
            }
            let seen = ((*e).type_, (*e).start_mark);
            unsafe_yaml::yaml_event_delete(e);
            seen
        };
        match kind {
            unsafe_yaml::YAML_SEQUENCE_START_EVENT | unsafe_yaml::YAML_MAPPING_START_EVENT => {
                depth += 1;
                if depth > max {
                    break Err(TooDeep { max, line: mark.line as usize + 1, column: mark.column as usize + 1 });
                }
            }
            unsafe_yaml::YAML_SEQUENCE_END_EVENT | unsafe_yaml::YAML_MAPPING_END_EVENT => {
                depth = depth.saturating_sub(1)
            }
            unsafe_yaml::YAML_STREAM_END_EVENT => break Ok(()),
            _ => {}
        }
    };
    // SAFETY: initialized above and not used after this.
    unsafe { unsafe_yaml::yaml_parser_delete(p) };
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, close: &str, n: usize) -> String {
        format!("{}{}", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn json_within_the_limit_passes_and_deeper_json_is_refused_where_it_goes_too_deep() {
        assert_eq!(check_json(nested("[", "]", 100).as_bytes(), 100), Ok(()));
        assert_eq!(check_json(nested("{\"a\":", "}", 3).as_bytes(), 3), Ok(()));
        let err = check_json(format!("{{\n  \"a\": {}", nested("[", "]", 100)).as_bytes(), 100);
        assert_eq!(err, Err(TooDeep { max: 100, line: 2, column: 107 }));
        // Brackets in strings, escaped quotes included, are text.
        assert_eq!(check_json(br#"{"a": "[[[[\"[[[[", "b": ["]]]"]}"#, 2), Ok(()));
    }

    #[test]
    fn yaml_flow_and_block_nesting_are_both_counted() {
        assert_eq!(check_yaml(format!("a: {}", nested("[", "]", 99)).as_bytes(), 100), Ok(()));
        let err = check_yaml(format!("a: {}", nested("[", "]", 100)).as_bytes(), 100);
        assert_eq!(err, Err(TooDeep { max: 100, line: 1, column: 103 }));
        let block: String =
            (0..5).map(|i| format!("{}k{i}:\n", "  ".repeat(i))).collect::<String>() + "          v: 1\n";
        assert_eq!(check_yaml(block.as_bytes(), 6), Ok(()));
        assert!(check_yaml(block.as_bytes(), 5).is_err());
    }

    #[test]
    fn yaml_text_that_looks_nested_is_not() {
        let doc = "a: \"[[[[[[\"\nb: '{{{{{{'\nc: |\n  [[[[[[[[\nd: x [[[[[[ # [[[[\n";
        assert_eq!(check_yaml(doc.as_bytes(), 1), Ok(()));
    }

    #[test]
    fn every_document_of_a_stream_is_checked_and_malformed_yaml_is_left_to_the_decoder() {
        let stream = format!("a: 1\n---\nb: {}\n", nested("[", "]", 5));
        assert!(check_yaml(stream.as_bytes(), 4).is_err());
        assert_eq!(check_yaml(stream.as_bytes(), 6), Ok(()));
        assert_eq!(check_yaml(b"a: [1, 2\nb: ]]]", 2), Ok(()), "a syntax error is the decoder's to report");
    }

    #[test]
    fn a_hundred_thousand_levels_are_refused_at_once() {
        // Unbounded, this is a minute of CPU; refused, it is the first kilobyte.
        let deep = format!("a: {}", nested("[", "]", 100_000));
        assert!(check_yaml(deep.as_bytes(), MAX_NESTING_DEPTH).is_err());
        assert!(check_json(nested("[", "]", 100_000).as_bytes(), MAX_NESTING_DEPTH).is_err());
    }
}
