"""The prebuilt parser tables (grammar/_generated_parser.py) are current, decode exactly,
and startup stays light: `check` and `ir` never import onnx or onnxruntime."""
import json
import subprocess
import sys
from pathlib import Path

from archlang.grammar import _generated_parser as generated
from archlang.grammar import gen_parser

REPO = Path(__file__).resolve().parent.parent


def test_regenerating_gives_the_checked_in_file():
    assert gen_parser.GENERATED.read_text() == gen_parser.source(), \
        "arch.lark or lark changed: run `python -m archlang.grammar.gen_parser` and commit the result"


def test_the_tables_decode_exactly():
    tables = gen_parser._canonical(*gen_parser.tables())
    assert json.loads(generated.TABLES, object_hook=gen_parser.decode_hook) == tables


def test_prebuilt_and_freshly_built_parsers_agree():
    from lark import Lark
    from archlang.grammar.parse import parser
    fresh = Lark.open(str(gen_parser.GRAMMAR), **gen_parser.OPTIONS)
    files = sorted(REPO.glob("examples/*.arch")) + sorted(REPO.glob("stdlib/*.arch"))
    assert len(files) > 10
    for f in files:
        text = f.read_text()
        assert parser().parse(text) == fresh.parse(text), f


def test_the_prebuilt_tables_are_used():
    import lark
    assert generated.LARK_VERSION == lark.__version__
    assert generated.GRAMMAR_SHA256 == gen_parser.grammar_digest()


def test_check_and_ir_do_not_import_onnx():
    code = ("import sys\nfrom archlang.compiler import cli\n"
            "for cmd in ('check', 'ir'):\n"
            "    assert cli.main([cmd, sys.argv[1]]) == 0\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime', 'ml_dtypes'))\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code, str(REPO / "examples/gpt2.arch")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
