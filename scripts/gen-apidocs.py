#!/usr/bin/env python3
"""Generates the API reference from include/tiercache.h, the one place each public function
is documented: docs/man/<function>.3 (man(3) pages) and docs/api.md (one page, markdown).

Run by `make apidocs` (a maintainer step; the outputs are committed)."""
import datetime
import os
import re
import sys

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
header = open(os.path.join(top, "include", "tiercache.h")).read()
version = ".".join(re.search(r"^#define TC_VERSION_%s (\d+)$" % part, header, re.M).group(1)
                   for part in ("MAJOR", "MINOR", "PATCH"))

# A declaration: an optional comment block, then "TC_API <decl>;".
decl_re = re.compile(r"((?:/\*(?:[^*]|\*(?!/))*\*/\s*)?)^TC_API\s+([^;]+);", re.S | re.M)
section_re = re.compile(r"/\* -{20,}\n \* (.+?)\n", re.S)


def clean_comment(c):
    c = c.strip()
    if not c:
        return ""
    c = re.sub(r"^/\*+", "", c)
    c = re.sub(r"\*+/$", "", c)
    lines = [re.sub(r"^\s*\* ?", "", l) for l in c.splitlines()]
    return " ".join(l.strip() for l in lines if l.strip())


def name_of(decl):
    return re.search(r"(\w+)\s*\(", decl).group(1)


entries = []
for m in decl_re.finditer(header):
    decl = " ".join(m.group(2).split())
    section = None
    for s in section_re.finditer(header, 0, m.start()):
        section = s.group(1).strip()
    entries.append((name_of(decl), decl, clean_comment(m.group(1)), section))

# Functions declared together share the comment above the first of them.
last = ""
for i, (n, d, c, s) in enumerate(entries):
    if c:
        last = c
    else:
        entries[i] = (n, d, last, s)

mandir = os.path.join(top, "docs", "man")
os.makedirs(mandir, exist_ok=True)
for f in os.listdir(mandir):
    if f.endswith(".3"):
        os.remove(os.path.join(mandir, f))
date = datetime.date.today().isoformat()


def roff(text):
    return text.replace("\\", "\\e").replace("-", "\\-")


for name, decl, comment, section in entries:
    first = re.split(r"(?<=\.)\s", comment, 1)[0] if comment else name
    with open(os.path.join(mandir, name + ".3"), "w") as f:
        f.write(f'.TH {name.upper()} 3 "{date}" "tiercache {version}" "tiercache manual"\n')
        f.write(f".SH NAME\n{name} \\- {roff(first)}\n")
        f.write(".SH SYNOPSIS\n.nf\n.B #include <tiercache.h>\n.PP\n")
        f.write(f".B {roff(decl)};\n.fi\n")
        f.write(f".SH DESCRIPTION\n{roff(comment)}\n")
        f.write(".PP\nStatus codes are described by tc_strerror(3). Unless stated otherwise the\n"
                "function is thread-safe on one cache handle.\n")
        others = sorted(n for n, _, _, s in entries if s == section and n != name)
        f.write(".SH SEE ALSO\n" + ", ".join(f"{o}(3)" for o in others[:8]) + "\n")

with open(os.path.join(top, "docs", "api.md"), "w") as f:
    f.write("# API reference\n\nGenerated from `include/tiercache.h` by "
            "`scripts/gen-apidocs.py` (`make apidocs`); the header is the reference. "
            "Man pages: `docs/man/`.\n")
    current = None
    for name, decl, comment, section in entries:
        if section != current:
            f.write(f"\n## {section}\n")
            current = section
        f.write(f"\n### `{name}`\n\n```c\n{decl};\n```\n\n{comment}\n")
print(f"{len(entries)} functions documented", file=sys.stderr)
