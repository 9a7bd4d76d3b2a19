"""Generates grammar/_generated_parser.py: the LALR tables of arch.lark, built once.

Building the Lark parser from the grammar costs 0.15-0.3 s per process; loading the
prebuilt tables costs a few milliseconds. The tables are stored as JSON text (Python
literals of this size take longer to import than JSON takes to decode), with dicts keyed
by integers and tuples tagged so that decoding gives back exactly Lark's own structures.
No pickle: the tables are data and are read as data.

    python -m archlang.grammar.gen_parser     # after changing arch.lark or upgrading lark

tests/test_generated_parser.py checks that the checked-in file is what this writes.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

GRAMMAR = Path(__file__).with_name("arch.lark")
GENERATED = Path(__file__).with_name("_generated_parser.py")
# The basic (not contextual) lexer keeps keywords reserved everywhere, so `return` after
# an unfinished expression is reported there rather than read as a name.
OPTIONS = dict(parser="lalr", lexer="basic", propagate_positions=True, maybe_placeholders=True)
_INT_KEYS, _TUPLE = "#int", "#tuple"


def grammar_digest() -> str:
    return hashlib.sha256(GRAMMAR.read_bytes()).hexdigest()


def _encode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not {_INT_KEYS, _TUPLE} & obj.keys():
            return {k: _encode(v) for k, v in obj.items()}
        assert all(type(k) is int for k in obj), obj
        return {_INT_KEYS: [[k, _encode(v)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(v) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v) for v in obj]
    assert obj is None or isinstance(obj, (str, int, float, bool)), type(obj)
    return obj


def decode_hook(d: dict) -> Any:
    """json.loads' object_hook undoing `_encode`."""
    if len(d) == 1:
        if _INT_KEYS in d:
            return {k: v for k, v in d[_INT_KEYS]}
        if _TUPLE in d:
            return tuple(d[_TUPLE])
    return d


def tables() -> tuple[dict, dict]:
    """Lark's serialised parser (data, memo), built from the grammar (numbered as it happens)."""
    from lark import Lark
    from lark.grammar import Rule
    from lark.lexer import TerminalDef
    return Lark.open(str(GRAMMAR), **OPTIONS).memo_serialize([TerminalDef, Rule])


def _canonical(data: dict, memo: dict) -> tuple[dict, dict]:
    """The same tables numbered independently of the run: Lark numbers states, tokens and
    memoised terminals and rules in an order that follows object ids, so each build differs.
    Memo entries are renumbered by content, tokens by name, states breadth-first from the start
    states (actions taken in token-name order); reference lists are sorted."""
    memo_order = sorted(memo, key=lambda i: json.dumps(_encode(memo[i]), sort_keys=True))
    new_ref = {old: new for new, old in enumerate(memo_order)}

    def refs(items: list) -> list:
        return sorted(({"@": new_ref[r["@"]]} for r in items), key=lambda r: r["@"])

    table = data["parser"]["parser"]
    names = table["tokens"]
    token_ids = {name: i for i, name in enumerate(sorted(names.values()))}
    order: list[int] = []
    seen: set[int] = set()
    queue = [table["start_states"][s] for s in sorted(table["start_states"])]
    while queue:
        state = queue.pop(0)
        if state in seen:
            continue
        seen.add(state)
        order.append(state)
        for tok in sorted(table["states"][state], key=lambda t: names[t]):
            action, arg = table["states"][state][tok]
            if action == 0:  # shift: arg is the next state
                queue.append(arg)
    order += sorted(set(table["states"]) - seen)
    new_state = {old: new for new, old in enumerate(order)}

    def action(a: tuple) -> tuple:
        return (0, new_state[a[1]]) if a[0] == 0 else (a[0], {"@": new_ref[a[1]["@"]]})

    states = {new_state[old]: {token_ids[names[t]]: action(a)
                                for t, a in sorted(table["states"][old].items(), key=lambda ta: names[ta[0]])}
              for old in order}
    parser = dict(table, tokens={i: n for n, i in token_ids.items()}, states=states,
                  start_states={k: new_state[v] for k, v in sorted(table["start_states"].items())},
                  end_states={k: new_state[v] for k, v in sorted(table["end_states"].items())})
    inner = data["parser"]
    inner = dict(inner, parser=parser,
                 lexer_conf=dict(inner["lexer_conf"], terminals=refs(inner["lexer_conf"]["terminals"])),
                 parser_conf=dict(inner["parser_conf"], rules=refs(inner["parser_conf"]["rules"])))
    return dict(data, parser=inner, rules=refs(data["rules"])), {i: memo[old] for i, old in enumerate(memo_order)}


def source() -> str:
    import lark
    text = json.dumps(_encode(_canonical(*tables())), separators=(",", ":"))
    chunks = "\n".join(f"    {text[i:i + 96]!r}" for i in range(0, len(text), 96))
    return ("# Generated by `python -m archlang.grammar.gen_parser` from arch.lark: do not edit.\n"
            "# The LALR tables (Lark's serialised parser), read by grammar/parse.py.\n"
            f"LARK_VERSION = {lark.__version__!r}\n"
            f"GRAMMAR_SHA256 = {grammar_digest()!r}\n"
            f"TABLES = (\n{chunks}\n)\n")


if __name__ == "__main__":
    GENERATED.write_text(source())
    print(f"wrote {GENERATED}")
