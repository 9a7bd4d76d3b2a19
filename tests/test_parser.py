"""The parser: every construct of grammar/arch.lark becomes the expected AST node, and
syntax errors become a `SyntaxErrorReport` with the right position and a readable message.

Tests compare the fields that matter, not whole reprs, so adding a field to a node does
not break them.
"""
from __future__ import annotations

import textwrap

import pytest

from archlang.grammar import SyntaxErrorReport, ast, parse


def module(src: str) -> ast.Module:
    return parse(textwrap.dedent(src).lstrip("\n"), "t.arch")


def only(src: str):
    items = module(src).items
    assert len(items) == 1, items
    return items[0]


def body(stmts: str) -> tuple:
    """The statements of a model whose body is `stmts`."""
    src = "model M(x: f32[a]) -> f32[a] {\n" + textwrap.dedent(stmts) + "\n}\n"
    fn = only(src)
    return fn.body


def expr(text: str):
    """The expression `text`, parsed as the right-hand side of an assignment."""
    (stmt,) = body(f"y = {text}")
    assert isinstance(stmt, ast.Assign)
    return stmt.value


def syntax_error(src: str) -> SyntaxErrorReport:
    with pytest.raises(SyntaxErrorReport) as info:
        parse(textwrap.dedent(src).lstrip("\n"), "bad.arch")
    return info.value


# ---- top level -------------------------------------------------------------------

def test_empty_file_and_comments():
    assert module("").items == ()
    assert module("# only a comment\n\n   # another\n").items == ()


def test_use():
    use = only('use "nn"')
    assert isinstance(use, ast.Use) and use.path == "nn"
    assert only('use "../lib/blocks.arch"').path == "../lib/blocks.arch"


def test_axis_symbolic_list():
    decl = only("axis batch, seq")
    assert isinstance(decl, ast.AxisDecl)
    assert [(d.name, d.kind) for d in decl.axes] == [("batch", "symbolic"), ("seq", "symbolic")]
    assert decl.axes[1].span.column == 13


def test_axis_sized():
    (d,) = only("axis embed = 768").axes
    assert d.kind == "sized" and isinstance(d.size, ast.SizeInt) and d.size.value == 768


def test_axis_like():
    (d,) = only("axis key ~ seq").axes
    assert (d.name, d.kind, d.like, d.size) == ("key", "like", "seq", None)


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "//"])
def test_size_binary_ops(op):
    (d,) = only(f"axis h = embed {op} 2").axes
    assert isinstance(d.size, ast.SizeBinary) and d.size.op == op
    assert isinstance(d.size.left, ast.SizeName) and d.size.left.name == "embed"
    assert isinstance(d.size.right, ast.SizeInt) and d.size.right.value == 2


def test_size_precedence_and_parentheses():
    (d,) = only("axis h = 1 + 4 * embed").axes
    assert d.size.op == "+" and d.size.right.op == "*"
    (d,) = only("axis h = (1 + 4) * embed").axes
    assert d.size.op == "*" and d.size.left.op == "+"
    (d,) = only("axis h = embed - 8 - 2").axes  # left associative
    assert d.size.op == "-" and d.size.left.op == "-" and d.size.right.value == 2


def test_const():
    c = only("const eps = 1e-5")
    assert isinstance(c, ast.ConstDecl) and c.name == "eps"
    assert isinstance(c.value, ast.Number) and c.value.value == 1e-5 and c.value.text == "1e-5"
    assert only("const n = 12").value.value == 12


def test_newlines_carry_no_meaning():
    a = module("axis batch\naxis e = 4\nconst k = 2\n")
    b = module("axis batch axis e = 4 const k = 2")
    assert [type(i) for i in a.items] == [type(i) for i in b.items]
    fn = only("""
        model M(x: f32[a])
            -> f32[a]
        {
          y = x
            + 1
          return y
        }
    """)
    assert fn.body[0].value.op == "add"


# ---- blocks and models -------------------------------------------------------------

def test_block_signature():
    fn = only("""
        block Linear[din, dout](x: f32[..., din]) -> f32[..., dout] {
          return x
        }
    """)
    assert isinstance(fn, ast.Function)
    assert (fn.kind, fn.name, fn.axis_params) == ("block", "Linear", ("din", "dout"))
    (arg,) = fn.args
    assert arg.name == "x" and arg.type.dtype == "f32"
    assert [a.name for a in arg.type.axes] == ["...", "din"]
    (res,) = fn.results
    assert res.name == "output"  # a single unnamed result
    assert [a.name for a in res.type.axes] == ["...", "dout"]
    assert fn.span.line == 1 and fn.span.end_line == 3


def test_block_without_axis_params_or_args():
    fn = only("block Const() -> f32[] { return 1 }")
    assert fn.axis_params == () and fn.args == () and fn.results[0].type.axes == ()


def test_model_named_results_and_several_args():
    fn = only("""
        model M(x: f32[batch, d], mask: bool[batch]) -> (y: f32[batch, d], n: i64[batch]) {
          return x, mask
        }
    """)
    assert fn.kind == "model" and fn.name == "M"
    assert [(a.name, a.type.dtype) for a in fn.args] == [("x", "f32"), ("mask", "bool")]
    assert [(r.name, r.type.dtype) for r in fn.results] == [("y", "f32"), ("n", "i64")]
    ret = fn.body[-1]
    assert isinstance(ret, ast.Return) and [v.name for v in ret.values] == ["x", "mask"]


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16", "f64", "i64", "i32", "i8", "u8", "bool"])
def test_dtypes(dtype):
    fn = only(f"model M(x: {dtype}[a]) -> {dtype}[a] {{ return x }}")
    assert fn.args[0].type.dtype == dtype


# ---- statements -----------------------------------------------------------------------

def test_param_full_form():
    (p, _) = body('param w: [d, e] = normal(0.02) from "x.weight" as [e, d]\nreturn x')
    assert isinstance(p, ast.ParamStmt)
    assert (p.name, p.dtype, p.axes) == ("w", None, ("d", "e"))
    assert p.init.name == "normal" and [a.value for a in p.init.args] == [0.02] and p.init.over is None
    assert p.source.name == "x.weight" and p.source.layout == (("e",), ("d",))


def test_param_merged_layout_group_and_dtype():
    (p, _) = body('param qkv: f16[embed, three, heads, head] from "c_attn.weight" '
                  'as [embed, (three, heads, head)]\nreturn x')
    assert p.dtype == "f16" and p.init is None
    assert p.source.layout == (("embed",), ("three", "heads", "head"))


def test_param_source_without_layout():
    (p, _) = body('param b: [e] = zeros from "c_proj.bias"\nreturn x')
    assert p.init.name == "zeros" and p.init.args == ()
    assert p.source.name == "c_proj.bias" and p.source.layout is None


def test_param_bare_and_initializer_forms():
    stmts = body("""
        param a: [d]
        param b: [d] = uniform()
        param c: [d, e] = uniform(-0.1, 0.1)
        param k: [d, e] = kaiming(over d)
        param s: []
        return x
    """)
    a, b, c, k, s = stmts[:5]
    assert a.init is None and a.source is None
    assert b.init.name == "uniform" and b.init.args == ()
    assert [x.value if isinstance(x, ast.Number) else -x.operand.value for x in c.init.args] == [-0.1, 0.1]
    assert k.init.name == "kaiming" and k.init.over.axes == ("d",)
    assert s.axes == ()


def test_axis_declaration_inside_a_body():
    decl, _ = body("axis tmp = 3, other ~ a\nreturn x")
    assert isinstance(decl, ast.AxisDecl) and [d.kind for d in decl.axes] == ["sized", "like"]


def test_assign_several_targets_and_return_several_values():
    assign, ret = body("q, k, v = unstack(x, 3)\nreturn q, k")
    assert assign.targets == ("q", "k", "v")
    assert isinstance(assign.value, ast.Call) and assign.value.name == "unstack"
    assert len(ret.values) == 2


def test_repeat_with_own_weights():
    r = expr('repeat 12 Layer(h) as "h.{i}"')
    assert isinstance(r, ast.Repeat)
    assert (r.count, r.shared) == (12, False)
    assert r.call.name == "Layer" and r.call.instance == "h.{i}"
    assert [a.name for a in r.call.args] == ["h"]


def test_repeat_shared_with_named_count_binding_and_name():
    r = expr("repeat layers shared Block[embed](h, mask) as blk")
    assert (r.count, r.shared) == ("layers", True)
    assert [b.name for b in r.call.binding] == ["embed"]
    assert [a.name for a in r.call.args] == ["h", "mask"]
    assert r.call.instance == "blk"


# ---- expressions ----------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [("2", 2), ("2.5", 2.5), (".5", 0.5), ("1e-5", 1e-5), ("3E2", 300.0),
                                        ("inf", float("inf"))])
def test_numbers(text, value):
    n = expr(text)
    assert isinstance(n, ast.Number) and n.value == value and type(n.value) is type(value)


def test_var_axis_size_and_index():
    assert isinstance(expr("h"), ast.Var) and expr("h").name == "h"
    s = expr("|head|")
    assert isinstance(s, ast.AxisSize) and s.axis == "head"
    i = expr("wte[tokens]")
    assert isinstance(i, ast.Index) and i.target == "wte" and i.index.name == "tokens"


@pytest.mark.parametrize("text,op", [("a + b", "add"), ("a - b", "sub"), ("a * b", "mul"), ("a / b", "div"),
                                     ("a @ b", "contract"), ("a ** b", "pow"), ("a and b", "and"),
                                     ("a or b", "or"), ("a < b", "lt"), ("a <= b", "le"), ("a > b", "gt"),
                                     ("a >= b", "ge"), ("a == b", "eq"), ("a != b", "ne")])
def test_binary_ops(text, op):
    e = expr(text)
    assert isinstance(e, ast.Binary) and e.op == op
    assert (e.left.name, e.right.name) == ("a", "b")


def test_comparison_records_the_operator_span():
    e = expr("a <= b")
    assert e.op_span is not None and (e.op_span.column, e.op_span.end_column) == (7, 9)  # in `y = a <= b`


@pytest.mark.parametrize("text,op", [("-a", "neg"), ("not a", "not")])
def test_unary_ops(text, op):
    e = expr(text)
    assert isinstance(e, ast.Unary) and e.op == op and e.operand.name == "a"


def shape(e) -> str:
    """A compact prefix form of an expression, for precedence tests."""
    if isinstance(e, ast.Binary):
        return f"({e.op} {shape(e.left)} {shape(e.right)})"
    if isinstance(e, ast.Unary):
        return f"({e.op} {shape(e.operand)})"
    if isinstance(e, ast.Var):
        return e.name
    if isinstance(e, ast.Number):
        return e.text
    if isinstance(e, ast.GroupedOver):
        return f"(over {shape(e.expr)} {','.join(e.over.axes)})"
    return type(e).__name__


@pytest.mark.parametrize("text,tree", [
    ("a + b * c", "(add a (mul b c))"),
    ("a * b + c", "(add (mul a b) c)"),
    ("a - b - c", "(sub (sub a b) c)"),
    ("a / b / c", "(div (div a b) c)"),
    ("a @ b * c", "(mul (contract a b) c)"),
    ("a + b @ c", "(add a (contract b c))"),
    ("-a ** 2", "(neg (pow a 2))"),
    ("a ** -b", "(pow a (neg b))"),
    ("(a + b) * c", "(mul (add a b) c)"),
    ("a + b < c * d", "(lt (add a b) (mul c d))"),
    ("not a and b or c", "(or (and (not a) b) c)"),
    ("a or b and c", "(or a (and b c))"),
    ("not a < b", "(not (lt a b))"),
])
def test_precedence(text, tree):
    assert shape(expr(text)) == tree


def test_grouped_over_contraction():
    e = expr("(q @ k over head) / sqrt(|head|)")
    assert e.op == "div"
    g = e.left
    assert isinstance(g, ast.GroupedOver) and g.expr.op == "contract" and g.over.axes == ("head",)
    assert g.over.target is None
    g2 = expr("(a @ b over h, w)")
    assert g2.over.axes == ("h", "w")


# ---- calls ------------------------------------------------------------------------------

def test_call_with_over():
    c = expr("softmax(x over key)")
    assert isinstance(c, ast.Call) and c.name == "softmax"
    assert [a.name for a in c.args] == ["x"] and c.over.axes == ("key",) and c.over.target is None
    assert c.binding == () and c.instance is None
    assert c.name_span.column == 5 and c.name_span.end_column == 12


def test_call_over_several_axes_and_mapping():
    assert expr("mean(x over h, w)").over.axes == ("h", "w")
    c = expr("pool(x over (h, w) -> (oh, ow))")
    assert c.over.axes == ("h", "w") and c.over.target == ("oh", "ow")


def test_call_argument_kinds():
    c = expr('f(x, 2, eps=1e-5, seq -> key, embed -> (heads, head), f16, "name")')
    x, two, kw, m1, m2, dt, s = c.args
    assert isinstance(x, ast.Var) and isinstance(two, ast.Number)
    assert isinstance(kw, ast.Keyword) and kw.name == "eps" and kw.value.value == 1e-5
    assert isinstance(m1, ast.AxisMap) and (m1.source, m1.target) == (("seq",), ("key",))
    assert (m1.source_grouped, m1.target_grouped) == (False, False)
    assert isinstance(m2, ast.AxisMap) and m2.target == ("heads", "head") and m2.target_grouped
    assert isinstance(dt, ast.DTypeArg) and dt.dtype == "f16"
    assert isinstance(s, ast.StringArg) and s.value == "name"
    assert ast.positional(c.args) == [x, two, m1, m2, dt, s] and list(ast.keywords(c.args)) == ["eps"]


def test_merge_axis_map():
    (m,) = expr("merge((heads, head) -> embed)").args
    assert m.source == ("heads", "head") and m.source_grouped and m.target == ("embed",)


def test_call_without_arguments():
    c = expr("arange()")
    assert c.name == "arange" and c.args == ()


def test_block_call_with_binding_and_instance_names():
    c = expr("Linear[embed, hidden](x) as fc1")
    assert c.name == "Linear" and [b.name for b in c.binding] == ["embed", "hidden"]
    assert c.instance == "fc1"
    assert expr('Linear[embed, hidden](x) as "blocks.0"').instance == "blocks.0"


def test_nested_calls_and_spans():
    c = expr("gelu(Linear[features, hidden](x) as fc1)")
    inner = c.args[0]
    assert c.name == "gelu" and inner.name == "Linear" and inner.instance == "fc1"
    # `y = ` puts the expression at column 5 of line 2 (line 1 is the model header)
    assert (c.span.line, c.span.column) == (2, 5)
    assert inner.span.column == 10


def test_spans_cover_the_construct():
    src = "axis batch\nconst eps = 1e-5\n"
    axis, const = module(src).items
    assert (axis.span.line, axis.span.column, axis.span.end_column) == (1, 1, 11)
    assert (const.span.line, const.span.column, const.span.end_column) == (2, 1, 17)
    assert str(const.span) == "t.arch:2:1"


# ---- syntax errors ---------------------------------------------------------------------

def test_unexpected_token_position_and_message():
    e = syntax_error("""
        axis batch
        model M(x: f32[batch]) -> f32[batch] {
          y = x +
        }
    """)
    assert (e.span.file, e.span.line, e.span.column, e.span.end_column) == ("bad.arch", 4, 1, 2)
    assert e.message == "expected an expression after `+`, found `}`"


def test_unexpected_token_span_covers_the_token():
    e = syntax_error("axis batch\nmodel M(x: f32[batch] -> f32[batch] { return x }\n")
    assert (e.span.line, e.span.column, e.span.end_column) == (2, 23, 25)
    assert e.message == "unexpected `->`; expected `)`, `,` or `{`"


def test_unexpected_character():
    e = syntax_error("axis batch\nmodel M(x: f32[batch]) -> f32[batch] {\n  return x $ 2\n}\n")
    assert (e.span.line, e.span.column) == (3, 12)
    assert e.message == "unexpected character `$`"


def test_unexpected_end_of_file_points_at_the_unclosed_bracket():
    e = syntax_error("axis batch\nmodel M(x: f32[batch]) -> f32[batch] {\n  return x\n")
    assert e.message == "unexpected end of file: the `{` on line 2 is never closed"
    line = "model M(x: f32[batch]) -> f32[batch] {"
    assert (e.span.line, e.span.column, e.span.end_column) == (2, len(line), len(line) + 1)


def test_unexpected_end_of_file_names_the_innermost_unclosed_bracket():
    e = syntax_error("axis a\nmodel M(x: f32[a]) -> f32[a] {\n  y = (x + \n")
    assert e.message == "unexpected end of file: the `(` on line 3 is never closed"
    assert (e.span.line, e.span.column, e.span.end_column) == (3, 7, 8)


def test_unexpected_end_of_file_outside_brackets_points_at_the_last_line():
    e = syntax_error("axis embed =\n")
    assert e.message.startswith("unexpected end of file; expected ")
    assert "$END" not in e.message and "a name" in e.message
    assert (e.span.line, e.span.column) == (1, len("axis embed =") + 1)


def test_missing_size_expression():
    e = syntax_error("axis embed = , seq\n")
    assert (e.span.line, e.span.column) == (1, 14)
    assert e.message == "expected an expression after `=`, found `,`"


def test_expected_list_never_shows_internal_terminal_names():
    # a file may end after a complete item: `$END` in lark's expected set reads "end of file"
    e = syntax_error("axis batch\nmodel M(x: f32[batch]) -> f32[batch] { return x }\n}\n")
    assert (e.span.line, e.span.column) == (3, 1)
    assert e.message == "unexpected `}`; expected `axis`, `block`, `const`, `model`, `use` or end of file"
    assert "$END" not in e.message


def test_keywords_are_reserved_even_where_a_name_would_fit():
    # `model` cannot be the size of `embed`: the error is at `model`, not later at `M`
    e = syntax_error("axis embed =\nmodel M(x: f32[embed]) -> f32[embed] { return x }\n")
    assert (e.span.line, e.span.column, e.span.end_column) == (2, 1, 6)
    assert e.message == "expected an expression after `=`, found `model`"


@pytest.mark.parametrize("op", ["and", "or"])
def test_logical_keywords_cannot_be_called_like_functions(op):
    # `and(a, b)` is not a call (write `a and b`); `not(a)` is `not (a)`, a unary expression
    e = syntax_error(f"model M(x: f32[a]) -> f32[a] {{\n  y = {op}(a, b)\n  return x\n}}\n")
    assert (e.span.line, e.span.column, e.span.end_column) == (2, 7, 7 + len(op))
    assert e.message == f"expected an expression after `=`, found `{op}`"
    assert shape(expr("not(a)")) == "(not a)"


@pytest.mark.parametrize("name", ["bool_mask", "f16_w", "i64x", "boolean", "f32s", "u8_ids"])
def test_names_starting_with_a_dtype_word(name):
    fn = only(f"model M({name}: f32[a]) -> f32[a] {{\n  {name}2 = {name} * 2\n  return {name}2\n}}")
    assert fn.args[0].name == name
    assert fn.body[0].targets == (f"{name}2",) and fn.body[0].value.left.name == name


def test_unterminated_string():
    e = syntax_error('use "nn\naxis batch\n')
    assert (e.span.line, e.span.column) == (1, 5)
    assert "unexpected character `\"`" in e.message


def test_error_message_names_terminals_readably():
    e = syntax_error("axis batch\nmodel M(x f32[batch]) -> f32[batch] { return x }\n")
    assert e.message == "unexpected `f32`; expected `:`"
    assert "__ANON" not in e.message and "RPAR" not in e.message


@pytest.mark.parametrize("keyword,src", [
    ("param", "  param = x * 2\n"),
    ("axis", "  axis = x\n"),
    ("return", "  return = x\n"),
])
def test_keyword_used_as_a_name_gets_a_help_line(keyword, src):
    e = syntax_error("axis a\nmodel M(x: f32[a]) -> f32[a] {\n" + src + "  return x\n}\n")
    assert e.message == f"`{keyword}` is a keyword and cannot name a value"
    assert e.help == f"choose another name, such as `{keyword}_`"
    # the span is the keyword itself, not the `=` after it
    assert (e.span.line, e.span.column, e.span.end_column) == (3, 3, 3 + len(keyword))


def test_syntax_error_is_a_diagnostic_in_the_cli(write_arch, archc):
    path = write_arch("axis batch\nmodel M(x: f32[batch]) -> f32[batch] {\n  y = x +\n}\n", "bad.arch")
    r = archc("check", path.name)
    assert r.returncode == 1
    assert r.stderr.startswith("bad.arch:4:1: error: expected an expression after `+`, found `}`\n")
    assert " 4 | }\n" in r.stderr and "Traceback" not in r.stderr


# ---- block parameters with defaults, and `Name[...]` subscripts ---------------------------

def test_block_constant_parameters_with_defaults():
    fn = only("block LayerNorm[d, eps = 1e-5](x: f32[..., d]) -> f32[..., d] { return x }")
    assert fn.axis_params == ("d",)
    ((name, default),) = fn.const_params
    assert name == "eps" and isinstance(default, ast.Number) and default.value == 1e-5


def test_block_call_binding_with_a_keyword():
    c = expr("LayerNorm[embed, eps=1e-6](x) as ln")
    axis, kw = c.binding
    assert isinstance(axis, ast.Var) and axis.name == "embed"
    assert isinstance(kw, ast.Keyword) and kw.name == "eps" and kw.value.value == 1e-6


def test_index_takes_one_expression():
    e = syntax_error("model M(x: f32[a]) -> f32[a] {\n  y = w[i, j]\n  return x\n}\n")
    assert (e.span.line, e.span.column) == (2, 7)
    assert "an index takes one expression" in e.message
