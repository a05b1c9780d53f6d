#!/usr/bin/env python3
"""Generates the API reference from include/tiercache.h, the one place the API is
documented, into:

  docs/man/tiercache.3         overview: what the library is, where to start, every function
  docs/man/tiercache-types.3   every public type, field (with its default), status code and
                               macro, and the key and TTL rules
  docs/man/<type>.3            one line, ".so man3/tiercache-types.3", per type name
  docs/man/<function>.3        one page per TC_API function
  docs/man/man.am              the list of pages, included by Makefile.am (make install)
  docs/api.md                  all of it on one markdown page

Run by `make apidocs` (a maintainer step; the outputs are committed).
`gen-apidocs.py --out DIR` writes the same tree under DIR instead, which
scripts/check-apidocs.sh compares with the committed one. The output depends on the header
only (no date), so an unchanged header regenerates byte for byte."""
import argparse
import os
import re
import sys

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--out", default=top, help="root of the output tree (default: the source tree)")
args = ap.parse_args()

header = open(os.path.join(top, "include", "tiercache.h")).read()
version = ".".join(re.search(r"^#define TC_VERSION_%s (\d+)$" % part, header, re.M).group(1)
                   for part in ("MAJOR", "MINOR", "PATCH"))


def clean_comment(c, keep_lines=False):
    """The text of a /* */ comment: one paragraph, or (keep_lines) its lines."""
    c = c.strip()
    if not c:
        return ""
    c = re.sub(r"^/\*+", "", c)
    c = re.sub(r"\*+/$", "", c)
    lines = [re.sub(r"^\s*\* ?", "", l).rstrip() for l in c.splitlines()]
    if keep_lines:
        return "\n".join(lines).strip("\n")
    return " ".join(l.strip() for l in lines if l.strip())


def paragraphs(text):
    """A multi-line comment body split into paragraphs at blank lines."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        joined = " ".join(l.strip() for l in block.splitlines() if l.strip())
        if joined:
            out.append(joined)
    return out


# ------------------------------------------------------------------ sections
# A section: "/* ----\n * Title\n *\n * body\n * ---- */".
section_re = re.compile(r"/\* -{20,}\n((?: \*.*\n)+?) \* -{20,} \*/", re.M)
sections = []  # (start offset, title, body paragraphs)
for m in section_re.finditer(header):
    text = clean_comment("/*" + m.group(1) + "*/", keep_lines=True)
    title, _, body = text.partition("\n")
    sections.append((m.start(), title.strip(), paragraphs(body)))


def section_at(pos):
    cur = None
    for start, title, _ in sections:
        if start < pos:
            cur = title
    return cur


# ------------------------------------------------------------------ functions
comment_re = r"((?:/\*(?:[^*]|\*(?!/))*\*/\s*)?)"
decl_re = re.compile(comment_re + r"^TC_API\s+([^;]+);", re.S | re.M)


def name_of(decl):
    return re.search(r"(\w+)\s*\(", decl).group(1)


functions = []  # (name, decl, comment, section)
for m in decl_re.finditer(header):
    decl = " ".join(m.group(2).split())
    decl = re.sub(r"\s*TC_PRINTF\([^)]*\)", "", decl)
    functions.append([name_of(decl), decl, clean_comment(m.group(1)), section_at(m.start())])
# Functions declared together share the comment above the first of them.
for i, f in enumerate(functions):
    if not f[2] and i > 0:
        f[2] = functions[i - 1][2]

# ------------------------------------------------------------------ types and macros
types = []  # dicts: name, kind, comment, members [(decl, comment)] or decl, section


def parse_members(body, kind):
    """The members of a struct or enum body: (declaration, comment) pairs; a comment on a
    line of its own becomes a note, (None, comment), before the members it introduces."""
    out = []
    pos = 0
    sep = r"[^;/]+;" if kind == "struct" else r"[^,/]+,?"
    item = re.compile(r"\s*(/\*.*?\*/|" + sep + ")", re.S)
    last_end_line = -1
    while pos < len(body):
        m = item.match(body, pos)
        if not m or not m.group(1).strip():
            break
        tok = m.group(1)
        start = m.start(1)
        line = body.count("\n", 0, start)
        if tok.startswith("/*"):
            text = clean_comment(tok)
            if out and out[-1][0] is not None and line == last_end_line and not out[-1][1]:
                out[-1] = (out[-1][0], text)
            else:
                out.append((None, text))
        else:
            decl = " ".join(tok.rstrip(";,").split())
            out.append((decl, ""))
            last_end_line = body.count("\n", 0, m.end(1))
        pos = m.end(1)
    return out


typedef_re = re.compile(
    comment_re + r"^typedef (enum|struct) (\w+) \{\n(.*?)\n\} (\w+);", re.S | re.M)
for m in typedef_re.finditer(header):
    types.append({"name": m.group(5), "kind": m.group(2), "comment": clean_comment(m.group(1)),
                  "members": parse_members(m.group(4), m.group(2)),
                  "section": section_at(m.start())})
opaque_re = re.compile(comment_re + r"^typedef struct (\w+) (\w+);", re.M)
for m in opaque_re.finditer(header):
    types.append({"name": m.group(3), "kind": "opaque", "comment": clean_comment(m.group(1)),
                  "decl": f"typedef struct {m.group(2)} {m.group(3)};",
                  "section": section_at(m.start())})
fnptr_re = re.compile(comment_re + r"^(typedef [^;{]*\(\*(\w+)\)\([^;]*\));", re.S | re.M)
for m in fnptr_re.finditer(header):
    types.append({"name": m.group(3), "kind": "callback", "comment": clean_comment(m.group(1)),
                  "decl": " ".join(m.group(2).split()) + ";", "section": section_at(m.start())})
order = {t: i for i, t in enumerate(["tc_cache", "tc_status", "tc_options", "tc_coherence",
                                     "tc_value", "tc_buf", "tc_loader_fn", "tc_lock",
                                     "tc_stats", "tc_stats_fn"])}
types.sort(key=lambda t: order.get(t["name"], len(order)))

# Object-like macros of the API, with the comment on their line or the one above a group.
macros = []  # (name, value, comment)
macro_re = re.compile(r"((?:/\*(?:[^*]|\*(?!/))*\*/\n)?)^#define (TC_[A-Z0-9_]+) ([^/\n]+?)[ \t]*"
                      r"(/\*[^\n]*?\*/)?[ \t]*$", re.M)
group_comment, last_line = "", -2
for m in macro_re.finditer(header):
    name = m.group(2)
    line = header.count("\n", 0, m.start(2))
    if name == "TC_API" or "(" in name:
        continue
    if m.group(1):
        group_comment = clean_comment(m.group(1))
    elif line != last_line + 1:
        group_comment = ""  # a comment above a run of macros covers that run only
    last_line = line
    macros.append((name, m.group(3).strip(), clean_comment(m.group(4) or "") or group_comment))

rules = [(title, body) for _, title, body in sections if title in ("Keys", "TTLs")]
top_comment = clean_comment(re.match(r"\s*(/\*.*?\*/)", header, re.S).group(1), keep_lines=True)
top_paras = paragraphs(top_comment)

# ------------------------------------------------------------------ roff
def roff(text):
    text = text.replace("\\", "\\e").replace("-", "\\-")
    # A line may not start with a period or an apostrophe (a request to roff).
    return re.sub(r"(^|\n)([.'])", r"\1\\&\2", text)


def th(name):
    # Left-aligned: long URLs and signatures cannot be justified without warnings.
    return f'.TH {name.upper()} 3 "" "tiercache {version}" "tiercache manual"\n.ad l\n'


def see_also(names):
    return ".SH SEE ALSO\n" + ",\n".join(f".BR {n} (3)" for n in names) + "\n"


pages = {}  # file name -> text

# One page per function.
ttl_words = ("ttl_ms",)
for name, decl, comment, section in functions:
    first = re.split(r"(?<=\.)\s", comment, 1)[0] if comment else name
    t = th(name)
    t += f".SH NAME\n{name} \\- {roff(first)}\n"
    t += ".SH SYNOPSIS\n.nf\n.B #include <tiercache.h>\n.PP\n"
    t += f".B {roff(decl)};\n.fi\n"
    t += f".PP\nLink with\n.IR \"$(pkg-config --libs tiercache)\" .\n"
    t += f".SH DESCRIPTION\n{roff(comment)}\n"
    notes = []
    if re.search(r"\bconst char \*(key|ns|name|tag)\b|\*const \*keys", decl):
        notes.append("Keys follow the key rules (KEYS in tiercache-types(3)): an invalid one is "
                     "TC_ERR_ARG and nothing is sent to Redis.")
    if any(w in decl for w in ttl_words):
        notes.append("ttl_ms follows the TTL rules (TTLS in tiercache-types(3)): TC_TTL_DEFAULT, "
                     "TC_TTL_FOREVER, 0 to expire at once.")
    notes.append("Status codes are listed in tiercache-types(3) and described by tc_strerror(3).")
    t += ".SH NOTES\n" + "\n.PP\n".join(roff(n) for n in notes) + "\n"
    others = sorted(n for n, _, _, s in functions if s == section and n != name)
    t += see_also(["tiercache", "tiercache-types"] + others[:8])
    pages[name + ".3"] = t

# The types page.
t = th("tiercache-types")
t += ".SH NAME\ntiercache-types \\- the types, constants and rules of the tiercache API\n"
t += ".SH SYNOPSIS\n.nf\n.B #include <tiercache.h>\n.fi\n"
t += (".SH DESCRIPTION\nEvery public type of tiercache, with each field and its default, "
      "every status code and macro, and the rules for keys and TTLs, as include/tiercache.h "
      "declares them.\n")
for ty in types:
    t += f".SS {ty['name']}\n"
    if ty["comment"]:
        t += roff(ty["comment"]) + "\n"
    if "decl" in ty:
        t += f".PP\n.nf\n.B {roff(ty['decl'])}\n.fi\n"
        continue
    for decl, comment in ty["members"]:
        if decl is None:
            t += f".PP\n.I {roff(comment)}\n" if len(comment) < 200 else f".PP\n{roff(comment)}\n"
            continue
        t += f".TP\n.B {roff(decl)}\n{roff(comment) if comment else ''}\n"
t += ".SS Macros\n"
for name, value, comment in macros:
    t += f".TP\n.B {name} {roff(value)}\n{roff(comment)}\n"
for title, body in rules:
    t += f".SH {title.upper()}\n" + "\n.PP\n".join(roff(p) for p in body) + "\n"
t += see_also(["tiercache", "tc_options_init", "tc_open", "tc_strerror", "tc_get",
               "tc_stats_get"])
pages["tiercache-types.3"] = t
for ty in types:
    if ty["name"] + ".3" not in pages:
        pages[ty["name"] + ".3"] = ".so man3/tiercache-types.3\n"

# The overview page.
t = th("tiercache")
t += ".SH NAME\ntiercache \\- a two-tier cache for multithreaded servers: local tier + Redis\n"
t += ".SH SYNOPSIS\n.nf\n.B #include <tiercache.h>\n.PP\n"
t += ".B cc prog.c $(pkg-config --cflags --libs tiercache)\n.fi\n"
t += ".SH DESCRIPTION\n" + "\n.PP\n".join(roff(p) for p in top_paras[1:]) + "\n"
t += ".SH FUNCTIONS\n"
cur = None
for name, decl, comment, section in functions:
    if section != cur:
        t += f".SS {roff(section)}\n"
        cur = section
    first = re.split(r"(?<=\.)\s", comment, 1)[0] if comment else ""
    t += f".TP\n.BR {name} (3)\n{roff(first)}\n"
t += (".SH FILES\n.TP\n.I docs/guide.md\nthe guide, in the source tree (docs/recipes.md, "
      "docs/operations.md, docs/design/ beside it)\n")
t += see_also(["tiercache-types", "tc_options_init", "tc_open", "tc_get", "tc_set",
               "tc_get_or_set"])
pages["tiercache.3"] = t

# ------------------------------------------------------------------ markdown
md = ["# API reference\n",
      "Generated from `include/tiercache.h` by `scripts/gen-apidocs.py` (`make apidocs`); the "
      "header is the reference, and the manual pages (`man tiercache`, `man tiercache-types`, "
      "`man tc_get`, installed by `make install`; sources in `docs/man/`) are generated from "
      "it too. `make check` fails when they are out of date.\n"]
md.append("## Overview\n")
md += [p + "\n" for p in top_paras[1:]]
md.append("## Types\n")
for ty in types:
    md.append(f"### `{ty['name']}`\n")
    if ty["comment"]:
        md.append(ty["comment"] + "\n")
    if "decl" in ty:
        md.append(f"```c\n{ty['decl']}\n```\n")
        continue
    rows = []
    for decl, comment in ty["members"]:
        if decl is None:
            rows.append(f"\n*{comment}*\n")
        else:
            rows.append(f"- `{decl}`" + (f": {comment}" if comment else ""))
    md.append("\n".join(rows) + "\n")
md.append("### Macros\n")
md.append("\n".join(f"- `{n} {v}`: {c}" for n, v, c in macros) + "\n")
for title, body in rules:
    md.append(f"## {title} (rules)\n")
    md += [p + "\n" for p in body]
md.append("## Functions\n")
cur = None
for name, decl, comment, section in functions:
    if section != cur:
        md.append(f"### {section}\n")
        cur = section
    md.append(f"#### `{name}`\n\n```c\n{decl};\n```\n\n{comment}\n")

# ------------------------------------------------------------------ write
mandir = os.path.join(args.out, "docs", "man")
os.makedirs(mandir, exist_ok=True)
for f in os.listdir(mandir):
    if f.endswith(".3"):
        os.remove(os.path.join(mandir, f))
for f, text in pages.items():
    with open(os.path.join(mandir, f), "w") as out:
        out.write(text)
with open(os.path.join(mandir, "man.am"), "w") as out:
    out.write("# Generated by scripts/gen-apidocs.py with the pages: included by Makefile.am.\n"
              "dist_man3_MANS = \\\n" +
              " \\\n".join(f"\tdocs/man/{f}" for f in sorted(pages)) + "\n")
with open(os.path.join(args.out, "docs", "api.md"), "w") as out:
    out.write("\n".join(md))
print(f"{len(functions)} functions, {len(types)} types, {len(macros)} macros, "
      f"{len(pages)} pages", file=sys.stderr)
