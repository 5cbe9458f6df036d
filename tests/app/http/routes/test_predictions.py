"""GET /v1/predictions/...: stored results, raw maps, heatmap PNGs, the grid, expiry."""

from __future__ import annotations

import io
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from app.core.errors import LabelNotFound
from app.http.routes.predictions import label_index
from app.http.schemas import MapsResponse
from tests.app.helpers import CLASSES, live_server, png


@pytest.fixture(scope="module")
def posted(server_url: str) -> dict:
    with httpx.Client(base_url=server_url) as client:
        response = client.post("/v1/classify", files={"file": ("x.png", png(21, size=64), "image/png")})
        assert response.status_code == 200
        return response.json()


def decode_png(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(response.content))
    assert img.format == "PNG"
    return img


def test_stored_result_is_the_original_response(client: httpx.Client, posted: dict) -> None:
    assert client.get(f"/v1/predictions/{posted['id']}").json() == posted


def test_raw_maps(client: httpx.Client, posted: dict) -> None:
    maps = MapsResponse.model_validate_json(client.get(posted["maps"]["url"]).content)
    assert maps.labels == CLASSES and maps.shape == [10, 8, 8]
    values = np.array(maps.values)
    assert values.shape == (10, 8, 8)
    logits = values.mean(axis=(1, 2))
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(probs, [posted["scores"][c] for c in CLASSES], rtol=1e-4, atol=1e-6)
    assert maps.units == "logit"  # the model's own values unless asked otherwise


def test_raw_maps_as_posteriors(client: httpx.Client, posted: dict) -> None:
    logits = np.array(client.get(posted["maps"]["url"]).json()["values"])
    body = MapsResponse.model_validate_json(
        client.get(posted["maps"]["url"], params={"values": "posterior"}).content
    )
    assert body.units == "probability" and body.shape == [10, 8, 8]
    posterior = np.array(body.values)
    expected = np.exp(logits - logits.max(axis=0)) / np.exp(logits - logits.max(axis=0)).sum(axis=0)
    np.testing.assert_allclose(posterior, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(posterior.sum(axis=0), 1.0, rtol=1e-5)  # a distribution at every location
    weighted = np.array(client.get(posted["maps"]["url"], params={"values": "weighted"}).json()["values"])
    scores = np.array([posted["scores"][c] for c in CLASSES])
    np.testing.assert_allclose(weighted, posterior * scores[:, None, None], rtol=1e-4, atol=1e-7)
    assert client.get(posted["maps"]["url"], params={"values": "probability"}).status_code == 422


def test_label_png_by_name_or_index_with_sizes(client: httpx.Client, posted: dict) -> None:
    template = posted["maps"]["png_url_template"]
    by_name = client.get(template.replace("{label}", "cat"))
    by_index = client.get(template.replace("{label}", "3"))
    assert decode_png(by_name).size == (256, 256)
    assert by_name.content == by_index.content
    assert client.get(template.replace("{label}", "CAT")).content == by_name.content
    assert decode_png(client.get(template.replace("{label}", "dog"), params={"size": 48})).size == (48, 48)


def test_overlay_colormap_and_normalize_change_the_picture(client: httpx.Client, posted: dict) -> None:
    url = posted["maps"]["png_url_template"].replace("{label}", "ship")

    def pixels(**params) -> np.ndarray:
        return np.asarray(decode_png(client.get(url, params={"size": 64} | params)).convert("RGB"), dtype=int)

    plain = pixels()
    assert not np.array_equal(plain, pixels(overlay="true"))
    assert not np.array_equal(pixels(overlay="true"), pixels(overlay="true", alpha=0.9))
    assert not np.array_equal(plain, pixels(colormap="viridis"))
    assert not np.array_equal(plain, pixels(normalize="map"))
    assert not np.array_equal(plain, pixels(normalize="global"))
    assert not np.array_equal(plain, pixels(normalize="posterior"))
    np.testing.assert_array_equal(plain, pixels(normalize="weighted"))  # the default
    gray = pixels(colormap="gray")
    assert (gray[..., 0] == gray[..., 1]).all()


def test_grid_png(client: httpx.Client, posted: dict) -> None:
    grid = decode_png(client.get(posted["maps"]["grid_url"], params={"size": 64}))
    assert grid.width >= 5 * 64 and grid.height >= 2 * 64  # 10 classes: 5 x 2 cells
    overlay = decode_png(client.get(posted["maps"]["grid_url"], params={"size": 64, "overlay": "true"}))
    assert overlay.size == grid.size


def test_map_headers_say_what_the_colours_mean(client: httpx.Client, posted: dict) -> None:
    url = posted["maps"]["png_url_template"].replace("{label}", "ship")
    values = np.array(client.get(posted["maps"]["url"]).json()["values"])
    default = client.get(url)
    assert default.headers["X-Map-Normalize"] == "weighted"
    assert default.headers["X-Map-Units"] == "probability"
    assert default.headers["X-Map-Range"] == "0,1"  # probabilities: the same ends for every class and image
    assert float(default.headers["X-Class-Score"]) == pytest.approx(posted["scores"]["ship"], rel=1e-5)
    shared = client.get(url, params={"normalize": "global"})
    assert (shared.headers["X-Map-Normalize"], shared.headers["X-Map-Units"]) == ("global", "logit")
    low, high = map(float, shared.headers["X-Map-Range"].split(","))
    assert (low, high) == pytest.approx((values.min(), values.max()), rel=1e-5)
    own = client.get(url, params={"normalize": "map"})
    assert (own.headers["X-Map-Normalize"], own.headers["X-Map-Units"]) == ("map", "logit")
    low, high = map(float, own.headers["X-Map-Range"].split(","))
    assert (low, high) == pytest.approx((values[8].min(), values[8].max()), rel=1e-5)
    grid = client.get(posted["maps"]["grid_url"])
    assert (grid.headers["X-Map-Normalize"], grid.headers["X-Map-Range"]) == ("weighted", "0,1")
    posterior = client.get(url, params={"normalize": "posterior"})
    assert (posterior.headers["X-Map-Units"], posterior.headers["X-Map-Range"]) == ("probability", "0,1")
    grid_shared = client.get(posted["maps"]["grid_url"], params={"normalize": "global"})
    assert grid_shared.headers["X-Map-Range"] == shared.headers["X-Map-Range"]
    own_grid = client.get(posted["maps"]["grid_url"], params={"normalize": "map"})
    assert "X-Map-Range" not in own_grid.headers and own_grid.headers["X-Map-Units"] == "logit"


def test_legend_makes_the_picture_taller(client: httpx.Client, posted: dict) -> None:
    url = posted["maps"]["png_url_template"].replace("{label}", "cat")
    plain = decode_png(client.get(url, params={"size": 256}))
    legend = decode_png(client.get(url, params={"size": 256, "legend": "true"}))
    assert legend.width == plain.width and legend.height > plain.height + 30


def test_overlays_of_a_wide_photo_keep_its_aspect_ratio(client: httpx.Client) -> None:
    y, x = np.mgrid[0:300, 0:600]
    photo = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=92)
    posted = client.post("/v1/classify", files={"file": ("wide.jpg", buffer.getvalue(), "image/jpeg")}).json()
    url = posted["maps"]["png_url_template"].replace("{label}", "cat")
    assert decode_png(client.get(url, params={"size": 512, "overlay": "true"})).size == (512, 256)
    assert decode_png(client.get(url, params={"size": 512})).size == (512, 512)  # the model's grid
    over = np.asarray(decode_png(client.get(url, params={"size": 512, "overlay": "true", "alpha": 0})))
    expected = np.asarray(Image.fromarray(photo).resize((512, 256), Image.Resampling.BICUBIC), dtype=int)
    assert np.abs(over.astype(int) - expected).mean() < 6  # sharp at 512: the stored preview is 512 wide


@pytest.mark.parametrize(
    "params", [{"size": 0}, {"size": 5000}, {"colormap": "rainbow"}, {"normalize": "z"}, {"alpha": 2}]
)
def test_png_parameters_are_validated(client: httpx.Client, posted: dict, params: dict) -> None:
    response = client.get(posted["maps"]["png_url_template"].replace("{label}", "cat"), params=params)
    assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"


def test_label_index() -> None:
    labels = ("cat", "Dog", "7")
    assert [label_index(labels, x) for x in ("cat", "dog", "1", "7", "0")] == [0, 1, 1, 2, 0]


@pytest.mark.parametrize("label", ["9" * 4301, "٣", "１", "²", "+1", " 1", "-0", "10"])
def test_only_short_ascii_indices_are_indices(label: str) -> None:
    with pytest.raises(LabelNotFound) as info:
        label_index(tuple(CLASSES), label)
    assert len(info.value.detail) < 300  # a long label is quoted cut short


@pytest.mark.parametrize("label", ["9" * 4301, "%D9%A3"])
def test_hostile_labels_are_404_and_keep_the_connection(
    client: httpx.Client, posted: dict, label: str
) -> None:
    url = posted["maps"]["png_url_template"].replace("{label}", label)
    response = client.get(url)
    assert response.status_code == 404 and len(response.json()["detail"]) < 300
    assert response.headers.get("connection") != "close"
    assert client.get(posted["maps"]["png_url_template"].replace("{label}", "3")).status_code == 200


def test_results_expire(make_settings) -> None:
    with live_server(make_settings(store_ttl_s=0.2)) as url, httpx.Client(base_url=url) as client:
        rid = client.post("/v1/classify", files={"file": ("x.png", png(1), "image/png")}).json()["id"]
        assert client.get(f"/v1/predictions/{rid}").status_code == 200
        time.sleep(0.3)
        response = client.get(f"/v1/predictions/{rid}/maps.png")
        assert response.status_code == 404 and "expired" in response.json()["detail"]
