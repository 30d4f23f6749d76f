"""The OpenAPI schema and the Swagger UI page, which must load nothing remote."""

import re
from urllib.parse import urlsplit

URL_PATTERN = re.compile(r"""https?://[^\s"'<>)]+""")
ASSET_PATTERN = re.compile(r"""<(?:script|link)\b[^>]*?(?:src|href)="([^"]+)\"""")


def test_schema_is_openapi_3(client):
    response = client.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "saasllm API"
    assert schema["paths"]


def test_schema_yaml_by_default(client):
    response = client.get("/api/schema/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert response.content.startswith(b"openapi: 3.")


def test_docs_page_loads_only_local_assets(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    hosts = {urlsplit(url).hostname for url in URL_PATTERN.findall(html)}
    assert hosts <= {"testserver"}
    assets = ASSET_PATTERN.findall(html)
    assert assets
    for asset in assets:
        assert asset.startswith("/static/drf_spectacular_sidecar/"), asset
    assert '"/api/schema/"' in html


def test_docs_assets_are_served_by_the_app(client):
    page = client.get("/api/docs/").content.decode()
    asset = next(
        part.split('"')[0]
        for part in page.split('src="')[1:]
        if part.startswith("/static/")
    )

    response = client.get(asset)

    assert response.status_code == 200
    assert "max-age=86400" in response["Cache-Control"]


def test_admin_css_is_served_by_the_app(client):
    response = client.get("/static/admin/css/base.css")

    assert response.status_code == 200
