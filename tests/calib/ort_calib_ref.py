#!/usr/bin/python3
"""numpy re-implementation of ONNX Runtime's calibrators (reference/ort_quantization.md
section 4, calibrate.py: MinMaxCalibrater.compute_data / merge_range and
HistogramCollector), and the comparison of passes/calibrate.c against it.

Usage: ort_calib_ref.py DRIVER WORKDIR   (run by tests/calib/run_calib.sh)

Seeded random batches (normal, uniform, heavy-tailed, all-zero, with NaN, ...) are
written to a case file, the C driver streams them batch by batch through the
collectors, and this script feeds the SAME batches in the same order to the numpy
collectors below (one collect per batch, i.e. ORT with a calibration stride of one
batch). Histograms and edges must match exactly; ranges to 1e-6 relative.

Where ORT would crash the data is cleaned first, as the C code does: NaN/Inf are removed
before collecting (ORT's np.histogram raises on an Inf range, collect_absolute_value's
first np.histogram raises on NaN).
"""
import os
import struct
import subprocess
import sys

import numpy as np


# ---------------------------------------------------------------- MinMax ------------
class MinMaxRef:
    """Per batch ReduceMin/ReduceMax (NaN skipped), compute_data per stride, merge_range."""

    def __init__(self, symmetric, moving_average, averaging_constant=0.01):
        self.sym, self.ma, self.c = symmetric, moving_average, averaging_constant
        self.mins, self.maxs = [], []
        self.range = None

    def collect_batch(self, x):
        x = x[np.isfinite(x)]
        if x.size == 0:
            return
        self.mins.append(np.array([np.nanmin(x)], dtype=np.float32))
        self.maxs.append(np.array([np.nanmax(x)], dtype=np.float32))

    def end_stride(self):
        if not self.mins:
            return
        if self.ma:
            lo = np.nanmean(self.mins, axis=0)
            hi = np.nanmean(self.maxs, axis=0)
        else:
            lo = np.nanmin(self.mins, axis=0)
            hi = np.nanmax(self.maxs, axis=0)
        if self.sym:
            a = np.nanmax([np.abs(lo), np.abs(hi)], axis=0)
            lo, hi = -a, a
        if self.range is None:
            self.range = (lo, hi)
        elif self.ma:
            olo, ohi = self.range
            self.range = (olo + self.c * (lo - olo), ohi + self.c * (hi - ohi))
        else:
            olo, ohi = self.range
            self.range = (min(olo, lo), max(ohi, hi))
        self.mins, self.maxs = [], []

    def result(self):
        self.end_stride()
        return float(self.range[0][0]), float(self.range[1][0])


# ---------------------------------------------------------------- histograms --------
def smooth(p, eps=0.0001):
    is_zeros = (p == 0).astype(np.float32)
    is_nonzeros = (p != 0).astype(np.float32)
    n_zeros = is_zeros.sum()
    n_nonzeros = p.size - n_zeros
    if not n_nonzeros:
        return None
    eps1 = eps * float(n_zeros) / float(n_nonzeros)
    if eps1 >= 1.0:          # ORT asserts; the C code treats it as an infinite divergence
        return None
    hist = p.astype(np.float32)
    hist += eps * is_zeros + (-eps1) * is_nonzeros
    return hist


def kl_f32(p, q):
    """ORT's own entropy(): float32 normalisation and rel_entr."""
    pk = p.astype(np.float32)
    pk = 1.0 * pk / np.sum(pk)
    qk = q.astype(np.float32)
    qk = 1.0 * qk / np.sum(qk)
    vec = pk * np.log(pk / qk)
    return np.sum(vec).astype(np.float32)


def kl_f64(p, q):
    pk = p.astype(np.float64) / np.sum(p, dtype=np.float64)
    qk = q.astype(np.float64) / np.sum(q, dtype=np.float64)
    return float(np.sum(pk * np.log(pk / qk)))


class HistRef:
    def __init__(self, method, symmetric, num_bins, num_quantized_bins, percentile, scenario):
        self.method, self.sym = method, symmetric
        self.num_bins, self.nq = num_bins, num_quantized_bins
        self.percentile, self.scenario = percentile, scenario
        self.h = None

    def collect_batch(self, x):
        x = x[np.isfinite(x)]
        if x.size == 0:
            return
        if self.method == "Percentile" and self.sym:
            self.collect_absolute_value(x)
        else:
            self.collect_value(x)

    def collect_absolute_value(self, x):
        lo, hi = np.nanmin(x), np.nanmax(x)
        a = np.absolute(x)
        if self.h is None:
            hist, edges = np.histogram(a, bins=self.num_bins)
            self.h = (hist, edges.astype(a.dtype), lo, hi)
            return
        old_hist, old_edges, old_lo, old_hi = self.h
        amax = np.nanmax(a)
        if amax > old_edges[-1]:
            width = old_edges[1] - old_edges[0]
            new_edges = np.arange(old_edges[-1] + width, amax + width, width)
            old_edges = np.hstack((old_edges, new_edges))
        hist, edges = np.histogram(a, bins=old_edges)
        hist[: len(old_hist)] += old_hist
        self.h = (hist, edges.astype(a.dtype), min(old_lo, lo), max(old_hi, hi))

    def collect_value(self, x):
        lo, hi = np.nanmin(x), np.nanmax(x)
        th = np.array(max(abs(lo), abs(hi)), dtype=x.dtype)
        if self.h is None:
            hist, edges = np.histogram(x, self.num_bins, range=(-th, th))
            self.h = (hist, edges, lo, hi, th)
            return
        old_hist, old_edges, old_lo, old_hi, old_th = self.h
        if th <= old_th:
            hist, _ = np.histogram(x, len(old_hist), range=(-old_th, old_th))
            self.h = (hist + old_hist, old_edges, min(old_lo, lo), max(old_hi, hi), old_th)
            return
        if old_th == 0:
            hist, edges = np.histogram(x, len(old_hist), range=(-th, th))
            hist += old_hist
        else:
            n_old = len(old_hist)
            stride = 2 * old_th / n_old
            half = int((th - old_th) // stride + 1)
            n_new = n_old + 2 * half
            th = half * stride + old_th
            hist, edges = np.histogram(x, n_new, range=(-th, th))
            hist[half: n_new - half] += old_hist
        self.h = (hist, edges, min(old_lo, lo), max(old_hi, hi), th)

    def result(self, kl="f32"):
        if self.h is None:
            return None
        if self.method == "Percentile":
            return self.percentile_range()
        if self.method == "Entropy":
            return self.entropy_range(kl)
        return self.distribution()

    def percentile_range(self):
        hist, edges, lo, hi = self.h[:4]
        cdf = np.cumsum(hist / hist.sum())
        if self.sym:
            i = np.searchsorted(cdf, self.percentile / 100.0)
            r = (-edges[i], edges[i])
        else:
            cut = (100.0 - self.percentile) / 200.0
            r = (edges[np.searchsorted(cdf, cut)], edges[np.searchsorted(cdf, 1.0 - cut)])
        rlo, rhi = r
        if rlo < lo:
            rlo = lo
        if rhi > hi:
            rhi = hi
        return float(rlo), float(rhi), None, None

    def entropy_range(self, kl):
        hist, edges, lo, hi = self.h[:4]
        nb = hist.size
        zero, hq, nq = nb // 2, self.nq // 2, self.nq
        divs, cands = [], []
        for i in range(hq, zero + 1):
            start, end = zero - i, min(zero + i + 1, nb)
            cands.append((edges[start], edges[end]))
            sliced = hist[start:end].copy()
            p = sliced.copy()
            p[0] += hist[:start].sum()
            p[-1] += hist[end:].sum()
            nonzeros = (p != 0).astype(np.int64)
            m = sliced.size // nq
            qb = np.zeros(nq, dtype=np.int64)
            for g in range(nq):
                qb[g] = sliced[g * m:(g + 1) * m].sum()
            qb[-1] += sliced[nq * m:].sum()
            q = np.zeros(p.size, dtype=np.int64)
            for g in range(nq):
                norm = nonzeros[g * m:(g + 1) * m].sum()
                if norm != 0:
                    q[g * m:(g + 1) * m] = qb[g] / norm
            ps, qs = smooth(p), smooth(q)
            if ps is None or qs is None:
                divs.append(np.inf)
            else:
                divs.append(float(kl_f32(ps, qs)) if kl == "f32" else kl_f64(ps, qs))
        k = int(np.argmin(np.array(divs)))
        rlo, rhi = cands[k]
        if rlo < lo:
            rlo = lo
        if rhi > hi:
            rhi = hi
        return float(rlo), float(rhi), None, None, divs

    def distribution(self):
        hist, edges = self.h[:2]
        values = (edges[:-1] + edges[1:]) * 0.5
        if self.scenario == "p3":
            fact = np.abs(values) / values
            fact[np.isnan(fact)] = 1
            fact[np.isinf(fact)] = 1
            values = np.abs(values) ** (1.0 / 3.0) * fact
        avg = (hist * values).sum() / hist.sum()
        with np.errstate(invalid="ignore"):
            std = ((hist * values ** 2).sum() / hist.sum() - avg ** 2) ** 0.5
        return (float(edges.min()), float(edges.max()),
                float(np.float32(avg)), float(np.float32(std)))


# ---------------------------------------------------------------- data --------------
def gen_cases(rng):
    """name -> list over batches of list over tensors of float32 arrays"""
    def batches(nb, f):
        return [f(b) for b in range(nb)]
    f32 = lambda a: np.asarray(a, dtype=np.float32)
    cases = {}
    cases["normal"] = batches(8, lambda b: [
        f32(rng.standard_normal(int(rng.integers(500, 3000))) * (1 + 0.4 * b)),   # widening
        f32(rng.standard_normal(2000) * (3.0 / (1 + b)) + 0.5),                  # shrinking
        f32(np.maximum(rng.standard_normal(1500), 0) * 2)])                      # relu-like
    cases["uniform"] = batches(6, lambda b: [
        f32(rng.uniform(-0.3, 2.0 + b, 4000)),
        f32(rng.uniform(-1e-3, 1e-3, 1000)),
        f32(rng.uniform(5.0, 6.0, 800))])            # |x| never near 0: abs edges start at ~5
    cases["heavy"] = batches(10, lambda b: [
        f32(rng.standard_t(2, 3000)),
        f32(rng.standard_cauchy(2000) * 0.1),
        f32(rng.lognormal(0, 2, 1000) * (-1) ** b)])
    cases["zero"] = batches(6, lambda b: [
        f32(np.zeros(1000)),
        f32(np.zeros(500) if b < 3 else rng.standard_normal(500)),   # zero threshold first
        f32(np.full(300, 0.75))])                                   # constant: +-0.5 range
    def with_nan(n, scale):
        x = rng.standard_normal(n) * scale
        x[rng.random(n) < 0.05] = np.nan
        return f32(x)
    def with_inf(n):
        x = with_nan(n, 1.0)
        x[rng.random(n) < 0.01] = np.inf
        x[rng.random(n) < 0.01] = -np.inf
        return x
    cases["nan"] = batches(7, lambda b: [
        with_nan(2500, 1 + b),
        f32(np.full(64, np.nan)) if b % 2 == 0 else with_nan(64, 2.0),
        with_nan(1000, 0.01),
        with_inf(700)])
    cases["only_nan"] = batches(3, lambda b: [f32(np.full(10, np.nan)), f32([1.0, -2.0])])
    return cases


def write_case(path, bl):
    with open(path, "wb") as f:
        f.write(struct.pack("<II", len(bl), len(bl[0])))
        for tensors in bl:
            for x in tensors:
                f.write(struct.pack("<I", x.size))
                f.write(x.astype("<f4").tobytes())


CONFIGS = [
    # (label, method, sym, ma, bins, nq, pct, scenario, stride)
    ("minmax", "MinMax", 0, 0, 0, 0, 0, "-", 0),
    ("minmax_sym", "MinMax", 1, 0, 0, 0, 0, "-", 0),
    ("minmax_ma", "MinMax", 0, 1, 0, 0, 0, "-", 0),
    ("minmax_ma_sym", "MinMax", 1, 1, 0, 0, 0, "-", 0),
    ("minmax_ma_stride", "MinMax", 0, 1, 0, 0, 0, "-", 1),
    ("entropy", "Entropy", -1, 0, 128, 128, 0, "-", 0),
    ("entropy_512", "Entropy", -1, 0, 512, 128, 0, "-", 0),
    ("entropy_2048", "Entropy", -1, 0, 2048, 128, 0, "-", 0),
    ("entropy_1001_q63", "Entropy", -1, 0, 1001, 63, 0, "-", 0),
    ("percentile_sym", "Percentile", -1, 0, 2048, 0, 99.999, "-", 0),
    ("percentile_sym_99", "Percentile", 1, 0, 512, 0, 99.0, "-", 0),
    ("percentile", "Percentile", 0, 0, 2048, 0, 99.999, "-", 0),
    ("percentile_99_9", "Percentile", 0, 0, 1000, 0, 99.9, "-", 0),
    ("distribution", "Distribution", -1, 0, 2048, 0, 0, "same", 0),
    ("distribution_p3", "Distribution", -1, 0, 2048, 0, 0, "p3", 0),
]


def rel(a, b):
    if a == b or (a != a and b != b):
        return 0.0
    if a != a or b != b:
        return float("inf")
    return abs(a - b) / max(abs(a), abs(b), 1e-30)


def main():
    driver, work = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(20260527)
    cases = gen_cases(rng)
    passed = failed = 0
    worst = {}
    argmin_f32_vs_f64 = [0, 0]
    for cname, bl in cases.items():
        cpath = os.path.join(work, cname + ".bin")
        write_case(cpath, bl)
        nt = len(bl[0])
        for (label, method, sym, ma, bins, nq, pct, scen, stride) in CONFIGS:
            outdir = os.path.join(work, cname + "_" + label)
            os.makedirs(outdir, exist_ok=True)
            args = [driver, cpath, outdir, method, str(sym), str(ma), str(bins), str(nq),
                    str(pct), scen, str(stride)]
            res = subprocess.run(args, capture_output=True, text=True)
            if cname == "only_nan":
                # a tensor that never had a finite value: compute fails naming it (ORT
                # would return NaN ranges / raise inside np.histogram)
                ok = res.returncode == 0 and res.stdout.startswith("error") and "'t0'" in res.stdout
                print(("ok   " if ok else "FAIL") + f" {cname}/{label}: {res.stdout.strip()[:90]}")
                passed += ok
                failed += not ok
                continue
            if res.returncode != 0 or res.stdout.startswith("error"):
                print(f"FAIL {cname}/{label}: driver: {res.stdout.strip()} {res.stderr.strip()}")
                failed += 1
                continue
            got = {}
            for line in res.stdout.splitlines():
                w = line.split()
                if w[0].startswith("t"):
                    got[w[0]] = w[1:]
            for t in range(nt):
                tag = f"{cname}/{label}/t{t}"
                symm = (method == "Percentile") if sym < 0 else bool(sym)
                if method == "MinMax":
                    ref = MinMaxRef(symm, bool(ma))
                else:
                    ref = HistRef(method, symm, bins, nq or 128, pct or 99.999, scen)
                for tensors in bl:
                    ref.collect_batch(tensors[t])
                    if method == "MinMax" and stride:
                        ref.end_stride()
                if method == "MinMax":
                    want = ref.result() if (ref.range is not None or ref.mins) else None
                    want = want + (None, None) if want else None
                else:
                    want = ref.result()
                g = got.get(f"t{t}")
                if want is None:
                    ok = g is not None and g[0] == "none"
                    print(("ok   " if ok else "FAIL") + f" {tag}: no finite value -> no range")
                    passed += ok
                    failed += not ok
                    continue
                if g is None or g[0] != "ok":
                    print(f"FAIL {tag}: no result from C ({g})")
                    failed += 1
                    continue
                lo, hi, avg, sd = (float.fromhex(v) for v in g[1:5])
                errs = []
                # histograms must be identical
                if method != "MinMax":
                    hist = np.fromfile(os.path.join(outdir, f"t{t}.hist"), dtype="<i8")
                    edges = np.fromfile(os.path.join(outdir, f"t{t}.edges"), dtype="<f4")
                    rh, re_ = ref.h[0], ref.h[1].astype(np.float32)
                    if hist.shape != rh.shape or not np.array_equal(hist, rh):
                        errs.append(f"histogram differs ({hist.size} vs {rh.size} bins, "
                                    f"{int(np.abs(hist[:rh.size] - rh[:hist.size]).sum()) if hist.size == rh.size else '?'} counts)")
                    if edges.shape != re_.shape or not np.array_equal(edges, re_):
                        errs.append("edges differ")
                d = max(rel(lo, want[0]), rel(hi, want[1]))
                if want[2] is not None:
                    # std = sqrt(E[v^2] - avg^2) cancels when std << |avg|: an ulp of a bin
                    # centre's cube root (numpy's SIMD powf vs libm's) shows up amplified,
                    # so std is compared relative to max(std, |avg|). A negative variance
                    # (one occupied bin) is NaN in ORT, 0 in quantd (documented deviation).
                    d = max(d, rel(avg, want[2]))
                    if want[3] != want[3] and sd == 0:
                        pass
                    else:
                        d = max(d, abs(sd - want[3]) / max(abs(want[3]), abs(want[2]), 1e-30)
                                if want[3] == want[3] else rel(sd, want[3]))
                worst[label] = max(worst.get(label, 0.0), d)
                if d > 1e-6:
                    errs.append(f"range ({lo!r}, {hi!r}) avg/std {avg!r}/{sd!r} vs "
                                f"({want[0]!r}, {want[1]!r}) {want[2]!r}/{want[3]!r}, rel {d:.3g}")
                if method == "Entropy":
                    # does float32 (ORT) vs float64 divergence change the argmin?
                    r64 = ref.result(kl="f64")
                    argmin_f32_vs_f64[0] += 1
                    argmin_f32_vs_f64[1] += (r64[0], r64[1]) != (want[0], want[1])
                    if errs and (r64[0], r64[1]) == (lo, hi):
                        errs = [e + " [equals the float64-KL argmin: float32 tie in ORT]" for e in errs]
                if errs:
                    print(f"FAIL {tag}: " + "; ".join(errs))
                    failed += 1
                else:
                    print(f"ok   {tag}: ({lo:.7g}, {hi:.7g}) bins {g[5]} rel {d:.2g}")
                    passed += 1
    print("worst relative difference per config: " +
          ", ".join(f"{k} {v:.3g}" for k, v in worst.items()))
    print(f"entropy: float32-vs-float64 KL argmin differs in {argmin_f32_vs_f64[1]} of "
          f"{argmin_f32_vs_f64[0]} tensors (reference only)")
    print(f"calib-numpy: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
