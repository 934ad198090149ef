#!/usr/bin/env python3
"""Checks that the imports in src/ read one way (design.md, "Arrows point one way").

- Layers: `issuer/` and `validate/` sit on top and never import each other;
  `keys/`, `store/`, `policy/` and `observe` import neither; `config/` (the
  assembly of everything) is imported by nothing else.
- `store/` and `policy/` use no HTTP crate.
- No import circle between the files of one module: an edge runs from a file to
  the sibling file it names (`super::name`, `crate::module::name`); a name that
  only `mod.rs` re-exports makes no edge.

Exit status 0 when all hold; otherwise each violation is printed and it is 1.
Usage: scripts/check_layers.py [SRC_DIR]
"""

import re
import sys
from pathlib import Path

SRC = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "src")

# Which top-level modules each one may import (itself always allowed).
ALLOWED = {
    "issuer": {"keys", "store", "policy", "observe", "macros"},
    "validate": {"keys", "store", "observe", "macros"},
    "keys": {"observe", "macros"},
    "store": {"observe", "macros"},
    "policy": {"keys", "macros"},
    "observe": set(),
    "config": {"issuer", "validate", "keys", "store", "policy", "observe", "macros"},
    "macros": set(),
}
HTTP_CRATES = ("http", "http_body", "http_body_util", "hyper", "tower_service", "tower_layer", "axum_core", "reqwest")
NO_HTTP = {"store", "policy"}

PATH_RE = re.compile(r"\b(crate|super)((?:::(?:self|super|[A-Za-z_][A-Za-z0-9_]*))+)")
USE_TREE_RE = re.compile(r"\buse\s+(crate|super)::\{([^;]*)\};", re.S)
EXTERN_RE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+::?([a-z_][a-z0-9_]*)", re.M)


def module_path(file: Path) -> list[str]:
    """The module path of a source file, e.g. src/issuer/endpoint.rs -> [issuer, endpoint]."""
    parts = list(file.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts.pop()
    return parts


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def referenced_paths(text: str, here: list[str]) -> list[list[str]]:
    """Absolute module paths named by `crate::` / `super::` paths in the text."""
    found = []
    bodies = []
    # `use super::{a, b::c}`: every item of the tree.
    for m in USE_TREE_RE.finditer(text):
        for item in re.split(r",", m.group(2)):
            item = item.strip().split(" as ")[0].replace("{", "").replace("}", "").strip()
            if item:
                bodies.append((m.group(1), "::" + item))
    bodies += [(m.group(1), m.group(2)) for m in PATH_RE.finditer(text)]
    for root, rest in bodies:
        segments = [s for s in rest.split("::") if s]
        # `super` of src/a/b.rs and of src/a/b/mod.rs alike is module `a`.
        base: list[str] = [] if root == "crate" else here[:-1]
        while segments and segments[0] == "super":
            base = base[:-1]
            segments = segments[1:]
        found.append(base + [s for s in segments if s != "self"])
    return found


def main() -> int:
    files = {tuple(module_path(f)): f for f in SRC.rglob("*.rs")}
    problems = []
    edges: dict[tuple, set] = {m: set() for m in files}
    for mod, file in files.items():
        text = strip_comments(file.read_text())
        top = mod[0] if mod else None
        for path in referenced_paths(text, list(mod)):
            if not path:
                continue
            target_top = path[0]
            if top and target_top != top and target_top in ALLOWED and target_top not in ALLOWED.get(top, set()):
                problems.append(f"{file.relative_to(SRC.parent)}: {top}/ imports {target_top}/ ({'::'.join(path)})")
            # The deepest file this path names, below the module's root file.
            for depth in range(len(path), 0, -1):
                candidate = tuple(path[:depth])
                if candidate in files:
                    if candidate != mod and len(candidate) > 1 and candidate[:-1] == mod[:-1]:
                        edges[mod].add(candidate)
                    break
        if top in NO_HTTP:
            for m in EXTERN_RE.finditer(text):
                if m.group(1) in HTTP_CRATES:
                    problems.append(f"{file.relative_to(SRC.parent)}: {top}/ uses the HTTP crate {m.group(1)}")

    # Circles between sibling files (Tarjan's strongly connected components).
    index: dict[tuple, int] = {}
    low: dict[tuple, int] = {}
    stack: list[tuple] = []
    on_stack: set = set()
    counter = [0]

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                names = sorted("/".join(c) + ".rs" for c in component)
                problems.append("import circle: " + " <-> ".join(names))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            connect(v)

    for problem in problems:
        print(problem)
    if not problems:
        print(f"imports read one way: {len(files)} files, {sum(len(e) for e in edges.values())} sibling edges, no circle")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
