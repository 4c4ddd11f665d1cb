"""Drive a running `helix4d app` in headless Chromium (Playwright): upload a video, generate, wait for the 3D
viewer, screenshot. Used by tests/test_app.py; also runs on its own against any running app:

    python tests/browser/app_flow.py http://127.0.0.1:7860 clip.mp4 test-artifacts/app.png --steps 1

Uses the system's Chromium (Debian: `apt-get install -y chromium`), never Playwright's own browser download.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-unsafe-swiftshader",
]
EXPECTED_DOWNLOADS = ("frames.zip", "animated.glb", "rigged.glb", "asset.usdz", "preview.mp4")


@dataclass
class FlowResult:
    """What the browser saw after Generate."""

    viewer_visible: bool
    canvas_colours: int  # distinct colours in the frame viewer's canvas (1 = blank)
    rigged_colours: int = 0  # distinct colours in the rigged viewer's canvas, as it plays rigged.glb
    downloads: dict[str, int] = field(default_factory=dict)  # file name -> HTTP status of its link
    status: str = ""


def find_chromium() -> str | None:
    """Path of a system Chromium, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def drive_app(
    url: str, video: Path, screenshot: Path, steps: int | None = None, timeout_s: float = 180.0
) -> FlowResult:
    """Upload `video`, set the steps, click Generate, wait for the viewers' GLBs, save `screenshot`, then
    move the frame slider to frame 1 and wait for its GLB (a TimeoutError when any step does not happen)."""
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("no chromium found: apt-get install -y chromium")
    timeout_ms = timeout_s * 1000
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:  # Playwright gives the browser a fresh temporary profile
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(url)
            page.locator("#generate").wait_for(timeout=timeout_ms)
            page.locator("#input-video input[type=file]").set_input_files(str(video))
            page.locator("#input-video video").wait_for(timeout=timeout_ms)  # the upload finished
            if steps is not None:
                box = page.locator("#steps input[type=number]")
                box.fill(str(steps))
                box.press("Enter")
            fetched: set[str] = set()
            page.on("requestfinished", lambda request: fetched.add(request.url.split("?")[0].rsplit("/", 1)[-1]))
            page.locator("#generate").click()
            viewer = page.locator("#frame-viewer canvas")
            viewer.wait_for(state="visible", timeout=timeout_ms)
            links = page.locator("#downloads a[href]")
            links.nth(len(EXPECTED_DOWNLOADS) - 1).wait_for(timeout=timeout_ms)
            _wait_until(page, lambda: {"frame_0000.glb", "animated.glb", "rigged.glb"} <= fetched, timeout_s)  # viewers
            page.wait_for_timeout(1500)  # a few rendered frames before the shot
            page.screenshot(path=str(screenshot), full_page=True)
            rigged = _distinct_colours(page.locator("#rigged-viewer canvas").screenshot())
            scrub = page.locator("#frame-slider input[type=number]")
            scrub.fill("1")
            scrub.press("Enter")
            _wait_until(page, lambda: "frame_0001.glb" in fetched, timeout_s)  # the slider swapped the viewer's GLB
            downloads = {}
            for href in links.evaluate_all("els => els.map(e => e.href)"):
                name = href.rsplit("/", 1)[-1].split("?")[0]
                downloads[name] = page.request.get(href).status
            return FlowResult(
                viewer.is_visible(),
                _distinct_colours(viewer.screenshot()),
                rigged,
                downloads,
                page.locator("#status").inner_text(),
            )
        except Exception:
            page.screenshot(path=str(screenshot.with_name(f"{screenshot.stem}-failed.png")), full_page=True)
            raise
        finally:
            browser.close()


def _wait_until(page, condition, timeout_s: float) -> None:
    """Poll `condition` while letting the page run (Playwright's sync API delivers events only inside its calls)."""
    for _ in range(int(timeout_s * 10)):
        if condition():
            return
        page.wait_for_timeout(100)
    raise TimeoutError(f"condition not met within {timeout_s} s")


def _distinct_colours(png: bytes) -> int:
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    return len(np.unique(pixels, axis=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("video", type=Path)
    parser.add_argument("screenshot", type=Path)
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    print(drive_app(args.url, args.video, args.screenshot, args.steps))


if __name__ == "__main__":
    main()
