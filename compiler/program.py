"""Load a .arch file and the files it `use`s into one program: axes, constants, blocks, model."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
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
    decls: list = field(default_factory=list)  # axis definitions and constants, in source order
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
        return _parse(text, file)
    except SyntaxErrorReport as e:
        raise CompileError(Diagnostic(e.message, e.span, help=e.help)) from None


@lru_cache(maxsize=32)
def _parse(text: str, file: str) -> ast.Module:
    # The AST is immutable (frozen dataclasses of tuples), so a file parsed once serves every
    # later compile in the process: the standard library is read by most models, and tools
    # that compile many models in one process (the fuzzer, a notebook) stop re-parsing it.
    return parse(text, file)


def stdlib_path(name: str) -> Optional[str]:
    """The standard library module `name`; only the names it ships, never a path."""
    if name not in stdlib_names():
        return None
    return str(resources.files(STDLIB).joinpath(f"{name}.arch"))


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
                # The compiled file may be named through a link: its uses resolve from its real place.
                real = os.path.realpath(file) if file == path else os.path.abspath(file)
                load(resolve_use(item, real, _root_of(file)), item.span)
            elif isinstance(item, ast.AxisDecl):
                program.axis_decls.extend(item.axes)
                program.decls.extend(item.axes)
            elif isinstance(item, ast.ConstDecl):
                _add_unique(program.consts, item.name, item, "constant")
                program.decls.append(item)
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

    def _root_of(file: str) -> Path:
        stdlib_dir = Path(str(resources.files(STDLIB)))
        if Path(file).resolve().is_relative_to(stdlib_dir.resolve()):
            return stdlib_dir
        # The user named the compiled file (perhaps through a link): its real folder is the root.
        return Path(os.path.realpath(path)).parent

    load(path, None, text)
    return program


def _add_unique(table: dict, name: str, item, what: str) -> None:
    if name in table:
        raise CompileError(Diagnostic(f"{what} `{name}` is defined twice", item.span)
                           .note("first defined here", table[name].span))
    table[name] = item


def resolve_use(item: ast.Use, from_file: str, root: Path) -> str:
    """`use "nn"` is the standard library; `use "path.arch"` is relative to the using file and
    must stay inside `root` (the compiled file's folder): no absolute paths, no `..` out of
    it, no symbolic links, only regular files."""
    if not item.path.endswith(".arch"):
        found = stdlib_path(item.path)
        if found is None:
            raise error(f"no standard library module `{item.path}`", item.span,
                        did_you_mean(item.path, stdlib_names()) or
                        f"the standard library has {', '.join(stdlib_names())}; a file path ends in `.arch`")
        return found
    if os.path.isabs(item.path) or item.path.startswith("~") or "\0" in item.path:
        raise error("`use` takes a path relative to the using file", item.span)
    base = os.path.dirname(from_file)
    target = os.path.normpath(os.path.join(base, item.path))
    root_dir = os.path.abspath(root)
    if os.path.commonpath([target, root_dir]) != root_dir:
        raise error(f"`use \"{item.path}\"` reaches outside {root_dir}, the folder of the compiled file", item.span)
    # Below the root, the real path must be the path itself: no component is a link.
    if os.path.realpath(target) != os.path.join(os.path.realpath(root_dir), os.path.relpath(target, root_dir)):
        raise error(f"`use \"{item.path}\"` goes through a symbolic link; archc does not follow them", item.span)
    if os.path.exists(target) and not os.path.isfile(target):
        raise error(f"`use \"{item.path}\"` is not a regular file", item.span)
    return target
