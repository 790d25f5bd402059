//! Python syntax validation, parse-only and in-process: nothing the code says is ever executed here.
//!
//! Owns the guard rails around the ruff parser: a NUL / UTF-8 check, a pre-scan that mirrors
//! CPython's tokenizer limits (200 nested brackets, 100 indentation levels), and parsing plus
//! dropping the tree on a dedicated thread whose stack is sized to the input, because dropping a
//! deeply nested tree recurses once per level and would otherwise abort the whole process.
//! Runs in the host process, before any backend.

use std::fmt;

use ruff_python_ast::PythonVersion as RuffVersion;
use ruff_python_parser::{Mode, ParseOptions};
use serde::Serialize;

/// CPython's tokenizer refuses the 201st nested open bracket (`MAXLEVEL`).
pub const MAX_BRACKET_NESTING: usize = 200;
/// CPython's tokenizer refuses an indentation stack 100 levels deep (`MAXINDENT`).
pub const MAX_INDENT_LEVELS: usize = 100;

/// Stack reserved for the parse thread before accounting for the input: covers ordinary code.
const BASE_PARSE_STACK: usize = 16 * 1024 * 1024;
/// Stack per source byte. Dropping a tree costs about 160 bytes of stack per nesting level in an
/// optimised build (measured: 100,000 levels of `-` or `1+` need 16 MiB) and several times that
/// in a debug build; one level needs at least one byte of source. The reservation is virtual
/// memory: only the pages a deep tree really touches are ever committed.
const PARSE_STACK_PER_BYTE: usize = 1024;

/// A Python language version (major 3), the target that syntax is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PythonVersion {
    pub major: u8,
    pub minor: u8,
}

impl PythonVersion {
    /// The oldest and newest versions the parser knows the grammar of.
    pub const OLDEST: PythonVersion = PythonVersion { major: 3, minor: 7 };
    pub const NEWEST: PythonVersion = PythonVersion {
        major: 3,
        minor: 14,
    };

    /// Parses `3.11` (a patch part, `3.11.7`, is accepted and ignored).
    pub fn parse(text: &str) -> Option<PythonVersion> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        if let Some(patch) = parts.next() {
            // Accept release suffixes such as `7rc1` but require a leading digit.
            if !patch.starts_with(|c: char| c.is_ascii_digit()) {
                return None;
            }
        }
        Some(PythonVersion { major, minor })
    }

    /// The nearest version the parser supports: syntax newer than the parser is checked as
    /// the newest it knows, older as the oldest.
    fn to_ruff(self) -> RuffVersion {
        let clamped = self.clamp(Self::OLDEST, Self::NEWEST);
        RuffVersion {
            major: clamped.major,
            minor: clamped.minor,
        }
    }
}

impl fmt::Display for PythonVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Why code was rejected, with a 1-based position in characters, as CPython reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyntaxProblem {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for SyntaxProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (line {}, column {})",
            self.message, self.line, self.column
        )
    }
}

/// Checks `source` as a Python module for `target`. `Ok(())` means it parses.
pub fn validate(source: &[u8], target: PythonVersion) -> Result<(), SyntaxProblem> {
    if let Some(offset) = source.iter().position(|&b| b == 0) {
        let (line, column) = position_in_bytes(source, offset);
        return Err(SyntaxProblem {
            message: "source code cannot contain null bytes".into(),
            line,
            column,
        });
    }
    check_declared_encoding(source)?;
    let lossy;
    let text = match std::str::from_utf8(source) {
        Ok(text) => text,
        // PEP 263: a coding declaration lets the file use another encoding. Only syntax is
        // checked here, so non-UTF-8 bytes (which can only sit in strings and comments) are
        // replaced rather than decoded; the interpreter decodes them for real.
        Err(_) if declared_encoding(source).is_some_and(|e| !is_utf8_name(&e)) => {
            lossy = String::from_utf8_lossy(source);
            &lossy
        }
        Err(err) => {
            let (line, column) = position_in_bytes(source, err.valid_up_to());
            let byte = source[err.valid_up_to()];
            return Err(SyntaxProblem {
                message: format!(
                    "(unicode error) 'utf-8' codec can't decode byte {byte:#04x}: invalid UTF-8"
                ),
                line,
                column,
            });
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let unclosed = prescan_nesting(text)?;
    parse_on_big_stack(text, target).map_err(|problem| {
        // CPython blames the innermost bracket still open at the end of the file when the
        // parser fails on a later line than that bracket; ruff blames the later token.
        match unclosed.map(|(bracket, offset)| (bracket, position_in_text(text, offset))) {
            Some((bracket, (line, column))) if problem.line > line => SyntaxProblem {
                message: format!("'{}' was never closed", bracket as char),
                line,
                column,
            },
            _ => problem,
        }
    })
}

/// The encoding named by a PEP 263 declaration in the first two lines, lower-cased.
fn declared_encoding(source: &[u8]) -> Option<String> {
    for line in source.split(|&b| b == b'\n').take(2) {
        let text = String::from_utf8_lossy(line);
        let trimmed = text.trim_start_matches(['\u{feff}', ' ', '\t', '\x0c']);
        if !trimmed.starts_with('#') {
            // Only a comment line may declare; a first line of code ends the search.
            if trimmed.trim().is_empty() {
                continue;
            }
            return None;
        }
        if let Some(at) = trimmed.find("coding") {
            let rest = &trimmed[at + "coding".len()..];
            if let Some(rest) = rest.strip_prefix([':', '=']) {
                let name: String = rest
                    .trim_start_matches([' ', '\t'])
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    .collect();
                if !name.is_empty() {
                    return Some(name.to_ascii_lowercase());
                }
            }
        }
    }
    None
}

/// Refuses what CPython's tokenizer refuses about a coding declaration: an encoding it does not
/// know, and anything but UTF-8 after a UTF-8 byte-order mark.
fn check_declared_encoding(source: &[u8]) -> Result<(), SyntaxProblem> {
    let Some(name) = declared_encoding(source) else {
        return Ok(());
    };
    let line = source
        .split(|&b| b == b'\n')
        .position(|l| String::from_utf8_lossy(l).contains("coding"))
        .map_or(1, |i| i + 1);
    let problem = |message: String| SyntaxProblem {
        message,
        line,
        column: 1,
    };
    let normal = name.replace('_', "-");
    if source.starts_with(b"\xef\xbb\xbf") && !(normal == "utf-8" || normal.starts_with("utf-8-")) {
        return Err(problem(format!("encoding problem: {name} with BOM")));
    }
    if !is_known_encoding(&normal) {
        return Err(problem(format!("unknown encoding: {name}")));
    }
    Ok(())
}

/// Python's standard codecs that can decode source text, by name and common alias,
/// lower-cased with `_` written as `-`.
fn is_known_encoding(normal: &str) -> bool {
    const KNOWN: &[&str] = &[
        "ascii",
        "us-ascii",
        "646",
        "utf-8",
        "utf8",
        "u8",
        "utf",
        "cp65001",
        "utf-8-sig",
        "latin-1",
        "latin1",
        "latin",
        "l1",
        "iso-8859-1",
        "iso8859-1",
        "8859",
        "cp819",
        "iso-8859-2",
        "iso-8859-3",
        "iso-8859-4",
        "iso-8859-5",
        "iso-8859-6",
        "iso-8859-7",
        "iso-8859-8",
        "iso-8859-9",
        "iso-8859-10",
        "iso-8859-11",
        "iso-8859-13",
        "iso-8859-14",
        "iso-8859-15",
        "iso-8859-16",
        "iso8859-2",
        "iso8859-15",
        "latin2",
        "latin9",
        "l2",
        "cp037",
        "cp273",
        "cp424",
        "cp437",
        "cp500",
        "cp720",
        "cp737",
        "cp775",
        "cp850",
        "cp852",
        "cp855",
        "cp856",
        "cp857",
        "cp858",
        "cp860",
        "cp861",
        "cp862",
        "cp863",
        "cp864",
        "cp865",
        "cp866",
        "cp869",
        "cp874",
        "cp875",
        "cp932",
        "cp949",
        "cp950",
        "cp1006",
        "cp1026",
        "cp1125",
        "cp1140",
        "cp1250",
        "cp1251",
        "cp1252",
        "cp1253",
        "cp1254",
        "cp1255",
        "cp1256",
        "cp1257",
        "cp1258",
        "windows-1250",
        "windows-1251",
        "windows-1252",
        "windows-1253",
        "windows-1254",
        "windows-1255",
        "windows-1256",
        "windows-1257",
        "windows-1258",
        "koi8-r",
        "koi8-t",
        "koi8-u",
        "kz1048",
        "mac-cyrillic",
        "mac-greek",
        "mac-iceland",
        "mac-latin2",
        "mac-roman",
        "mac-turkish",
        "macroman",
        "ptcp154",
        "big5",
        "big5hkscs",
        "gb2312",
        "gbk",
        "gb18030",
        "hz",
        "euc-jp",
        "euc-jis-2004",
        "euc-jisx0213",
        "euc-kr",
        "iso-2022-jp",
        "iso-2022-jp-1",
        "iso-2022-jp-2",
        "iso-2022-jp-2004",
        "iso-2022-jp-3",
        "iso-2022-jp-ext",
        "iso-2022-kr",
        "johab",
        "shift-jis",
        "sjis",
        "shift-jis-2004",
        "shift-jisx0213",
        "cp1361",
        "ms932",
        "ms936",
        "ms949",
        "ms950",
        "tis-620",
        "tis620",
        "hp-roman8",
        "roman8",
        "utf-16",
        "utf-16-be",
        "utf-16-le",
        "utf-32",
        "utf-32-be",
        "utf-32-le",
        "utf-7",
        "raw-unicode-escape",
        "unicode-escape",
        "palmos",
        "mbcs",
        "dbcs",
        "oem",
        "ansi",
    ];
    KNOWN.contains(&normal) || normal.starts_with("utf-8-") || normal.starts_with("iso8859-")
}

fn is_utf8_name(name: &str) -> bool {
    matches!(
        name.replace('_', "-").as_str(),
        "utf-8" | "utf8" | "utf-8-sig"
    ) || name.starts_with("utf-8-")
}

/// Parses and drops the tree on a thread whose stack grows with the input.
fn parse_on_big_stack(text: &str, target: PythonVersion) -> Result<(), SyntaxProblem> {
    let stack = BASE_PARSE_STACK.saturating_add(text.len().saturating_mul(PARSE_STACK_PER_BYTE));
    let owned = text.to_owned();
    let handle = std::thread::Builder::new()
        .name("code-exec-parse".into())
        .stack_size(stack)
        .spawn(move || parse_and_drop(&owned, target));
    match handle {
        Ok(handle) => match handle.join() {
            Ok(result) => result,
            Err(_) => Err(SyntaxProblem {
                message: "the syntax checker failed on this input".into(),
                line: 1,
                column: 1,
            }),
        },
        // Spawning only fails when the stack cannot be reserved.
        Err(_) => Err(SyntaxProblem {
            message: "source too complex to check: no memory for the parser".into(),
            line: 1,
            column: 1,
        }),
    }
}

fn parse_and_drop(text: &str, target: PythonVersion) -> Result<(), SyntaxProblem> {
    let options = ParseOptions::from(Mode::Module).with_target_version(target.to_ruff());
    match ruff_python_parser::parse(text, options) {
        Err(err) => {
            let (line, column) = position_in_text(text, err.location.start().to_usize());
            Err(SyntaxProblem {
                message: describe_parse_error(&err.error.to_string()),
                line,
                column,
            })
        }
        Ok(parsed) => match parsed.unsupported_syntax_errors().first() {
            Some(unsupported) => {
                let (line, column) = position_in_text(text, unsupported.range.start().to_usize());
                Err(SyntaxProblem {
                    message: unsupported.to_string(),
                    line,
                    column,
                })
            }
            None => Ok(()),
        },
    }
}

/// Ruff's messages are precise but say "Expected ..."/"Got ..." where CPython users expect
/// "invalid syntax"; keep ruff's detail and lead with the familiar words.
fn describe_parse_error(detail: &str) -> String {
    let detail = detail.trim();
    if detail.is_empty() {
        "invalid syntax".into()
    } else {
        format!("invalid syntax: {detail}")
    }
}

/// 1-based line and character column of a byte offset in valid UTF-8 text.
fn position_in_text(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// 1-based line and column of a byte offset in bytes that may not be UTF-8 past `offset`.
fn position_in_bytes(source: &[u8], offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// Mirrors the CPython tokenizer's hard limits, which ruff does not enforce: more than
/// [`MAX_BRACKET_NESTING`] open brackets, or an indentation stack of [`MAX_INDENT_LEVELS`].
/// Strings and comments are skipped so that brackets inside them do not count.
/// Returns the innermost bracket left open at the end, with its byte offset.
fn prescan_nesting(text: &str) -> Result<Option<(u8, usize)>, SyntaxProblem> {
    let bytes = text.as_bytes();
    let mut open: Vec<(u8, usize)> = Vec::new();
    let mut indents: Vec<usize> = vec![0];
    let mut at_line_start = true;
    let mut continued = false;
    let mut i = 0;
    while i < bytes.len() {
        if at_line_start {
            at_line_start = false;
            let (width, next) = indentation_width(bytes, i);
            i = next;
            let blank = matches!(bytes.get(i), None | Some(b'\n' | b'\r' | b'#'));
            if open.is_empty() && !continued && !blank {
                if width > *indents.last().unwrap_or(&0) {
                    indents.push(width);
                    if indents.len() > MAX_INDENT_LEVELS {
                        let (line, _) = position_in_text(text, i);
                        return Err(SyntaxProblem {
                            message: "too many levels of indentation".into(),
                            line,
                            column: 1,
                        });
                    }
                } else {
                    while indents.len() > 1 && width < *indents.last().unwrap_or(&0) {
                        indents.pop();
                    }
                }
            }
            continued = false;
            continue;
        }
        match bytes[i] {
            b'\n' => {
                at_line_start = true;
                i += 1;
            }
            b'\\' if matches!(bytes.get(i + 1), Some(b'\n')) => {
                continued = true;
                at_line_start = true;
                i += 2;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'\'' | b'"' => i = skip_string(bytes, i),
            b'(' | b'[' | b'{' => {
                open.push((bytes[i], i));
                if open.len() > MAX_BRACKET_NESTING {
                    let (line, column) = position_in_text(text, i);
                    return Err(SyntaxProblem {
                        message: "too many nested parentheses".into(),
                        line,
                        column,
                    });
                }
                i += 1;
            }
            b')' | b']' | b'}' => {
                open.pop();
                i += 1;
            }
            _ => i += 1,
        }
    }
    Ok(open.last().copied())
}

/// Width of leading whitespace as CPython measures it (tabs to the next multiple of 8).
fn indentation_width(bytes: &[u8], mut i: usize) -> (usize, usize) {
    let mut width = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b' ' => width += 1,
            b'\t' => width = (width / 8 + 1) * 8,
            b'\x0c' => width = 0,
            _ => break,
        }
        i += 1;
    }
    (width, i)
}

/// Returns the index just past the string literal whose opening quote is at `start`.
/// String prefixes (`r`, `b`, `f`, …) are letters before the quote and need no handling;
/// raw strings differ only in that a backslash never ends the string early, which skipping
/// the escaped character handles for both.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let triple = bytes.get(start + 1) == Some(&quote) && bytes.get(start + 2) == Some(&quote);
    let mut i = start + if triple { 3 } else { 1 };
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' {
            i += 2;
            continue;
        }
        if triple {
            if b == quote && bytes.get(i + 1) == Some(&quote) && bytes.get(i + 2) == Some(&quote) {
                return i + 3;
            }
        } else if b == quote {
            return i + 1;
        } else if b == b'\n' {
            // Unterminated single-quoted string: the parser reports it; stop skipping here.
            return i;
        }
        i += 1;
    }
    i
}

/// The answer of `code-exec check --json`: `{"valid", "error", "line", "column"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyntaxCheck {
    pub valid: bool,
    pub error: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl From<Result<(), SyntaxProblem>> for SyntaxCheck {
    fn from(result: Result<(), SyntaxProblem>) -> Self {
        match result {
            Ok(()) => SyntaxCheck {
                valid: true,
                error: None,
                line: None,
                column: None,
            },
            Err(problem) => SyntaxCheck {
                valid: false,
                error: Some(problem.to_string()),
                line: Some(problem.line),
                column: Some(problem.column),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PY311: PythonVersion = PythonVersion {
        major: 3,
        minor: 11,
    };

    fn check(src: &str) -> Result<(), SyntaxProblem> {
        validate(src.as_bytes(), PY311)
    }

    #[test]
    fn accepts_valid_code() {
        assert_eq!(check("x = 1\nprint(x)\n"), Ok(()));
        assert_eq!(
            check("class A:\n    def f(self):\n        return [i for i in range(3)]\n"),
            Ok(())
        );
        assert_eq!(check(""), Ok(()));
        assert_eq!(check("\u{feff}print('bom')\n"), Ok(()));
    }

    #[test]
    fn reports_position_of_error() {
        let err = check("x = 1\nprint(x +)\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.starts_with("invalid syntax"), "{err}");
        let err = check("def f(:\n").unwrap_err();
        assert_eq!((err.line, err.column), (1, 7));
    }

    #[test]
    fn refuses_null_bytes_and_bad_utf8() {
        let err = validate(b"x = 1\ny = '\0'\n", PY311).unwrap_err();
        assert_eq!((err.line, err.column), (2, 6));
        assert!(err.message.contains("null bytes"));
        let err = validate(b"x = 1\nz = \xff\n", PY311).unwrap_err();
        assert_eq!((err.line, err.column), (2, 5));
        assert!(err.message.contains("utf-8"));
    }

    #[test]
    fn honours_coding_declarations() {
        let latin1 = b"# -*- coding: latin-1 -*-\ns = '\xe9t\xe9'\n";
        assert_eq!(validate(latin1, PY311), Ok(()));
        let latin1_bad = b"# coding=iso-8859-1\ns = '\xe9\nx = (\n";
        assert!(validate(latin1_bad, PY311).is_err());
        let claims_utf8 = b"# coding: utf-8\ns = '\xe9'\n";
        assert!(validate(claims_utf8, PY311).is_err());
        assert_eq!(
            declared_encoding(b"#!/usr/bin/python\n# vim: set fileencoding=cp1252 :\n"),
            Some("cp1252".into())
        );
        assert_eq!(declared_encoding(b"x = 1\n# coding: latin-1\n"), None);
        let typo = validate(b"# -*- coding: uft-8 -*-\nx = 1\n", PY311).unwrap_err();
        assert_eq!(
            (typo.message.as_str(), typo.line),
            ("unknown encoding: uft-8", 1)
        );
        let bom = validate(b"\xef\xbb\xbf#coding: utf8\nx = 1\n", PY311).unwrap_err();
        assert_eq!(bom.message, "encoding problem: utf8 with BOM");
        assert_eq!(
            validate(b"\xef\xbb\xbf# coding: utf-8\nx = 1\n", PY311),
            Ok(())
        );
    }

    #[test]
    fn honours_target_version() {
        let walrus_free_match = "match x:\n    case 1:\n        pass\n";
        assert!(check(walrus_free_match).is_ok());
        let old = PythonVersion { major: 3, minor: 9 };
        let err = validate(walrus_free_match.as_bytes(), old).unwrap_err();
        assert!(err.message.contains("3.9"), "{err}");
    }

    #[test]
    fn blames_the_unclosed_bracket_like_cpython() {
        for (src, message, line, column) in [
            ("x = (1 +\n", "'(' was never closed", 1, 5),
            ("f([1,\n", "'[' was never closed", 1, 3),
            ("f([1,]\n", "'(' was never closed", 1, 2),
            ("x = [1, 2\ny = 3\n", "'[' was never closed", 1, 5),
            ("a = 1\nb = {\n\n", "'{' was never closed", 2, 5),
            ("foo(1, 2\nbar = 3\n", "'(' was never closed", 1, 4),
        ] {
            let err = check(src).unwrap_err();
            assert_eq!(
                (err.message.as_str(), err.line, err.column),
                (message, line, column),
                "{src:?}"
            );
        }
    }

    #[test]
    fn mirrors_cpython_bracket_limit() {
        let ok = format!("{}{}", "(".repeat(200), ")".repeat(200));
        assert_eq!(check(&ok), Ok(()));
        let deep = format!("{}{}", "(".repeat(201), ")".repeat(201));
        let err = check(&deep).unwrap_err();
        assert_eq!(err.message, "too many nested parentheses");
        assert_eq!((err.line, err.column), (1, 201));
        // Brackets inside strings and comments do not count.
        let quoted = format!(
            "s = '{}'\n# {}\nt = \"\"\"{}\"\"\"\n",
            "(".repeat(300),
            "[".repeat(300),
            "{".repeat(300)
        );
        assert_eq!(check(&quoted), Ok(()));
    }

    #[test]
    fn mirrors_cpython_indentation_limit() {
        let nest = |n: usize| -> String {
            let mut s: String = (0..n)
                .map(|i| format!("{}if 1:\n", " ".repeat(i)))
                .collect();
            s.push_str(&" ".repeat(n));
            s.push_str("pass\n");
            s
        };
        assert_eq!(check(&nest(99)), Ok(()));
        let err = check(&nest(100)).unwrap_err();
        assert_eq!(err.message, "too many levels of indentation");
        assert_eq!(err.line, 101);
    }

    #[test]
    fn deep_trees_do_not_crash_the_process() {
        for src in [
            format!("{}1", "-".repeat(200_000)),
            format!("{}1", "1+".repeat(150_000)),
            format!("{}a", "a.".repeat(150_000)),
            format!("{}2", "2**".repeat(100_000)),
            format!("{}1", "not ".repeat(100_000)),
        ] {
            assert_eq!(check(&src), Ok(()), "{}", &src[..10]);
        }
    }

    #[test]
    fn parses_version_strings() {
        assert_eq!(PythonVersion::parse("3.11"), Some(PY311));
        assert_eq!(PythonVersion::parse("3.11.7"), Some(PY311));
        assert_eq!(PythonVersion::parse("3"), None);
        assert_eq!(PythonVersion::parse("x.y"), None);
    }
}
