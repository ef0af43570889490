"""Masks drawn onto a face photo from MTCNN's five landmarks (eyes, nose tip, mouth corners) and
its face box: the pictures `extra=DIR` makes out of outside photos that show no mask.

Geometry lives in the face's own frame: origin between the eyes, x along the eye line, y towards
the mouth, unit = the distance between the eyes. There the nose tip, the mouth and the chin (the
face box's lower edge, checked against the nose-to-mouth distance) give the mask's top and bottom
for each state, and the box's width its sides:
  wear  from the nose bridge (between the eyes and the nose tip) to under the chin;
  nose  (worn incorrectly) from below the nose tip to under the chin: the nose stays uncovered;
  chin  (worn incorrectly) from below the mouth to under the chin: nose and mouth uncovered.
Shapes (surgical with pleats, KN95 with a seam, rounded cloth), colours, prints (stripes, checks,
dots) and straps to the ears vary with the random generator; shading follows the photo's own light.
Our own polygons, no template images.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import cv2
import numpy as np

STATES = ("wear", "nose", "chin")
SHAPES = ("surgical", "kn95", "cloth")
PRINTS = ("plain", "plain", "stripes", "checks", "dots")  # plain twice: most masks are plain
COLOURS = [(235, 235, 235), (150, 190, 225), (30, 30, 35), (120, 120, 125), (225, 170, 185), (40, 55, 95),
           (200, 215, 200), (90, 120, 160), (215, 200, 170), (160, 40, 50)]  # RGB: white, blue, black, ...


@dataclass(frozen=True)
class Face:
    """Five landmarks (left eye, right eye, nose tip, left and right mouth corner) as (5, 2) image
    x, y, and the face box (x1, y1, x2, y2), in the photo's pixels."""
    points: np.ndarray
    box: tuple

    def frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(origin, x unit vector, y unit vector, eye distance) of the face's own frame."""
        le, re = self.points[0], self.points[1]
        d = float(np.linalg.norm(re - le))
        ux = (re - le) / max(d, 1e-6)
        uy = np.array([-ux[1], ux[0]])
        if uy @ (self.points[3:5].mean(0) - (le + re) / 2) < 0:  # y points from the eyes to the mouth
            uy = -uy
        return (le + re) / 2, ux, uy, max(d, 1e-6)

    def to_face(self, xy: np.ndarray) -> np.ndarray:
        o, ux, uy, d = self.frame()
        v = np.asarray(xy, float) - o
        return np.stack([v @ ux, v @ uy], -1) / d

    def to_image(self, uv: np.ndarray) -> np.ndarray:
        o, ux, uy, d = self.frame()
        uv = np.asarray(uv, float)
        return o + (uv[..., :1] * ux + uv[..., 1:] * uy) * d


def key_heights(face: Face) -> dict:
    """Nose tip, mouth and chin heights and the face's half width, in eye distances."""
    p = face.to_face(face.points)
    nose, mouth = p[2, 1], p[3:5, 1].mean()
    gap = max(mouth - nose, 0.2)
    x1, y1, x2, y2 = face.box
    box_bottom = face.to_face(np.array([(x1 + x2) / 2, y2]))[1]
    chin = float(np.clip(box_bottom, mouth + 0.8 * gap, mouth + 2.2 * gap))  # MTCNN's box ends near the chin
    half = float(np.clip((x2 - x1) / 2 / face.frame()[3], 0.85, 1.6))
    centre = float((p[2, 0] + p[3:5, 0].mean()) / 2)  # turned faces: the mask follows nose and mouth
    return {"nose": float(nose), "mouth": float(mouth), "chin": chin, "half": half, "centre": centre,
            "mouth_half": float(abs(p[4, 0] - p[3, 0]) / 2)}


def _curve(p0, p1, p2, n: int = 16) -> np.ndarray:
    """A quadratic Bezier from p0 to p2 pulled towards p1."""
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * np.asarray(p0) + 2 * t * (1 - t) * np.asarray(p1) + t ** 2 * np.asarray(p2)


def outline(face: Face, state: str, shape: str, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """(the mask's outline as (M, 2) face-frame points, its four corners where the ear loops start),
    for one state and shape."""
    k = key_heights(face)
    j = lambda s=0.03: rng.uniform(-s, s)  # noqa: E731 (a tiny jitter: no two masks sit alike)
    if state == "wear":
        top = k["nose"] * rng.uniform(0.22, 0.38)            # the nose bridge
        bottom = k["chin"] + rng.uniform(0.05, 0.15)
    elif state == "nose":
        top = k["nose"] + (k["mouth"] - k["nose"]) * rng.uniform(0.35, 0.55)  # under the tip, over the lip
        bottom = k["chin"] + rng.uniform(0.10, 0.20)
    elif state == "chin":
        top = k["mouth"] + (k["chin"] - k["mouth"]) * rng.uniform(0.30, 0.50)
        bottom = k["chin"] + rng.uniform(0.30, 0.45)
    else:
        raise ValueError(f"unknown mask state {state!r}; one of {STATES}")
    cx, half = k["centre"] + j(), k["half"] * rng.uniform(0.92, 1.02)
    side = top + (bottom - top) * {"surgical": 0.08, "kn95": 0.15, "cloth": 0.12}[shape]  # top edge meets cheeks
    low = bottom - (bottom - top) * 0.3
    peak = {"surgical": 0.06, "kn95": 0.22, "cloth": 0.12}[shape]
    chin_w = {"surgical": 0.75, "kn95": 0.45, "cloth": 0.6}[shape] * half
    tl, tr = (cx - half, side + j()), (cx + half, side + j())
    bl, br = (cx - chin_w, low + j()), (cx + chin_w, low + j())
    top_edge = _curve(tl, (cx, top - peak), tr)
    right = _curve(tr, (cx + half * 1.02, (side + low) / 2), br, 10)[1:]
    bottom_edge = _curve(br, (cx, bottom + (0.15 if shape == "kn95" else 0.08)), bl)[1:]
    left = _curve(bl, (cx - half * 1.02, (side + low) / 2), tl, 10)[1:-1]
    return np.concatenate([top_edge, right, bottom_edge, left]), np.array([tl, tr, bl, br])


def fabric(face: Face, shape: str, box: tuple[int, int, int, int], rng: random.Random
           ) -> tuple[np.ndarray, np.ndarray]:
    """(RGB float image of the mask's cloth over `box` = (x0, y0, x1, y1) of the photo, extra darkening 0..1
    for its seams)."""
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    o, ux, uy, d = face.frame()
    u = ((xs - o[0]) * ux[0] + (ys - o[1]) * ux[1]) / d    # face-frame coordinates of every pixel
    v = ((xs - o[0]) * uy[0] + (ys - o[1]) * uy[1]) / d
    base = np.array(rng.choice(COLOURS), np.float32)
    if rng.random() < 0.3:  # a random tint beside the usual colours
        base = np.array([rng.uniform(20, 240) for _ in range(3)], np.float32)
    cloth = np.broadcast_to(base, (h, w, 3)).copy()
    pattern = rng.choice(PRINTS)
    second = np.array(rng.choice(COLOURS), np.float32)
    period = rng.uniform(0.12, 0.3)
    if pattern == "stripes":
        on = (np.floor((u * np.cos(a := rng.uniform(0, np.pi)) + v * np.sin(a)) / period) % 2) == 0
    elif pattern == "checks":
        on = ((np.floor(u / period) + np.floor(v / period)) % 2) == 0
    elif pattern == "dots":
        on = (((u / period) % 1 - 0.5) ** 2 + ((v / period) % 1 - 0.5) ** 2) < 0.06
    else:
        on = np.zeros((h, w), bool)
    cloth[on] = second
    seams = np.zeros((h, w), np.float32)
    if shape == "surgical":  # three pleats across the mask
        k = key_heights(face)
        for y in np.linspace(k["nose"] * 0.6, k["chin"] * 0.9, 3) + rng.uniform(-0.05, 0.05):
            seams = np.maximum(seams, np.clip(1 - np.abs(v - y) / 0.035, 0, 1) * 0.35)
    elif shape == "kn95":  # the vertical seam down the middle
        seams = np.clip(1 - np.abs(u - key_heights(face)["centre"]) / 0.025, 0, 1) * 0.4
    # rounded cloth: lighter in the middle, darker towards the cheeks
    shade = 1.0 - 0.22 * np.clip(np.abs(u - key_heights(face)["centre"]) / 1.3, 0, 1) ** 2
    grain = np.asarray(np.random.default_rng(rng.randrange(2**31)).normal(1, 0.03, (h, w)), np.float32)
    return cloth * (shade * grain)[..., None], seams


def draw(img: np.ndarray, face: Face, state: str, rng: random.Random, shape: str | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
    """(the photo with a mask drawn on, the mask's coverage 0..1 per pixel). `img`: RGB uint8."""
    shape = shape or rng.choice(SHAPES)
    h, w = img.shape[:2]
    shape_uv, corners_uv = outline(face, state, shape, rng)
    poly, corners = face.to_image(shape_uv), face.to_image(corners_uv)
    cover = np.zeros((h, w), np.float32)
    cv2.fillPoly(cover, [np.round(poly * 16).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=4)
    # everything below happens on the mask's box only (a quarter of the photo, or less)
    x0, y0, x1, y1 = box = around(poly, 2, (h, w))
    roi = (slice(y0, y1), slice(x0, x1))
    cloth, seams = fabric(face, shape, box, rng)
    light = photo_light(img, face, box, cover[roi] > 0.5)
    cloth = cloth * (light * (1 - seams))[..., None]
    c = cover[roi][..., None]
    out = img.copy()
    out[roi] = np.clip(img[roi].astype(np.float32) * (1 - c) + np.clip(cloth, 0, 255) * c, 0, 255).astype(np.uint8)
    return _straps(out, face, corners, cloth_colour(cloth, cover[roi]), rng), cover


def around(points: np.ndarray, pad: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the points' bounding box grown by `pad` pixels, inside an image of `size` (h, w)."""
    h, w = size
    lo, hi = np.floor(points.min(0)) - pad, np.ceil(points.max(0)) + pad + 1
    x0, y0 = (int(np.clip(v, 0, m)) for v, m in zip(lo, (w, h)))
    x1, y1 = (int(np.clip(v, 0, m)) for v, m in zip(hi, (w, h)))
    return x0, y0, max(x1, x0), max(y1, y0)


def photo_light(img: np.ndarray, face: Face, box: tuple[int, int, int, int], inside: np.ndarray) -> np.ndarray:
    """The photo's own light over `box`: its blurred luminance relative to the mean under the mask, so a
    shadowed side stays shadowed (blurred with three sigmas of the photo around the box)."""
    sigma = max(2.0, face.frame()[3] * 0.3)
    x0, y0, x1, y1 = box
    m = int(np.ceil(3 * sigma))
    bx0, by0, bx1, by1 = max(x0 - m, 0), max(y0 - m, 0), min(x1 + m, img.shape[1]), min(y1 + m, img.shape[0])
    lum = cv2.GaussianBlur(img[by0:by1, bx0:bx1].astype(np.float32).mean(2), (0, 0), sigma)
    lum = lum[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]
    under = lum[inside]
    return np.clip(lum / max(float(under.mean()) if under.size else 128.0, 1.0), 0.6, 1.3) ** 0.5


def cloth_colour(cloth: np.ndarray, cover: np.ndarray) -> tuple:
    inside = cloth[cover > 0.5]
    c = inside.mean(0) if len(inside) else np.array([200.0, 200, 200])
    return tuple(float(x) for x in c)


def _straps(out: np.ndarray, face: Face, corners: np.ndarray, colour: tuple, rng: random.Random) -> np.ndarray:
    """Ear loops: from the mask's upper and lower corners to the sides of the face box."""
    x1, y1, x2, y2 = face.box
    d = face.frame()[3]
    thick = max(1, int(round(d * rng.uniform(0.03, 0.06))))
    ear_y = (face.points[0, 1] + face.points[1, 1]) / 2 + 0.3 * d
    for p in corners:  # on `out` itself (draw's own copy of the photo)
        ear_x = x1 if p[0] < (x1 + x2) / 2 else x2
        cv2.line(out, tuple(int(round(v)) for v in p), (int(round(ear_x)), int(round(ear_y))),
                 tuple(int(round(min(c * 0.9, 255))) for c in colour), thick, cv2.LINE_AA)
    return out
