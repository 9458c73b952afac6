from app.protocol import client_message_adapter, server_message_adapter
from app.protocol_doc import DOC_PATH, render


def test_protocol_doc_is_generated_from_the_models():
    assert DOC_PATH.read_text() == render(), "docs/protocol.md is stale: run python -m app.protocol_doc"


def test_every_message_type_is_documented():
    text = DOC_PATH.read_text()
    for adapter in (client_message_adapter, server_message_adapter):
        schema = adapter.json_schema()
        messages = [d for d in schema["$defs"].values() if "type" in d.get("properties", {})]
        assert len(messages) >= 4
        for definition in messages:
            type_field = definition["properties"]["type"]
            assert f"### `{type_field.get('const') or type_field.get('default')}`" in text
