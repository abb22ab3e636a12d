#!/usr/bin/python3
"""Reference values for QSP's canary statistics, computed with Debian's
scipy (python3-scipy 1.10). Regenerate with:

    /usr/bin/python3 internal/gate/canary/testdata/gen_scipy.py

It writes scipy.json next to this script, or to the path given as the
first argument. Inputs are generated here with a
fixed seed and stored with the results, so the Go tests need neither
Python nor this script to run.
"""
import json
import os

import numpy as np
import scipy
from scipy import stats

rng = np.random.default_rng(20240611)


def lognormal(n, median=0.2, sigma=0.3):
    return list(np.exp(np.log(median) + sigma * rng.standard_normal(n)))


def ints(n, lo, hi):
    return [float(v) for v in rng.integers(lo, hi, n)]


samples = []


def add(name, x, y):
    samples.append({"name": name, "x": [float(v) for v in x], "y": [float(v) for v in y]})


add("1x1", [0.5], [0.2])
add("1x3", [0.5], [0.1, 0.7, 0.9])
add("2x3", [1.0, 4.0], [2.0, 3.0, 5.0])
add("3x3", [1.1, 2.2, 3.3], [0.5, 2.5, 4.5])
add("5x4-scipy-doc", [19, 22, 16, 29, 24], [20, 11, 17, 12])
add("8x8", lognormal(8), lognormal(8, 0.25))
add("8x20", lognormal(8), lognormal(20, 0.22))
add("3x50", lognormal(3), lognormal(50))
add("9x9", lognormal(9), lognormal(9, 0.3))
add("15x22", lognormal(15), lognormal(22, 0.24))
add("ties-5x6", [1, 2, 2, 3, 5], [2, 3, 3, 4, 6, 6])
add("ties-small-int-12x15", ints(12, 0, 5), ints(15, 0, 6))
add("all-tied", [1.0, 1.0, 1.0], [1.0, 1.0])
add("identical-40", lognormal(40), [])
samples[-1]["y"] = list(samples[-1]["x"])
add("100x120", lognormal(100), lognormal(120, 0.21))
add("ties-200x180", ints(200, 0, 20), ints(180, 1, 21))
add("1000x800-shift", lognormal(1000), lognormal(800, 0.22))
add("2500x3000-null", lognormal(2500), lognormal(3000))
add("rounded-ties-2000x2000", list(np.round(lognormal(2000), 2)), list(np.round(lognormal(2000, 0.205), 2)))
add("spread-500x500", lognormal(500, 0.2, 0.3), lognormal(500, 0.2, 0.3 * np.sqrt(2)))
add("negative-values-60x70", list(rng.normal(0, 1, 60)), list(rng.normal(0.3, 1.5, 70)))

mwu = []
for s in samples:
    x, y = s["x"], s["y"]
    n1, n2 = len(x), len(y)
    methods = ["auto", "asymptotic"]
    if n1 * n2 <= 1000:
        methods.append("exact")
    for alt in ["two-sided", "less", "greater"]:
        for method in methods:
            r = stats.mannwhitneyu(x, y, alternative=alt, method=method)
            mwu.append({"sample": s["name"], "alternative": alt, "method": method,
                        "u": float(r.statistic), "p": float(r.pvalue)})

levene = []
for s in samples:
    x, y = s["x"], s["y"]
    if len(x) + len(y) <= 2:
        continue
    r = stats.levene(x, y, center="median")
    levene.append({"sample": s["name"], "w": float(r.statistic), "p": float(r.pvalue)})

tails = []
for s in samples:
    x, y = np.array(s["x"]), np.array(s["y"])
    for pct in [90.0, 99.0, 100.0]:
        m, n = len(y), len(x)
        r = max(1, int(np.floor(m * (1 - pct / 100) + 1e-9)))
        t = np.sort(y)[m - r]
        k = int(np.sum(x > t))
        p = float(stats.betabinom.sf(k - 1, n, r, m - r + 1))
        tails.append({"sample": s["name"], "percentile": pct, "r": r, "threshold": float(t),
                      "exceed": k, "p": p})

fisher = []
tables = [
    [[3, 997], [1, 999]],
    [[0, 10000], [0, 10000]],
    [[20, 9980], [0, 10000]],
    [[2, 9998], [0, 10000]],
    [[150, 9850], [100, 9900]],
    [[100, 9900], [150, 9850]],
    [[5200, 994800], [5000, 995000]],
    [[10, 40], [30, 20]],
    [[0, 5], [5, 0]],
    [[7, 0], [3, 4]],
    [[1, 1000000], [0, 100]],
    [[212, 9788], [98, 9902]],
]
for t in tables:
    for alt in ["less", "greater"]:
        r = stats.fisher_exact(t, alternative=alt)
        fisher.append({"table": t, "alternative": alt, "p": float(r[1])})

# Order statistics of the pairwise differences x_i - y_j, and their
# median (the Hodges-Lehmann estimate), from the materialised differences.
hl = []
for s in samples:
    x, y = np.array(s["x"]), np.array(s["y"])
    if len(x) * len(y) > 3_000_000:
        continue
    d = np.sort(np.subtract.outer(x, y).ravel())
    mn = len(d)
    ks = sorted(set([0, mn // 7, mn // 3, mn // 2, mn - 1 - mn // 5, mn - 1]))
    hl.append({"sample": s["name"], "median": float(np.median(d)),
               "ranks": ks, "values": [float(d[k]) for k in ks]})

out = {
    "generator": "internal/gate/canary/testdata/gen_scipy.py",
    "scipy": scipy.__version__,
    "numpy": np.__version__,
    "samples": samples,
    "mannwhitneyu": mwu,
    "levene_median": levene,
    "tail_betabinom": tails,
    "fisher_exact": fisher,
    "pairwise_differences": hl,
}


def clean(v):
    """JSON has no NaN: scipy's NaN results become null."""
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, list):
        return [clean(e) for e in v]
    if isinstance(v, dict):
        return {k: clean(e) for k, e in v.items()}
    return v


import sys

target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "scipy.json")
with open(target, "w") as f:
    json.dump(clean(out), f, indent=1, allow_nan=False)
