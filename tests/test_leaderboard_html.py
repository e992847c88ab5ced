"""leaderboards/index.html: built from every board of the folder, checked by --check, self-contained,
and drawn by a real headless browser with the verdict counts of the boards' JSON."""

import json
import re
import shutil
import subprocess

import pytest

from saebench_sanity.cli import main
from saebench_sanity.leaderboard import headline as H
from tests.test_leaderboard_render import make_results

BROWSER = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
NO_BROWSER = ("no headless browser on PATH: install Debian's chromium (`apt-get install -y chromium`; "
              "scripts/setup.sh does where apt is available)")


def two_boards(tmp_path, monkeypatch):
    """Boards 'toy' (with its plots, which --check wants) and 'other' rendered one at a time into
    lb/, as families are."""
    monkeypatch.chdir(tmp_path)
    make_results(tmp_path / "res")
    assert main(["leaderboard", "--results", "res", "--out", "lb", "--name", "toy"]) == 0
    assert main(["leaderboard", "--results", "res", "--out", "lb", "--name", "other", "--no-plots"]) == 0
    return tmp_path / "lb"


def test_index_covers_every_board_is_offline_and_checked(tmp_path, monkeypatch):
    lb = two_boards(tmp_path, monkeypatch)
    page = (lb / "index.html").read_text()
    data = json.loads(re.search(r'<script type="application/json" id="board-data">(.*?)</script>', page, re.S)[1])
    assert [b["name"] for b in data] == ["other", "toy"]
    assert data[1]["sets"][0]["plots"] == ["toy/toy.png", "toy/toy-modes.png"]
    # no network: no external script, stylesheet, font or image
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<link" not in page and "@import" not in page
    args = ["leaderboard", "--results", "res", "--out", "lb", "--name", "toy", "--check"]
    assert main(args) == 0
    (lb / "index.html").write_text(page.replace("toy", "t0y"))
    assert main(args) == 1
    # rendering one board rebuilds the page from every board present
    assert main(["leaderboard", "--results", "res", "--out", "lb", "--name", "toy", "--no-plots"]) == 0
    assert (lb / "index.html").read_text() == page and main(args) == 0


@pytest.mark.skipif(BROWSER is None, reason=NO_BROWSER)
def test_index_renders_in_headless_chromium_with_the_json_verdict_counts(tmp_path, monkeypatch):
    lb = two_boards(tmp_path, monkeypatch)
    url = (lb / "index.html").resolve().as_uri()
    flags = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=90, check=True).stdout
    expected: dict[str, int] = {}
    saes = fails = 0
    for name in ("toy", "other"):
        board = json.loads((lb / f"{name}.json").read_text())
        for v, n in H.counts(board["rows"], board["sets"]).items():
            expected[v] = expected.get(v, 0) + n
        for s in board["sets"]:
            rows = H.table(board["rows"], s)[1]
            saes, fails = saes + len(rows), fails + sum(r.fails for r in rows)
    cells = re.findall(r'<td class="v v-[^"]*" data-verdict="([^"]+)">', dom)
    assert cells and {v: cells.count(v) for v in set(cells)} == expected
    summary = re.search(r'<p id="summary">(.*?)</p>', dom, re.S)[1]
    assert f"{fails} of {saes} SAEs fail" in summary
    for v, n in expected.items():
        assert f'data-count="{v}">{v} {n}</span>' in summary
    assert len(re.findall(r'<tr class="detail" hidden="">', dom)) == saes  # rows expand on click
    # the verdict filter (here from the address) leaves the SAEs with a FAILS cell
    dom = subprocess.run([*flags, "--dump-dom", url + "?verdict=FAILS"], capture_output=True, text=True, timeout=90,
                         check=True).stdout
    assert re.findall(r'<tr class="sae" data-arch="([^"]+)" data-fails="[01]">', dom) == ["relu", "relu"]
    assert len(re.findall(r'<tr class="sae" data-arch="[^"]+" data-fails="[01]" hidden="">', dom)) == saes - 2
    shot = tmp_path / "index.png"
    subprocess.run([*flags, "--window-size=1400,900", f"--screenshot={shot}", url], capture_output=True,
                   timeout=90, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot of the rendered page: {shot}")
