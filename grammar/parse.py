"""Text -> AST: the Lark parser, the tree -> AST transformer and syntax-error reports."""
from __future__ import annotations

import json
from functools import lru_cache

from lark import Lark, Token, Transformer, v_args
from lark import __version__ as lark_version
from lark.exceptions import UnexpectedInput, VisitError

from . import ast
from .syntax_errors import KEYWORDS, SyntaxErrorReport, check_nesting, syntax_error  # noqa: F401  (KEYWORDS: re-exported)

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

    def true(self, meta, c):
        return ast.Number(True, "true", self.s(meta))

    def false(self, meta, c):
        return ast.Number(False, "false", self.s(meta))

    def tuple(self, meta, c):
        return ast.Tuple(tuple(c), self.s(meta))

    def if_stmt(self, meta, c):
        otherwise = c[-1] if c and isinstance(c[-1], _Else) else None
        then = tuple(x for x in c[1:] if not isinstance(x, _Else) and x is not None)
        return ast.If(c[0], then, otherwise.stmts if otherwise else (), self.s(meta))

    def else_clause(self, meta, c):
        return _Else(tuple(x for x in c if x is not None))

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
        instance = instance_span = None
        if rest and isinstance(rest[-1], _Instance):
            instance, instance_span = rest[-1].name, rest.pop().span
        elif rest and rest[-1] is None:
            rest.pop()
        over = None
        if rest and isinstance(rest[-1], ast.Over):
            over = rest.pop()
        elif rest and rest[-1] is None and len(rest) >= 1:
            rest.pop()
        args = tuple(a for a in rest if a is not None)
        return ast.Call(str(name_tok), binding, args, over, instance, self.s(meta), _span(self.file, name_tok),
                        instance_span)

    def instance_name(self, meta, c):
        text = str(c[0])
        return _Instance(text[1:-1] if text.startswith('"') else text, _span(self.file, c[0]))

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


class _Else:
    def __init__(self, stmts):
        self.stmts = stmts


class _Instance:
    def __init__(self, name, span=None):
        self.name = name
        self.span = span


class _Group:
    def __init__(self, names, grouped):
        self.names = names
        self.grouped = grouped


def parse(text: str, file: str = "<input>") -> ast.Module:
    """Parse .arch source into an AST; raises SyntaxErrorReport on the first syntax error."""
    check_nesting(text, file)
    try:
        tree = parser().parse(text)
    except UnexpectedInput as e:
        raise syntax_error(file, text, e) from None
    try:
        return _ToAst(file).transform(tree)
    except VisitError as e:  # a transformer bug, never user input; keep the original
        raise e.orig_exc
    except RecursionError:  # a very long operator chain (`a + a + … + a`) builds a deep tree
        raise SyntaxErrorReport("this expression is too long to compile; split it with intermediate names",
                                ast.Span(file, 1, 1, 1, 2)) from None
