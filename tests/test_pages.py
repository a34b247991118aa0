"""The pages people read, opened in a real browser (headless Chromium at 1,280 px): visualize's
index.html and the sweep's report."""

import pytest
from helpers import TINY, parse, run_cli
from selenium.webdriver.common.by import By

from embeddings_squeeze import sweep

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def pages(trained, pet_root, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("pages")
    argv = ["visualize", "--baseline_checkpoint", trained["baseline"], "--vq_checkpoint", trained["vq"],
            "--data_path", pet_root, "--output_dir", folder / "visualize"]  # fmt: skip
    assert run_cli(*argv) == 0
    sweep_argv = [*TINY, "--data_path", pet_root, "--output_dir", folder / "sweep", "--epochs", 1,
                  "--quantizer_type", "vq", "--num_vectors", 8, "--jpeg_qualities", 50]  # fmt: skip
    sweep.main(parse(sweep, *sweep_argv))
    return {"visualize": folder / "visualize" / "index.html", "sweep": folder / "sweep" / "report.html",
            "sweep model": folder / "sweep" / "figures" / "vq_K8_seed42" / "index.html"}  # fmt: skip


@pytest.mark.parametrize("page", ["visualize", "sweep", "sweep model"])
def test_pages_show_every_figure_fit_the_window_and_log_no_error(browser, pages, page, tmp_path):
    browser.get_log("browser")  # what earlier pages logged
    browser.get(pages[page].as_uri())
    images = browser.find_elements(By.TAG_NAME, "img")
    assert images and all(browser.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)
    width, scrolled = browser.execute_script(
        "return [window.innerWidth, document.documentElement.scrollWidth]"
    )  # wide tables scroll in their own boxes, not the page
    assert width <= 1280 and scrolled <= width
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []
    browser.save_screenshot(str(tmp_path / f"{page.replace(' ', '_')}.png"))


def test_the_report_links_the_shown_models_page(pages):
    assert 'href="figures/vq_K8_seed42/index.html"' in pages["sweep"].read_text()


def column(browser, table, name: str) -> list[str]:
    headers = [h.text for h in table.find_elements(By.TAG_NAME, "th")]
    index = headers.index(name) + 1
    return [cell.text for cell in table.find_elements(By.CSS_SELECTOR, f"tbody td:nth-child({index})")]


def test_the_per_image_table_sorts_by_a_clicked_header(browser, pages):
    browser.get(pages["visualize"].as_uri())
    table = browser.find_elements(By.TAG_NAME, "table")[-2]  # every image's scores; the settings last
    header = next(h for h in table.find_elements(By.TAG_NAME, "th") if h.text == "squeezed_iou")
    before = column(browser, table, "squeezed_iou")
    header.click()
    ascending = column(browser, table, "squeezed_iou")
    assert sorted(ascending, key=float) == ascending and sorted(ascending) == sorted(before)
    header.click()
    assert column(browser, table, "squeezed_iou") == ascending[::-1]


def test_the_reports_results_put_the_scores_on_screen_and_the_settings_last(browser, pages):
    browser.get(pages["sweep"].as_uri())
    heading = browser.find_element(By.XPATH, "//h2[text()='Results']")
    table = heading.find_element(By.XPATH, "following::table[1]")
    headers = [cell.text for cell in table.find_elements(By.TAG_NAME, "th")]
    assert headers[:4] == ["name", "miou", "miou_low", "miou_high"]
    assert headers.index("payload_bytes_per_image") < headers.index("kind") < headers.index("seed")
    miou = table.find_elements(By.TAG_NAME, "th")[1]
    right_edge = browser.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return r.right", miou
    )
    assert 0 < right_edge <= 1280  # on screen in a 1,280 px window without scrolling sideways


def test_the_rate_quality_plot_is_shown_whole_at_the_size_it_was_drawn(browser, pages, tmp_path):
    """Its point labels and legend stay legible: not scaled down, not cut off, in a 1,280 px window."""
    browser.get(pages["sweep"].as_uri())
    plot = browser.find_element(By.CSS_SELECTOR, "img[alt='rate_quality.png']")
    browser.execute_script("arguments[0].scrollIntoView()", plot)
    natural, left, right = browser.execute_script(
        "const i = arguments[0], r = i.getBoundingClientRect(); return [i.naturalWidth, r.left, r.right]",
        plot,
    )
    assert right - left == natural and 0 <= left and right <= 1280
    plot.screenshot(str(tmp_path / "rate_quality_on_screen.png"))


def test_the_comparison_page_shows_the_scores_first_and_the_settings_last(browser, pages):
    browser.get(pages["visualize"].as_uri())
    tables = browser.find_elements(By.TAG_NAME, "table")
    headers = [[h.text for h in table.find_elements(By.TAG_NAME, "th")] for table in tables]
    assert headers[0] == ["metric", "baseline", "squeezed", "VQ - baseline"]
    assert headers[1][:5] == ["position", "image_id", "baseline_iou", "squeezed_iou", "iou_difference"]
    assert headers[-1] == ["setting", "value"]
    top = browser.execute_script("return arguments[0].getBoundingClientRect().top", tables[0])
    assert 0 < top < 900  # the scores are in the first screen, without scrolling down
