"""protocols.metrics renders the Prometheus text format 0.0.4 byte for byte as the format's
description says (https://prometheus.io/docs/instrumenting/exposition_formats/), and what it renders
parses back (tests/promtext.py, a strict parser written from the same description) to the values
that went in."""

from __future__ import annotations

import math

import pytest

from protocols.metrics import (
    CONTENT_TYPE,
    Counter,
    Family,
    Gauge,
    Histogram,
    MetricsError,
    Registry,
    render,
)
from tests import promtext


def test_counter_with_labels_help_and_type_lines() -> None:
    c = Counter("hallsync_events_total", "Events stored.", ["hall"])
    c.inc("h2", amount=5)
    c.inc("h1")
    c.inc("h1", amount=2)
    assert render([c.collect()]) == (
        "# HELP hallsync_events_total Events stored.\n"
        "# TYPE hallsync_events_total counter\n"
        'hallsync_events_total{hall="h1"} 3\n'
        'hallsync_events_total{hall="h2"} 5\n'
    )


def test_label_values_escape_backslash_quote_and_newline_and_help_escapes_backslash_and_newline() -> None:
    g = Gauge("x", 'Path C:\\dir\nsecond "line".', ["path", "b"])
    g.set(1, 'a\\b"c\nd', "")
    body = render([g.collect()])
    assert body == (
        '# HELP x Path C:\\\\dir\\nsecond "line".\n'   # in HELP a quote stays as it is
        "# TYPE x gauge\n"
        'x{path="a\\\\b\\"c\\nd",b=""} 1\n'
    )
    parsed = promtext.parse(body)
    assert parsed["x"].help == 'Path C:\\dir\nsecond "line".'
    assert promtext.value(parsed, "x", path='a\\b"c\nd', b="") == 1


def test_histogram_is_cumulative_with_inf_bucket_sum_and_count() -> None:
    h = Histogram("lat_seconds", "Latency.", ["hall"], buckets=[0.1, 1, 5])
    for v in (0.05, 0.1, 0.7, 3.0, 99.0):   # 0.1 falls in le="0.1": upper bounds are inclusive
        h.observe(v, "h1")
    h.observe(0.5, "h1", count=2)
    assert render([h.collect()]) == (
        "# HELP lat_seconds Latency.\n"
        "# TYPE lat_seconds histogram\n"
        'lat_seconds_bucket{hall="h1",le="0.1"} 2\n'
        'lat_seconds_bucket{hall="h1",le="1.0"} 5\n'
        'lat_seconds_bucket{hall="h1",le="5.0"} 6\n'
        'lat_seconds_bucket{hall="h1",le="+Inf"} 7\n'
        'lat_seconds_sum{hall="h1"} 103.85\n'
        'lat_seconds_count{hall="h1"} 7\n'
    )


def test_unlabelled_histogram_and_special_values() -> None:
    h = Histogram("append_seconds", "Append.", buckets=[0.01])
    h.observe(0.002)
    g = Gauge("odd", "Special values.", ["v"])
    g.set(math.inf, "inf")
    g.set(-math.inf, "neg")
    g.set(math.nan, "nan")
    g.set(1.5e-7, "small")
    body = render([h.collect(), g.collect()])
    assert body == (
        "# HELP append_seconds Append.\n"
        "# TYPE append_seconds histogram\n"
        'append_seconds_bucket{le="0.01"} 1\n'
        'append_seconds_bucket{le="+Inf"} 1\n'
        "append_seconds_sum 0.002\n"
        "append_seconds_count 1\n"
        "# HELP odd Special values.\n"
        "# TYPE odd gauge\n"
        'odd{v="inf"} +Inf\n'
        'odd{v="nan"} NaN\n'
        'odd{v="neg"} -Inf\n'
        'odd{v="small"} 1.5e-07\n'
    )
    parsed = promtext.parse(body)
    assert promtext.value(parsed, "append_seconds_bucket", le="+Inf") == 1
    assert math.isnan(promtext.value(parsed, "odd", v="nan"))


def test_an_empty_family_still_says_what_it_is() -> None:
    # a counter nobody incremented yet: HELP and TYPE, no sample (Prometheus accepts this)
    assert render([Counter("a_total", "A.", ["hall"]).collect()]) == "# HELP a_total A.\n# TYPE a_total counter\n"


def test_registry_renders_instruments_and_scrape_time_collectors_in_order() -> None:
    reg = Registry()
    c = reg.counter("b_total", "B.")
    c.inc(amount=2)

    def collect() -> list[Family]:
        f = Family("c", "C.", "gauge", ("dev",))
        f.add(7, "egm-1")
        return [f]

    reg.add(collect)
    extra = Family("d", "D.", "gauge")
    extra.add(0.25)
    body = reg.render([extra])
    assert body == ("# HELP b_total B.\n# TYPE b_total counter\nb_total 2\n"
                    '# HELP c C.\n# TYPE c gauge\nc{dev="egm-1"} 7\n'
                    "# HELP d D.\n# TYPE d gauge\nd 0.25\n")
    assert set(promtext.parse(body)) == {"b_total", "c", "d"}
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


@pytest.mark.parametrize("make", [
    lambda: Counter("bad-name_total", "x"),
    lambda: Counter("no_suffix", "x"),                  # counters end in _total
    lambda: Gauge("g", "x", ["__reserved"]),
    lambda: Gauge("g", "x", ["a", "a"]),
    lambda: Histogram("h", "x", ["le"]),                # le is the bucket label
    lambda: Histogram("h", "x", buckets=[1, 0.5]),
    lambda: Histogram("h", "x", buckets=[1, math.inf]),  # +Inf is implied
])
def test_what_the_format_cannot_carry_is_refused_at_definition(make) -> None:
    with pytest.raises(MetricsError):
        make()


def test_misuse_is_refused() -> None:
    c = Counter("c_total", "x", ["hall"])
    with pytest.raises(MetricsError):
        c.inc()                    # a label missing
    with pytest.raises(MetricsError):
        c.inc("h", amount=-1)      # counters only go up
    g = Gauge("g", "x")
    with pytest.raises(MetricsError):
        g.set(True)                # say 0 or 1 on purpose
    with pytest.raises(MetricsError):
        render([g.collect(), Gauge("g", "again").collect()])


def test_the_strict_parser_rejects_broken_bodies() -> None:
    # the parser the other metric tests rely on must actually fail on malformed input
    for bad in ('# HELP x X.\n# TYPE x gauge\nx{a="b} 1\n',            # unterminated value
                '# HELP x X.\n# TYPE x gauge\nx{a="\\t"} 1\n',          # escape the format does not have
                "# HELP x X.\n# TYPE x gauge\nx 1\nx 2\n",             # same series twice
                "# HELP x X.\n# TYPE x gauge\ny 1\n",                   # sample of another family
                "# HELP x X.\n# TYPE x gauge\nx one\n",
                "# HELP h H.\n# TYPE h histogram\n"                     # +Inf bucket != _count
                'h_bucket{le="1.0"} 1\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 2\n',
                "# HELP x X.\n# TYPE x gauge\nx 1"):                    # no final newline
        with pytest.raises(promtext.FormatError):
            promtext.parse(bad)
