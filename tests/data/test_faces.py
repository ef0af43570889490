import shutil

import numpy as np
import pytest

from src.core.config import load_config
from src.data import faces
from src.data.tables import load_train, read_image
from src.data.transforms import Geometry, resize


class CountingDetector:
    def __init__(self, box=(10.0, 12.0, 30.0, 40.0, 0.99)):
        self.calls, self.box = 0, box

    def __call__(self, img):
        self.calls += 1
        return self.box


def test_face_window_grows_keeps_aspect_and_stays_inside():
    x1, y1, x2, y2 = faces.face_window((100, 100, 200, 220), 512, 384, 128, 96, margin=0.25)
    assert (x2 - x1) / (y2 - y1) == pytest.approx(96 / 128, abs=0.02)
    assert y2 - y1 >= 120 * 1.5 - 1 and x1 >= 0 and y1 >= 0 and x2 <= 384 and y2 <= 512
    assert abs((x1 + x2) / 2 - 150) <= 1 and abs((y1 + y2) / 2 - 160) <= 1  # centred on the face
    # a face near the edge is shifted inside, a face bigger than the photo gets the whole photo
    x1, y1, x2, y2 = faces.face_window((0, 0, 50, 60), 512, 384, 128, 96, margin=0.3)
    assert x1 == 0 and y1 == 0
    assert faces.face_window((0, 0, 400, 520), 512, 384, 128, 96, margin=0.5) == (0, 0, 384, 512)


def test_boxes_cached_by_content_not_name(tiny_data, tmp_path):
    paths = load_train(tiny_data, check_pixels=False)["path"].tolist()[:5]
    det = CountingDetector()
    boxes = faces.face_boxes(paths, tmp_path / "c", det)
    assert det.calls == 5 and all(b[:4] == (10.0, 12.0, 30.0, 40.0) for b in boxes.values())
    faces.face_boxes(paths, tmp_path / "c", det)
    assert det.calls == 5  # a rerun detects nothing
    copy = tmp_path / "renamed.jpg"
    shutil.copy(paths[0], copy)
    faces.face_boxes([str(copy)], tmp_path / "c", det)
    assert det.calls == 5  # same bytes, other name: still cached
    with open(paths[1], "ab") as f:
        f.write(b"\0")  # changed content
    faces.face_boxes(paths, tmp_path / "c", det)
    assert det.calls == 6


def test_no_face_falls_back_to_the_centre_crop(tiny_data, tmp_path):
    paths = load_train(tiny_data, check_pixels=False)["path"].tolist()[:2]
    cfg = load_config("seed", ["img_size=32,24", "crop=face", "face_margin=0.2"])
    boxes = {paths[0]: None, paths[1]: (8.0, 10.0, 40.0, 50.0, 0.99)}
    geo = Geometry(cfg, boxes)
    centre_only = Geometry(cfg)  # no boxes at all: the centre crop
    np.testing.assert_array_equal(geo(paths[0]), centre_only(paths[0]))
    cropped = geo(paths[1])
    assert cropped.shape == (32, 24, 3)
    assert not np.array_equal(cropped, centre_only(paths[1]))
    # the face window, cut from the photo and resized like every other photo
    x1, y1, x2, y2 = faces.face_window(boxes[paths[1]], 64, 48, 32, 24, 0.2)
    np.testing.assert_array_equal(cropped, resize(read_image(paths[1])[y1:y2, x1:x2].copy(), 32, 24))
    assert faces.fallback_count(boxes) == 1
    # crop=center ignores boxes entirely
    centre = Geometry(load_config("seed", ["img_size=32,24"]), boxes)
    np.testing.assert_array_equal(centre(paths[1]), centre_only(paths[1]))


def test_real_mtcnn_runs_offline():
    det = faces.FaceDetector()
    img = np.full((512, 384, 3), 128, np.uint8)
    assert det(img) is None  # a blank photo has no face
