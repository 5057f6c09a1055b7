"""Drives a running tollgate with the official OpenAI Python SDK.

Usage: python openai_sdk_check.py BASE_URL   (BASE_URL like http://127.0.0.1:8080/v1)
Exits non-zero with a message on the first failed check.
"""

import sys

import openai
from openai import OpenAI


def check(cond, msg):
    if not cond:
        print(f"FAILED: {msg}", file=sys.stderr)
        sys.exit(1)


def main(base_url: str) -> None:
    client = OpenAI(base_url=base_url, api_key="tg-any-key", max_retries=0, timeout=20)

    # Non-streaming, through a model name and through an alias.
    for model in ("gpt-4o-mini", "mistral-small"):
        r = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Say hello"}]
        )
        check(r.object == "chat.completion", f"{model}: object {r.object}")
        check(bool(r.choices[0].message.content), f"{model}: empty content")
        check(r.choices[0].finish_reason == "stop", f"{model}: finish {r.choices[0].finish_reason}")
        check(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, "usage sums")

    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hi"}]
    )
    check(raw.headers.get("x-tollgate-model") == "gpt-4o-mini", "auto served by default model")

    # Streaming, with and without the usage chunk.
    for model in ("gpt-4o-mini", "mistral-small"):
        text, finish, usage = "", None, None
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Tell me a story"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for c in chunk.choices:
                text += c.delta.content or ""
                finish = c.finish_reason or finish
        check(len(text) > 0, f"{model}: streamed text empty")
        check(finish == "stop", f"{model}: stream finish {finish}")
        check(usage is not None and usage.completion_tokens > 0, f"{model}: no usage chunk")

        chunks = list(
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
        check(all(c.usage is None for c in chunks), f"{model}: usage leaked without include_usage")

    # Tool call round trip through the SDK types.
    tools = [{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city", "unit"],
            },
        },
    }]
    r = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=tools,
        tool_choice="required",
    )
    calls = r.choices[0].message.tool_calls
    check(calls and calls[0].function.name == "get_weather", "tool call expected")
    check(r.choices[0].finish_reason == "tool_calls", "finish tool_calls")

    # Errors surface as the SDK's typed exceptions.
    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        check(False, "unknown model should raise")
    except openai.NotFoundError as e:
        check(e.code == "model_not_found", f"code {e.code}")
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
        check(False, "empty messages should raise")
    except openai.BadRequestError:
        pass

    models = [m.id for m in client.models.list()]
    check("auto" in models and "gpt-4o-mini" in models, f"models {models}")
    print("openai sdk: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
