"""The agent's tools: `calc` (safe arithmetic) and `lookup` (a knowledge-base JSON file).

A tool is a name, one string argument and a function returning a string. Tools never raise:
every problem comes back as a short string starting with "error:" (or "not found:"), because the
model reads the result as its observation and was trained on these exact strings.

calc(expression)
    Python arithmetic only: int/float literals (1, 2.5, .5, 1e3), + - * / // % **, unary - and +,
    parentheses. "×" and "÷" and "−" are read as * / -; surrounding whitespace and one trailing "=" are
    ignored. The expression is parsed with `ast.parse(mode="eval")` and walked over a whitelist of
    node types; nothing is ever `eval`-ed. Values are exact `fractions.Fraction`s, so integers stay
    integers (6/3 -> "2") and decimals have no float noise (0.1 + 0.2 -> "0.3"). A non-integer
    result that is not a short exact decimal is rounded half-even to 12 significant digits (1/3 ->
    "0.333333333333"); the integer part is never rounded; no exponent notation; trailing zeros
    stripped. // and % follow Python (-5 // 2 -> "-3", 7 % -3 -> "-2").
    Bounds: 200 characters, 32 nested parentheses, 100 operators, literals whose numerator and
    denominator have at most 30 digits (so 1e29 and 1e-29 are the extremes), integer exponents with
    |exponent| <= 100, and every intermediate value's integer part and (reduced) denominator at
    most 50 digits each; a power's size is estimated *before* it is computed, so 9**9**9 costs
    nothing. Everything answers in well under a millisecond.
    Errors (exact strings):
        error: expression must be a string
        error: empty expression
        error: expression too long (max 200 chars)
        error: unexpected character 'C'          (C = the first character outside the whitelist)
        error: use ** for powers, not ^
        error: too deeply nested
        error: invalid syntax
        error: unsupported expression              (names, calls, tuples, strings, ... in the AST)
        error: too many operations
        error: number out of range                 (a literal over the 30-digit bound: 1e30, 1e-400)
        error: exponent must be an integer
        error: exponent too large
        error: result too large                    (integer part over 50 digits)
        error: result out of range                 (denominator over 50 digits, e.g. 0.1**50)
        error: division by zero                    (/, //, % by zero and 0 ** negative)
        error: could not evaluate                  (a bug guard; should never be seen)

lookup(query, kb_path=None)
    The knowledge base is one JSON object (UTF-8) mapping "<relation> of <entity>" to an answer,
    e.g. {"capital of france": "Paris", "author of hamlet": "William Shakespeare"}. A user adds a
    fact by adding one "key": "answer" line to it; the file is re-read when it changes (cache
    keyed by path, mtime and size), so no restart or retraining is needed. Which file: `kb_path`,
    else the KB_PATH environment variable, else the shipped 00c_agent_sft/kb.json.
    Keys and queries are normalised the same way: Unicode accents dropped, case-folded, apostrophes
    and periods deleted, other punctuation read as a space, the articles "the", "a", "an" dropped,
    whitespace collapsed. So "Capital of France?", "the capital of france" and "capital of  FRANCE."
    all hit "capital of france". A query without " of " but with " in " is read with the first
    " in " as " of " ("longest river in Africa" -> "longest river of africa").
    Results (exact strings; <...> filled in):
        <answer>
        not found: <normalised query>
        error: query must be a string
        error: query too long (max 200 chars)
        error: lookup expects '<relation> of <entity>'
        error: knowledge base not found: <path>
        error: cannot read knowledge base: <path>
        error: knowledge base too large (max 10 MB)
        error: knowledge base is not UTF-8
        error: knowledge base is not valid JSON (line N)
        error: knowledge base must be a JSON object of strings
        error: could not read knowledge base       (a bug guard; should never be seen)

run_tool(name, arg)
    Runs TOOLS[name](arg); an unknown name gives "error: unknown tool <name>" (name cut to 40
    chars); a tool that raises (only possible if TOOLS was changed) gives "error: tool <name> failed".
"""
from __future__ import annotations

import ast
import importlib.resources
import json
import math
import os
import re
import unicodedata
from decimal import Context, Decimal, ROUND_HALF_EVEN
from fractions import Fraction
from pathlib import Path
from typing import Callable

# ----------------------------------------------------------------------------- calc

MAX_LEN = 200           # characters of input
MAX_PAREN_DEPTH = 32    # nested parentheses; checked before ast.parse, whose C parser can blow up
MAX_OPS = 100           # operator nodes; also bounds the walker's recursion depth
MAX_LITERAL_DIGITS = 30  # digits of a literal's numerator and denominator
MAX_EXPONENT = 100      # |n| in x ** n
MAX_DIGITS = 50         # digits of any value's integer part, and of its denominator
SIG_DIGITS = 12         # significant digits printed for a non-terminating result

_ALLOWED_CHARS = set("0123456789.eE+-*/%() ")
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,4})?")  # a literal, exponent kept small
_LOG10_2 = math.log10(2)


class CalcError(Exception):
    """Carries one of the documented error strings (without the "error: " prefix)."""


def _digits(n: int) -> int:
    """Decimal digits of |n|; anything over ~1000 bits just counts as "too many" (no huge str())."""
    return len(str(abs(n))) if n.bit_length() < 1000 else 10**6


def _check(v: Fraction) -> Fraction:
    """Every intermediate value's integer part and denominator must have at most MAX_DIGITS digits."""
    if abs(v.numerator) // v.denominator >= 10 ** MAX_DIGITS:
        raise CalcError("result too large")
    if _digits(v.denominator) > MAX_DIGITS:
        raise CalcError("result out of range")
    return v


def _literal(text: str) -> Fraction:
    """A number literal, read from its source text (not from Python's float) so 0.1 is exactly 1/10."""
    if not _NUMBER.fullmatch(text):  # underscores, hex, 1j, ... (and over-long exponents)
        raise CalcError("number out of range" if re.fullmatch(r"[\d.]+[eE][+-]?\d+", text)
                        else "unsupported expression")
    mantissa, _, exp = text.lower().partition("e")
    whole, _, frac = mantissa.partition(".")
    scale = (int(exp) if exp else 0) - len(frac)  # |scale| < 10**4 + 200: 10**scale stays cheap
    v = Fraction(int(whole + frac)) * Fraction(10) ** scale
    if _digits(v.numerator) > MAX_LITERAL_DIGITS or _digits(v.denominator) > MAX_LITERAL_DIGITS:
        raise CalcError("number out of range")
    return v


def _power(base: Fraction, exp: Fraction) -> Fraction:
    if exp.denominator != 1:
        raise CalcError("exponent must be an integer")
    n = exp.numerator
    if abs(n) > MAX_EXPONENT:
        raise CalcError("exponent too large")
    if base == 0:
        if n < 0:
            raise CalcError("division by zero")
        return Fraction(int(n == 0))
    # Estimate the result's digits from bit lengths before computing it.
    bits = max(abs(base.numerator).bit_length(), base.denominator.bit_length())
    if abs(n) * (bits - 1) * _LOG10_2 > MAX_DIGITS + 1:
        big = (abs(base) > 1) == (n > 0)
        raise CalcError("result too large" if big else "result out of range")
    return base ** n


_BINOPS: dict[type, Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: Fraction(a // b),
    ast.Mod: lambda a, b: a % b,
    ast.Pow: _power,
}


def _walk(node: ast.AST, src: str) -> Fraction:
    """Evaluate a whitelisted node; anything not listed here is rejected."""
    if isinstance(node, ast.Expression):
        return _walk(node.body, src)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):  # not bool/complex/str
        return _literal(ast.get_source_segment(src, node) or "")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _walk(node.operand, src)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = _walk(node.left, src), _walk(node.right, src)
        if b == 0 and isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)):
            raise CalcError("division by zero")
        return _check(_BINOPS[type(node.op)](a, b))
    raise CalcError("unsupported expression")


def format_number(v: Fraction) -> str:
    """Integers in full; a decimal that ends within 50 places exactly; else 12 significant digits
    (the integer part is never rounded). Plain notation, never 1E+5; trailing zeros stripped."""
    if v.denominator == 1:
        return str(v.numerator)
    den, twos, fives = v.denominator, 0, 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    int_digits = _digits(abs(v.numerator) // v.denominator) if abs(v) >= 1 else 0
    if den == 1 and max(twos, fives) <= MAX_DIGITS:  # terminating decimal: print it exactly
        prec = int_digits + max(twos, fives) + 1
    else:
        prec = max(SIG_DIGITS, int_digits)
    d = Context(prec=prec, rounding=ROUND_HALF_EVEN).divide(Decimal(v.numerator), Decimal(v.denominator))
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _calc(expression: str) -> str:
    if not isinstance(expression, str):
        raise CalcError("expression must be a string")
    s = " ".join(expression.split())  # any whitespace -> single spaces, one line
    s = s.replace("×", "*").replace("÷", "/").replace("−", "-")
    if s.endswith("="):
        s = s[:-1].rstrip()
    if not s:
        raise CalcError("empty expression")
    if len(s) > MAX_LEN:
        raise CalcError(f"expression too long (max {MAX_LEN} chars)")
    for ch in s:
        if ch not in _ALLOWED_CHARS:
            raise CalcError("use ** for powers, not ^" if ch == "^" else f"unexpected character {ch!r}")
    depth = 0
    for ch in s:  # ast.parse recurses per parenthesis: bound it before parsing
        depth += (ch == "(") - (ch == ")")
        if depth > MAX_PAREN_DEPTH:
            raise CalcError("too deeply nested")
    try:
        tree = ast.parse(s, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise CalcError("invalid syntax") from None
    if sum(isinstance(n, (ast.BinOp, ast.UnaryOp)) for n in ast.walk(tree)) > MAX_OPS:
        raise CalcError("too many operations")
    return format_number(_check(_walk(tree, s)))


def calc(expression: str) -> str:
    """Evaluate safe arithmetic exactly; returns the number as a string or "error: ..."."""
    try:
        return _calc(expression)
    except CalcError as e:
        return f"error: {e}"
    except ZeroDivisionError:
        return "error: division by zero"
    except Exception:  # RecursionError, MemoryError, a bug: a tool must never raise
        return "error: could not evaluate"


# ----------------------------------------------------------------------------- lookup

MAX_QUERY_LEN = 200
MAX_KB_BYTES = 10 * 1024 * 1024
_ARTICLES = {"the", "a", "an"}
_DEFAULT_KB = Path(__file__).resolve().parents[1] / "00c_agent_sft" / "kb.json"
_cache: dict[str, tuple[tuple[int, int], dict[str, str] | str]] = {}


def normalize(text: str) -> str:
    """Case-, accent-, punctuation- and article-insensitive form used for keys and queries."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = re.sub(r"['’.]", "", text)          # o'keeffe -> okeeffe, u.s.a. -> usa
    text = re.sub(r"[^\w]+|_", " ", text)       # any other punctuation separates words
    return " ".join(w for w in text.split() if w not in _ARTICLES)


def _default_kb_path() -> Path:
    if _DEFAULT_KB.is_file():
        return _DEFAULT_KB
    try:  # installed without the source tree: the data file ships inside the agent_sft package
        return Path(str(importlib.resources.files("agent_sft") / "kb.json"))
    except Exception:
        return _DEFAULT_KB


def _load_kb(path: Path) -> dict[str, str] | str:
    """The normalised index of the KB at `path`, or an error string. Re-read when the file changes."""
    try:
        st = path.stat()
    except OSError:
        return f"error: knowledge base not found: {path}"
    key, stamp = str(path), (st.st_mtime_ns, st.st_size)
    hit = _cache.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    if st.st_size > MAX_KB_BYTES:
        result: dict[str, str] | str = "error: knowledge base too large (max 10 MB)"
    else:
        result = _parse_kb(path)
    _cache[key] = (stamp, result)
    return result


def _parse_kb(path: Path) -> dict[str, str] | str:
    try:
        raw = path.read_bytes()
    except OSError:
        return f"error: cannot read knowledge base: {path}"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return "error: knowledge base is not UTF-8"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return f"error: knowledge base is not valid JSON (line {e.lineno})"
    except RecursionError:
        return "error: knowledge base is not valid JSON (line 1)"
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        return "error: knowledge base must be a JSON object of strings"
    return {normalize(k): v for k, v in data.items()}


def lookup(query: str, kb_path: str | os.PathLike | None = None) -> str:
    """Answer "<relation> of <entity>" from the knowledge base, or "not found: ..." / "error: ..."."""
    try:
        if not isinstance(query, str):
            return "error: query must be a string"
        if len(query) > MAX_QUERY_LEN:
            return f"error: query too long (max {MAX_QUERY_LEN} chars)"
        q = normalize(query)
        if " of " not in f" {q} " and " in " in f" {q} ":
            q = normalize(f" {q} ".replace(" in ", " of ", 1))
        if " of " not in q:  # needs a relation before and an entity after
            return "error: lookup expects '<relation> of <entity>'"
        if kb_path is None:
            kb_path = os.environ.get("KB_PATH") or _default_kb_path()
        kb = _load_kb(Path(kb_path))
        if isinstance(kb, str):
            return kb
        return kb.get(q, f"not found: {q}")
    except Exception:  # a tool must never raise
        return "error: could not read knowledge base"


SHARED_RELATION = 3  # keys that must share a relation of several words


def relations(kb_path: str | os.PathLike | None = None) -> list[str]:
    """The relations the knowledge base knows, sorted: each key's words before its first "of", and
    before a later "of" that at least SHARED_RELATION keys share ("number of moons" of "number of
    moons of Mars"); [] when it cannot be read. The agent names them in the lookup tool's description."""
    if kb_path is None:
        kb_path = os.environ.get("KB_PATH") or _default_kb_path()
    kb = _load_kb(Path(kb_path))
    if isinstance(kb, str):
        return []
    heads: dict[str, int] = {}
    for k in kb:
        parts = k.split(" of ")
        for i in range(1, len(parts)):
            head = " of ".join(parts[:i])
            heads[head] = heads.get(head, 0) + 1
    return sorted(h for h, n in heads.items() if " of " not in h or n >= SHARED_RELATION)


# ----------------------------------------------------------------------------- registry

TOOLS: dict[str, Callable[[str], str]] = {"calc": calc, "lookup": lookup}


def run_tool(name: str, arg: str) -> str:
    """Run tool `name` on its one string argument; unknown tools give an error string."""
    tool = TOOLS.get(name) if isinstance(name, str) else None
    if tool is None:
        return f"error: unknown tool {str(name)[:40]}"
    try:
        return tool(arg)
    except Exception:  # the tools don't raise; this guards a replaced TOOLS entry
        return f"error: tool {name} failed"
