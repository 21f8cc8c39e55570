#!/usr/bin/env python3
"""Import arrows of the workspace, checked in CI.

1. No import circle anywhere in the workspace. Every path a source file names
   (`use crate::a::b`, `super::x`, `self::y`, and the same paths written inline) is resolved
   to the module it points into. Two sibling modules (two files or folders under the same
   parent) must not name each other, directly or through other siblings. A module's own
   files may name their parent (they are parts of it, e.g. `impl Driver` split over files);
   a parent may name its children.
2. The rooms of the node crate (node/src/<room>/): each may name only the rooms listed for
   it in ROOM_ARROWS; `run.rs` wires them all, and nothing names `cli` or `rpc` but the
   ones listed.

Exit status 1 with one line per violation. Standard library only.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRATES = ["crypto", "ledger", "consensus", "network", "node", "bench"]

# Who each top-level module of node/src may name (besides itself). A room not listed here
# fails the check: a new room gets its arrows written down first.
ROOM_ARROWS = {
    "config": set(),
    "metrics": set(),
    "exec": set(),
    "chain": {"config", "metrics"},
    "notify": {"metrics"},
    "admission": {"chain", "notify", "metrics", "config", "exec"},
    "consensus": {"chain", "notify", "metrics", "config", "exec"},
    "rpc": {"admission", "chain", "notify", "metrics", "config"},
    "run": {"admission", "chain", "config", "consensus", "exec", "metrics", "notify", "rpc"},
    "cli": {"config", "run"},
    "sim": {"admission", "chain", "config", "consensus", "exec", "metrics", "notify", "rpc", "run"},
}

PATH_RE = re.compile(r"\b(crate|super|self)((?:::(?:super|[A-Za-z_][A-Za-z0-9_]*))*)(::\{)?")


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    lines = []
    for line in text.splitlines():
        # Drop // comments (doc comments included); strings with // are rare enough in
        # paths that a miss only hides an edge inside a literal.
        idx = line.find("//")
        lines.append(line if idx < 0 else line[:idx])
    return "\n".join(lines)


def module_files(src):
    """Maps each .rs file under src to its module path (a tuple of names)."""
    out = {}
    for f in sorted(src.rglob("*.rs")):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts in (["lib"], ["main"]):
            parts = []
        elif parts and parts[-1] == "mod":
            parts = parts[:-1]
        elif len(parts) == 1 and parts[0] != "lib" and (src / "bin") in f.parents:
            continue
        if parts and parts[0] == "bin":
            continue
        out[f] = tuple(parts)
    return out


def brace_items(text, start):
    """The top-level items of the `{...}` group opening at text[start] == '{'."""
    depth, item, items = 0, "", []
    for ch in text[start:]:
        if ch == "{":
            depth += 1
            if depth == 1:
                continue
        elif ch == "}":
            depth -= 1
            if depth == 0:
                items.append(item)
                break
        if depth == 1 and ch == ",":
            items.append(item)
            item = ""
        else:
            item += ch
    return [i.strip() for i in items if i.strip()]


def targets(text, here):
    """Absolute module paths (tuples) named in `text`, a file of module `here`."""
    found = []

    def resolve(head, rest):
        names = [p for p in rest.split("::") if p]
        if head == "crate":
            base = []
        elif head == "self":
            base = list(here)
        else:  # super
            base = list(here[:-1])
        for n in names:
            if n == "super":
                base = base[:-1]
            elif n == "self":
                continue
            else:
                base.append(n)
        return base

    for m in PATH_RE.finditer(text):
        head, rest, brace = m.group(1), m.group(2) or "", m.group(3)
        if head == "self" and not rest and not brace:
            continue
        base = resolve(head, rest)
        if brace:
            for item in brace_items(text, m.end() - 1):
                sub = re.split(r"\s+as\s+", item)[0]
                sub = sub.split("{")[0].rstrip(":")
                found.append(tuple(base + [p for p in sub.split("::") if p and p != "self"]))
        else:
            found.append(tuple(base))
    return found


def longest_module(path, modules):
    for n in range(len(path), -1, -1):
        if path[:n] in modules:
            return path[:n]
    return ()


def find_cycle(graph):
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def check_crate(crate, root=None):
    src = (root or ROOT) / crate / "src"
    files = module_files(src)
    modules = set(files.values())
    # edges[parent][a] = set of sibling b that a names (a, b: child names under parent)
    edges, where = {}, {}
    for f, here in files.items():
        for t in targets(strip_comments(f.read_text()), here):
            t = longest_module(t, modules)
            common = 0
            while common < min(len(here), len(t)) and here[common] == t[common]:
                common += 1
            if common == len(t) or common == len(here):
                continue  # names an ancestor, itself, or a descendant
            parent, a, b = here[:common], here[common], t[common]
            edges.setdefault(parent, {}).setdefault(a, set()).add(b)
            where.setdefault((parent, a, b), f.relative_to(root or ROOT))
    errors = []
    for parent, graph in sorted(edges.items()):
        cycle = find_cycle(graph)
        if cycle:
            at = "::".join(parent) or "crate root"
            steps = [
                f"{x} ({where[(parent, x, y)]})" for x, y in zip(cycle, cycle[1:])
            ]
            errors.append(f"{crate}: import circle under {at}: " + " -> ".join(steps) + f" -> {cycle[-1]}")
    if crate == "node":
        for room, named in sorted(edges.get((), {}).items()):
            allowed = ROOM_ARROWS.get(room)
            if allowed is None:
                errors.append(f"node: room {room!r} has no arrows in .ci/imports.py ROOM_ARROWS")
                continue
            for other in sorted(named - allowed):
                errors.append(
                    f"node: room {room} may not name {other} "
                    f"({where[((), room, other)]}); allowed: {sorted(allowed) or 'none'}"
                )
    return errors


def self_test():
    """The checker must fail where it should: a planted circle and a forbidden arrow."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = {
            "node/src/lib.rs": "pub mod chain;\npub mod rpc;\npub mod a;\n",
            "node/src/chain/mod.rs": "use crate::rpc::Thing;\n",  # forbidden arrow
            "node/src/rpc/mod.rs": "use crate::chain::Other;\n",
            "node/src/a/mod.rs": "mod x;\nmod y;\n",
            "node/src/a/x.rs": "use super::y::Y;\n",  # x -> y -> x: a circle
            "node/src/a/y.rs": "use super::{x::X, self};\n",
        }
        for name, text in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        errors = check_crate("node", root)
    expected = [
        "import circle under a: x",
        "import circle under crate root: chain",
        "room chain may not name rpc",
    ]
    missing = [e for e in expected if not any(e in line for line in errors)]
    if missing:
        print("self-test: the checker missed", missing, "in", errors)
        sys.exit(1)
    print(f"imports: self-test caught {len(errors)} planted violations")


def main():
    if "--self-test" in sys.argv:
        self_test()
        return
    errors = []
    for crate in CRATES:
        errors += check_crate(crate)
    for e in errors:
        print(e)
    if errors:
        sys.exit(1)
    print(f"imports: no circle in {len(CRATES)} crates; node rooms follow their arrows")


if __name__ == "__main__":
    main()
