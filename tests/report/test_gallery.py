"""The error-analysis page: built from a run's files, and used in a real browser (headless Chromium
driven by Playwright): cells show exactly their photos, paging by keyboard, corrections marked,
downloaded and read back by corrections=FILE, no JavaScript error, and a 3,000-person page opens fast."""
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from src.core import classes
from src.core.classes import PROB_COLS
from src.core.config import load_config
from src.core.paths import ROOT
from src.core.run_dir import RunDir
from src.data import background
from src.data.tables import training_table
from src.report import gallery
from tests.helpers import copy_run, fake_run, softmax, stage

SCREENSHOTS = ROOT / "output" / "test-screenshots"  # for a person to look at after the tests


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_data_master, tiny_run):
    """A tiny finished run (2 folds, eval answers known) with an audit that lists every person."""
    data = tiny_data_master  # only read
    run = copy_run(tiny_run, tmp_path_factory.mktemp("gallery") / "g")
    assert stage("audit", ["--run", str(run.path), "--threshold", "0"]) == 0
    gallery.write_gallery(run)  # again, now with the audit's candidates
    return run, data


def page_json(run: RunDir) -> dict:
    html = run.gallery.read_text()
    start = html.index('id="gallery-data">') + len('id="gallery-data">')
    return json.loads(html[start:html.index("</script>", start)].replace("<\\/", "</"))


# ---- built from the run's files ---------------------------------------------------------------

def test_every_run_writes_its_gallery(trained):
    run, data = trained
    d = page_json(run)
    oof = run.load_oof()
    assert d["sets"]["oof"]["n"] == len(oof) == 12 * 7
    assert d["sets"]["eval"]["n"] == len(pd.read_csv(data / "eval" / "info.csv"))
    for s in d["sets"].values():  # every photo has its thumbnail, a small JPEG beside the page
        assert all(t for t in s["thumb"]) and s["unreadable"] == 0
        for t in set(s["thumb"]):
            with Image.open(run.gallery_thumbs / f"{t}.jpg") as im:
                assert im.format == "JPEG" and max(im.size) <= max(gallery.THUMB)
    assert {p["id"] for p in d["persons"]} == set(oof["person"])
    assert len(d["audit"]) == len(pd.read_csv(run.latest_audit_file()))
    # the page's probabilities are the run's, to the thousandth
    key = oof.set_index(["person", "shot"])
    s = d["sets"]["oof"]
    for i in (0, 41, 83):
        person, shot = d["persons"][s["person"][i]]["id"], d["shots"][s["shot"][i]]
        row = key.loc[(person, shot)]
        assert s["true"][i] == row["label"] and s["pred"][i] == int(np.argmax(row[PROB_COLS].to_numpy(float)))
        assert np.allclose(np.array(s["p"][i * 18:(i + 1) * 18]) / 1000, row[PROB_COLS].to_numpy(float), atol=5e-4)


def test_gallery_command_rebuilds_and_reuses_thumbnails(trained, capsys, tmp_path):
    run, _ = trained
    copy = copy_run(run, tmp_path / "copy")
    copy.gallery.unlink()
    before = {p.name: p.stat().st_mtime_ns for p in copy.gallery_thumbs.iterdir()}
    (copy.gallery_thumbs / "0123456789abcd.jpg").write_bytes(b"a photo the run no longer has")
    assert stage("gallery", ["--run", str(copy.path)]) == 0
    assert copy.gallery.is_file() and "wrote" in capsys.readouterr().out
    after = {p.name: p.stat().st_mtime_ns for p in copy.gallery_thumbs.iterdir()}
    assert after == before  # nothing made again, the stale one gone


def test_a_replaced_photo_gets_a_new_thumbnail_and_an_unreadable_one_a_blank(tmp_path, capsys):
    photo = tmp_path / "a.jpg"
    Image.new("RGB", (48, 64), "red").save(photo)
    first = gallery.thumb_name(photo)
    time.sleep(0.01)
    Image.new("RGB", (48, 64), "blue").save(photo)
    os.utime(photo, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert gallery.thumb_name(photo) != first
    broken = tmp_path / "b.jpg"
    broken.write_bytes(b"not a photo")
    names, bad = gallery.make_thumbs([photo, broken], tmp_path / "thumbs", load_config("seed"))
    assert names[0] and names[1] == "" and bad == 1
    assert sorted(p.name for p in (tmp_path / "thumbs").iterdir()) == [f"{names[0]}.jpg"]  # no partial file left


def test_with_the_background_removed_the_thumbnails_show_what_the_model_saw(tmp_path):
    """A run with background= other than keep: its gallery's photos are the model's views (cut out and filled),
    in thumbnails of their own; keep's are the photos themselves."""
    photo = tmp_path / "a.jpg"
    img = np.zeros((512, 384, 3), np.uint8)
    img[:] = (40, 160, 60)  # a green room
    img[120:420, 110:274] = (230, 120, 90)  # a warm person in the middle
    Image.fromarray(img).save(photo, quality=95)
    cfg = load_config("seed", ["img_size=128,96", "crop_frac=1.0"])
    (plain,), _ = gallery.make_thumbs([photo], tmp_path / "thumbs", cfg)
    (cut,), _ = gallery.make_thumbs([photo], tmp_path / "thumbs", cfg.replace(background="grabcut"))
    assert plain != cut
    corner = lambda name: np.asarray(Image.open(tmp_path / "thumbs" / f"{name}.jpg"))[2:8, 2:8].mean((0, 1))
    assert np.abs(corner(plain) - (40, 160, 60)).max() < 12
    assert np.abs(corner(cut) - background.MEAN_RGB).max() < 12  # the fill, as the model saw it


def test_gallery_errors_name_the_run_and_exit_2(tmp_path, capsys, trained):
    assert stage("gallery", ["--run", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err
    empty = RunDir(tmp_path / "empty")
    empty.path.mkdir()
    shutil.copy(trained[0].config, empty.config)  # a run that never finished a fold nor wrote eval probabilities
    assert stage("gallery", ["--run", str(empty.path)]) == 2
    assert "nothing to show" in capsys.readouterr().err and not empty.gallery.exists()


# ---- in a real browser ------------------------------------------------------------------------

def chromium() -> str | None:
    for c in (os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")):
        if c and Path(c).exists():
            return c
    return None


@pytest.fixture(scope="module")
def browser():
    exe = chromium()
    if exe is None:
        pytest.skip("no Chromium: `bash run.sh test` installs Debian's chromium where it runs as root with apt-get; "
                    "elsewhere install it (apt-get install chromium) or set CHROMIUM=/path/to/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # flags for a closed network: no background connections to refuse
        b = p.chromium.launch(executable_path=exe, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        yield b
        b.close()


class Opened:
    """A page of the gallery, with every console error and uncaught exception it produced."""

    def __init__(self, browser, path: Path):
        self.context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        started = time.perf_counter()
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_selector("body[data-ready='1']")
        self.seconds = time.perf_counter() - started

    def keys_on_all_pages(self) -> list[str]:
        """Every shown photo, paging with the keyboard from the first page to the last."""
        keys = []
        while True:
            keys += self.page.eval_on_selector_all("#grid [data-key]", "els => els.map(e => e.dataset.key)")
            if self.page.is_disabled("#next"):
                return keys
            before = self.page.inner_text("#page-info")
            self.page.keyboard.press("ArrowRight")
            assert self.page.inner_text("#page-info") != before

    def close(self):
        self.context.close()


@pytest.fixture
def opened(browser, trained):
    o = Opened(browser, trained[0].gallery)
    yield o
    o.close()
    assert o.errors == [], o.errors  # no JavaScript error, no missing file


def oof_keys(oof: pd.DataFrame, mask) -> set[str]:
    return {f"{p}/{s}" for p, s in zip(oof["person"][mask], oof["shot"][mask])}


def test_page_scores_are_the_runs(opened, trained):
    run, _ = trained
    page = opened.page
    assert float(page.get_attribute("#summary", "data-f1")) == pytest.approx(run.read_metrics()["oof"]["f1"], abs=1e-6)
    page.click("#set-toggle button[data-set='eval']")
    eval_f1 = json.loads(run.eval_metrics.read_text())["f1"]
    assert float(page.get_attribute("#summary", "data-f1")) == pytest.approx(eval_f1, abs=1e-6)
    page.click("#set-toggle button[data-set='oof']")
    page.select_option("#f-show", "all")
    keys = opened.keys_on_all_pages()  # 84 photos on 3 pages of 40
    assert sorted(keys) == sorted(oof_keys(run.load_oof(), slice(None)))


def test_a_cell_shows_exactly_its_photos(opened, trained):
    run, _ = trained
    page = opened.page
    oof = run.load_oof()
    truth, pred = oof["label"].to_numpy(), oof[PROB_COLS].to_numpy().argmax(1)
    # the fullest mistake cell of the 18 classes, then of gender
    for view, of in (("classes", lambda c: c), ("gender", lambda c: (c // 3) % 2)):
        page.click(f"#tabs button[data-view='{view}']")
        t, p = of(truth), of(pred)
        wrong = pd.Series(list(zip(t[t != p], p[t != p]))).value_counts()
        cell = wrong.index[0] if len(wrong) else (int(t[0]), int(t[0]))
        page.click(f"#cm td[data-true='{cell[0]}'][data-pred='{cell[1]}']")
        shown = opened.keys_on_all_pages()
        expected = oof_keys(oof, (t == cell[0]) & (p == cell[1]))
        assert len(shown) == len(set(shown)) == int(page.get_attribute("#count", "data-n"))
        assert set(shown) == expected
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"gallery-{view}-cell.png"))
        page.click("#clear-cell")


def test_corrections_marked_downloaded_and_read_back(opened, trained, tmp_path):
    run, data = trained
    page = opened.page
    page.click("#tabs button[data-view='audit']")
    first, second = page.eval_on_selector_all("#grid .person", "els => els.slice(0, 2).map(e => e.dataset.person)")
    page.click(f"#grid .person[data-person='{first}'] button.fix-gender")
    page.click(f"#grid .person[data-person='{second}'] button.swap")
    assert page.inner_text("#corr-count") == "2"
    page.screenshot(path=str(SCREENSHOTS / "gallery-audit.png"))
    page.reload()  # marks survive a reload (kept in the browser until downloaded)
    page.wait_for_selector("body[data-ready='1']")
    assert page.inner_text("#corr-count") == "2"
    with page.expect_download() as info:
        page.click("#download")
    assert info.value.suggested_filename == "corrections.csv"
    csv = tmp_path / "corrections.csv"
    info.value.save_as(csv)

    cfg = run.load_config()
    before = training_table(cfg, data)
    after = training_table(cfg.replace(corrections=str(csv)), data)  # exactly what corrections=FILE reads
    one = after["person"] == first
    assert (after.loc[one, "gender"] == 1 - before.loc[one, "gender"]).all()
    two = (after["person"] == second).to_numpy()
    shot = after["shot"].to_numpy()
    assert after["mask"][two & (shot == "normal")].item() == classes.SHOT_MASK["incorrect_mask"]
    assert after["mask"][two & (shot == "incorrect_mask")].item() == classes.SHOT_MASK["normal"]
    untouched = ~after["person"].isin([first, second])
    assert (after.loc[untouched, "label"] == before.loc[untouched, "label"]).all()

    page.click("#tabs button[data-view='audit']")
    page.click(f"#grid .person[data-person='{first}'] button.not-mistake")  # withdrawn: one correction left
    assert page.inner_text("#corr-count") == "1"
    page.evaluate("localStorage.clear()")


# ---- a competition-sized page -----------------------------------------------------------------

def big_run(root: Path, persons: int = 3000, eval_photos: int = 12600, seed: int = 0) -> RunDir:
    """A finished 5-fold run of `persons` persons and its data, every photo the same tiny JPEG
    (hard links), probabilities random: what the page must carry, not what a model says."""
    rng = np.random.default_rng(seed)
    photo = root / "face.jpg"
    root.mkdir(parents=True)
    Image.new("RGB", (48, 64), (180, 140, 120)).save(photo)
    images = root / "data" / "eval" / "images"
    images.mkdir(parents=True)
    ids = [f"{i:040x}.jpg" for i in range(eval_photos)]
    for i in ids:
        os.link(photo, images / i)
    truth = rng.integers(0, 18, eval_photos)
    pd.DataFrame({"ImageID": ids, "ans": 0}).to_csv(root / "data" / "eval" / "info.csv", index=False)
    pd.DataFrame({"ImageID": ids, "ans": truth}).to_csv(root / "data" / "eval" / "answers.csv", index=False)

    def probs(labels):
        logits = rng.normal(0, 1, (len(labels), 18))
        logits[np.arange(len(labels)), labels] += 2.5
        return softmax(logits)

    person_ids = [f"{i:06d}" for i in range(persons)]
    oof = pd.DataFrame({"person": np.repeat(person_ids, 7), "shot": np.tile(classes.SHOTS, persons), "path": str(photo)})
    oof.insert(0, "fold", np.repeat(np.arange(persons) % 5, 7))
    oof["label"] = classes.encode(oof["shot"].map(classes.SHOT_MASK), rng.integers(0, 2, len(oof)),
                                  rng.integers(0, 3, len(oof)))
    return fake_run(root / "run", root / "data", oof, probs(oof["label"].to_numpy()), ids, probs(truth))


def test_a_3000_person_page_opens_in_under_3_seconds(browser, tmp_path):
    run = big_run(tmp_path / "big")
    gallery.write_gallery(run)
    size_mb = run.gallery.stat().st_size / 2**20
    o = Opened(browser, run.gallery)
    try:
        n_oof = o.page.get_attribute("#count", "data-n")
        print(f"\n3,000-person page: {size_mb:.1f} MB, ready in {o.seconds:.2f} s in headless Chromium")
        assert o.seconds < 3.0
        assert int(n_oof) > 0 and size_mb < 8
        o.page.click("#tabs button[data-view='persons']")
        assert int(o.page.get_attribute("#count", "data-n")) > 2000
        assert o.errors == [], o.errors
    finally:
        o.close()


def test_eval_photos_gone_since_the_run_leave_the_oof_page(trained, tmp_path, capsys):
    run, data = trained
    copy = copy_run(run, tmp_path / "copy")
    moved = tmp_path / "moved"
    cfg = copy.load_config()
    copy.save_config(cfg.replace(data=str(moved)))  # the data folder is gone
    gallery.write_gallery(copy)
    assert "leaves out the eval photos" in capsys.readouterr().out
    d = page_json(copy)
    assert set(d["sets"]) == {"oof"} and d["sets"]["oof"]["n"] == 84


def test_photo_links_survive_hash_question_mark_and_percent_in_folder_names(opened, tmp_path):
    """A data folder named like `run #2?` must open its photos, not a fragment or a query."""
    folder = tmp_path / "data #2?x%41"
    folder.mkdir()
    photo = folder / "a b.jpg"
    photo.write_bytes(b"x")
    url = opened.page.evaluate("p => fileUrl(p)", str(photo))
    assert url == photo.as_uri()  # Python's own file URI: every '#', '?', '%' and space encoded
    assert "#" not in url and "?" not in url
    assert opened.page.evaluate("p => fileUrl(p)", "C:\\data #1\\x.jpg") == "file:///C:/data%20%231/x.jpg"
