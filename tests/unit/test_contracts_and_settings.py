"""Wire codecs and settings loading."""

import msgspec
import pytest

from command_service.settings import Settings as CommandSettings
from shop.contracts.commands import command_request_decoder
from shop.contracts.events import ProductCreated, decode_data
from shop.contracts.replies import error_reply, reply_decoder
from shop.errors import InsufficientStock
from shop.read_models import ops_nats_url
from shop.settings import load_settings, with_password
from tests.envelopes import envelope


def test_a_command_request_is_decoded_by_its_type_tag():
    request = command_request_decoder.decode(
        b'{"meta":{"actor":{"user_id":"u1"},"correlation_id":"c"},'
        b'"command":{"type":"PlaceOrder","items":[{"product_id":"p1","quantity":2}]}}'
    )
    assert request.command.subject == "cmd.order.place"
    assert request.command.items[0].quantity == 2


@pytest.mark.parametrize(
    "bad",
    [
        b'{"meta":{"actor":{"user_id":"u1"},"correlation_id":"c"},"command":{"type":"PlaceOrder","items":[]}}',
        b'{"meta":{"actor":{"user_id":"u1"},"correlation_id":"c"},"command":{"type":"CreateProduct","name":"x",'
        b'"price":-1,"stock":1,"category":"c","seller_id":"s"}}',
        b'{"meta":{"actor":{"user_id":"u1"},"correlation_id":"c"},"command":{"type":"Nope"}}',
    ],
)
def test_invalid_commands_are_refused_by_the_decoder(bad):
    with pytest.raises(msgspec.ValidationError):
        command_request_decoder.decode(bad)


def test_an_error_reply_is_raised_again_on_the_callers_side():
    reply = reply_decoder.decode(error_reply(InsufficientStock("only 2 left")))
    with pytest.raises(InsufficientStock, match="only 2 left"):
        reply.raise_for_error()


KEY = "k" * 32


def test_settings_prefer_the_service_prefixed_variable(monkeypatch):
    monkeypatch.setenv("ACTOR_KEY", KEY)
    monkeypatch.setenv("HTTP_PORT", "9000")
    monkeypatch.setenv("COMMAND_SERVICE_HTTP_PORT", "9001")
    monkeypatch.setenv("DATABASE_POOL_SIZE", "3")
    settings = load_settings(CommandSettings, "command-service")
    assert (settings.http_port, settings.database_pool_size) == (9001, 3)


def test_a_malformed_setting_stops_the_process_with_its_name(monkeypatch):
    monkeypatch.setenv("ACTOR_KEY", KEY)
    monkeypatch.setenv("DATABASE_POOL_SIZE", "many")
    with pytest.raises(SystemExit, match="database_pool_size"):
        load_settings(CommandSettings, "command-service")


def test_a_secret_is_read_from_the_file_its_file_variable_names(monkeypatch, tmp_path):
    (tmp_path / "key").write_text(KEY + "\n")
    (tmp_path / "nats").write_text("from-the-file")
    monkeypatch.setenv("ACTOR_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("COMMAND_SERVICE_NATS_PASSWORD_FILE", str(tmp_path / "nats"))
    monkeypatch.setenv("NATS_PASSWORD", "the-plain-variable-comes-after-the-prefixed-file")
    settings = load_settings(CommandSettings, "command-service")
    assert (settings.actor_key, settings.nats_password) == (KEY, "from-the-file")


@pytest.mark.parametrize(("value", "error"), [(None, "missing required setting: set ACTOR_KEY"), ("short", "key")])
def test_a_missing_or_short_secret_stops_the_process_without_showing_it(monkeypatch, tmp_path, value, error):
    if value is not None:
        (tmp_path / "key").write_text(value)
        monkeypatch.setenv("ACTOR_KEY_FILE", str(tmp_path / "key"))
    with pytest.raises(SystemExit, match=error) as stopped:
        load_settings(CommandSettings, "command-service")
    assert value is None or value not in str(stopped.value)


def test_an_unreadable_secret_file_stops_the_process_with_its_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("ACTOR_KEY_FILE", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit, match="ACTOR_KEY_FILE: cannot read"):
        load_settings(CommandSettings, "command-service")


PHONE = ProductCreated(name="Phone", description="d", price=100, stock=3, category="phones", seller_id="s1")


@pytest.mark.parametrize(
    ("url", "password", "user", "expected"),
    [
        ("postgresql://shop@h:5432/db", "s3cret", None, "postgresql://shop:s3cret@h:5432/db"),
        ("redis://h:6379/0", "s3cret", "query-service", "redis://query-service:s3cret@h:6379/0"),
        ("redis://h:6379/0", "a/b@c", "ops", "redis://ops:a%2Fb%40c@h:6379/0"),
        ("postgresql://shop:given@h/db", "s3cret", None, "postgresql://shop:given@h/db"),  # a URL's own wins
        ("redis://h:6379/0", "", "ops", "redis://h:6379/0"),  # no password: as it is
    ],
)
def test_a_store_url_gets_the_processs_user_and_password(url, password, user, expected):
    assert with_password(url, password, user) == expected


def test_an_old_schema_version_is_upcast_when_read():
    v1 = b'{"name":"Phone","description":"d","price":100,"stock":3,"categoryId":"phones","sellerId":"s1"}'
    assert decode_data(envelope("p1", 1, PHONE, schema=1, data=v1)) == PHONE


@pytest.mark.parametrize("schema", [99, -1])
def test_an_unknown_schema_version_is_refused(schema):
    with pytest.raises(msgspec.ValidationError):
        decode_data(envelope("p1", 1, PHONE, schema=schema, data=b"{}"))


def test_the_operators_tools_find_every_node_of_a_cluster_in_the_run_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("NATS_URL", raising=False)
    monkeypatch.setenv("RUN_DIR", str(tmp_path))
    assert ops_nats_url() == "nats://127.0.0.1:4222"  # nothing written: the single node
    nodes = "nats://127.0.0.1:4222,nats://127.0.0.1:4232,nats://127.0.0.1:4242"
    (tmp_path / "nats.env").write_text(f"NATS_URL={nodes}\nNATS_STREAM_REPLICAS=3\n")
    assert ops_nats_url() == nodes
    monkeypatch.setenv("NATS_URL", "nats://elsewhere:4222")
    assert ops_nats_url() == "nats://elsewhere:4222"  # the operator's own setting wins
