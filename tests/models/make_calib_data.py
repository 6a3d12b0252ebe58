#!/usr/bin/python3
"""Seeded, deterministic calibration and held-out datasets (.npz) for static quantization.

usage: /usr/bin/python3 tests/models/make_calib_data.py OUTDIR [--models DIR] [--det-size S]
           [--only NAME,NAME,...] [--preview DIR] [--scale F]

Every file is np.savez (stored): one float32/int64 array per model input, first axis =
samples. For each dataset NAME there is NAME_calib.npz (calibration) and NAME_held.npz
(held-out evaluation), generated from different seeds; the script checks that no sample
of a held-out set also occurs in its calibration set. OUTDIR/manifest.json lists every
file with its shape, seed, sample count and the model it feeds.

  rec         PP-OCRv4 rec (ch_PP-OCRv4_rec_infer.onnx, input x [N,3,48,W]): rendered text
              lines, PaddleOCR rec preprocessing: resize keeping aspect to height 48 (width
              capped at 320), (x/255 - 0.5)/0.5, zero padding to width 320, CHW, BGR.
              64 calib / 32 held.
  cls         PP-OCR mobile v2.0 cls (input x [N,3,48,192]): the same lines at 48x192, half
              of them rotated by 180 degrees (what cls decides); extra array "label" (int64,
              1 = rotated, the index of cls's "180" class). 64 / 32.
  det         PP-OCRv4 det (input x [N,3,H,W]): rendered pages of several text blocks,
              S x S (--det-size, default 320, a multiple of 32; 640 is PaddleOCR's usual
              size but ~4x slower to run), ImageNet mean/std on x/255, CHW, BGR. 12 / 6.
  wakeword    openwakeword hello_deepa.onnx (input "onnx::Flatten_0" [1,25,96]); and
  wakeword24  hello_deepa_old.onnx / namaste_deepa.onnx ([1,24,96]): windows of 96-dim
              speech embeddings. The melspectrogram and embedding models that produce these
              are not shipped, so the windows are seeded synthetic embeddings: per-dimension
              mean and scale, AR(1) correlation between consecutive frames (rho 0.85), and
              in half of the windows a "keyword" event (a fixed direction added with a bump
              over a few frames). 64 / 32 (the model's batch is fixed to 1, so one sample
              per run).
  bert        make_transformer.py bert.onnx (input_ids int64 [N, seq], vocab 1000, no
  bert_small  attention mask) and bert_small.onnx (vocab 200): token sequences of length 64
              (bert) / 32 (bert_small): id 1 ("[CLS]") first, 2 ("[SEP]") last, the rest
              Zipf-distributed over [5, vocab). Vocab is read from the model when --models
              DIR holds it. 64 / 32.
  mlp         make_transformer.py mlp.onnx (input x [N, 64]): standard normal rows. 64 / 32.
  attention   make_transformer.py attention.onnx (com.microsoft Attention, input x [N, 16, 64]):
              standard normal sequences. 32 / 16.

Text content: DejaVu fonts (Sans, Serif, Mono, Condensed; regular/bold/oblique) cover only
the Latin, digit, punctuation, Greek/Cyrillic and symbol entries of ppocr_keys_v1.txt (about
220 of its 6623 keys), not one CJK ideograph. Lines therefore mix words, numbers, dates,
prices and codes drawn only from the covered key characters with, in about a third of the
lines, runs of synthetic CJK-like glyphs (square cells of horizontal, vertical and slanted
strokes) so the stroke density resembles Chinese text. Backgrounds: random light or dark
colours, gradients, speckle; text colour contrasting; slight rotation, blur and noise.

--scale F multiplies every sample count (e.g. 0.25 for a quick run). --preview DIR saves a
few of the rendered images (before normalisation) as PNG.
"""
import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = os.path.join(HERE, "..", "ort", "node_modules", "@gutenye", "ocr-models", "assets", "ppocr_keys_v1.txt")
FONT_DIR = "/usr/share/fonts/truetype/dejavu"
FONT_FILES = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf",
              "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
              "DejaVuSansCondensed.ttf", "DejaVuSansCondensed-Bold.ttf", "DejaVuSerifCondensed.ttf"]

WORDS = ("invoice total date amount order number customer address phone email price quantity "
         "station exit north south east west street road avenue building floor room open close "
         "monday tuesday friday sunday january march june october delivery receipt payment cash card "
         "tax discount member welcome service hotel bank market school hospital parking ticket "
         "train platform gate terminal flight seat coffee tea rice noodle water milk bread fresh "
         "sale new best quality made in china model type serial batch expiry weight net volume "
         "warning caution danger please do not push pull enter keep left right stop slow "
         "OCR PaddleOCR ONNX Runtime quantization static dynamic engine model data test line").split()
GREEK = ["αβγ", "π", "Ω", "μm", "θ", "ε", "Φ", "Λ"]
CYRILLIC = ["ИЗ", "Я", "ПИ", "ЙЗ"]
SYMBOLS = ["℃", "№", "±", "×", "÷", "°", "‰", "★", "●", "→", "←", "①", "②", "③", "④", "™", "®", "§", "¥", "√", "∞"]


def load_keys():
    keys = []
    if os.path.exists(KEYS):
        with open(KEYS, encoding="utf-8") as f:
            keys = [ln.rstrip("\n") for ln in f]
    return keys


_COVERED = None


def covered_chars():
    """Characters of the generator's alphabet that are ppocr keys and that every font in
    FONT_FILES really has a glyph for (differs from its .notdef box). Cached."""
    global _COVERED
    if _COVERED is not None:
        return _COVERED
    keys = set(load_keys())
    alphabet = set("".join(WORDS + GREEK + CYRILLIC + SYMBOLS)) | set("0123456789-.,:/()[]“”‘’¥$%ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    alphabet.discard(" ")
    cand = sorted(c for c in alphabet if not keys or c in keys)
    ok = set(cand)
    for ff in FONT_FILES:
        f = ImageFont.truetype(os.path.join(FONT_DIR, ff), 24)
        nd = f.getmask("\u4e00")
        nd = (nd.size, bytes(nd))
        for c in cand:
            m = f.getmask(c)
            if (m.size, bytes(m)) == nd:
                ok.discard(c)
    _COVERED = ok
    return ok


class TextGen:
    def __init__(self, rng):
        self.rng = rng
        self.cov = covered_chars()
        self.fonts = {}

    def font(self, idx, size):
        k = (idx, size)
        if k not in self.fonts:
            self.fonts[k] = ImageFont.truetype(os.path.join(FONT_DIR, FONT_FILES[idx]), size)
        return self.fonts[k]

    def keep(self, s):
        return "".join(c for c in s if c in self.cov or c == " ")

    def token(self):
        r = self.rng
        k = r.random()
        if k < 0.45:
            w = WORDS[r.integers(len(WORDS))]
            c = r.random()
            return w.upper() if c < 0.2 else (w.capitalize() if c < 0.5 else w)
        if k < 0.55:
            return "%d" % r.integers(0, 100000)
        if k < 0.62:
            return "%04d-%02d-%02d" % (r.integers(1990, 2030), r.integers(1, 13), r.integers(1, 29))
        if k < 0.69:
            return "%s%d.%02d" % (["¥", "$", ""][r.integers(3)], r.integers(0, 2000), r.integers(0, 100))
        if k < 0.74:
            return "%03d-%04d-%04d" % (r.integers(100, 999), r.integers(0, 9999), r.integers(0, 9999))
        if k < 0.80:
            letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
            return "".join(letters[r.integers(len(letters))] for _ in range(r.integers(1, 4))) + \
                "-%d" % r.integers(10, 9999)
        if k < 0.85:
            return "%d%s" % (r.integers(1, 999), ["kg", "g", "ml", "%", "cm", "km", "℃", "°"][r.integers(8)])
        if k < 0.89:
            return (GREEK + CYRILLIC)[r.integers(len(GREEK) + len(CYRILLIC))]
        if k < 0.93:
            return SYMBOLS[r.integers(len(SYMBOLS))] + WORDS[r.integers(len(WORDS))]
        return ["(", "[", "“", "‘"][r.integers(4)] + WORDS[r.integers(len(WORDS))] + [")", "]", "”", "’"][r.integers(4)]

    def line(self, max_tokens):
        """[(kind, text_or_count)]: 'txt' runs and 'cjk' runs of pseudo glyphs."""
        r = self.rng
        n = int(r.integers(1, max_tokens + 1))
        cjk_line = r.random() < 0.35
        segs = []
        for i in range(n):
            if cjk_line and r.random() < 0.6:
                segs.append(("cjk", int(r.integers(2, 7))))
            else:
                t = self.keep(self.token())
                if t:
                    segs.append(("txt", t))
            if i < n - 1:
                segs.append(("txt", [" ", ", ", ": ", " / ", "  "][r.integers(5)] if r.random() < 0.3 else " "))
        while segs and segs[-1][0] == "txt" and not segs[-1][1].strip():
            segs.pop()
        if not segs:
            segs = [("txt", self.keep("test"))]
        return segs


def draw_pseudo_cjk(draw, x, y, size, count, fill, rng):
    """count square glyph cells of strokes at (x, y) (top-left), cell size `size`."""
    lw = max(1, int(round(size / 11.0)))
    cell = size
    for g in range(count):
        x0 = x + g * cell + cell * 0.08
        y0 = y + cell * 0.12
        w = cell * 0.84
        h = cell * 0.80
        n = int(rng.integers(4, 11))
        for _ in range(n):
            t = rng.random()
            if t < 0.4:  # horizontal stroke
                yy = y0 + h * rng.uniform(0.05, 0.95)
                xa = x0 + w * rng.uniform(0, 0.4)
                xb = x0 + w * rng.uniform(0.6, 1.0)
                draw.line([(xa, yy), (xb, yy)], fill=fill, width=lw)
            elif t < 0.75:  # vertical stroke
                xx = x0 + w * rng.uniform(0.05, 0.95)
                ya = y0 + h * rng.uniform(0, 0.4)
                yb = y0 + h * rng.uniform(0.6, 1.0)
                draw.line([(xx, ya), (xx, yb)], fill=fill, width=lw)
            elif t < 0.92:  # slanted stroke (pie / na)
                xa = x0 + w * rng.uniform(0.2, 0.8)
                ya = y0 + h * rng.uniform(0, 0.4)
                d = rng.choice([-1.0, 1.0])
                draw.line([(xa, ya), (xa + d * w * rng.uniform(0.2, 0.5), ya + h * rng.uniform(0.3, 0.6))],
                          fill=fill, width=lw)
            else:  # dot
                xa = x0 + w * rng.uniform(0.1, 0.9)
                ya = y0 + h * rng.uniform(0.05, 0.9)
                draw.line([(xa, ya), (xa + lw * 1.5, ya + lw * 1.5)], fill=fill, width=lw + 1)


def seg_width(gen, segs, font, size):
    w = 0
    for kind, v in segs:
        w += int(font.getlength(v)) if kind == "txt" else v * size
    return w


def draw_segs(draw, gen, segs, x, y, font, size, fill, rng):
    """Draws a line with its top at y; returns the width."""
    asc, desc = font.getmetrics()
    x0 = x
    for kind, v in segs:
        if kind == "txt":
            draw.text((x, y), v, font=font, fill=fill)
            x += font.getlength(v)
        else:
            draw_pseudo_cjk(draw, x, y + max(0, (asc + desc - size) * 0.5), size, v, fill, rng)
            x += v * size
    return x - x0


def colours(rng):
    """(background rgb, second background rgb for a gradient, text rgb)"""
    if rng.random() < 0.2:  # light text on dark
        bg = rng.integers(0, 90, 3)
        fg = rng.integers(170, 256, 3)
    else:
        bg = rng.integers(150, 256, 3)
        fg = rng.integers(0, 90, 3)
        if rng.random() < 0.25:  # coloured ink
            fg[rng.integers(3)] = rng.integers(100, 200)
    bg2 = np.clip(bg + rng.integers(-50, 51, 3), 0, 255)
    return bg, bg2, fg


def background(w, h, rng):
    bg, bg2, fg = colours(rng)
    t = np.linspace(0.0, 1.0, w if rng.random() < 0.5 else h, dtype=np.float32)
    if rng.random() < 0.5:
        grad = np.zeros((h, w, 3), np.float32) + bg.astype(np.float32)
    elif len(t) == w:
        grad = bg[None, None, :] * (1 - t[None, :, None]) + bg2[None, None, :] * t[None, :, None]
        grad = np.broadcast_to(grad, (h, w, 3)).astype(np.float32)
    else:
        grad = bg[None, None, :] * (1 - t[:, None, None]) + bg2[None, None, :] * t[:, None, None]
        grad = np.broadcast_to(grad, (h, w, 3)).astype(np.float32)
    if rng.random() < 0.3:  # speckle / paper texture
        grad = grad + rng.normal(0, rng.uniform(3, 12), (h, w, 1)).astype(np.float32)
    img = Image.fromarray(np.clip(grad, 0, 255).astype(np.uint8), "RGB")
    return img, tuple(int(c) for c in fg), tuple(int(c) for c in bg)


def finish(img, rng, max_noise=8.0, blur_p=0.3):
    if rng.random() < blur_p:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    a = np.asarray(img, np.float32)
    s = rng.uniform(0, max_noise)
    if s > 0.5:
        a = a + rng.normal(0, s, a.shape).astype(np.float32)
    return np.clip(a, 0, 255).astype(np.uint8)


def render_line(gen, rng, max_tokens=5):
    """One text line crop as an HxWx3 uint8 RGB array."""
    segs = gen.line(max_tokens)
    size = int(rng.integers(14, 41))
    font = gen.font(int(rng.integers(len(FONT_FILES))), size)
    asc, desc = font.getmetrics()
    tw = seg_width(gen, segs, font, size)
    mx, my = int(rng.integers(2, 12)), int(rng.integers(1, 8))
    w, h = tw + 2 * mx, asc + desc + 2 * my
    img, fg, bg = background(w, h, rng)
    d = ImageDraw.Draw(img)
    draw_segs(d, gen, segs, mx, my, font, size, fg, rng)
    if rng.random() < 0.7:
        ang = rng.uniform(-3.0, 3.0)
        img = img.rotate(ang, resample=Image.BILINEAR, expand=False, fillcolor=bg)
    return finish(img, rng)


def rec_preprocess(rgb, width, height=48):
    """PaddleOCR resize_norm_img: aspect-keeping resize to height, width capped, zero pad."""
    h, w = rgb.shape[:2]
    rw = min(width, int(math.ceil(height * w / float(h))))
    rw = max(rw, 1)
    img = Image.fromarray(rgb).resize((rw, height), Image.BILINEAR)
    a = np.asarray(img, np.float32)[:, :, ::-1]  # BGR, as cv2 reads it
    a = (a / 255.0 - 0.5) / 0.5
    out = np.zeros((3, height, width), np.float32)
    out[:, :, :rw] = a.transpose(2, 0, 1)
    return out


def make_lines(seed, n, width, rotate_half, preview=None, tag=""):
    rng = np.random.default_rng(seed)
    gen = TextGen(rng)
    out = np.zeros((n, 3, 48, width), np.float32)
    rot = np.zeros(n, np.int64)
    for i in range(n):
        rgb = render_line(gen, rng, max_tokens=5 if width >= 320 else 3)
        if rotate_half and rng.random() < 0.5:
            rgb = np.ascontiguousarray(rgb[::-1, ::-1])
            rot[i] = 1
        out[i] = rec_preprocess(rgb, width)
        if preview and i < 6:
            Image.fromarray(rgb).save(os.path.join(preview, "%s_%d.png" % (tag, i)))
    return out, rot


def render_page(gen, rng, size):
    img, fg, bg = background(size, size, rng)
    d = ImageDraw.Draw(img)
    if rng.random() < 0.5:  # a coloured panel behind one block
        x0, y0 = rng.integers(0, size // 2, 2)
        x1, y1 = x0 + rng.integers(size // 4, size // 2), y0 + rng.integers(size // 6, size // 3)
        d.rectangle([int(x0), int(y0), int(x1), int(y1)], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    nblocks = int(rng.integers(2, 6))
    scale = size / 320.0
    y = int(rng.integers(2, max(3, int(20 * scale))))
    for _ in range(nblocks):
        if y > size - 12 * scale:
            break
        fsize = int(rng.integers(int(9 * scale) + 1, int(24 * scale) + 2))
        font = gen.font(int(rng.integers(len(FONT_FILES))), fsize)
        asc, desc = font.getmetrics()
        lh = asc + desc + int(rng.integers(1, max(2, fsize // 2)))
        x = int(rng.integers(0, size // 3))
        ink = fg if rng.random() < 0.7 else tuple(int(c) for c in rng.integers(0, 256, 3))
        for _ in range(int(rng.integers(1, 6))):
            if y + lh > size:
                break
            segs = gen.line(6)
            draw_segs(d, gen, segs, x, y, font, fsize, ink, rng)
            y += lh
        y += int(rng.integers(int(4 * scale), int(40 * scale) + 5))
    if rng.random() < 0.6:
        img = img.rotate(rng.uniform(-4, 4), resample=Image.BILINEAR, fillcolor=bg)
    return finish(img, rng, max_noise=6.0, blur_p=0.2)


def make_pages(seed, n, size, preview=None, tag=""):
    rng = np.random.default_rng(seed)
    gen = TextGen(rng)
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    out = np.zeros((n, 3, size, size), np.float32)
    for i in range(n):
        rgb = render_page(gen, rng, size)
        if preview and i < 2:
            Image.fromarray(rgb).save(os.path.join(preview, "%s_%d.png" % (tag, i)))
        a = rgb[:, :, ::-1].astype(np.float32) / 255.0  # BGR as PaddleOCR (cv2) feeds it
        out[i] = ((a - mean) / std).transpose(2, 0, 1)
    return out


def make_wakeword(seed, n, frames, dims=96):
    # fixed per-dimension statistics (shared by every set, so calib and held-out come from
    # one distribution); only the windows differ with the seed
    base = np.random.default_rng(96)
    mu = base.normal(0.0, 1.0, dims).astype(np.float32)
    sd = base.uniform(0.4, 2.0, dims).astype(np.float32)
    direction = base.normal(0.0, 1.0, dims).astype(np.float32)
    direction *= 2.5 / np.linalg.norm(direction) * math.sqrt(dims) / 4
    rng = np.random.default_rng(seed)
    rho = 0.85
    z = np.zeros((n, frames, dims), np.float32)
    z[:, 0] = rng.normal(0, 1, (n, dims))
    for t in range(1, frames):
        z[:, t] = rho * z[:, t - 1] + math.sqrt(1 - rho * rho) * rng.normal(0, 1, (n, dims))
    x = mu + sd * z
    for i in range(n):
        if rng.random() < 0.5:  # keyword-like event
            c = rng.uniform(frames * 0.3, frames * 0.8)
            wdt = rng.uniform(2, 6)
            amp = rng.uniform(0.5, 1.5)
            bump = np.exp(-0.5 * ((np.arange(frames) - c) / wdt) ** 2).astype(np.float32)
            x[i] += amp * bump[:, None] * direction[None, :]
    return x.astype(np.float32)


def model_vocab(models, name, default):
    p = os.path.join(models, name) if models else None
    if p and os.path.exists(p):
        import onnx
        m = onnx.load(p, load_external_data=False)
        for t in m.graph.initializer:
            if t.name == "embeddings.word":
                return int(t.dims[0])
    return default


def make_tokens(seed, n, seq, vocab):
    rng = np.random.default_rng(seed)
    ranks = np.arange(5, vocab, dtype=np.float64)
    p = 1.0 / (ranks - 4 + 10.0) ** 1.1
    p /= p.sum()
    perm = np.random.default_rng(vocab).permutation(ranks.astype(np.int64))  # fixed id order
    ids = perm[rng.choice(len(ranks), size=(n, seq), p=p)]
    ids[:, 0] = 1
    ids[:, -1] = 2
    return ids.astype(np.int64)


def digest_rows(a):
    return {hashlib.sha1(np.ascontiguousarray(r).tobytes()).hexdigest() for r in a}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--models", default=None, help="make_transformer.py output dir (vocab sizes)")
    ap.add_argument("--det-size", type=int, default=320)
    ap.add_argument("--only", default="", help="comma-separated dataset names")
    ap.add_argument("--preview", default=None, help="save some rendered images here")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply sample counts")
    ap.add_argument("--seed", type=int, default=20240601)
    a = ap.parse_args()
    if a.det_size % 32:
        sys.exit("--det-size must be a multiple of 32")
    os.makedirs(a.outdir, exist_ok=True)
    if a.preview:
        os.makedirs(a.preview, exist_ok=True)
    only = set(s for s in a.only.split(",") if s)

    def cnt(x):
        return max(1, int(round(x * a.scale)))

    S = a.seed
    # name -> (input name, model, n calib, n held, generator(seed, n, tag) -> (array, extra))
    specs = [
        ("rec", "x", "ch_PP-OCRv4_rec_infer.onnx", 64, 32,
         lambda s, n, tag: make_lines(s, n, 320, False, a.preview, tag)[0]),
        ("cls", "x", "ch_ppocr_mobile_v2.0_cls_infer.onnx", 64, 32,
         lambda s, n, tag: make_lines(s, n, 192, True, a.preview, tag)),
        ("det", "x", "ch_PP-OCRv4_det_infer.onnx", 12, 6,
         lambda s, n, tag: make_pages(s, n, a.det_size, a.preview, tag)),
        ("wakeword", "onnx::Flatten_0", "hello_deepa.onnx", 64, 32,
         lambda s, n, tag: make_wakeword(s, n, 25)),
        ("wakeword24", "onnx::Flatten_0", "hello_deepa_old.onnx,namaste_deepa.onnx", 64, 32,
         lambda s, n, tag: make_wakeword(s, n, 24)),
        ("bert", "input_ids", "bert.onnx", 64, 32,
         lambda s, n, tag: make_tokens(s, n, 64, model_vocab(a.models, "bert.onnx", 1000))),
        ("bert_small", "input_ids", "bert_small.onnx", 64, 32,
         lambda s, n, tag: make_tokens(s, n, 32, model_vocab(a.models, "bert_small.onnx", 200))),
        ("mlp", "x", "mlp.onnx", 64, 32,
         lambda s, n, tag: np.random.default_rng(s).standard_normal((n, 64)).astype(np.float32)),
        ("attention", "x", "attention.onnx", 32, 16,
         lambda s, n, tag: np.random.default_rng(s).standard_normal((n, 16, 64)).astype(np.float32)),
    ]
    manifest = {"seed": S, "det_size": a.det_size, "datasets": {}}
    t_all = time.time()
    for k, (name, inp, model, nc, nh, fn) in enumerate(specs):
        if only and name not in only:
            continue
        t0 = time.time()
        sc, sh = S + 1000 * k + 1, S + 1000 * k + 2
        calib = fn(sc, cnt(nc), name + "_calib")
        held = fn(sh, cnt(nh), name + "_held")
        extra_c, extra_h = {}, {}
        if isinstance(calib, tuple):  # (inputs, labels): labels as an extra array "label"
            calib, extra_c = calib[0], {"label": calib[1]}
            held, extra_h = held[0], {"label": held[1]}
        if digest_rows(calib) & digest_rows(held):
            sys.exit("%s: held-out set overlaps the calibration set" % name)
        entry = {"input": inp, "model": model, "seconds": 0.0}
        for part, arr, seed, extra in (("calib", calib, sc, extra_c), ("held", held, sh, extra_h)):
            path = os.path.join(a.outdir, "%s_%s.npz" % (name, part))
            np.savez(path, **{inp: arr}, **extra)
            entry[part] = {"file": os.path.basename(path), "samples": int(arr.shape[0]),
                           "shape": list(arr.shape), "dtype": str(arr.dtype), "seed": seed,
                           "bytes": os.path.getsize(path)}
        entry["seconds"] = round(time.time() - t0, 3)
        manifest["datasets"][name] = entry
    manifest["seconds"] = round(time.time() - t_all, 3)
    with open(os.path.join(a.outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    total = sum(e[p]["bytes"] for e in manifest["datasets"].values() for p in ("calib", "held"))
    print("make_calib_data: %d datasets, %.1f MB in %s, %.2f s" %
          (len(manifest["datasets"]), total / 1e6, a.outdir, manifest["seconds"]))


if __name__ == "__main__":
    main()
