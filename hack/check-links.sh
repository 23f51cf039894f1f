#!/usr/bin/env bash
# `make lint` (after clippy): every relative link in the repository's Markdown
# points to a file inside the repository, and every #anchor to a heading that
# exists in the target, by GitHub's anchor rules. External http(s) and mailto
# links are not fetched. Prints each bad link as `file:line: link: reason` and
# exits 1 if there is any.
#
#   hack/check-links.sh            # README.md, docs/, benches/README.md,
#                                  # charts/*/README.md, examples/
#   hack/check-links.sh FILE...    # only these files
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

exec python3 - "$root" "$@" <<'PY'
import os, re, sys, glob
from urllib.parse import unquote

root = os.path.realpath(sys.argv[1])
args = sys.argv[2:]

def markdown_files():
    if args:
        return args
    files = ["README.md", "benches/README.md"]
    files += glob.glob("docs/**/*.md", recursive=True)
    files += glob.glob("charts/*/README.md")
    files += glob.glob("examples/**/*.md", recursive=True)
    return sorted(f for f in set(files) if os.path.isfile(f))

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")

def outside_fences(text):
    """(line number, line) for each line outside fenced code blocks."""
    fence = None
    for n, line in enumerate(text.split("\n"), 1):
        m = FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        yield n, line

def lines_outside_code(text):
    """(line number, line) for each line outside fenced code blocks, with
    inline code spans blanked out."""
    for n, line in outside_fences(text):
        yield n, re.sub(r"(`+)(.+?)\1", lambda c: " " * len(c.group(0)), line)

def slug(heading):
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = re.sub(r"<[^>]+>", "", text)                         # inline HTML tags
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # drop punctuation but - and _ (letters stay)
    return text.replace(" ", "-")

anchor_cache = {}

def anchors(path):
    if path not in anchor_cache:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        seen, found = {}, set()
        for _, line in outside_fences(text):
            h = re.match(r"^ {0,3}#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$", line)
            if not h:
                continue
            base = slug(h.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        for m in re.finditer(r"""<a\s+(?:name|id)=["']([^"']+)["']""", text):
            found.add(m.group(1))
        anchor_cache[path] = found
    return anchor_cache[path]

INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\s*\)")
REFDEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HTML = re.compile(r"""<(?:a|img)\s[^>]*?(?:href|src)=["']([^"']+)["']""")

def links(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for n, line in lines_outside_code(text):
        for m in INLINE.finditer(line):
            yield n, m.group(1)
        m = REFDEF.match(line)
        if m:
            yield n, m.group(1)
        for m in HTML.finditer(line):
            yield n, m.group(1)

def check(src, link):
    """None if the link is fine, else the reason."""
    if re.match(r"^(https?|mailto):", link, re.I):
        return None
    if re.match(r"^[a-z][a-z0-9+.-]*:", link, re.I):
        return "not a relative link (only http, https and mailto may leave the repository)"
    target, _, anchor = link.partition("#")
    target = unquote(target)
    # By name, as GitHub resolves it: a path that climbs above the repository's
    # root leaves it, even if it comes back in through the checkout's folder.
    here = os.path.relpath(os.path.dirname(os.path.abspath(src)), root)
    if target == "":
        rel = os.path.relpath(os.path.abspath(src), root)
    elif target.startswith("/"):
        rel = os.path.normpath(target.lstrip("/") or ".")
    else:
        rel = os.path.normpath(os.path.join(here, target))
    if rel == ".." or rel.startswith(".." + os.sep):
        return "leaves the repository"
    dest = os.path.realpath(os.path.join(root, rel))
    if dest != root and not dest.startswith(root + os.sep):
        return "leaves the repository (through a symbolic link)"
    if not os.path.exists(dest):
        return "no such file"
    if not anchor:
        return None
    anchor = unquote(anchor)
    if os.path.isdir(dest):
        return "an anchor on a directory"
    if not dest.endswith(".md"):
        return None if re.fullmatch(r"L\d+(-L\d+)?", anchor) else "an anchor into a file that is not Markdown"
    if anchor not in anchors(dest):
        return f"no heading #{anchor} in {os.path.relpath(dest, root)}"
    return None

bad = 0
files = markdown_files()
for path in files:
    for n, link in links(path):
        if not link:
            continue
        reason = check(path, link)
        if reason:
            print(f"{path}:{n}: {link}: {reason}")
            bad += 1
if bad:
    print(f"{bad} bad link(s) in {len(files)} Markdown files", file=sys.stderr)
    sys.exit(1)
print(f"links: {len(files)} Markdown files, every relative link and anchor resolves")
PY
