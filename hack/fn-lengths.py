#!/usr/bin/env python3
"""The longest functions in Rust sources, from the line with `fn` to its
closing brace at the same indent: `python3 hack/fn-lengths.py src` (N=20 for
more rows). How the restructure's "no function over ~80 lines" is measured."""
import re, sys, os
rows = []
for root in sys.argv[1:]:
    for d, _, fs in os.walk(root):
        for f in fs:
            if not f.endswith('.rs'): continue
            p = os.path.join(d, f)
            lines = open(p).read().split('\n')
            in_test = False
            for i, l in enumerate(lines):
                m = re.match(r'^(\s*)(pub(\([^)]*\))? )?(async )?(const )?(unsafe )?fn (\w+)', l)
                if not m: continue
                ind = m.group(1)
                # find closing line "ind}"
                for j in range(i, len(lines)):
                    if lines[j] == ind + '}' or (j == i and l.rstrip().endswith('}')) or (j==i and l.rstrip().endswith(';')):
                        break
                rows.append((j - i + 1, p, i + 1, m.group(7)))
rows.sort(reverse=True)
for r in rows[:int(os.environ.get('N', '15'))]:
    print(f"{r[0]:5d} {r[1]}:{r[2]} {r[3]}")
