def test_unknown_path_is_json_404(client):
    response = client.get("/api/no-such-endpoint")

    assert response.status_code == 404
    assert response.json() == {
        "detail": "No such endpoint or resource.",
        "code": "not_found",
    }


def test_wrong_method_is_json_405(client, team):
    response = client.delete("/api/jobs/create", **team.headers)

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_health_needs_no_key(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "healthy"


def test_database_error_is_503(rf):
    from django.db import OperationalError

    from saasllm.errors import api_exception_handler

    response = api_exception_handler(
        OperationalError("connection refused"), {"request": rf.get("/")}
    )

    assert response.status_code == 503
    assert response.data == {
        "detail": "The gateway's database is unavailable. Retry in a few seconds.",
        "code": "database_unavailable",
    }
    assert response["Retry-After"] == "2"
