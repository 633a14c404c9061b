"""``minivae explore``: the API against the model itself, bad requests, many clients, the command's
serving rules (port 0, Ctrl-C, --host, a locked or broken run), and the page in headless Chromium.

Tiny runs (a few epochs on the digits) are trained once per module and shared.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from minivae.cli import main
from minivae.explore import Explorer, ExploreError, make_server, png_bytes
from minivae.models import importance_log_likelihood
from minivae.random import Generator
from minivae.training.runfolder import RunFolder
from minivae.training.trainer import load_data, load_run

TINY = ["--data", "digits", "--hidden", "16", "--epochs", "3", "--batch-size", "64", "--quiet", "--no-figures"]
RUNS = {  # name: train arguments
    "vae": ["vae", "--latent", "2", "--binarize", "static"],
    "cvae": ["cvae", "--latent", "3", "--binarize", "static"],
    "iwae": ["iwae", "--latent", "3", "--k", "2", "--binarize", "static"],
    "ae": ["ae", "--latent", "2"],
    "dae": ["dae", "--latent", "3", "--noise", "mask"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore-runs")
    for name, args in RUNS.items():
        assert main(["train", *args, *TINY, "--out", str(root / name)]) == 0
    # The demo's run (2-D latent, grey pixels: a cross-entropy, so no ln p(x)), briefly.
    assert main(["demo", "--epochs", "2", "--out", str(root / "demo"), "--quiet"]) == 0
    return root


class Served:
    """An explorer served from a thread of this process; ``get`` returns (status, content type, body)."""

    def __init__(self, run_dir: Path, k: int = 50) -> None:
        config, model, _ = load_run(run_dir)
        _, test = load_data(config)
        self.explorer = Explorer(config, model, test, run_dir=str(run_dir), k=k)
        self.server = make_server(self.explorer, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def get(self, path: str) -> tuple[int, str, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as response:
                return response.status, response.headers["Content-Type"], response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers["Content-Type"], err.read()

    def json(self, path: str):
        status, kind, body = self.get(path)
        assert status == 200 and kind == "application/json", (path, status, body)
        return json.loads(body)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def served(runs):
    servers: dict[str, Served] = {}

    def serve(name: str) -> Served:
        if name not in servers:
            servers[name] = Served(runs / name)
        return servers[name]

    yield serve
    for s in servers.values():
        s.close()


def read_png(data: bytes) -> np.ndarray:
    """Pixels of the explorer's 8-bit greyscale PNGs (filter type 0 on every row)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", None
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if tag == b"IHDR":
            size = (int.from_bytes(body[4:8], "big"), int.from_bytes(body[0:4], "big"))
            assert body[8:10] == b"\x08\x00"  # 8 bits, greyscale
        idat += body if tag == b"IDAT" else b""
        pos += 12 + length
    rows = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(size[0], size[1] + 1)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:]


def expected_pixels(explorer: Explorer, z, label=None) -> np.ndarray:
    """What /api/decode must show: the model's E[x | z], as 8-bit pixels, each scale x scale."""
    model = explorer.model
    y = None if label is None else np.array([label])
    x = model.decode(np.asarray([z], dtype="float32"), y).numpy()[0].reshape(explorer.test.image_shape)
    pixels = np.rint(np.clip(x.astype(np.float64), 0, 1) * 255).astype(np.uint8)
    return np.kron(pixels, np.ones((explorer.scale, explorer.scale), dtype=np.uint8))


# =============================================================================
# The API computes what the model computes
# =============================================================================


def test_png_bytes_round_trip_with_zero_and_one_and_a_single_pixel():
    image = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.25]])
    np.testing.assert_array_equal(read_png(png_bytes(image)), [[0, 255, 128], [255, 0, 64]])
    np.testing.assert_array_equal(read_png(png_bytes(np.array([[2.0]]))), [[255]])  # clipped


@pytest.mark.parametrize("name", ["vae", "cvae", "iwae", "ae", "dae", "demo"])
def test_info_plane_decode_interpolate(served, name):
    s = served(name)
    info = s.json("/api/info")
    latent = {"vae": 2, "cvae": 3, "iwae": 3, "ae": 2, "dae": 3, "demo": 2}[name]
    assert info["model"] == name.replace("demo", "vae") and info["latent"] == latent and info["data"] == "digits"
    assert info["conditional"] == (name == "cvae") and info["probabilistic"] == (name not in ("ae", "dae"))
    assert info["log_likelihood"] == (name in ("vae", "cvae", "iwae"))
    plane = s.json("/api/plane")
    n = info["test_examples"]
    assert len(plane["points"]) == n and {p[2] for p in plane["points"]} == set(range(10))
    basis = np.array(plane["basis"])
    np.testing.assert_allclose(basis @ basis.T, np.eye(2), atol=1e-12)  # orthonormal, in every case
    if latent == 2:
        np.testing.assert_array_equal(basis, np.eye(2))
    (u0, u1), (v0, v1) = plane["range"]
    uv = np.array([p[:2] for p in plane["points"]])
    assert u0 < np.median(uv[:, 0]) < u1 and v0 < np.median(uv[:, 1]) < v1
    z = [0.3, -1.2, 0.7][:latent]
    label = "&label=4" if name == "cvae" else ""
    status, kind, body = s.get("/api/decode?z=" + ",".join(map(str, z)) + label)
    assert status == 200 and kind == "image/png"
    np.testing.assert_array_equal(read_png(body), expected_pixels(s.explorer, z, 4 if name == "cvae" else None))
    status, kind, body = s.get("/api/interpolate?from=0&to=7&steps=5")
    strip = read_png(body)
    h = 8 * s.explorer.scale
    assert status == 200 and strip.shape == (h, 5 * h + 4 * s.explorer.scale)
    means = s.explorer.means
    np.testing.assert_array_equal(strip[:, :h], expected_pixels(s.explorer, means[0], s.explorer.test.y[0]
                                                                if name == "cvae" else None))
    np.testing.assert_array_equal(strip[:, -h:], expected_pixels(s.explorer, means[7], s.explorer.test.y[0]
                                                                 if name == "cvae" else None))


def test_encode_of_a_vae_matches_the_model_and_eval(served):
    s = served("vae")
    e = s.json("/api/encode?index=5")
    model, test = s.explorer.model, s.explorer.test
    q = model.posterior(test.x[5:6])
    np.testing.assert_allclose(e["mean"], q.mu.numpy()[0], rtol=1e-6)
    np.testing.assert_allclose(e["logvar"], q.logvar.numpy()[0], rtol=1e-6)
    assert e["label"] == int(test.y[5]) and e["neg_elbo"] == pytest.approx(e["recon"] + e["kl"])
    kl = 0.5 * np.sum(np.exp(e["logvar"]) + np.square(e["mean"]) - 1 - np.array(e["logvar"]))
    assert e["kl"] == pytest.approx(kl, rel=1e-5)
    # ln p(x) by the same estimator and seed as eval's, at the explorer's k.
    ll = importance_log_likelihood(model, test.x[5:6], k=50, rng=Generator(1), chunk=50, batch_size=1)
    assert e["log_likelihood"] == pytest.approx(float(ll[0]), rel=1e-6) and e["log_likelihood_k"] == 50
    assert e["log_likelihood"] > -e["neg_elbo"] - 5  # a tighter bound than the ELBO, within noise
    # The posterior on the 2-D plane: the mean itself, radii 2 sd along the axes.
    assert e["plane"]["mean"] == pytest.approx(e["mean"])
    assert sorted(e["plane"]["ellipse"]["radii"]) == pytest.approx(sorted(2 * np.exp(np.array(e["logvar"]) / 2)))
    assert s.json("/api/encode?index=5") == e  # the same answer every time


def test_encode_where_there_is_no_log_likelihood(served, runs, capsys):
    grey = served("demo").json("/api/encode?index=0")
    assert "log_likelihood" not in grey and "cross-entropy" in grey["log_likelihood_refused"]
    assert grey["neg_elbo"] == pytest.approx(grey["recon"] + grey["kl"]) and len(grey["mean"]) == 2
    assert main(["eval", str(runs / "demo"), "--k", "2", "--out", str(runs / "demo-eval.json")]) == 0
    assert json.loads((runs / "demo-eval.json").read_text())["log_likelihood_refused"] == grey["log_likelihood_refused"]
    ae = served("ae").json("/api/encode?index=0")
    assert "kl" not in ae and "logvar" not in ae and ae["recon"] > 0
    assert "not a probabilistic model" in ae["log_likelihood_refused"]


def test_axes_plane_holds_the_other_coordinates_and_pca_plane_is_principal(served):
    s = served("iwae")
    plane = s.json("/api/plane?axes=0,2&hold=1.5")
    assert plane["origin"] == [0.0, 1.5, 0.0] and plane["basis"] == [[1, 0, 0], [0, 0, 1]]
    means = s.explorer.means
    np.testing.assert_allclose([p[:2] for p in plane["points"]], means[:, [0, 2]], atol=1e-4)
    pca = s.json("/api/plane")
    centred = means - means.mean(axis=0)
    top = np.linalg.svd(centred, full_matrices=False)[2][:2]
    np.testing.assert_allclose(np.abs(np.array(pca["basis"]) @ top.T), np.eye(2), atol=1e-8)
    e = s.json("/api/encode?index=3&axes=0,2&hold=1.5")
    assert e["plane"]["mean"] == pytest.approx([e["mean"][0], e["mean"][2]])


def test_cvae_encodes_with_the_true_label_and_decodes_with_the_chosen_one(served):
    s = served("cvae")
    e = s.json("/api/encode?index=2")
    model, test = s.explorer.model, s.explorer.test
    np.testing.assert_allclose(e["mean"], model.posterior(test.x[2:3], test.y[2:3]).mu.numpy()[0], rtol=1e-6)
    a = s.get("/api/decode?z=0,0,0&label=1")[2]
    b = s.get("/api/decode?z=0,0,0&label=7")[2]
    assert a != b


# =============================================================================
# Bad requests: a 4xx with one line of JSON, and the server carries on
# =============================================================================

BAD = [
    ("/api/decode?z=1", 400, "expected 2 comma-separated numbers"),
    ("/api/decode?z=1,2,3", 400, "expected 2 comma-separated numbers"),
    ("/api/decode?z=a,1", 400, "value 0 is 'a', not a number"),
    ("/api/decode?z=nan,1", 400, "no NaN or inf"),
    ("/api/decode?z=1,inf", 400, "no NaN or inf"),
    ("/api/decode?z=1,-Infinity", 400, "no NaN or inf"),
    ("/api/decode?z=1e300,0", 400, "within ±1e+06"),  # finite, but no latent point (and inf in float32)
    ("/api/decode?z=", 400, "z: expected 2"),
    ("/api/decode", 400, "z: missing"),
    ("/api/decode?z=1,2&z=3,4", 400, "given 2 times"),
    ("/api/decode?z=1,2&label=3", 400, "only a conditional model"),
    ("/api/encode?index=359", 400, "index: expected an integer in [0, 359)"),
    ("/api/encode?index=-1", 400, "index: expected an integer in [0, 359)"),
    ("/api/encode?index=1.5", 400, "index: expected an integer"),
    ("/api/encode?index=99999999999999999999999", 400, "index: expected an integer in"),
    ("/api/image?index=x", 400, "index: expected an integer"),
    ("/api/interpolate?from=0&to=1&steps=1000", 400, "steps: expected an integer in [2, 32]"),
    ("/api/interpolate?from=0&to=1&steps=1", 400, "steps: expected an integer in [2, 32]"),
    ("/api/interpolate?from=0&to=400", 400, "index: expected an integer in [0, 359)"),
    ("/api/plane?axes=0,0", 400, "two different indices"),
    ("/api/plane?axes=0,5", 400, "two different indices"),
    ("/api/plane?axes=x", 400, "expected 'pca' or two latent indices"),
    ("/api/plane?axes=0,1&hold=nan", 400, "hold: expected a finite number"),
    ("/api/plane?axes=0,1&hold=1e9", 400, "hold: expected a finite number within"),
    ("/api/encode?index=1&&&=", 400, "not name=value pairs"),
    ("/api/nothing", 404, "no such path"),
    ("/etc/passwd", 404, "no such path"),
    ("/static/nothing.js", 404, "no such file"),
    ("/static/../session.py", 403, "tries to leave"),
    ("/static/%2e%2e/server.py", 403, "tries to leave"),
    ("/static/..%2f..%2fsession.py", 403, "tries to leave"),
    ("/static/%2fetc%2fpasswd", 403, "leaves the explorer's static folder"),
    ("/api/decode?z=" + "1," * 10000 + "1", 414, "at most 16384"),
    ("/api/decode?z=" + "1," * 40000 + "1", 414, "Request-URI Too Long"),  # http.server's own limit
]


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """A GET whose path is sent as written (urllib would not normalise it, but be explicit)."""
    import http.client

    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def test_bad_requests_get_one_line_json_errors_and_the_server_carries_on(served):
    s = served("vae")
    good = s.get("/api/decode?z=0.5,0.5")[2]
    for path, status, fragment in BAD:
        code, body = raw_get(s.url, path)
        shown = path[:60]
        assert code == status, (shown, code, body[:200])
        text = body.decode()
        assert "\n" not in text.strip() and "Traceback" not in text, (shown, text[:200])
        assert fragment in json.loads(text)["error"], (shown, text[:200])
        assert s.get("/api/decode?z=0.5,0.5")[2] == good  # the next request is served normally
    request = urllib.request.Request(s.url + "/api/info", method="POST", data=b"x")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 405 and "GET only" in json.loads(err.value.read())["error"]


def test_eight_clients_times_fifty_requests_all_answered_correctly(served):
    s = served("vae")
    rng = np.random.default_rng(0)
    zs = rng.normal(size=(40, 2)).round(3)
    expected = {tuple(z): expected_pixels(s.explorer, z) for z in zs}
    encoded = {i: s.json(f"/api/encode?index={i}") for i in range(0, 40, 4)}

    def client(seed: int) -> int:
        r = np.random.default_rng(seed)
        ok = 0
        for n in range(50):
            if n % 5 == 4:
                i = int(r.integers(0, 10)) * 4
                status, kind, body = s.get(f"/api/encode?index={i}")
                ok += status == 200 and json.loads(body) == encoded[i]
            else:
                z = zs[int(r.integers(0, len(zs)))]
                status, kind, body = s.get(f"/api/decode?z={z[0]},{z[1]}")
                ok += status == 200 and np.array_equal(read_png(body), expected[tuple(z)])
        return ok

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(client, range(8)))
    assert answers == [50] * 8


def test_unsupported_runs_are_refused(runs):
    config, model, _ = load_run(runs / "vae")
    _, test = load_data(config)
    config.model = "vqvae"
    with pytest.raises(ExploreError, match="supports vae, cvae, iwae, ae, dae"):
        Explorer(config, model, test, run_dir="x")


# =============================================================================
# The command: port 0, Ctrl-C, --host, a run still training, a broken checkpoint
# =============================================================================


def start(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "minivae.cli", "explore", *args, "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "http://" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, line.split("http://", 1)[1].split("/", 1)[0]


def test_the_command_serves_on_a_free_port_and_stops_cleanly_on_ctrl_c(runs):
    proc, address = start(str(runs / "vae"), "--port", "0", "--k", "10")
    try:
        with urllib.request.urlopen(f"http://{address}/api/info", timeout=30) as response:
            assert json.loads(response.read())["model"] == "vae"
        with urllib.request.urlopen(f"http://{address}/", timeout=30) as response:
            assert b"minivae explore" in response.read()
        assert address.startswith("127.0.0.1:") and int(address.split(":")[1]) > 0
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err and "stopped" in err


def test_two_explorers_of_one_run_at_once(runs):
    first, a = start(str(runs / "vae"), "--port", "0")
    second, b = start(str(runs / "vae"), "--port", "0")
    try:
        answers = [json.loads(urllib.request.urlopen(f"http://{address}/api/encode?index=3", timeout=30).read())
                   for address in (a, b)]
        assert a != b and answers[0] == answers[1]  # read-only: neither locks the run, both answer alike
    finally:
        for proc in (first, second):
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=30)
    assert first.returncode == second.returncode == 130


def test_a_non_loopback_host_gets_a_warning(runs):
    proc, address = start(str(runs / "vae"), "--port", "0", "--host", "0.0.0.0")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert "warning: --host 0.0.0.0 is not a loopback address" in err and address.startswith("0.0.0.0:")
    assert "Traceback" not in err


def explore_and_eval_errors(run_dir: Path) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    run = lambda *a: subprocess.run([sys.executable, "-m", "minivae.cli", *a], capture_output=True, text=True,  # noqa: E731
                                    timeout=120)
    return run("explore", str(run_dir), "--no-browser", "--port", "0"), run("eval", str(run_dir), "--k", "2")


def test_a_run_still_training_and_a_broken_checkpoint_get_the_same_errors_as_eval(runs, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(runs / "vae", copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    with RunFolder(copy):  # as a training holds it
        explore, evaluate = explore_and_eval_errors(copy)
    for done, command in ((explore, "explore"), (evaluate, "eval")):
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert done.stderr.startswith(f"minivae {command}: error: {copy}: another minivae process is using this folder")
    (copy / "checkpoint.npz").write_bytes(b"PK\x03\x04 not really a zip")
    explore, evaluate = explore_and_eval_errors(copy)
    assert explore.returncode == evaluate.returncode == 2
    assert explore.stderr.count("\n") == 1 and "Traceback" not in explore.stderr
    assert explore.stderr.removeprefix("minivae explore") == evaluate.stderr.removeprefix("minivae eval")
    assert {p.name for p in copy.iterdir()} == set(before)  # nothing written, nothing removed
    assert all((copy / n).read_bytes() == b for n, b in before.items() if n != "checkpoint.npz")


def test_a_missing_run_a_bad_port_and_a_port_in_use_are_one_line_errors(runs, tmp_path, capsys):
    assert main(["explore", str(tmp_path / "nothing"), "--no-browser"]) == 2
    missing = capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nothing")]) == 2
    assert missing.removeprefix("minivae explore") == capsys.readouterr().err.removeprefix("minivae eval")
    assert main(["explore", str(runs / "vae"), "--no-browser", "--port", "70000"]) == 2
    assert "--port must be in [0, 65535], got 70000" in capsys.readouterr().err
    assert main(["explore", str(runs / "vae"), "--no-browser", "--k", "1000000"]) == 2
    assert "--k 1000000: ln p(x) is computed while the page waits; at most 100000" in capsys.readouterr().err
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["explore", str(runs / "vae"), "--no-browser", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--port {port}: cannot listen there" in err


def test_the_page_ships_with_the_package():
    import minivae.explore.server as server

    for name in ("page.html", "page.js", "page.css"):
        assert (server.STATIC / name).is_file()
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"minivae.explore" = ["static/*"]' in pyproject


# =============================================================================
# The page in a real browser (Debian's chromium and chromedriver; .ci/run installs them)
# =============================================================================

CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMEDRIVER) and shutil.which("chromium")):
        why = "needs Debian's chromium and chromium-driver (.ci/run installs them)"
        if os.environ.get("CI"):  # CI provides the browser: missing there is a failure, never a silent skip
            pytest.fail(why)
        pytest.skip(why)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1400"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


PIXELS = """
const img = document.getElementById('decoded');
if (!img.complete || !img.naturalWidth) return null;
const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
return Array.from(ctx.getImageData(0, 0, c.width, c.height).data.filter((_, k) => k % 4 === 0)).join(',');
"""


def test_the_page_in_headless_chromium(served, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    s = served("vae")
    browser.get(s.url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    first = wait.until(lambda d: d.execute_script(PIXELS))
    canvas = browser.find_element(By.ID, "plane")
    # Each digit's name is drawn at the mean of its points (colours alone: 5 and 7 look alike).
    centres = json.loads(wait.until(lambda d: canvas.get_attribute("data-label-centres")))
    points = s.json("/api/plane?axes=pca&hold=0")
    labels = sorted({label for _, _, label in points["points"]})
    assert [label for label, _, _ in centres] == labels and len(labels) >= 2
    width, height = int(canvas.get_attribute("width")), int(canvas.get_attribute("height"))
    assert all(0 <= x <= width and 0 <= y <= height for _, x, y in centres)
    assert len({(x, y) for _, x, y in centres}) == len(centres)  # distinct places
    ActionChains(browser).move_to_element_with_offset(canvas, 150, -150).click().perform()  # up and right of centre
    moved = wait.until(lambda d: (p := d.execute_script(PIXELS)) and p != first and p)
    z = [float(v) for v in browser.find_element(By.ID, "decoded").get_attribute("data-z").split(",")]
    assert z[0] > 0 and z[1] > 0
    shown = np.array(moved.split(","), dtype=np.uint8).reshape(read_png(s.get("/api/decode?z=0,0")[2]).shape)
    np.testing.assert_array_equal(shown, read_png(s.get(f"/api/decode?z={z[0]},{z[1]}")[2]))
    # Drag: the point follows the mouse, and the image follows the point.
    ActionChains(browser).move_to_element_with_offset(canvas, 0, 0).click_and_hold().move_by_offset(-60, 40) \
        .move_by_offset(-60, 40).release().perform()
    wait.until(lambda d: (p := d.execute_script(PIXELS)) and p != moved)
    dragged = [float(v) for v in browser.find_element(By.ID, "decoded").get_attribute("data-z").split(",")]
    assert dragged[0] < 0 and dragged[1] < 0
    # Pick test image 7: its ELBO terms appear and agree with /api/encode.
    browser.find_element(By.CSS_SELECTOR, "#thumbs img[data-index='7']").click()
    wait.until(lambda d: d.find_element(By.ID, "index").get_attribute("value") == "7")
    expected = s.json("/api/encode?index=7&axes=pca&hold=0")
    for element, key in (("recon", "recon"), ("kl", "kl"), ("neg-elbo", "neg_elbo"), ("log-px", "log_likelihood")):
        cell = wait.until(lambda d: d.find_element(By.ID, element))
        wait.until(lambda d: cell.get_attribute("data-value") == repr(expected[key]) or
                   float(cell.get_attribute("data-value") or "nan") == expected[key])
        assert cell.text == f"{expected[key]:.3f}"
    assert browser.find_element(By.ID, "status").text == ""
