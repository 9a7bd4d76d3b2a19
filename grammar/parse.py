"""Text -> AST: the Lark parser, the tree -> AST transformer and syntax-error reports."""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Optional

from lark import Lark, Token, Transformer, v_args
from lark import __version__ as lark_version
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import ast

KEYWORDS = {"use", "axis", "const", "block", "model", "param", "from", "as", "return",
            "repeat", "shared", "scan", "reverse", "over", "and", "or", "not", "inf"}

# What an expected terminal is called in an error message.
TERMINAL_NAMES = {
    "NAME": "a name", "INT": "an integer", "NUMBER": "a number", "STRING": "a string",
    "DTYPE": "a dtype (f32, i64, ...)", "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`",
    "LBRACE": "`{`", "RBRACE": "`}`", "COMMA": "`,`", "COLON": "`:`", "EQUAL": "`=`",
    "__ANON_0": "`->`", "MINUS": "`-`", "PLUS": "`+`", "STAR": "`*`", "SLASH": "`/`",
    "ELLIPSIS": "`...`", "COMPARE": "a comparison", "AT": "`@`", "VBAR": "`|`", "TILDE": "`~`",
    "RETURN": "`return`", "OVER": "`over`", "AS": "`as`", "FROM": "`from`", "$END": "end of file",
}
OPERATORS = {"+", "-", "*", "/", "//", "@", "**", "<", "<=", ">", ">=", "==", "!=", "and", "or", "not", "=", ","}


class SyntaxErrorReport(Exception):
    """A syntax error at a position; the compiler renders it as a diagnostic."""

    def __init__(self, message: str, span: ast.Span, help: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.help = help


@lru_cache(maxsize=1)
def parser() -> Lark:
    """The LALR parser, from the prebuilt tables when they were built from this grammar by
    this Lark version (milliseconds), else built from the grammar (a fifth of a second)."""
    from . import _generated_parser as generated
    from .gen_parser import GRAMMAR, OPTIONS, decode_hook, grammar_digest
    if generated.LARK_VERSION == lark_version and generated.GRAMMAR_SHA256 == grammar_digest():
        data, memo = json.loads(generated.TABLES, object_hook=decode_hook)
        return Lark._load_from_dict(data, memo)
    return Lark.open(str(GRAMMAR), **OPTIONS)


def _span(file: str, meta_or_token) -> ast.Span:
    m = meta_or_token
    if isinstance(m, Token):
        return ast.Span(file, m.line, m.column, m.end_line, m.end_column)
    return ast.Span(file, m.line, m.column, m.end_line, m.end_column)


def _names(items) -> tuple[str, ...]:
    return tuple(str(t) for t in items if t is not None)


@v_args(meta=True)
class _ToAst(Transformer):
    """One method per grammar rule or alias."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def s(self, meta) -> ast.Span:
        return _span(self.file, meta)

    # ---- top level ----
    def start(self, meta, items):
        return ast.Module(self.file, tuple(items))

    def use_decl(self, meta, c):
        return ast.Use(str(c[0])[1:-1], self.s(meta))

    def axis_decl(self, meta, defs):
        return ast.AxisDecl(tuple(defs), self.s(meta))

    def axis_symbolic(self, meta, c):
        return ast.AxisDef(str(c[0]), "symbolic", None, None, self.s(meta))

    def axis_sized(self, meta, c):
        return ast.AxisDef(str(c[0]), "sized", c[1], None, self.s(meta))

    def axis_like(self, meta, c):
        return ast.AxisDef(str(c[0]), "like", None, str(c[1]), self.s(meta))

    def const_decl(self, meta, c):
        return ast.ConstDecl(str(c[0]), c[1], self.s(meta))

    def _function(self, kind, meta, c):
        name = str(c[0])
        axis_params: tuple[str, ...] = ()
        const_params: tuple = ()
        args: list[ast.TypedArg] = []
        for item in c[1:-2]:
            if isinstance(item, _AxisParams):
                axis_params = tuple(p for p in item.names if isinstance(p, str))
                const_params = tuple(p for p in item.names if isinstance(p, tuple))
            elif isinstance(item, ast.TypedArg):
                args.append(item)
        return ast.Function(kind, name, axis_params, const_params, tuple(args), c[-2], c[-1], self.s(meta))

    def block_def(self, meta, c):
        return self._function("block", meta, c)

    def model_def(self, meta, c):
        return self._function("model", meta, c)

    def axis_params(self, meta, c):
        return _AxisParams(tuple(c))

    def axis_param(self, meta, c):
        return str(c[0])

    def const_param(self, meta, c):
        return (str(c[0]), c[1])

    def typed_arg(self, meta, c):
        return ast.TypedArg(str(c[0]), c[1], self.s(meta))

    def single_result(self, meta, c):
        return (ast.TypedArg("output", c[0], self.s(meta)),)

    def named_results(self, meta, c):
        return tuple(c)

    def tensor_type(self, meta, c):
        return ast.TensorType(str(c[0]), tuple(a for a in c[1:] if a is not None), self.s(meta))

    def type_axis(self, meta, c):
        return ast.TypeAxis(str(c[0]), self.s(meta))

    def rest_axes(self, meta, c):
        return ast.TypeAxis("...", self.s(meta))

    def body(self, meta, c):
        return tuple(c)

    # ---- statements ----
    def param_stmt(self, meta, c):
        dtype = init = source = None
        axes: list[str] = []
        for item in c[1:]:
            if isinstance(item, ast.ParamInit):
                init = item
            elif isinstance(item, ast.ParamSource):
                source = item
            elif isinstance(item, Token) and item.type == "DTYPE":
                dtype = str(item)
            elif isinstance(item, Token):
                axes.append(str(item))
        return ast.ParamStmt(str(c[0]), dtype, tuple(axes), init, source, self.s(meta))

    def param_init(self, meta, c):
        over = c[-1] if c and isinstance(c[-1], ast.Over) else None
        args = tuple(a for a in c[1:] if a is not None and not isinstance(a, ast.Over))
        return ast.ParamInit(str(c[0]), args, over, self.s(meta))

    def param_source(self, meta, c):
        layout = tuple(c[1:]) if len(c) > 1 and c[1] is not None else None
        return ast.ParamSource(str(c[0])[1:-1], layout, self.s(meta))

    def layout_item(self, meta, c):
        return (str(c[0]),)

    def layout_group(self, meta, c):
        return _names(c)

    def layout_unit(self, meta, c):
        if int(c[0]) != 1:
            raise SyntaxErrorReport("a number in a stored layout stands for a size-1 dimension and must be 1",
                                    self.s(meta))
        return ()

    def assign_stmt(self, meta, c):
        return ast.Assign(_names(c[:-1]), c[-1], self.s(meta))

    def return_stmt(self, meta, c):
        return ast.Return(tuple(c), self.s(meta))

    def repeat_expr(self, meta, c):
        count = int(c[0]) if c[0].type == "INT" else str(c[0])
        shared = len(c) == 3
        return ast.Repeat(count, shared, c[-1], self.s(meta))

    def scan_expr(self, meta, c):
        axis = c[-2]
        return ast.Scan(str(axis), len(c) == 3, c[-1], self.s(meta), self.s(axis))

    # ---- sizes ----
    def size_int(self, meta, c):
        return ast.SizeInt(int(c[0]), self.s(meta))

    def size_name(self, meta, c):
        return ast.SizeName(str(c[0]), self.s(meta))

    def _size_bin(op):
        def f(self, meta, c):
            return ast.SizeBinary(op, c[0], c[1], self.s(meta))
        return f

    size_add, size_sub, size_mul = _size_bin("+"), _size_bin("-"), _size_bin("*")
    size_div, size_floordiv = _size_bin("/"), _size_bin("//")

    # ---- expressions ----
    def number(self, meta, c):
        text = str(c[0])
        value = int(text) if text.isdigit() else float(text)
        return ast.Number(value, text, self.s(meta))

    def infinity(self, meta, c):
        return ast.Number(float("inf"), "inf", self.s(meta))

    def var(self, meta, c):
        return ast.Var(str(c[0]), self.s(meta))

    def index(self, meta, c):
        sub = c[0]
        if len(sub.items) != 1 or isinstance(sub.items[0], ast.Keyword):
            raise SyntaxErrorReport("an index takes one expression; `Name[...]` binds a block's parameters "
                                    "only when a call follows", self.s(meta))
        return ast.Index(sub.name, sub.items[0], self.s(meta))

    def subscript(self, meta, c):
        return _Subscript(str(c[0]), tuple(c[1:]), c[0])

    def axis_size(self, meta, c):
        return ast.AxisSize(str(c[0]), self.s(meta))

    def _binary(op):
        def f(self, meta, c):
            return ast.Binary(op, c[0], c[1], self.s(meta))
        return f

    add, sub, mul, div = _binary("add"), _binary("sub"), _binary("mul"), _binary("div")
    floordiv = _binary("floordiv")
    contract, pow = _binary("contract"), _binary("pow")
    logical_and, logical_or = _binary("and"), _binary("or")

    def compare(self, meta, c):
        op = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}[str(c[1])]
        return ast.Binary(op, c[0], c[2], self.s(meta), _span(self.file, c[1]))

    def neg(self, meta, c):
        return ast.Unary("neg", c[0], self.s(meta))

    def logical_not(self, meta, c):
        return ast.Unary("not", c[0], self.s(meta))

    def grouped_over(self, meta, c):
        return ast.GroupedOver(c[0], c[1], self.s(meta))

    def call(self, meta, c):
        return self._call(meta, c)

    def block_call(self, meta, c):
        return self._call(meta, c)

    def _call(self, meta, c):
        binding = ()
        if isinstance(c[0], _Subscript):
            binding, name_tok = c[0].items, c[0].token
        else:
            name_tok = c[0]
        rest = [x for x in c[1:]]
        instance = None
        if rest and isinstance(rest[-1], _Instance):
            instance = rest.pop().name
        elif rest and rest[-1] is None:
            rest.pop()
        over = None
        if rest and isinstance(rest[-1], ast.Over):
            over = rest.pop()
        elif rest and rest[-1] is None and len(rest) >= 1:
            rest.pop()
        args = tuple(a for a in rest if a is not None)
        return ast.Call(str(name_tok), binding, args, over, instance, self.s(meta), _span(self.file, name_tok))

    def instance_name(self, meta, c):
        text = str(c[0])
        return _Instance(text[1:-1] if text.startswith('"') else text)

    def kwarg(self, meta, c):
        value = c[1]
        if isinstance(value, Token) and value.type == "STRING":
            value = ast.StringArg(str(value)[1:-1], _span(self.file, value))
        return ast.Keyword(str(c[0]), value, self.s(meta))

    def axis_group(self, meta, c):
        self._once(c)
        return _Group(_names(c), len(c) > 1)

    def _once(self, tokens) -> None:
        """An axis listed twice (`over d, d`, `(a, a) -> b`) is a slip, never a meaning."""
        seen = set()
        for t in tokens:
            if t is not None and str(t) in seen:
                raise SyntaxErrorReport(f"axis `{t}` is named twice", self.s(t),
                                        "each axis is listed once; two wires of one size need two names")
            seen.add(str(t))

    def axis_map(self, meta, c):
        return ast.AxisMap(c[0].names, c[1].names, c[0].grouped, c[1].grouped, self.s(meta))

    def dtype_arg(self, meta, c):
        return ast.DTypeArg(str(c[0]), self.s(meta))

    def string_arg(self, meta, c):
        return ast.StringArg(str(c[0])[1:-1], self.s(meta))

    def over_clause(self, meta, c):
        inner = c[0]
        if isinstance(inner, ast.AxisMap):
            return ast.Over(inner.source, inner.target, self.s(meta))
        return ast.Over(inner, None, self.s(meta))

    def over_axes(self, meta, c):
        self._once(c)
        return _names(c)

    def axis_map_over(self, meta, c):
        return ast.AxisMap(c[0].names, c[1].names, c[0].grouped, c[1].grouped, self.s(meta))


class _AxisParams:
    def __init__(self, names):
        self.names = names


class _Subscript:
    def __init__(self, name, items, token):
        self.name, self.items, self.token = name, items, token


class _Instance:
    def __init__(self, name):
        self.name = name


class _Group:
    def __init__(self, names, grouped):
        self.names = names
        self.grouped = grouped


def _describe_expected(expected: set[str]) -> str:
    names = sorted({TERMINAL_NAMES.get(t, f"`{t.lower()}`" if t.isalpha() else t) for t in expected})
    if len(names) > 6:
        return "an expression or statement"
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _syntax_error(file: str, text: str, e: UnexpectedInput) -> SyntaxErrorReport:
    line, col = max(e.line, 1), max(e.column, 1)
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        open_bracket = _unclosed(text)
        if open_bracket is not None:
            ch, bl, bc = open_bracket
            return SyntaxErrorReport(f"unexpected end of file: the `{ch}` on line {bl} is never closed",
                                     ast.Span(file, bl, bc, bl, bc + 1))
        lines = text.splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1
        span = ast.Span(file, line, col, line, col + 1)
        return SyntaxErrorReport(f"unexpected end of file; expected {_describe_expected(set(e.expected))}", span)
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else "?"
        span = ast.Span(file, line, col, line, col + 1)
        return SyntaxErrorReport(f"unexpected character `{ch}`", span)
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    span = ast.Span(file, line, col, tok.end_line or line, tok.end_column or col + len(str(tok)))
    shown = str(tok)
    prev, prev_span = _previous_token(text, tok.start_pos, file)
    if prev in KEYWORDS and shown in ("=", ",", ":"):
        # `param = x`: the keyword is where a name was meant.
        return SyntaxErrorReport(f"`{prev}` is a keyword and cannot name a value", prev_span,
                                 f"choose another name, such as `{prev}_`")
    if prev in OPERATORS and ("NAME" in e.expected or "NUMBER" in e.expected):
        return SyntaxErrorReport(f"expected an expression after `{prev}`, found `{shown}`", span)
    return SyntaxErrorReport(f"unexpected `{shown}`; expected {_describe_expected(set(e.expected))}", span)


def _previous_token(text: str, pos: int, file: str) -> tuple[Optional[str], Optional[ast.Span]]:
    """The token before `pos` (comments skipped), with its span."""
    import re
    before = re.sub(r"#[^\n]*", lambda m: " " * len(m.group()), text[:pos]).rstrip()
    if not before:
        return None, None
    end = len(before)
    start = end - 1
    if before[start].isalnum() or before[start] == "_":  # a word: walk back over it (linear time)
        while start > 0 and (before[start - 1].isalnum() or before[start - 1] == "_"):
            start -= 1
    elif before[max(0, end - 2):end] in ("**", "<=", ">=", "==", "!=", "//"):
        start = end - 2
    token = before[start:end]
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    return token, ast.Span(file, line, col, line, col + len(token))


def _unclosed(text: str) -> Optional[tuple[str, int, int]]:
    """The innermost bracket left open at the end of the text, as (bracket, line, column)."""
    stack: list[tuple[str, int, int]] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    line, col, in_comment, in_string = 1, 0, False, False
    for ch in text:
        col += 1
        if ch == "\n":
            line, col, in_comment, in_string = line + 1, 0, False, False
            continue
        if in_comment:
            continue
        if ch == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif ch == "#":
            in_comment = True
        elif ch in "([{":
            stack.append((ch, line, col))
        elif ch in pairs and stack and stack[-1][0] == pairs[ch]:
            stack.pop()
    return stack[-1] if stack else None


MAX_NESTING = 100


def _check_nesting(text: str, file: str) -> None:
    """Brackets nest at most MAX_NESTING deep: the tree walks are recursive."""
    depth, line, col = 0, 1, 0
    in_comment = in_string = False
    for ch in text:
        col += 1
        if ch == "\n":
            line, col, in_comment, in_string = line + 1, 0, False, False
        elif in_comment:
            continue
        elif ch == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif ch == "#":
            in_comment = True
        elif ch in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise SyntaxErrorReport(f"brackets nest more than {MAX_NESTING} deep here",
                                        ast.Span(file, line, col, line, col + 1))
        elif ch in ")]}":
            depth -= 1


def parse(text: str, file: str = "<input>") -> ast.Module:
    """Parse .arch source into an AST; raises SyntaxErrorReport on the first syntax error."""
    _check_nesting(text, file)
    try:
        tree = parser().parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(file, text, e) from None
    try:
        return _ToAst(file).transform(tree)
    except VisitError as e:  # a transformer bug, never user input; keep the original
        raise e.orig_exc
    except RecursionError:  # a very long operator chain (`a + a + … + a`) builds a deep tree
        raise SyntaxErrorReport("this expression is too long to compile; split it with intermediate names",
                                ast.Span(file, 1, 1, 1, 2)) from None
