//! Differential test of syntax validation against the interpreter's own `ast.parse`: every
//! `.py` file of its standard library, a set of hand-written tricky snippets, and thousands of
//! deterministically broken pieces of real code. Prints the agreement figures:
//!
//!     cargo test --release --test differential -- --nocapture
//!
//! `CODE_EXEC_DIFF_PYTHON=/path/to/python3.13` compares against another interpreter (its
//! version becomes the target, its standard library the corpus).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use code_execution_tool::{Interpreter, syntax};
use serde_json::Value;

/// The reference verdicts from CPython, computed in one interpreter process.
const REFERENCE: &str = r#"
import ast, json, sys, warnings
warnings.simplefilter("ignore")
out = []
for path in json.load(open(sys.argv[1])):
    try:
        with open(path, "rb") as f:
            ast.parse(f.read(), path)
        out.append({"valid": True})
    except SyntaxError as e:
        out.append({"valid": False, "line": e.lineno})
    except BaseException as e:  # ValueError (null bytes), MemoryError, RecursionError
        out.append({"valid": False, "line": None})
json.dump(out, open(sys.argv[2], "w"))
"#;

/// Hand-written cases around the grammar's corners, valid and not.
const TRICKY: &[&str] = &[
    "print 'hello'\n",
    "exec 'x'\n",
    "x = 1 if y else 2\n",
    "x = 1 if y\n",
    "f(**kw, *args)\n",
    "f(*args, **kw)\n",
    "f(a for a in b, c)\n",
    "f(c, a for a in b)\n",
    "def f(a, /, b, *, c): pass\n",
    "def f(*, **kw): pass\n",
    "lambda: (yield)\n",
    "x = yield\n",
    "async def f():\n    await x\n    async with a as b: pass\n    async for i in y: pass\n",
    "await x\n",
    "(x := 1)\n",
    "x := 1\n",
    "[y := f(x), y**2]\n",
    "def f(x=(y := 1)): pass\n",
    "match = 1\nmatch.case = 2\n",
    "match x:\n    case [1, *rest]: pass\n    case {'a': 1, **kw}: pass\n    case Point(x=0) | None: pass\n    case _: pass\n",
    "match x:\n    case 1 + 2j: pass\n",
    "try:\n    pass\nexcept* ValueError:\n    pass\n",
    "try:\n    pass\n",
    "with (open(a) as b, open(c) as d):\n    pass\n",
    "f'{x!r:>{width}}'\n",
    "f'{'\n",
    "f'{x=}'\n",
    "x = '''unterminated\n",
    "x = 'unterminated\n",
    "if True:\n  pass\n else:\n  pass\n",
    "if True:\npass\n",
    "  x = 1\n",
    "for x in range(3):\n\tpass\n        pass\n",
    "class A(metaclass=M, **kw): pass\n",
    "@decorator\n@other(arg)\ndef f(): pass\n",
    "@x[0].y\ndef f(): pass\n",
    "del x, y[0], z.a\n",
    "del f()\n",
    "global x, y\n",
    "nonlocal x\n",
    "a, *b, c = range(5)\n",
    "*a = range(5)\n",
    "a + 1 = 2\n",
    "f() = 1\n",
    "x += 1, 2\n",
    "x, y += 1\n",
    "print(*a, sep='')\n",
    "return 1\n",
    "break\n",
    "def f():\n    return\n",
    "x = [i for i in range(3) if i if i > 0]\n",
    "x = {**a, 'b': 1}\n",
    "x = {*a, *b}\n",
    "x = 1_000_000\n",
    "x = 1__000\n",
    "x = 0o777 + 0b1010 + 0xFF\n",
    "x = 0777\n",
    "x = 1.5e-3j\n",
    "x = ...\n",
    "assert x, 'msg'\n",
    "raise X from Y\n",
    "import a.b.c as d\n",
    "from . import x\n",
    "from .. a import (b, c,)\n",
    "from a import *\n",
    "from a import (*)\n",
    "def f[T](x: T) -> T: return x\n",
    "type X = int\n",
    "x = not\n",
    "x = (1, 2\n",
    "x = [1, 2)\n",
    "x = }\n",
    "if x = 1:\n    pass\n",
    "while x:\n    pass\nelse:\n    pass\n",
    "print(f'{x:{y}}')\n",
    "x = 'a' 'b' f'c'\n",
    "x = b'a' 'b'\n",
    "\\\n",
    "x = 1 \\\n  + 2\n",
    "x = r'\\'\n",
    "# only a comment\n",
    "",
    "\n\n\n",
    "def f():\n    '''doc'''\n",
    "class C:\n    def m(self): ...\n    x: int = 3\n    y: 'str'\n",
    "x: int\n",
    "(x): int = 1\n",
    "x.y: int\n",
    "[x]: int\n",
    "with a as b, c as d: pass\n",
    "with a as (b, c): pass\n",
    "for x, in y: pass\n",
    "lambda x=1, *a, y, **k: 0\n",
    "lambda *: 0\n",
    "x = 1;; y = 2\n",
    "x = 1; y = 2;\n",
    "if 1: pass; pass\n",
    "if 1: if 2: pass\n",
    "print(end='')\n",
    "f(x=1, x=2)\n",
    "f(x=1, 2)\n",
    "def f(x=1, y): pass\n",
    "def f(a, a): pass\n",
    "nonsense ^^ more\n",
    "x = $\n",
    "x = `y`\n",
    "x <> y\n",
    "True = 1\n",
    "None = 1\n",
    "__debug__ = 1\n",
    "x = [\n  1,\n  2,\n]\n",
    "x = (  # comment\n  1\n)\n",
    "é = 1\n",
    "x = 'é'\n",
    "def f():\n  x = 1\n    y = 2\n",
];

/// A tiny deterministic generator, so the broken samples are the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INSERTIONS: &[&str] = &[
    "(", ")", "[", "]", "{", "}", ":", "=", ",", ".", "'", "\"", "\n", " ", "    ", "\t", "def ",
    "lambda", "if ", "else", "return", "*", "**", "@", "->", "async ", "await ", "yield", "import",
    "\\", "#", "f'", "0x", "1", "x", "not ", ":=",
];

/// Breaks a snippet of real code in one of several ways.
fn mutate(source: &str, rng: &mut Lcg) -> String {
    let mut chars: Vec<char> = source.chars().collect();
    let mut lines: Vec<String> = source.lines().map(str::to_owned).collect();
    match rng.below(5) {
        0 if !chars.is_empty() => {
            chars.remove(rng.below(chars.len()));
            chars.into_iter().collect()
        }
        1 => {
            let at = rng.below(chars.len() + 1);
            let piece = INSERTIONS[rng.below(INSERTIONS.len())];
            chars.splice(at..at, piece.chars());
            chars.into_iter().collect()
        }
        2 if !lines.is_empty() => {
            let i = rng.below(lines.len());
            let indent = ["", " ", "  ", "\t", "        "][rng.below(5)];
            lines[i] = format!("{indent}{}", lines[i].trim_start());
            lines.join("\n") + "\n"
        }
        3 if lines.len() > 1 => {
            let i = rng.below(lines.len());
            lines.remove(i);
            lines.join("\n") + "\n"
        }
        _ if !chars.is_empty() => {
            // Swap two neighbouring characters.
            let i = rng.below(chars.len().saturating_sub(1));
            let j = (i + 1).min(chars.len() - 1);
            chars.swap(i, j);
            chars.into_iter().collect()
        }
        _ => source.to_owned(),
    }
}

fn stdlib_dir(python: &Path) -> PathBuf {
    let out = Command::new(python)
        .args([
            "-I",
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .expect("ask the interpreter for its stdlib");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn python_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_symlink() {
            continue;
        }
        if path.is_dir() {
            if name != "site-packages" && name != "dist-packages" && name != "__pycache__" {
                python_files(&path, out);
            }
        } else if name.ends_with(".py") {
            out.push(path);
        }
    }
}

/// `(agree, same_line_when_both_reject, both_reject, total, disagreements)`.
struct Tally {
    agree: usize,
    same_line: usize,
    both_reject: usize,
    total: usize,
    disagreements: Vec<String>,
}

fn compare(python: &Interpreter, files: &[PathBuf]) -> Tally {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.json");
    let answers = dir.path().join("answers.json");
    std::fs::write(&list, serde_json::to_string(files).unwrap()).unwrap();
    let status = Command::new(python.path())
        .args(["-I", "-c", REFERENCE])
        .arg(&list)
        .arg(&answers)
        .status()
        .unwrap();
    assert!(status.success(), "the reference parser failed");
    let reference: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&answers).unwrap()).unwrap();
    assert_eq!(reference.len(), files.len());
    let mut tally = Tally {
        agree: 0,
        same_line: 0,
        both_reject: 0,
        total: files.len(),
        disagreements: Vec::new(),
    };
    for (path, want) in files.iter().zip(&reference) {
        let source = std::fs::read(path).unwrap();
        let ours = syntax::validate(&source, python.version());
        let cpython_valid = want["valid"].as_bool().unwrap();
        if ours.is_ok() == cpython_valid {
            tally.agree += 1;
            if let Err(problem) = &ours {
                tally.both_reject += 1;
                if want["line"].as_u64() == Some(problem.line as u64) {
                    tally.same_line += 1;
                }
            }
        } else {
            tally.disagreements.push(format!(
                "{}: cpython valid={cpython_valid}, ours={:?}",
                path.display(),
                ours.err().map(|p| p.to_string())
            ));
        }
    }
    tally
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        100.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[test]
fn agrees_with_cpython_ast_parse() {
    let python = match std::env::var_os("CODE_EXEC_DIFF_PYTHON") {
        Some(path) => Interpreter::at(Path::new(&path)).expect("CODE_EXEC_DIFF_PYTHON"),
        None => Interpreter::discover().expect("a python3 interpreter"),
    };
    let mut stdlib = Vec::new();
    python_files(&stdlib_dir(python.path()), &mut stdlib);
    assert!(
        stdlib.len() > 500,
        "found only {} stdlib files",
        stdlib.len()
    );

    let work = tempfile::tempdir().unwrap();
    let mut tricky = Vec::new();
    for (i, snippet) in TRICKY.iter().enumerate() {
        let path = work.path().join(format!("tricky_{i:03}.py"));
        std::fs::write(&path, snippet).unwrap();
        tricky.push(path);
    }
    let mut broken = Vec::new();
    let mut rng = Lcg(0x5eed_c0de);
    let mut n = 0;
    while broken.len() < 3000 {
        let source = std::fs::read_to_string(&stdlib[rng.below(stdlib.len())]).unwrap_or_default();
        let lines: Vec<&str> = source.lines().collect();
        if lines.len() < 5 {
            continue;
        }
        let start = rng.below(lines.len() - 4);
        let take = 3 + rng.below(30);
        let snippet = lines[start..(start + take).min(lines.len())].join("\n") + "\n";
        let path = work.path().join(format!("broken_{n:05}.py"));
        n += 1;
        std::fs::write(&path, mutate(&snippet, &mut rng)).unwrap();
        broken.push(path);
    }

    println!(
        "syntax validation vs CPython {} ast.parse:",
        python.version()
    );
    let mut all_ok = true;
    for (name, files, floor) in [
        ("stdlib files", &stdlib, 99.5),
        ("tricky snippets", &tricky, 97.0),
        ("broken snippets", &broken, 99.0),
    ] {
        let t = compare(&python, files);
        let agreement = percent(t.agree, t.total);
        println!(
            "  {name:<16} {:>6} inputs  verdict agreement {agreement:6.2}%  same line when both reject {:6.2}% ({} of {})",
            t.total,
            percent(t.same_line, t.both_reject),
            t.same_line,
            t.both_reject
        );
        for d in t.disagreements.iter().take(15) {
            println!("    disagree: {d}");
        }
        if agreement < floor {
            println!("  {name}: {agreement:.2}% is below the floor of {floor}%");
            all_ok = false;
        }
    }
    assert!(all_ok, "agreement fell below its floor (see above)");
}
