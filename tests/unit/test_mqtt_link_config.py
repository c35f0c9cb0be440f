"""The broker section's MQTT settings reach the link: the largest packet accepted, and a bad
value refused naming its key."""

from pathlib import Path

import pytest

from edge_agent.config import load_config
from edge_agent.mqtt import MqttLink
from storeedge.errors import ConfigError, UsageError

STORE = """\
store:
  id: bj-1
catalog:
  - {sku: COLA, unit_grams: 350}
lanes:
  - {id: A1, sku: COLA}
broker:
  max_packet_bytes: %s
"""


def config_with(tmp_path: Path, max_packet_bytes: str) -> Path:
    path = tmp_path / "store.yaml"
    path.write_text(STORE % max_packet_bytes)
    return path


def test_max_packet_bytes_reaches_the_decoder(tmp_path: Path) -> None:
    config = load_config(config_with(tmp_path, "65536"))
    link = MqttLink(host="127.0.0.1", port=1883, client_id="c", subscriptions=["store/bj-1/#"],
                    on_batch=print, max_packet_size=config.broker.max_packet_bytes)
    assert link.connection.max_packet_size == 65_536
    assert load_config(config_with(tmp_path, "1048576")).broker.max_packet_bytes == 1_048_576


@pytest.mark.parametrize("value, words", [("100", "greater than or equal to 1024"),
                                          ("300000000", "less than or equal to 268435455")])
def test_a_max_packet_size_mqtt_cannot_carry_is_refused(tmp_path: Path, value: str,
                                                        words: str) -> None:
    # 2.2.3: a Remaining Length is at most 268,435,455 bytes.
    with pytest.raises(ConfigError) as info:
        load_config(config_with(tmp_path, value))
    assert info.value.key == "broker.max_packet_bytes" and words in info.value.problem


async def test_qos2_is_refused_when_subscribing_later_too() -> None:
    link = MqttLink(host="127.0.0.1", port=1883, client_id="c", subscriptions=["a/#"],
                    on_batch=print)
    assert link.connection.subscriptions == [("a/#", 1)]
    with pytest.raises(UsageError, match=r"filters\[0\]: 'c/#' at QoS 2"):
        await link.connection.subscribe([("c/#", 2)])
    assert link.connection.subscriptions == [("a/#", 1)]
