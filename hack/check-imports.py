#!/usr/bin/env python3
"""Checks that src/'s imports have no cycle, at two levels:

- between the crate's top-level modules (`crate::api`, `crate::runtime`, ...),
  read from every `crate::<module>` path in a file of another module;
- between the files of one folder, read from `super::<file>` paths (and
  `crate::<folder>::<file>` ones) in its files.

Tests (`#[cfg(test)]` modules, `tests.rs` files and `tests/` folders) are left out: a test may
reach anywhere. A cycle is printed with the files that make each edge, and
the script exits 1. Run by `make lint`.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
SKIP_TOP = {"lib.rs", "main.rs", "bin"}


def code_of(path):
    """A file's text up to its first `#[cfg(test)]` module."""
    text = open(path, encoding="utf-8").read()
    cut = re.search(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+", text)
    text = text[: cut.start()] if cut else text
    # Comments name modules too; they are not imports.
    return re.sub(r"//[^\n]*", "", text)


def files():
    for d, _, fs in os.walk(ROOT):
        for f in fs:
            rel = os.path.relpath(os.path.join(d, f), ROOT)
            if f.endswith(".rs") and f != "tests.rs" and "tests" not in rel.split(os.sep)[:-1]:
                yield rel


def top_of(rel):
    return rel.split(os.sep)[0].removesuffix(".rs")


def file_node(rel):
    """`a/b.rs` and `a/b/mod.rs` -> `a/b`; `a/b/c.rs` -> `a/b` (its folder's child b)."""
    parts = rel.removesuffix(".rs").split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts


def cycles(edges):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def main():
    top_edges, top_why = {}, {}
    folder_edges, folder_why = {}, {}
    tops = {top_of(f) for f in files() if top_of(f) not in SKIP_TOP}
    for rel in files():
        top = top_of(rel)
        if rel in SKIP_TOP or top in SKIP_TOP:
            continue
        code = code_of(os.path.join(ROOT, rel))
        for m in set(re.findall(r"\bcrate::(\w+)", code)):
            if m in tops and m != top:
                top_edges.setdefault(top, set()).add(m)
                top_why.setdefault((top, m), rel)
        node = file_node(rel)
        if len(node) < 2:
            continue
        folder, me = tuple(node[:-1]), node[-1]
        siblings = {
            file_node(r)[-1]
            for r in files()
            if tuple(file_node(r)[:-1]) == folder and len(file_node(r)) == len(node)
        }
        prefix = "crate::" + "::".join(folder) + "::"
        named = set(re.findall(r"\bsuper::(\w+)", code))
        named |= set(re.findall(re.escape(prefix) + r"(\w+)", code))
        for other in named & siblings - {me}:
            key = (folder, me)
            folder_edges.setdefault(key, set()).add((folder, other))
            folder_why.setdefault((key, (folder, other)), rel)
    bad = False
    for comp in cycles({k: v for k, v in top_edges.items()}):
        bad = True
        print("cycle between top-level modules:", " <-> ".join(comp))
        for a in comp:
            for b in top_edges.get(a, ()):
                if b in comp:
                    print(f"  {a} -> {b}  (src/{top_why[(a, b)]})")
    for comp in cycles(folder_edges):
        bad = True
        names = [f"{'/'.join(f)}/{n}" for f, n in comp]
        print("cycle between files of one folder:", " <-> ".join(names))
        for a in comp:
            for b in folder_edges.get(a, ()):
                if b in comp:
                    print(f"  {a[1]} -> {b[1]}  (src/{folder_why[(a, b)]})")
    if bad:
        sys.exit(1)
    print(f"imports: no cycle between the {len(tops)} top-level modules, nor between the files of any folder")


if __name__ == "__main__":
    main()
