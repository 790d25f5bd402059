#!/usr/bin/env python3
"""Checks the library's module graph (src/, one node per file).

An edge A -> B means a path written in A's file (a `use`, or a path in code) names B or
something in B: `crate::...`, `super::...`, `self::...`, or a child module by its bare name.
Declaring a child (`mod x;`) is not an edge. The script fails when

  - two modules import each other, directly or through others (any cycle), or
  - `process/` and `backend/` import each other in either direction.

Usage: scripts/check-module-graph.py [--print]   (--print lists every edge)
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_of(rel):
    """crate path (tuple) of a source file, e.g. backend/native/mod.rs -> ('backend', 'native')."""
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return tuple(parts)


def strip_comments_and_strings(text):
    """Blanks comments, string and char literals, left to right in one pass."""
    token = re.compile(
        r"//[^\n]*|/\*.*?\*/"
        r"|\bb?r(#*)\".*?\"\1"
        r"|\bb?\"(?:\\.|[^\"\\])*\"|(?<![\w\"])\"(?:\\.|[^\"\\])*\""
        r"|'(?:\\.|[^'\\])'",
        re.S,
    )
    return token.sub(" ", text)


def expand_use_tree(tree):
    """`a::{b, c::{d, self}}` -> ['a::b', 'a::c::d', 'a::c']."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)  # aliases name the same thing
    tree = re.sub(r"\s+", "", tree)

    def split_top(s):
        depth, start, out = 0, 0, []
        for i, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                out.append(s[start:i])
                start = i + 1
        out.append(s[start:])
        return [p for p in out if p]

    def expand(prefix, s):
        brace = s.find("{")
        if brace < 0:
            path = prefix + s
            if path.endswith("::self"):
                path = path[: -len("::self")]
            return [path]
        head = s[:brace]
        inner = s[brace + 1 : s.rindex("}")]
        result = []
        for part in split_top(inner):
            result.extend(expand(prefix + head, part))
        return result

    return expand("", tree)


def inline_modules(code):
    """(start, end, name) of every inline `mod name { ... }` block."""
    found = []
    for m in re.finditer(r"\bmod\s+(\w+)\s*\{", code):
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        found.append((m.end(), i, m.group(1)))
    return found


def main():
    files = {}
    for dirpath, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".rs"):
                rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
                if rel == "main.rs":
                    continue  # the binary: a crate of its own
                files[module_of(rel)] = (rel, open(os.path.join(dirpath, name)).read())
    modules = set(files)

    def resolve(path):
        """The file module a full crate path falls in (longest known prefix)."""
        for n in range(len(path), -1, -1):
            if path[:n] in modules:
                return path[:n]
        return ()

    edges = {}
    for module, (rel, text) in files.items():
        code = strip_comments_and_strings(text)
        here = module  # what `self` names
        children = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", code, re.M))
        inline = inline_modules(code)

        def scope_at(pos):
            """The module path at `pos`: the file's, plus the inline `mod x { }` around it."""
            return here + tuple(n for (a, b, n) in inline if a <= pos < b)

        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", code):
            paths.extend((m.start(), p) for p in expand_use_tree(m.group(1)))
        for m in re.finditer(r"\b(?:crate|super|self)(?:::\w+)+", code):
            paths.append((m.start(), m.group(0)))
        for child in children:
            for m in re.finditer(r"(?<![:\w])%s(?:::\w+)+" % child, code):
                paths.append((m.start(), m.group(0)))
        targets = set()
        for pos, p in paths:
            segments = [s for s in p.split("::") if s]
            if not segments:
                continue
            scope = scope_at(pos)
            if segments[0] == "crate":
                full = tuple(segments[1:])
            elif segments[0] in ("super", "self"):
                base = scope
                while segments and segments[0] in ("super", "self"):
                    if segments[0] == "super":
                        base = base[:-1]
                    segments = segments[1:]
                full = base + tuple(segments)
            elif segments[0] in children and scope == here:
                full = here + tuple(segments)
            else:
                continue  # an external crate, or a name imported by a `use` counted above
            target = resolve(full)
            if target != module:
                targets.add(target)
        edges[module] = targets

    if "--print" in sys.argv:
        for module in sorted(edges):
            for target in sorted(edges[module]):
                print("%s -> %s" % ("::".join(module) or "crate", "::".join(target) or "crate"))

    # Tarjan's strongly connected components.
    index, low, stack, on_stack, sccs, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            sccs.append(scc)

    for v in sorted(edges):
        if v not in index:
            connect(v)

    failed = False
    name = lambda m: "::".join(m) or "crate"
    for scc in sccs:
        if len(scc) > 1:
            failed = True
            members = set(scc)
            print("cycle among: " + ", ".join(sorted(name(m) for m in scc)))
            for m in sorted(scc):
                for t in sorted(edges[m] & members):
                    print("    %s -> %s" % (name(m), name(t)))
    for a, b in (("process", "backend"), ("backend", "process")):
        for m in sorted(edges):
            if m[:1] == (a,):
                for t in sorted(edges[m]):
                    if t[:1] == (b,):
                        failed = True
                        print("%s/ must not import %s/: %s -> %s" % (a, b, name(m), name(t)))
    if failed:
        sys.exit(1)
    print("module graph: %d modules, %d edges, no cycles; process/ and backend/ apart"
          % (len(edges), sum(len(t) for t in edges.values())))


if __name__ == "__main__":
    main()
