//! Property tests (proptest; cargo-fuzz needs nightly) of the edges that parse what a client
//! sends: the syntax check (its pre-scan and the parser behind it) and the HTTP request
//! bodies. Nothing may panic, and every answer must be well formed. CI runs them with many
//! more cases (`PROPTEST_CASES`). The runner's report and the docker wrapper's frame have
//! theirs beside their parsers (`fuzz_` unit tests).

use code_execution_tool::server::request;
use code_execution_tool::syntax::{self, PythonVersion};
use proptest::prelude::*;

const PYTHON: PythonVersion = PythonVersion {
    major: 3,
    minor: 11,
};

/// Python-looking text: tokens that stress the pre-scan (brackets, strings, f-strings,
/// continuations, comments, indentation) in any order.
fn python_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("(".to_string()),
        Just(")".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("\"\"\"".to_string()),
        Just("f\"".to_string()),
        Just("rb'".to_string()),
        Just("\\".to_string()),
        Just("\n".to_string()),
        Just("    ".to_string()),
        Just("\t".to_string()),
        Just("#".to_string()),
        Just(":".to_string()),
        Just("def f".to_string()),
        Just("x = 1".to_string()),
        Just("lambda".to_string()),
        Just("\u{feff}".to_string()),
        "[a-z0-9 ]{1,8}",
        any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(token, 0..200).prop_map(|t| t.concat())
}

proptest! {
    #[test]
    fn fuzz_syntax_check_of_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Err(problem) = syntax::validate(&bytes, PYTHON) {
            prop_assert!(problem.line >= 1, "{problem:?}");
            prop_assert!(!problem.message.is_empty());
        }
    }

    #[test]
    fn fuzz_syntax_check_of_python_soup(text in python_soup()) {
        if let Err(problem) = syntax::validate(text.as_bytes(), PYTHON) {
            let lines = text.split(['\n', '\r']).count() + 1;
            prop_assert!(problem.line >= 1 && problem.line <= lines, "{problem:?} in {} lines", lines);
            prop_assert!(!problem.message.is_empty());
        }
    }

    #[test]
    fn fuzz_request_bodies_of_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = request::execute_body(&bytes, false);
        let _ = request::execute_body(&bytes, true);
        let _ = request::create_body(&bytes);
        let _ = request::patch_body(&bytes);
    }

    // JSON that is almost right: the contract's keys with values of any type, unknown keys,
    // nesting. Every refusal names what is wrong.
    #[test]
    fn fuzz_request_bodies_of_near_json(value in near_json()) {
        let bytes = value.to_string().into_bytes();
        for result in [
            request::execute_body(&bytes, false).map(|_| ()),
            request::execute_body(&bytes, true).map(|_| ()),
            request::create_body(&bytes).map(|_| ()),
            request::patch_body(&bytes).map(|_| ()),
        ] {
            if let Err(e) = result {
                prop_assert!(!e.0.is_empty());
            }
        }
    }
}

fn near_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(1e308)),
        Just(json!(-0.0)),
        "[ -~]{0,20}".prop_map(Value::from),
        Just(Value::from("print(1)")),
    ];
    let value = leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    proptest::collection::btree_map(key(), value, 0..8)
        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()))
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("code".to_string()),
        Just("stdin".to_string()),
        Just("sandbox".to_string()),
        Just("limits".to_string()),
        Just("memory_mb".to_string()),
        Just("cpu".to_string()),
        Just("timeout_s".to_string()),
        Just("pids".to_string()),
        Just("max_output_bytes".to_string()),
        "[a-z_]{1,12}",
    ]
}
