"""Drives the simulated Anthropic Messages API with the official Anthropic Python SDK.

Usage: python anthropic_sdk_check.py BASE_URL API_KEY   (BASE_URL like http://127.0.0.1:8080)
Exits non-zero with a message on the first failed check.
"""

import sys

import anthropic
from anthropic import Anthropic

MODEL = "claude-sonnet-4-6"


def check(cond, msg):
    if not cond:
        print(f"FAILED: {msg}", file=sys.stderr)
        sys.exit(1)


def conforms(schema, value, at="input"):
    """A small JSON-schema check for the subset used below."""
    if "enum" in schema:
        check(value in schema["enum"], f"{at}: {value!r} not in {schema['enum']}")
        return
    kind = schema.get("type")
    types = {
        "object": dict,
        "array": list,
        "string": str,
        "boolean": bool,
        "integer": int,
        "number": (int, float),
    }
    if kind in types:
        ok = isinstance(value, types[kind])
        if kind in ("integer", "number"):
            ok = ok and not isinstance(value, bool)
        check(ok, f"{at}: {value!r} is not {kind}")
    if kind in ("integer", "number"):
        check(value >= schema.get("minimum", value), f"{at}: {value} below minimum")
        check(value <= schema.get("maximum", value), f"{at}: {value} above maximum")
    if kind == "array":
        check(len(value) >= schema.get("minItems", 0), f"{at}: too few items")
        check(len(value) <= schema.get("maxItems", len(value)), f"{at}: too many items")
        for i, item in enumerate(value):
            conforms(schema.get("items", {}), item, f"{at}[{i}]")
    if kind == "object":
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            check(key in value, f"{at}: missing {key}")
        for key, item in value.items():
            if key in props:
                conforms(props[key], item, f"{at}.{key}")
            else:
                check(schema.get("additionalProperties", True) is not False, f"{at}: unexpected {key}")


BOOKING = {
    "name": "book_table",
    "description": "Book a table at a restaurant",
    "input_schema": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "restaurant": {"type": "string"},
            "guests": {"type": "integer", "minimum": 1, "maximum": 12},
            "time": {"type": "string", "enum": ["18:00", "19:30", "21:00"]},
            "outdoor": {"type": "boolean"},
            "diet": {"type": "array", "items": {"type": "string", "enum": ["vegan", "none"]}, "minItems": 1, "maxItems": 2},
        },
        "required": ["restaurant", "guests", "time", "outdoor", "diet"],
    },
}
WEATHER = {
    "name": "get_weather",
    "description": "Current weather at a place",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}


def non_streaming(client):
    m = client.messages.create(
        model=MODEL,
        max_tokens=256,
        system="You are terse.",
        messages=[{"role": "user", "content": "Say hello to the harbor."}],
    )
    check(m.type == "message" and m.role == "assistant", f"message type/role {m.type}/{m.role}")
    check(m.id.startswith("msg_"), f"id {m.id}")
    check(m.model == MODEL, f"model {m.model}")
    check(len(m.content) == 1 and m.content[0].type == "text", f"content {m.content}")
    check(len(m.content[0].text) > 0, "empty text")
    check(m.stop_reason == "end_turn", f"stop_reason {m.stop_reason}")
    check(m.stop_sequence is None, "stop_sequence")
    check(m.usage.input_tokens > 0 and m.usage.output_tokens > 0, f"usage {m.usage}")
    check(m.usage.cache_read_input_tokens == 0, "cache reads")
    check(m.usage.service_tier == "standard", f"service tier {m.usage.service_tier}")

    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    check(raw.headers.get("request-id", "").startswith("req_"), "request-id header")
    check(raw.headers.get("anthropic-ratelimit-requests-limit") is not None, "rate-limit headers")
    capped = raw.parse()
    check(capped.stop_reason in ("end_turn", "max_tokens"), f"capped stop_reason {capped.stop_reason}")

    capped = client.messages.create(
        model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "Go on at length [[sim: words=100]]"}]
    )
    check(capped.stop_reason == "max_tokens", f"cap: stop_reason {capped.stop_reason}")
    check(capped.usage.output_tokens == 5, f"cap: output tokens {capped.usage.output_tokens}")
    return m


def streaming_text(client, expected_text):
    with client.messages.stream(
        model=MODEL,
        max_tokens=256,
        system="You are terse.",
        messages=[{"role": "user", "content": "Say hello to the harbor."}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    check(text == expected_text, f"streamed text differs: {text!r} vs {expected_text!r}")
    check(final.content[0].text == text, "final message text")
    check(final.stop_reason == "end_turn", f"stream stop_reason {final.stop_reason}")
    check(final.usage.output_tokens > 1, f"stream usage {final.usage}")
    check(final.usage.input_tokens > 0, "stream input tokens")

    kinds = []
    for event in client.messages.create(
        model=MODEL, max_tokens=64, stream=True, messages=[{"role": "user", "content": "hi"}]
    ):
        kinds.append(event.type)
    check(kinds[0] == "message_start" and kinds[-1] == "message_stop", f"raw events {kinds}")
    check("content_block_delta" in kinds and "message_delta" in kinds, f"raw events {kinds}")


def tools(client):
    question = {"role": "user", "content": "Please book dinner for the team."}
    with client.messages.stream(
        model=MODEL,
        max_tokens=512,
        tools=[WEATHER, BOOKING],
        tool_choice={"type": "tool", "name": "book_table"},
        messages=[question],
    ) as stream:
        final = stream.get_final_message()
    check(final.stop_reason == "tool_use", f"tool stop_reason {final.stop_reason}")
    uses = [b for b in final.content if b.type == "tool_use"]
    check(len(uses) == 1 and len(final.content) == 1, f"forced call content {final.content}")
    call = uses[0]
    check(call.name == "book_table", f"tool name {call.name}")
    check(call.id.startswith("toolu_"), f"tool id {call.id}")
    conforms(BOOKING["input_schema"], call.input)

    # The same call, not streamed, has the same input.
    whole = client.messages.create(
        model=MODEL,
        max_tokens=512,
        tools=[WEATHER, BOOKING],
        tool_choice={"type": "tool", "name": "book_table"},
        messages=[question],
    )
    check(whole.content[0].input == call.input, "streamed and whole tool input differ")

    # Text first, then a call the model chose itself.
    with client.messages.stream(
        model=MODEL,
        max_tokens=512,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "What's the weather in Lisbon?"}],
    ) as stream:
        auto = stream.get_final_message()
    check([b.type for b in auto.content] == ["text", "tool_use"], f"auto content {auto.content}")
    check(auto.content[1].input == {"location": "Lisbon"}, f"auto input {auto.content[1].input}")

    # Answer the forced call; the model answers with text.
    follow_up = [
        question,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Booked for 19:30."}],
        },
    ]
    with client.messages.stream(
        model=MODEL, max_tokens=512, tools=[WEATHER, BOOKING], messages=follow_up
    ) as stream:
        text = stream.get_final_text()
        answer = stream.get_final_message()
    check(len(text) > 0, "no text after the tool result")
    check(answer.stop_reason == "end_turn", f"after tool stop_reason {answer.stop_reason}")
    check(all(b.type == "text" for b in answer.content), f"after tool content {answer.content}")


def errors(client, base_url):
    try:
        client.messages.create(
            model=MODEL, max_tokens=32, messages=[{"role": "user", "content": "hi [[sim: status=529]]"}]
        )
        check(False, "529 did not raise")
    except anthropic.InternalServerError as e:
        check(isinstance(e, anthropic.APIStatusError), "529 is an APIStatusError")
        check(e.status_code == 529, f"529 status {e.status_code}")
        check(e.body["error"]["type"] == "overloaded_error", f"529 body {e.body}")
        check(e.body["error"]["message"] == "Overloaded", f"529 body {e.body}")
        check((e.request_id or "").startswith("req_"), f"529 request id {e.request_id}")

    # A 529 in the middle of a stream arrives as an error event.
    try:
        with client.messages.stream(
            model=MODEL,
            max_tokens=256,
            messages=[{"role": "user", "content": "hi [[sim: words=30 stream_error_after=3]]"}],
        ) as stream:
            for _ in stream.text_stream:
                pass
        check(False, "mid-stream error did not raise")
    except anthropic.APIStatusError as e:
        check("overloaded_error" in str(e), f"mid-stream error {e}")

    try:
        client.messages.create(model=MODEL, max_tokens=anthropic.omit, messages=[{"role": "user", "content": "hi"}])
        check(False, "missing max_tokens did not raise")
    except anthropic.BadRequestError as e:
        check(e.status_code == 400, f"400 status {e.status_code}")
        check(e.body["error"]["type"] == "invalid_request_error", f"400 body {e.body}")
        check(e.body["error"]["message"] == "max_tokens: Field required", f"400 body {e.body}")

    try:
        client.messages.create(
            model=MODEL,
            max_tokens=32,
            messages=[{"role": "assistant", "content": "Hello."}, {"role": "user", "content": "hi"}],
        )
        check(False, "an assistant-first conversation did not raise")
    except anthropic.BadRequestError as e:
        check("first message" in e.body["error"]["message"], f"role body {e.body}")

    wrong = Anthropic(base_url=base_url, api_key="sk-ant-wrong-key", max_retries=0, timeout=20)
    try:
        wrong.messages.create(model=MODEL, max_tokens=32, messages=[{"role": "user", "content": "hi"}])
        check(False, "wrong key did not raise")
    except anthropic.AuthenticationError as e:
        check(e.status_code == 401, f"401 status {e.status_code}")
        check(e.body["error"]["type"] == "authentication_error", f"401 body {e.body}")

    try:
        client.messages.create(model="claude-sonet-4-5", max_tokens=32, messages=[{"role": "user", "content": "hi"}])
        check(False, "unknown model did not raise")
    except anthropic.NotFoundError as e:
        check(e.body["error"]["message"] == "model: claude-sonet-4-5", f"404 body {e.body}")


def other_endpoints(client):
    counted = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "Hello there"}])
    check(counted.input_tokens > 0, f"count_tokens {counted}")
    models = client.models.list()
    ids = [m.id for m in models]
    check("claude-sonnet-4-5-20250929" in ids, f"models {ids}")
    one = client.models.retrieve("claude-haiku-4-5")
    check(one.id == "claude-haiku-4-5-20251001", f"model {one.id}")


def main(base_url, api_key):
    client = Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=20)
    first = non_streaming(client)
    streaming_text(client, first.content[0].text)
    tools(client)
    errors(client, base_url)
    other_endpoints(client)
    print("all checks passed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
