//! What one result response may cost the server: its JSON size is bounded per response
//! (`max_response_bytes`: the code's streams are cut to fit, and `truncated` says so), and the
//! bytes of all responses being sent at once share one budget (`response_memory`), held until
//! each body has gone out. Control bytes escape to six times their size in JSON, so the
//! caps on the streams alone bound nothing. Runs in the server process.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::result::ExecutionResult;

/// The budget is counted in units of this many bytes.
const UNIT: usize = 1024;
/// How long a response waits for budget before it is sent without its streams.
const BUDGET_WAIT: Duration = Duration::from_secs(30);

/// The response limits, validated at the edge.
#[derive(Debug, Clone, Copy)]
pub struct ResponseLimits {
    pub max_response_bytes: usize,
    pub response_memory: usize,
}

#[derive(Debug)]
pub(crate) struct ResponseBudget {
    limits: ResponseLimits,
    units: Arc<Semaphore>,
}

impl ResponseBudget {
    pub(crate) fn new(limits: ResponseLimits) -> ResponseBudget {
        ResponseBudget {
            limits,
            units: Arc::new(Semaphore::new(limits.response_memory.div_ceil(UNIT))),
        }
    }

    /// The 200 response of `result`: cut to the per-response cap, and sent once its bytes fit
    /// in the budget (after [`BUDGET_WAIT`], without its streams, `truncated` set).
    pub(crate) async fn respond(&self, mut result: ExecutionResult) -> Response {
        fit(&mut result, self.limits.max_response_bytes);
        let mut bytes = encode(&result);
        let units = bytes.len().div_ceil(UNIT).max(1) as u32;
        let permit = match tokio::time::timeout(
            BUDGET_WAIT,
            Arc::clone(&self.units).acquire_many_owned(units),
        )
        .await
        {
            Ok(Ok(permit)) => Some(permit),
            _ => {
                fit(&mut result, 0);
                bytes = encode(&result);
                None
            }
        };
        // The permit lives as long as the body: until the last byte has been written out.
        let body = futures_util::stream::once(async move {
            let _held = permit;
            Ok::<Bytes, std::convert::Infallible>(Bytes::from(bytes))
        });
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(body),
        )
            .into_response()
    }
}

fn encode(result: &ExecutionResult) -> Vec<u8> {
    serde_json::to_vec(result)
        .unwrap_or_else(|e| format!(r#"{{"error":"cannot encode the result: {e}"}}"#).into_bytes())
}

/// The length of `text` as a JSON string's contents (serde_json's escapes).
fn escaped_len(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum()
}

/// The longest prefix of `text` whose escaped length is at most `budget`.
fn cut_to(text: &mut String, budget: usize) {
    let mut used = 0;
    let mut end = text.len();
    for (i, c) in text.char_indices() {
        used += escaped_len(c.encode_utf8(&mut [0; 4]));
        if used > budget {
            end = i;
            break;
        }
    }
    text.truncate(end);
}

/// Cuts the streams of `result` so that its JSON is at most `max` bytes (beyond the fixed
/// fields, which are small); sets `truncated` if anything was cut.
fn fit(result: &mut ExecutionResult, max: usize) {
    let (out, err) = (escaped_len(&result.output), escaped_len(&result.stderr));
    let fixed = {
        let mut bare = result.clone_without_streams();
        bare.truncated = true;
        encode(&bare).len()
    };
    let room = max.saturating_sub(fixed);
    if out + err <= room {
        return;
    }
    // Each stream gets half the room; what one does not need goes to the other.
    let half = room / 2;
    let (out_room, err_room) = if out <= half {
        (out, room - out)
    } else if err <= half {
        (room - err, err)
    } else {
        (half, room - half)
    };
    cut_to(&mut result.output, out_room);
    cut_to(&mut result.stderr, err_room);
    result.truncated = true;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(output: &str, stderr: &str) -> ExecutionResult {
        let mut r = ExecutionResult::sandbox_error("native", String::new());
        r.conclude(None, None);
        r.output = output.into();
        r.stderr = stderr.into();
        r
    }

    #[test]
    fn escaped_lengths_are_serde_jsons() {
        let samples = [
            "plain",
            "\u{1}\u{2}\u{1f}",
            "\"\\\n\r\t\u{8}\u{c}",
            "é€😀",
            "\u{7f}",
        ];
        for text in samples {
            let json = serde_json::to_string(text).unwrap();
            assert_eq!(escaped_len(text), json.len() - 2, "{text:?}");
        }
    }

    #[test]
    fn a_response_is_cut_to_the_cap_and_says_so() {
        for (out, err) in [
            ("\u{1}".repeat(100_000), "\u{2}".repeat(100_000)),
            ("x".repeat(300_000), String::new()),
            ("é".repeat(10), "\u{1}".repeat(500_000)),
        ] {
            let mut r = result(&out, &err);
            fit(&mut r, 64 * 1024);
            let json = encode(&r);
            assert!(json.len() <= 64 * 1024, "{}", json.len());
            assert!(json.len() > 60 * 1024, "the room is used: {}", json.len());
            assert!(r.truncated);
            assert!(out.starts_with(&r.output) && err.starts_with(&r.stderr));
        }
        // Under the cap nothing changes.
        let mut r = result("small", "");
        fit(&mut r, 64 * 1024);
        assert_eq!((r.output.as_str(), r.truncated), ("small", false));
        // A cap below the fixed fields empties the streams.
        let mut r = result("some", "thing");
        fit(&mut r, 0);
        assert_eq!(
            (r.output.as_str(), r.stderr.as_str(), r.truncated),
            ("", "", true)
        );
    }
}
