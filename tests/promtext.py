"""A strict parser of the Prometheus text format 0.0.4, written from the format's description (not
from protocols/metrics.py), so the tests can prove a scrape body is valid and read numbers from it
the way Prometheus would.

Strict means: every line is a comment (``# HELP``/``# TYPE``, each at most once per family and
before its samples), a blank line or a sample of the family declared last; names and label names
are valid; label values use only the three escapes; a series appears once; a histogram's buckets
are cumulative with increasing ``le`` and end at ``+Inf`` equal to ``_count``; the body ends with a
newline. Anything else raises :class:`FormatError`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class FormatError(AssertionError):
    pass


@dataclass
class ParsedFamily:
    name: str
    type: str = "untyped"
    help: str | None = None
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)


def _unescape(text: str, allowed: str) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text) or text[i + 1] not in allowed:
                raise FormatError(f"bad escape in {text!r}")
            out.append({"n": "\n", "\\": "\\", '"': '"'}[text[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _value(text: str) -> float:
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        raise FormatError(f"bad value {text!r}")
    return float(text)


def _labels(text: str, line: str) -> tuple[tuple[str, str], ...]:
    """``a="x",b="y"`` (the part between braces) → sorted pairs."""
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        m = LABEL.match(text, i)
        if m is None or text[m.end():m.end() + 2] != '="':
            raise FormatError(f"bad label in {line!r}")
        name = m.group()
        j = m.end() + 2
        raw = []
        while True:
            if j >= len(text):
                raise FormatError(f"unterminated label value in {line!r}")
            if text[j] == "\\":
                raw.append(text[j:j + 2])
                j += 2
                continue
            if text[j] == '"':
                break
            if text[j] == "\n":
                raise FormatError(f"raw newline in a label value in {line!r}")
            raw.append(text[j])
            j += 1
        pairs.append((name, _unescape("".join(raw), 'n\\"')))
        i = j + 1
        if i < len(text):
            if text[i] != ",":
                raise FormatError(f"labels must be separated by commas in {line!r}")
            i += 1
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise FormatError(f"duplicate label in {line!r}")
    return tuple(sorted(pairs))


def parse(body: str) -> dict[str, ParsedFamily]:
    if body and not body.endswith("\n"):
        raise FormatError("the body must end with a newline")
    families: dict[str, ParsedFamily] = {}
    current: ParsedFamily | None = None
    for line in body.split("\n")[:-1]:
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.fullmatch(name):
                    raise FormatError(f"bad metric name in {line!r}")
                fam = families.get(name)
                if fam is None:
                    fam = families[name] = ParsedFamily(name)
                elif fam is not current or fam.samples:
                    raise FormatError(f"{parts[1]} for {name} after its samples or another family")
                current = fam
                text = parts[3] if len(parts) == 4 else ""
                if parts[1] == "HELP":
                    if fam.help is not None:
                        raise FormatError(f"second HELP for {name}")
                    fam.help = _unescape(text, "n\\")
                else:
                    if text not in TYPES or fam.type != "untyped":
                        raise FormatError(f"bad or second TYPE in {line!r}")
                    fam.type = text
            continue
        m = NAME.match(line)
        if m is None:
            raise FormatError(f"bad sample line {line!r}")
        sample, rest = m.group(), line[m.end():]
        labels: tuple[tuple[str, str], ...] = ()
        if rest.startswith("{"):
            end = _closing_brace(rest, line)
            labels = _labels(rest[1:end], line)
            rest = rest[end + 1:]
        if not rest.startswith(" "):
            raise FormatError(f"no value in {line!r}")
        fields = rest.split()
        if len(fields) not in (1, 2):
            raise FormatError(f"bad value/timestamp in {line!r}")
        value = _value(fields[0])
        fam = _family_of(sample, current)
        key = (sample, labels)
        if key in fam.samples:
            raise FormatError(f"series {sample}{dict(labels)} twice")
        fam.samples[key] = value
    for fam in families.values():
        _check_family(fam)
    return families


def _closing_brace(rest: str, line: str) -> int:
    i, quoted = 1, False
    while i < len(rest):
        c = rest[i]
        if c == "\\" and quoted:
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == "}" and not quoted:
            return i
        i += 1
    raise FormatError(f"unclosed labels in {line!r}")


def _family_of(sample: str, current: ParsedFamily | None) -> ParsedFamily:
    """A sample belongs to the family whose HELP/TYPE came last (we always write both)."""
    if current is not None:
        suffixes = ("_bucket", "_sum", "_count") if current.type == "histogram" else ("",)
        if any(sample == current.name + s for s in suffixes):
            return current
    raise FormatError(f"sample {sample} is not directly under its own HELP/TYPE lines")


def _check_family(fam: ParsedFamily) -> None:
    if fam.help is None:
        raise FormatError(f"{fam.name} has no HELP")
    if fam.type == "counter":
        for (_, labels), v in fam.samples.items():
            if not v >= 0:
                raise FormatError(f"counter {fam.name}{dict(labels)} = {v}")
    if fam.type != "histogram":
        return
    series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    sums: dict[tuple[tuple[str, str], ...], float] = {}
    counts: dict[tuple[tuple[str, str], ...], float] = {}
    for (sample, labels), v in fam.samples.items():
        if sample.endswith("_bucket"):
            le = dict(labels).get("le")
            if le is None:
                raise FormatError(f"{sample} without le")
            rest = tuple(p for p in labels if p[0] != "le")
            series.setdefault(rest, []).append((_value(le), v))
        elif sample.endswith("_sum"):
            sums[labels] = v
        else:
            counts[labels] = v
    if set(series) != set(counts) or set(series) != set(sums):
        raise FormatError(f"{fam.name}: every series needs buckets, _sum and _count")
    for labels, buckets in series.items():
        buckets.sort()
        if buckets[-1][0] != math.inf:
            raise FormatError(f"{fam.name}{dict(labels)}: no +Inf bucket")
        cumulative = [c for _, c in buckets]
        if cumulative != sorted(cumulative):
            raise FormatError(f"{fam.name}{dict(labels)}: buckets are not cumulative")
        if buckets[-1][1] != counts[labels]:
            raise FormatError(f"{fam.name}{dict(labels)}: +Inf bucket != _count")


def value(families: dict[str, ParsedFamily], sample: str, **labels: str) -> float:
    """The value of one series (labels given exactly); KeyError when it is not there."""
    for fam in families.values():
        key = (sample, tuple(sorted(labels.items())))
        if key in fam.samples:
            return fam.samples[key]
    raise KeyError(f"{sample}{labels} not in the scrape")


def series(families: dict[str, ParsedFamily], sample: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every series of ``sample``: sorted label pairs → value."""
    out = {}
    for fam in families.values():
        for (name, labels), v in fam.samples.items():
            if name == sample:
                out[labels] = v
    return out
