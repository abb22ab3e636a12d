#!/usr/bin/python3
"""Reference values for the exact power of QSP's tail-share and count
checks (internal/gate/canary/power.go), computed independently with
Debian's scipy (python3-scipy 1.10). Regenerate with:

    /usr/bin/python3 internal/gate/canary/testdata/gen_power.py

It writes power.json next to this script, or to the path given as the
first argument.

Tail share: n samples per side, a share s of the canary beyond every
other value, the check on the k = max(1, round(n * (1 - percentile/100)))
largest pooled values at level. S ~ Binomial(n, s) canary samples are
beyond everything; the canary's count among the k largest is S plus a
hypergeometric draw of k - S from n - S canary and n baseline values.

Counts: n requests per side, baseline errors ~ Binomial(n, p0), canary
errors ~ Binomial(n, p1); the check fails when the canary rate x/n is
above the tolerated y/n * (1 + inc) + abs and Fisher's one-sided exact
test (scipy.stats.fisher_exact, alternative='greater') is at most level.
"""
import json
import math
import os
import sys

import scipy
from scipy import stats


def tail_share_power(n, s, percentile, level):
    k = max(1, math.floor(n * (1 - percentile / 100) + 0.5))
    k = min(k, 2 * n)
    c = None
    for x in range(k // 2, k + 1):
        if 2 * x > k and stats.hypergeom.sf(x - 1, 2 * n, n, k) <= level:
            c = x
            break
    if c is None:
        return 0.0
    power = stats.binom.sf(c - 1, n, s)
    for S in range(0, c):
        power += stats.binom.pmf(S, n, s) * stats.hypergeom.sf(c - S - 1, 2 * n - S, n - S, k - S)
    return float(min(1.0, power))


def fisher_greater(x, n, y):
    return stats.fisher_exact([[x, n - x], [y, n - y]], alternative="greater")[1]


def count_power(n, p0, p1, level, inc, absolute):
    power = 0.0
    x = 0
    for y in range(0, n + 1):
        py = stats.binom.pmf(y, n, p0)
        tol = (y / n) * (1 + inc) + absolute
        while x <= n and not (x / n > tol):
            x += 1
        while x <= n and fisher_greater(x, n, y) > level:
            x += 1
        if x > n:
            break
        if py > 0:
            power += py * stats.binom.sf(x - 1, n, p1)
    return float(min(1.0, power))


tail = []
for n, s, pct, level in [(100, 0.01, 99, 0.05), (500, 0.01, 99, 0.0325), (868, 0.01, 99, 0.0325),
                         (1000, 0.02, 98, 0.01), (300, 0.05, 95, 0.005), (2000, 0.01, 99, 0.0325)]:
    tail.append({"n": n, "share": s, "percentile": pct, "level": level, "power": tail_share_power(n, s, pct, level)})

counts = []
for n, p0, p1, level, inc, absolute in [(500, 0.01, 0.022, 0.00875, 0.2, 0.0), (2371, 0.01, 0.022, 0.00875, 0.2, 0.0),
                                        (921, 0.0, 0.01, 0.00875, 0.2, 0.0), (1000, 0.05, 0.08, 0.01, 0.0, 0.001),
                                        (3000, 0.001, 0.006, 0.025, 0.5, 0.0)]:
    counts.append({"n": n, "p0": p0, "p1": p1, "level": level, "allowedIncrease": inc, "allowedAbsoluteIncrease": absolute,
                   "power": count_power(n, p0, p1, level, inc, absolute)})

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "power.json")
with open(out, "w") as f:
    json.dump({"scipy": scipy.__version__, "tail_share": tail, "counts": counts}, f, indent=1)
    f.write("\n")
