"""Final answers of math solutions: extraction and equivalence (the check DARLING's math quality uses).

The final answer is ``\\boxed{}``, ``<answer>`` tags, ``#### N``, else the last number; two answers are equal
numerically (integers, decimals, fractions, thousands commas) or, failing that, symbolically
(``sympy.simplify(a - b) == 0`` on a whitelisted expression, under a timeout).
"""

from __future__ import annotations

import re
import signal
import threading
from fractions import Fraction
from typing import Any

from divtune.errors import DivtuneError

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_HASHES = re.compile(r"####\s*([^\n]+)")
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """The content of the ``{...}`` group opening at ``text[start]`` (nested braces balanced), and its end."""
    if start >= len(text) or text[start] != "{":
        return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    return None  # unbalanced


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces included."""
    found = None
    for m in re.finditer(r"\\(?:boxed|fbox)\s*", text):
        got = _braced(text, m.end())
        if got is not None:
            found = got[0]
    return found


def extract_final_answer(text: str) -> str | None:
    """The response's final answer: last ``\\boxed{}``, else last ``<answer>`` span, else ``#### N``, else the
    last number in the text; ``None`` when there is none."""
    if not isinstance(text, str) or not text.strip():
        return None
    boxed = last_boxed(text)
    if boxed is not None and boxed.strip():
        return boxed.strip()
    tags = [s.strip() for s in _ANSWER_TAG.findall(text) if s.strip()]
    if tags:
        inner = last_boxed(tags[-1])
        return (inner or tags[-1]).strip()
    hashes = _HASHES.findall(text)
    if hashes and hashes[-1].strip():
        return hashes[-1].strip()
    nums = _NUMBER.findall(text)
    return nums[-1] if nums else None


def gold_answer(reference: Any) -> str:
    """The reference answer from a dataset value: a number, a plain answer, GSM8K's ``... #### N`` or a
    solution ending in ``\\boxed{}``."""
    if isinstance(reference, bool) or not isinstance(reference, (str, int, float)):
        raise DivtuneError(f"math quality needs meta['answer'] as a string or number, got {type(reference).__name__}")
    text = str(reference).strip()
    if not text:
        raise DivtuneError("math quality needs a non-empty meta['answer'] (the reference answer)")
    hashes = _HASHES.findall(text)
    if hashes:
        return hashes[-1].strip()
    boxed = last_boxed(text)
    return boxed.strip() if boxed else text


_LATEX_NOISE = re.compile(r"\\(?:left|right|!|,|;|:|displaystyle)|\\?\$|\\%|%|\s+")
_TEXT_UNITS = re.compile(r"\\(?:text|mathrm|textbf|mbox)\s*\{[^{}]*\}")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}$")
_PLAIN = re.compile(r"^-?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$", re.IGNORECASE)
_SLASH = re.compile(r"^(-?\d+(?:\.\d+)?)/(-?\d+(?:\.\d+)?)$")


def clean_answer(s: str) -> str:
    """Drop LaTeX spacing/sizing, dollar and percent signs, ``\\text{units}``, ``x =`` prefixes and a final period."""
    stripped = _TEXT_UNITS.sub("", s)
    if _LATEX_NOISE.sub("", stripped):
        s = stripped  # "12 \\text{ cm}": drop the units
    else:  # the answer is text: "\\text{(B)}" -> "(B)"
        s = re.sub(r"\\(?:text|mathrm|textbf|mbox)\s*\{([^{}]*)\}", r"\1", s)
    s = _LATEX_NOISE.sub("", s)
    if re.fullmatch(r"\([A-Za-z]\)", s):  # "(B)" -> "B"
        s = s[1:-1]
    s = s.rstrip(".")
    if "=" in s:  # "x=5" -> "5"
        s = s.rsplit("=", 1)[1]
    return s


def parse_number(s: str) -> Fraction | None:
    """An exact rational from an answer string (``1,234``, ``-2.5``, ``3/4``, ``\\frac{3}{4}``, ``1e3``), else None."""
    s = clean_answer(s)
    if not s:
        return None
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    try:
        if _PLAIN.match(s):
            return Fraction(s)
        m = _SLASH.match(s)
        if m:
            den = Fraction(m.group(2))
            return Fraction(m.group(1)) / den if den else None
        m = _FRAC.match(s)
        if m:
            den = int(m.group(3))
            return (-1 if m.group(1) else 1) * Fraction(int(m.group(2)), den) if den else None
    except (ValueError, ZeroDivisionError):
        return None
    return None


# symbolic comparison: only whitelisted tokens reach sympy's parser (which evaluates Python code)
_SYMPY_TOKENS = re.compile(r"^(?:[0-9.+\-*/()\s]|\*\*|sqrt|pi|[a-z])*$")
_BIG_POWER = re.compile(r"\*\*\s*\(?\s*-?\d{3,}|\*\*[^*]*\*\*")


def _latex_to_sympy(s: str) -> str | None:
    s = clean_answer(s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    for _ in range(20):  # \frac{a}{b} -> ((a)/(b)), innermost structure via brace matching
        i = s.find("\\frac")
        if i < 0:
            break
        a = _braced(s, i + 5)
        b = _braced(s, a[1]) if a else None
        if not (a and b):
            return None
        s = f"{s[:i]}(({a[0]})/({b[0]})){s[b[1]:]}"
    for _ in range(20):
        i = s.find("\\sqrt")
        if i < 0:
            break
        a = _braced(s, i + 5)
        if not a:
            return None
        s = f"{s[:i]}sqrt({a[0]}){s[a[1]:]}"
    s = s.replace("\\pi", "pi").replace("\\cdot", "*").replace("\\times", "*").replace("^", "**")
    s = s.replace("{", "(").replace("}", ")").lower()
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    if not s or len(s) > 120 or not _SYMPY_TOKENS.match(s) or _BIG_POWER.search(s):
        return None
    return s


class _Timeout(Exception):
    pass


def _with_timeout(fn, timeout_s: float):
    """``fn()`` or :class:`_Timeout`: SIGALRM in the main thread, elsewhere a daemon thread abandoned on timeout."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        def on_alarm(signum, frame):  # noqa: ANN001
            raise _Timeout()

        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            return fn()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["v"] = fn()
        except Exception as exc:  # noqa: BLE001
            box["e"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise _Timeout()
    if "e" in box:
        raise box["e"]
    return box["v"]


def sympy_available() -> bool:
    try:
        import sympy  # noqa: F401
    except ImportError:
        return False
    return True


def symbolic_equal(a: str, b: str, timeout_s: float = 2.0) -> bool:
    """``simplify(a - b) == 0`` with sympy (if installed), on whitelisted expressions, under ``timeout_s``."""
    if not sympy_available():
        return False
    ea, eb = _latex_to_sympy(a), _latex_to_sympy(b)
    if ea is None or eb is None:
        return False

    def check() -> bool:
        from sympy import simplify
        from sympy.parsing.sympy_parser import (implicit_multiplication_application, parse_expr,
                                                standard_transformations)

        tr = (*standard_transformations, implicit_multiplication_application)
        return bool(simplify(parse_expr(ea, transformations=tr) - parse_expr(eb, transformations=tr)) == 0)

    try:
        return _with_timeout(check, timeout_s)
    except _Timeout:
        return False
    except Exception:  # noqa: BLE001 - unparsable: not equal
        return False


def answers_equal(pred: str | None, gold: str, *, use_sympy: bool = True, timeout_s: float = 2.0) -> bool:
    """Numeric equality (exact rationals, relative tolerance 1e-9), then cleaned-string, then symbolic."""
    if pred is None or not str(pred).strip():
        return False
    pa, pg = parse_number(pred), parse_number(gold)
    if pa is not None and pg is not None:
        return pa == pg or abs(float(pa - pg)) <= 1e-9 * max(1.0, abs(float(pg)))
    ca, cg = clean_answer(pred).lower(), clean_answer(gold).lower()
    if ca and ca == cg:
        return True
    return use_sympy and symbolic_equal(pred, gold, timeout_s)
