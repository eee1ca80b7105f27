"""The public protocol specification names everything the code speaks."""

from pathlib import Path

import pytest

from protocols import levels, messages, record, serial, topics

SPEC = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()


@pytest.mark.parametrize("field", record.FIELDS)
def test_every_record_field_is_specified(field):
    assert f"`{field}`" in SPEC


@pytest.mark.parametrize("kind", [kind for kind, _, _ in topics.KINDS])
def test_every_topic_is_specified(kind):
    assert f"`{kind}`" in SPEC


@pytest.mark.parametrize("name", messages.TYPES)
def test_every_message_type_is_specified(name):
    assert f'"t":"{name}"' in SPEC


@pytest.mark.parametrize("name", messages.COMMANDS)
def test_every_command_is_specified(name):
    assert f"`{name}`" in SPEC


@pytest.mark.parametrize("channel", levels.CHANNELS)
def test_every_channel_is_specified(channel):
    assert f"`{channel}`" in SPEC


def test_the_serial_frame_limits_match_the_code():
    assert f"at most {serial.MAX_FRAME} bytes" in SPEC
    assert f"1–{messages.MAX_BATCH}" in SPEC


@pytest.mark.parametrize("name", serial.TYPES)
def test_every_serial_message_is_specified(name):
    assert f"`{name}`" in SPEC
