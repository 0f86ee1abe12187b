"""`videoldm serve`: the job runner behind the page (limits, cancel, order), then the page itself in a real
headless browser (Debian's Chromium through Selenium) over the shipped models.

VIDEOLDM_SERVE_SCREENSHOT=docs/images/serve.png also writes the page's screenshot there (the README's; the video
then sampled with the page's default 25 steps instead of the test's 2).
"""
import os
import shutil
import socket
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urljoin

import pytest

PROMPT = "a red circle moving left on a dark background"


def frame_count(path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


# ------------------------------------------------------------------------------------ the runner
def test_limits_refuse_long_or_many_step_requests_with_a_message():
    from videoldm.inference.jobs import Limits
    from videoldm.inference.shipped import Request

    limits = Limits(max_seconds=4, max_steps=10)
    limits.check(Request(prompt=PROMPT, seconds=4, steps=10))  # at the limits: served
    with pytest.raises(ValueError, match="up to 4 s; asked for 5 s"):
        limits.check(Request(prompt=PROMPT, seconds=5))
    with pytest.raises(ValueError, match="up to 10 steps; asked for 11"):
        limits.check(Request(prompt=PROMPT, steps=11))
    with pytest.raises(ValueError, match="up to 10 upsample steps; asked for 12"):
        limits.check(Request(daytime="day", steps=10, upsample=True, upsample_steps=12))


def test_a_job_reports_every_step_and_cancel_stops_it_at_the_next_one(tmp_path):
    """Cancelled from another thread while step 2 of 30 runs: at most one more step is taken."""
    from videoldm.inference.jobs import Cancelled, Job
    from videoldm.inference.shipped import Request

    job, seen, cancelled = Job(), [], threading.Event()

    def on_step(step, steps):
        seen.append((step, steps))
        if step == 1:
            threading.Thread(target=lambda: (job.cancel(), cancelled.set())).start()
            cancelled.wait()  # the cancel lands while this step is still under way

    with pytest.raises(Cancelled, match="cancelled after 2 sampling steps"):
        job.run(None, Request(prompt=PROMPT, seconds=1, steps=30), tmp_path, on_step=on_step)
    assert job.steps_at_cancel == 2 and job.steps - job.steps_at_cancel <= 1
    assert seen == [(0, 30), (1, 30)]
    assert not list(tmp_path.iterdir())  # nothing written


def test_runner_serves_in_turn_and_gives_the_commands_messages(tmp_path):
    from videoldm.inference.jobs import Cancelled, Limits, Runner
    from videoldm.inference.shipped import Request

    runner = Runner(None, tmp_path, Limits(max_seconds=2, max_steps=3))
    first, second, bad, waiting = (runner.add(owner) for owner in ("ann", "bob", "ann", "bob"))
    assert (first, second, bad, waiting) == (1, 2, 3, 4)
    written = runner.run(first, lambda: Request(prompt=PROMPT, seconds=0.5, steps=2))
    assert [p.name for p in written] == ["text.mp4", "text.gif"] and frame_count(written[0]) == 4
    assert written[0].parent == tmp_path / "1"
    with pytest.raises(ValueError, match="up to 3 steps"):
        runner.run(second, lambda: Request(prompt=PROMPT, steps=4))
    with pytest.raises(ValueError, match="does not know 'purple'"):
        runner.run(bad, lambda: Request(prompt="a purple circle", steps=1))
    assert runner.cancel("bob") == 1  # bob's waiting job; ann has none left
    with pytest.raises(Cancelled, match="before it started"):
        runner.run(waiting, lambda: Request(prompt=PROMPT, steps=1))
    assert [(n, outcome) for n, _, _, outcome in runner.log] == [(1, "done"), (2, "error"), (3, "error"),
                                                                 (4, "cancelled")]
    assert runner.jobs == {}


def test_the_notes_beside_the_prompt_list_the_vocabulary_and_sizes():
    from videoldm.inference.jobs import model_notes

    notes = model_notes(None)
    assert "circle" in notes["text"] and "moving" in notes["text"] and "64x64" in notes["text"]
    assert notes["daytimes"] == ["day", "night"] and notes["crowdedness"] == ["low", "medium", "high"]
    assert notes["driving_fps"] == [8, 32, 128] and "64x128" in notes["driving"]
    assert notes["long_kinds"][0] == "driving"  # (and "text" once a shapes prediction model ships)
    assert "64x112" in notes["film"] and "Blender Foundation" in notes["film"]


# ----------------------------------------------------------------------------------- the page
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("gradio", reason="the serve extra is not installed: pip install 'videoldm[serve]'")
    from videoldm.commands.serve import build_app
    from videoldm.inference.jobs import Limits, Runner

    out = tmp_path_factory.mktemp("served")
    runner = Runner(None, out, Limits(max_seconds=4, max_steps=40))
    app = build_app(runner)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, allowed_paths=[str(out)],
               quiet=True)
    yield f"http://127.0.0.1:{port}/", runner
    app.close()


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install "
                                                                  "'videoldm[test]'")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no Chromium: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1100"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def wait_for(condition, timeout=120.0, what="the page"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Page:
    """The served page, driven as a visitor does: by the elements' ids."""

    def __init__(self, driver, url):
        from selenium.webdriver.common.by import By

        self.driver, self.by = driver, By
        driver.get(url)
        wait_for(lambda: self.find("#text-generate"), 60, "the page to load")

    def find(self, css):
        found = self.driver.find_elements(self.by.CSS_SELECTOR, css)
        return found[0] if found else None

    def tab(self, name):
        wait_for(lambda: [b for b in self.driver.find_elements(self.by.CSS_SELECTOR, "button[role=tab]")
                          if b.text.strip() == name], what=f"the tab {name}")[0].click()

    def type(self, css, text):
        from selenium.webdriver.common.keys import Keys

        field = wait_for(lambda: self.find(css), what=css)
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(Keys.DELETE)
        field.send_keys(str(text), Keys.TAB)  # (a number field takes its value when it loses focus)

    def number(self, tab, name, value):
        self.type(f"#{tab}-{name} input[type=number]", value)

    def status(self, tab):
        element = self.find(f"#{tab}-status")
        return element.get_attribute("textContent").strip() if element is not None else ""  # (a hidden tab's too)

    def body(self):
        return self.driver.find_element(self.by.TAG_NAME, "body").text

    def click(self, css):
        wait_for(lambda: self.find(css), what=css).click()

    def generate(self, tab, mp4):
        """Click the tab's Generate, wait for its video, download the mp4 it plays to ``mp4``; the video element."""
        self.click(f"#{tab}-generate")
        video = wait_for(lambda: self.find(f"#{tab}-video video[src]"), what=f"the video of the tab {tab}")
        mp4.write_bytes(urllib.request.urlopen(urljoin(self.driver.current_url, video.get_attribute("src"))).read())
        return video


@pytest.fixture
def page(server, browser):
    url, _ = server
    return Page(browser, url)


def test_the_page_makes_a_video_and_links_a_playable_mp4(page, tmp_path):
    page.type("#text-prompt textarea", PROMPT)
    page.number("text", "seconds", 1)
    screenshot = os.environ.get("VIDEOLDM_SERVE_SCREENSHOT")
    page.number("text", "steps", 25 if screenshot else 2)  # the README's: the page's default steps
    page.generate("text", mp4 := tmp_path / "downloaded.mp4")
    assert "made text.mp4" in page.status("text") and "error" not in page.status("text")
    assert frame_count(mp4) == 8  # 1 s at the model's 8 fps
    links = [a.get_attribute("href") for a in page.driver.find_elements(page.by.CSS_SELECTOR, "#text-files a")]
    assert any(link.endswith("text.mp4") for link in links) and any(link.endswith("text.gif") for link in links)
    page.driver.save_screenshot(str(tmp_path / "serve.png"))
    if screenshot:
        shutil.copy(tmp_path / "serve.png", screenshot)
    assert (tmp_path / "serve.png").stat().st_size > 10_000


@pytest.mark.parametrize("tab, name, seconds, made, frames", [
    ("Real footage", "film", 1, "made bunny.mp4", 8),  # 1 s at the film model's 8 fps
    ("Long video", "long", 3, "made long.mp4 and long.gif", 16 + 14),  # driving, 8 fps: a clip, then one continuing
], ids=["real-footage-tab-makes-a-clip-of-the-film", "long-video-tab-renders-what-videoldm-rollout-does"])
def test_a_tab_renders_its_video_and_serves_the_mp4(page, tmp_path, tab, name, seconds, made, frames):
    page.tab(tab)
    page.number(name, "seconds", seconds)
    page.number(name, "steps", 2)
    page.generate(name, mp4 := tmp_path / f"{name}.mp4")
    assert made in page.status(name)
    assert frame_count(mp4) == frames


def test_a_bad_prompt_shows_the_commands_message(server, page, tmp_path, capsys):
    from videoldm.cli import main

    assert main(["generate", "--prompt", "a purple circle", "--steps", "1", "--out", str(tmp_path)]) == 2
    line = [x for x in capsys.readouterr().err.splitlines() if x.startswith("videoldm generate: error: ")][-1]
    message = line.removeprefix("videoldm generate: error: ")
    assert "does not know 'purple'" in message
    page.type("#text-prompt textarea", "a purple circle")
    page.click("#text-generate")
    wait_for(lambda: "error" in page.status("text"), what="the error")
    assert message in page.status("text")


def test_cancel_stops_a_running_generation_within_one_step(server, page):
    _, runner = server
    page.number("text", "steps", 40)
    page.click("#text-generate")
    job = wait_for(lambda: next((job for _, job in list(runner.jobs.values()) if job.steps >= 1), None),
                   what="sampling to start")
    wait_for(lambda: "sampling loop 1" in page.body(), what="the progress bar")  # fed by the steps
    page.click("#text-cancel")
    wait_for(lambda: "cancelled after" in page.status("text"), what="the cancel")
    assert job.steps_at_cancel is not None and job.steps - job.steps_at_cancel <= 1 and job.steps < 40
    assert runner.log[-1][3] == "cancelled"


def test_two_requests_in_a_row_are_served_in_order(server, page):
    _, runner = server
    page.number("text", "seconds", 1)
    page.number("text", "steps", 3)
    page.click("#text-generate")
    page.tab("Driving")
    page.number("driving", "seconds", 1)
    page.number("driving", "steps", 2)
    page.click("#driving-generate")
    assert "waiting for its turn" in wait_for(lambda: page.status("driving"), what="the second request's status")
    wait_for(lambda: "made driving.mp4" in page.status("driving"), what="the second video")
    page.tab("Text to video")
    assert "made text.mp4" in page.status("text")
    first = int(page.status("text").split()[1].rstrip(":"))
    second = int(page.status("driving").split()[1].rstrip(":"))
    assert second == first + 1
    ran = {number: (started, finished, outcome) for number, started, finished, outcome in runner.log}
    assert ran[first][2] == ran[second][2] == "done"
    assert ran[second][0] >= ran[first][1]  # the second started once the first had finished


def test_serve_listens_on_localhost_with_limits_by_default():
    from videoldm.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.max_seconds, args.max_steps) == ("127.0.0.1", 7860, 8.0, 50)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--max-steps", "0"])


def test_serve_without_gradio_names_the_extra_to_install(monkeypatch, capsys):
    import importlib.util

    from videoldm.cli import main

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else find_spec(name, *a))
    assert main(["serve", "--port", "1"]) == 2
    assert "pip install 'videoldm[serve]'" in capsys.readouterr().err
