"""Load a .arch file and the files it `use`s into one program: axes, constants, blocks, model."""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Optional

from archlang.grammar import SyntaxErrorReport, ast, parse

from .diagnostics import CompileError, Diagnostic, SourceCache, did_you_mean, error

STDLIB = "archlang.stdlib"


@dataclass
class Program:
    file: str
    axis_decls: list[ast.AxisDef] = field(default_factory=list)
    consts: dict[str, ast.ConstDecl] = field(default_factory=dict)
    blocks: dict[str, ast.Function] = field(default_factory=dict)
    model: Optional[ast.Function] = None


def _read(path: str, sources: SourceCache, span: Optional[ast.Span]) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"file not found: {path}", span) from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"cannot read {path}: {e.__class__.__name__}", span) from None
    sources.add(path, text)
    return text


def parse_source(text: str, file: str) -> ast.Module:
    try:
        return parse(text, file)
    except SyntaxErrorReport as e:
        raise CompileError(Diagnostic(e.message, e.span, help=e.help)) from None


def stdlib_path(name: str) -> Optional[str]:
    res = resources.files(STDLIB).joinpath(f"{name}.arch")
    return str(res) if res.is_file() else None


def stdlib_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(STDLIB).iterdir() if p.name.endswith(".arch"))


def load_program(path: str, sources: SourceCache, text: Optional[str] = None) -> Program:
    """Parse `path` and everything it uses; the model must be in `path` itself."""
    program = Program(path)
    loading: list[str] = []
    loaded: set[str] = set()

    def load(file: str, span: Optional[ast.Span], src: Optional[str] = None) -> None:
        key = str(Path(file).resolve())
        if key in loading:
            raise error(f"`use` cycle: {' -> '.join(Path(p).name for p in loading + [key])}", span)
        if key in loaded:
            return
        loading.append(key)
        module = parse_source(src if src is not None else _read(file, sources, span), file)
        if src is not None:
            sources.add(file, src)
        for item in module.items:
            if isinstance(item, ast.Use):
                load(resolve_use(item, file), item.span)
            elif isinstance(item, ast.AxisDecl):
                program.axis_decls.extend(item.axes)
            elif isinstance(item, ast.ConstDecl):
                _add_unique(program.consts, item.name, item, "constant")
            elif isinstance(item, ast.Function) and item.kind == "block":
                previous = program.blocks.get(item.name)
                if previous is not None and previous.span.file != file and file == path:
                    program.blocks[item.name] = item  # the compiled file's own block shadows a library's
                else:
                    _add_unique(program.blocks, item.name, item, "block")
            elif isinstance(item, ast.Function):
                if file != path:
                    raise error("a model may only be defined in the file being compiled", item.span)
                if program.model is not None:
                    raise CompileError(Diagnostic(f"a second model `{item.name}`; a file defines one model",
                                                  item.span).note("the first is here", program.model.span))
                program.model = item
        loading.pop()
        loaded.add(key)

    load(path, None, text)
    return program


def _add_unique(table: dict, name: str, item, what: str) -> None:
    if name in table:
        raise CompileError(Diagnostic(f"{what} `{name}` is defined twice", item.span)
                           .note("first defined here", table[name].span))
    table[name] = item


def resolve_use(item: ast.Use, from_file: str) -> str:
    """`use "nn"` is the standard library; `use "path.arch"` is relative to the using file."""
    if not item.path.endswith(".arch"):
        found = stdlib_path(item.path)
        if found is None:
            raise error(f"no standard library module `{item.path}`", item.span,
                        did_you_mean(item.path, stdlib_names()) or
                        f"the standard library has {', '.join(stdlib_names())}; a file path ends in `.arch`")
        return found
    base = Path(from_file).resolve().parent
    target = (base / item.path)
    return str(target)
