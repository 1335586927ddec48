"""The agent's tools: calc never evaluates anything but arithmetic, lookup reads the KB at call time."""
import json
import operator
import time
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from agent.tools import TOOLS, calc, lookup, run_tool

KB_FILE = Path(__file__).resolve().parents[1] / "00c_agent_sft" / "kb.json"

# ----------------------------------------------------------------------------- calc: hostile inputs

# (input, expected error). Every one must come back fast, short, and as this exact string.
HOSTILE = [
    ("9**9**9", "error: exponent too large"),
    ("10**100000", "error: exponent too large"),
    ("2**10000000", "error: exponent too large"),
    ("2**101", "error: exponent too large"),
    ("10**50", "error: result too large"),
    ("9999999999**6", "error: result too large"),
    ("(10**25)*(10**25)", "error: result too large"),
    ("0.1**50", "error: result out of range"),
    ("(" * 10000 + "1" + ")" * 10000, "error: expression too long (max 200 chars)"),
    ("(" * 33 + "1" + ")" * 33, "error: too deeply nested"),
    ("(" * 50, "error: too deeply nested"),
    ("1+" * 50000 + "1", "error: expression too long (max 200 chars)"),
    ("1" * 10000, "error: expression too long (max 200 chars)"),
    ("-" * 150 + "1", "error: too many operations"),
    ("x", "error: unexpected character 'x'"),
    ("pi * 2", "error: unexpected character 'p'"),
    ("e", "error: unsupported expression"),
    ("e(1)", "error: unsupported expression"),
    ("__import__('os').system('ls')", "error: unexpected character '_'"),
    ("().__class__", "error: unexpected character '_'"),
    ("()", "error: unsupported expression"),
    ("(1)(2)", "error: unsupported expression"),
    ("[1,2][0]", "error: unexpected character '['"),
    ("{'a':1}", "error: unexpected character '{'"),
    ("lambda: 1", "error: unexpected character 'l'"),
    ("[x for x in (1,)]", "error: unexpected character '['"),
    ("f'{1+1}'", "error: unexpected character 'f'"),
    ("'1'", "error: unexpected character \"'\""),
    ("b'1'", "error: unexpected character 'b'"),
    ("(a:=1)", "error: unexpected character 'a'"),
    ("...", "error: unsupported expression"),
    ("1j", "error: unexpected character 'j'"),
    ("True + 1", "error: unexpected character 'T'"),
    ("None", "error: unexpected character 'N'"),
    ("nan", "error: unexpected character 'n'"),
    ("0x10", "error: unexpected character 'x'"),
    ("1_000", "error: unexpected character '_'"),
    ("1,234", "error: unexpected character ','"),
    ("1 < 2", "error: unexpected character '<'"),
    ("1 @ 2", "error: unexpected character '@'"),
    ("~1", "error: unexpected character '~'"),
    ("1\x00", "error: unexpected character '\\x00'"),
    ("١٢٣", "error: unexpected character '١'"),
    ("2^10", "error: use ** for powers, not ^"),
    ("1e309", "error: number out of range"),
    ("1e-400", "error: number out of range"),
    ("1e99999", "error: number out of range"),
    ("1e30", "error: number out of range"),
    ("1234567890123456789012345678901", "error: number out of range"),
    ("0**-1", "error: division by zero"),
    ("1/0", "error: division by zero"),
    ("1//0", "error: division by zero"),
    ("1%0", "error: division by zero"),
    ("1/(2-2)", "error: division by zero"),
    ("2**0.5", "error: exponent must be an integer"),
    ("(-8)**(1/3)", "error: exponent must be an integer"),
    ("", "error: empty expression"),
    ("   ", "error: empty expression"),
    ("=", "error: empty expression"),
    ("5 5", "error: invalid syntax"),
    ("2***3", "error: invalid syntax"),
    ("1.2.3", "error: invalid syntax"),
    ("(", "error: invalid syntax"),
    ("1 +", "error: invalid syntax"),
    ("007", "error: invalid syntax"),
    ("1==1", "error: unexpected character '='"),
    (None, "error: expression must be a string"),
    (12, "error: expression must be a string"),
    (b"1+1", "error: expression must be a string"),
]


@pytest.mark.parametrize("expr, expected", HOSTILE, ids=[repr(e)[:30] for e, _ in HOSTILE])
def test_calc_hostile_inputs_fail_fast_with_a_short_error(expr, expected):
    t0 = time.perf_counter()
    out = calc(expr)
    elapsed = time.perf_counter() - t0
    assert out == expected
    assert len(out) < 80
    assert elapsed < 1.0, f"{expr!r} took {elapsed:.3f}s"


VALID = [
    ("1 + 2", "3"), ("1234 + 5678", "6912"), ("-(-(-1))", "-1"), ("((((1))))", "1"),
    ("0.1 + 0.2", "0.3"), ("1/3", "0.333333333333"), ("2/3", "0.666666666667"), ("7/2", "3.5"),
    ("6/3", "2"), ("2**-1", "0.5"), ("-5 // 2", "-3"), ("7 % -3", "-2"), ("-7 % 3", "2"),
    ("7.5 // 2", "3"), ("-7.5 % 2", "0.5"), ("2 ** 3 ** 2", "512"), ("-2**2", "-4"), ("+5", "5"),
    ("(-2)**3", "-8"), ("0**0", "1"), ("2**100", "1267650600228229401496703205376"),
    ("10**49", "1" + "0" * 49), ("1/3*3", "1"), ("1.5e2", "150"), (".5 + 5.", "5.5"),
    ("3 × 4", "12"), ("8 ÷ 2", "4"), ("5 − 7", "-2"), ("12 * 3 =", "36"), ("  2*21  ", "42"),
    ("1 +\n 2", "3"), ("00", "0"), ("1e29", "1" + "0" * 29), ("1e-29", "0." + "0" * 28 + "1"),
    ("2**-10", "0.0009765625"), ("1/3000000", "0.000000333333333333"),
    ("123456789012345.5", "123456789012345.5"), ("1234567890123 + 1/3", "1234567890123"),
    ("100/7", "14.2857142857"), ("-1/3", "-0.333333333333"), ("0.5 - 0.5", "0"),
    ("(" * 32 + "1" + ")" * 32, "1"), ("-" * 100 + "1", "1"), ("99.99 * 3", "299.97"),
]


@pytest.mark.parametrize("expr, expected", VALID)
def test_calc_valid_expressions_are_exact(expr, expected):
    assert calc(expr) == expected


# ----------------------------------------------------------------------------- calc: properties


class TooLarge(Exception):
    pass


def _int_tree(draw, depth: int) -> tuple[str, int]:
    """Draw (expression string, its value) together; the value is computed by Python ints here."""
    if depth == 0 or draw(st.booleans()):
        n = draw(st.integers(-10**6, 10**6))
        return (f"({n})" if n < 0 else str(n)), n
    op = draw(st.sampled_from(["+", "-", "*", "//", "%", "**"]))
    ls, lv = _int_tree(draw, depth - 1)
    if op == "**":
        k = draw(st.integers(0, 4))
        rs, rv = str(k), k
    else:
        rs, rv = _int_tree(draw, depth - 1)
    return f"({ls} {op} {rs})", (lv, op, rv)


def _value(tree) -> int:
    """Evaluate the drawn tree left to right, as calc does; ZeroDivisionError/TooLarge propagate."""
    if isinstance(tree, int):
        return tree
    lt, op, rt = tree
    a, b = _value(lt), _value(rt)
    v = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "//": lambda: a // b,
         "%": lambda: a % b, "**": lambda: a ** b}[op]()
    if abs(v) >= 10**50:
        raise TooLarge
    return v


@st.composite
def int_expressions(draw):
    return _int_tree(draw, depth=3)


@settings(max_examples=300, deadline=None)
@given(int_expressions())
def test_calc_matches_python_integer_arithmetic(case):
    expr, tree = case
    try:
        expected = str(_value(tree))
    except ZeroDivisionError:
        expected = "error: division by zero"
    except TooLarge:
        expected = "error: result too large"
    assert calc(expr) == expected, expr


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["+", "-", "*", "/"]), st.integers(-999, 999),
                          st.integers(0, 99)), min_size=1, max_size=6))
def test_calc_division_and_decimals_follow_the_documented_rounding(terms):
    """Decimals like 12.05 are exact; a result is exact when it terminates, else 12 significant digits."""
    expr, value = "0", Fraction(0)
    for op, whole, cents in terms:
        lit = f"{abs(whole)}.{cents:02d}"
        x = Fraction(abs(whole) * 100 + cents, 100) * (1 if whole >= 0 else -1)
        expr = f"({expr}) {op} ({'-' if whole < 0 else ''}{lit})"  # left to right, like `value`
        if op == "/" and x == 0:
            assert calc(expr) == "error: division by zero"
            return
        value = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}[op](value, x)
    out = calc(expr)
    assert not out.startswith("error"), (expr, out)
    got = Fraction(Decimal(out))
    den = value.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    if den == 1:
        assert got == value, (expr, out)  # terminating decimal: exact
    else:
        assert abs(got - value) <= abs(value) * Fraction(1, 10**11), (expr, out)
        assert len(out.lstrip("-").replace(".", "").lstrip("0")) <= 12 or abs(value) >= 10**12


def test_calc_never_raises_on_random_text():
    @settings(max_examples=500, deadline=None)
    @given(st.text(alphabet="0123456789.eE+-*/%() ^_ax", max_size=60) | st.text(max_size=60))
    def check(s):
        out = calc(s)
        assert isinstance(out, str) and len(out) < 80 + len(s)
    check()


# ----------------------------------------------------------------------------- lookup


@pytest.mark.parametrize("query, answer", [
    ("capital of france", "Paris"), ("Capital of France?", "Paris"),
    ("the capital of france", "Paris"), ("capital of  FRANCE.", "Paris"),
    ("  The Capital Of France!!  ", "Paris"), ("author of Hamlet", "William Shakespeare"),
    ("chemical symbol of gold", "Au"), ("speed of light", "299,792,458 metres per second"),
    ("longest river in Africa", "the Nile"), ("longest river of Africa", "the Nile"),
    ("author of The Lord of the Rings", "J. R. R. Tolkien"),
    ("capital of the U.S.A.", "Washington, D.C."), ("capital of Colombia", "Bogotá"),
    ("author of Harry Potter and the Philosopher’s Stone", "J. K. Rowling"),
    ("composer of Für Elise", "Ludwig van Beethoven"), ("composer of fur elise", "Ludwig van Beethoven"),
    ("number of moons of Mars", "2"), ("year of the moon landing", "1969"),
])
def test_lookup_hits_shipped_kb_with_variants(query, answer):
    assert lookup(query) == answer


def test_lookup_misses_and_bad_queries():
    assert lookup("capital of Mongolia") == "not found: capital of mongolia"
    assert lookup("The capital of Atlantis?") == "not found: capital of atlantis"
    assert lookup("France") == "error: lookup expects '<relation> of <entity>'"
    assert lookup("capital of") == "error: lookup expects '<relation> of <entity>'"
    assert lookup("") == "error: lookup expects '<relation> of <entity>'"
    assert lookup(None) == "error: query must be a string"
    assert lookup("capital of " + "x" * 300) == "error: query too long (max 200 chars)"


def test_lookup_kb_path_env_override_sees_edits_without_restart(tmp_path, monkeypatch):
    kb = tmp_path / "kb.json"
    kb.write_text(json.dumps({"capital of france": "Paris (temp)"}), encoding="utf-8")
    monkeypatch.setenv("KB_PATH", str(kb))
    assert lookup("capital of France") == "Paris (temp)"
    assert lookup("capital of Mongolia") == "not found: capital of mongolia"
    kb.write_text(json.dumps({"capital of france": "Paris (temp)", "capital of mongolia": "Ulaanbaatar"}),
                  encoding="utf-8")
    assert lookup("capital of Mongolia") == "Ulaanbaatar"
    # an explicit path beats the environment variable
    other = tmp_path / "other.json"
    other.write_text('{"capital of france": "Paris (explicit)"}', encoding="utf-8")
    assert lookup("capital of france", kb_path=str(other)) == "Paris (explicit)"


@pytest.mark.parametrize("content, expected", [
    (b'{"capital of france": "Paris",}', "error: knowledge base is not valid JSON (line 1)"),
    (b'{\n"a of b": \n', "error: knowledge base is not valid JSON (line 3)"),
    (b'{"capital of france": "Par\xffis"}', "error: knowledge base is not UTF-8"),
    (b'["capital of france", "Paris"]', "error: knowledge base must be a JSON object of strings"),
    (b'{"capital of france": 1}', "error: knowledge base must be a JSON object of strings"),
    (b'"just a string"', "error: knowledge base must be a JSON object of strings"),
    (b"[" * 100000, "error: knowledge base is not valid JSON (line 1)"),
])
def test_lookup_broken_kb_gives_clear_error(tmp_path, content, expected):
    kb = tmp_path / "kb.json"
    kb.write_bytes(content)
    assert lookup("capital of france", kb_path=kb) == expected


def test_lookup_missing_or_unreadable_kb(tmp_path):
    missing = tmp_path / "nope.json"
    assert lookup("capital of france", kb_path=missing) == f"error: knowledge base not found: {missing}"
    assert lookup("capital of france", kb_path=tmp_path) == f"error: cannot read knowledge base: {tmp_path}"


def test_shipped_kb_is_large_varied_and_well_formed():
    kb = json.loads(KB_FILE.read_text(encoding="utf-8"))
    assert isinstance(kb, dict) and len(kb) >= 300
    relations = {k.split(" of ", 1)[0] for k in kb}
    assert all(" of " in k and k == k.lower() for k in kb)
    assert all(isinstance(v, str) and v.strip() for v in kb.values())
    assert len([r for r in relations if sum(k.startswith(r + " of ") for k in kb) >= 5]) >= 10
    assert "capital of mongolia" not in kb  # a deliberate miss the agent is trained to report
    assert kb["author of hamlet"] == "William Shakespeare"
    assert kb["chemical symbol of gold"] == "Au"
    assert kb["capital of france"] == "Paris"


# ----------------------------------------------------------------------------- registry


def test_run_tool_dispatches_and_rejects_unknown_tools():
    assert set(TOOLS) == {"calc", "lookup"}
    assert run_tool("calc", "1234 + 5678") == "6912"
    assert run_tool("lookup", "capital of Japan") == "Tokyo"
    assert run_tool("search", "x") == "error: unknown tool search"
    assert run_tool("x" * 100, "x") == "error: unknown tool " + "x" * 40
    assert run_tool(None, "x") == "error: unknown tool None"
    assert run_tool("calc", "1/0") == "error: division by zero"
