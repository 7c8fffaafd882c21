"""County lookups by current and former division codes, in the service and over the API."""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.services.counties import get_counties_by_codes, get_county_by_code
from fleet_server.services.errors import NotFoundError
from server_helpers import World

pytest_plugins = ["server_fixtures"]


@pytest.mark.parametrize(
    ("old_code", "new_code", "name", "city", "old_name", "old_city"),
    [
        pytest.param("341521", "340422", "寿县", "淮南市", "寿县", "六安市", id="shou"),
        pytest.param("340824", "340882", "潜山市", "安庆市", "潜山县", "安庆市", id="qianshan"),
    ],
)
def test_both_codes_give_one_county(
    seeded: sessionmaker[Session],
    old_code: str,
    new_code: str,
    name: str,
    city: str,
    old_name: str,
    old_city: str,
) -> None:
    with seeded() as session:
        by_old = get_county_by_code(session, code=old_code)
        by_new = get_county_by_code(session, code=new_code)

        assert by_old.id == by_new.id
        assert by_old.name == name
        assert by_old.city == city
        assert by_old.current_code == new_code
        codes = {code.code: code for code in by_old.codes}
        assert set(codes) == {old_code, new_code}
        assert codes[old_code].is_current is False
        assert codes[old_code].name_then == old_name
        assert codes[old_code].city_then == old_city
        assert codes[new_code].is_current is True


def test_codes_of_one_county_deduplicate(seeded: sessionmaker[Session]) -> None:
    with seeded() as session:
        counties = get_counties_by_codes(session, codes=["341521", "340422", "341321"])

        assert [county.name for county in counties] == ["寿县", "砀山县"]


def test_unknown_code_not_found(seeded: sessionmaker[Session]) -> None:
    with seeded() as session, pytest.raises(NotFoundError) as error:
        get_county_by_code(session, code="340100")

    assert error.value.code == "county_not_found"
    assert "340100" in error.value.message


def test_api_lookup_by_old_and_new_code(client: TestClient, world: World) -> None:
    headers = world.headers["student"]

    by_old = client.get("/api/v1/counties/341521", headers=headers)
    by_new = client.get("/api/v1/counties/340422", headers=headers)

    assert by_old.status_code == 200
    assert by_new.status_code == 200
    assert by_old.json() == by_new.json()
    body = by_old.json()
    assert body["name"] == "寿县"
    assert body["name_en"] == "Shou County"
    assert body["code"] == "340422"
    assert body["level"] == "national"
    assert [code["code"] for code in body["codes"]] == ["340422", "341521"]
    assert body["codes"][1]["replaced_in_year"] == 2016


def test_api_lists_31_counties(client: TestClient, world: World) -> None:
    response = client.get("/api/v1/counties", headers=world.headers["operator_a"])

    assert response.status_code == 200
    counties = response.json()
    assert len(counties) == 31
    assert sum(1 for county in counties if county["level"] == "national") == 20
    assert [county["code"] for county in counties] == sorted(c["code"] for c in counties)
    provincial = client.get(
        "/api/v1/counties", params={"level": "provincial"}, headers=world.headers["student"]
    )
    assert len(provincial.json()) == 11


def test_api_unknown_code_is_json_404(client: TestClient, world: World) -> None:
    response = client.get("/api/v1/counties/340100", headers=world.headers["student"])

    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "county_not_found"
    assert body["message"] == "贫困县不存在：340100"
    assert body["message_en"] == "Poverty county not found: 340100"


def test_api_products_filter_by_old_code(client: TestClient, world: World) -> None:
    headers = world.headers["student"]

    by_old = client.get("/api/v1/products", params={"county_code": "340824"}, headers=headers)
    by_new = client.get("/api/v1/products", params={"county_code": "340882"}, headers=headers)

    assert by_old.status_code == 200
    assert by_old.json()["items"] == by_new.json()["items"]
    names = {product["name"] for product in by_old.json()["items"]}
    assert names == {"舒席(竹席)", "天柱剑毫(绿茶)", "安庆瓜蒌(瓜蒌籽)"}
