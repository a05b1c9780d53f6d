"""Parses tiercache's Prometheus text (stdin) with the reference parser
(prometheus_client.parser) and fails on any parse error, duplicate series, or a key type
that does not name the expected bytes (tests/prom_dump.c writes them)."""
import sys

from prometheus_client.parser import text_string_to_metric_families

# The key types prom_dump.c writes, as bytes, and the overflow bucket's label.
HOSTILE = [b"other", b"a\xff:x", b"a\xfe:x", b"a\xef\xbf\xbd:x", b"a\\xff:x", b"a\\\\xff:x",
           b"q\"\\:x", b"\xc3\x28:x", b"\xe2\x82:x", b"{}=,:x", b"#\x7e:x"]


def decode(label):
    """The key type's bytes from its label: \\xNN is a byte, \\\\ a backslash."""
    out, i = bytearray(), 0
    raw = label.encode()
    while i < len(raw):
        if raw[i:i + 2] == b"\\\\":
            out += b"\\"
            i += 2
        elif raw[i:i + 2] == b"\\x":
            out.append(int(raw[i + 2:i + 4], 16))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def main():
    text = sys.stdin.buffer.read().decode("utf-8")  # the format is UTF-8: fails otherwise
    seen = set()
    per_metric = {}
    families = list(text_string_to_metric_families(text))
    for fam in families:
        for s in fam.samples:
            ident = (s.name, tuple(sorted(s.labels.items())))
            if ident in seen:
                sys.exit(f"duplicate series: {ident}")
            seen.add(ident)
            if "key_type" in s.labels:
                per_metric.setdefault(s.name, []).append(s.labels["key_type"])
    if len(families) < 15:
        sys.exit(f"only {len(families)} metric families")
    sets = per_metric.get("tiercache_sets_total")
    if not sets:
        sys.exit("no tiercache_sets_total series")
    if len(sets) != 129:
        sys.exit(f"{len(sets)} key types, want 128 and the overflow bucket")
    if sets.count("other") != 1:
        sys.exit("the overflow bucket 'other' is not there once")
    types = {decode(label) for label in sets if label != "other"}
    for want in HOSTILE:
        if want not in types:
            sys.exit(f"key type {want!r} has no series of its own")
    print(f"ok: {len(families)} families, {len(seen)} series, {len(sets)} key types, "
          "no duplicates")


main()
