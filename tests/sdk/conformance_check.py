"""Cross-provider conformance through the official OpenAI Python SDK.

Usage: python conformance_check.py BASE_URL MODEL [MODEL ...]
       (BASE_URL like http://127.0.0.1:8080/v1; one model per provider behind tollgate)

For every model: a non-streaming completion, a streamed text answer with the usage chunk,
a streamed tool call forced with `tool_choice` (accumulated from the deltas by hand and
with the SDK's own stream helper), and the tool-result round trip. The answers of all the
models must have the same fields. Exits non-zero naming the model and the first failed
check; prints "all checks passed" at the end.
"""

import json
import sys

from openai import OpenAI

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
FORCE_WEATHER = {"type": "function", "function": {"name": "get_weather"}}
TOOL_RESULT = '{"temperature": 18, "condition": "sunny"}'

# Fields only OpenAI's own service fills; translated answers need not carry them.
OPENAI_ONLY = {"system_fingerprint", "service_tier", "annotations", "refusal", "obfuscation",
               "completion_tokens_details", "audio_tokens"}


class CheckFailed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def keys(obj):
    """The field names an SDK object was built with (unset optional fields excluded)."""
    return sorted(set(obj.model_dump(exclude_unset=True)) - OPENAI_ONLY)


def check_weather_args(args):
    try:
        v = json.loads(args)
    except json.JSONDecodeError as e:
        raise CheckFailed(f"arguments are not JSON ({e}): {args!r}")
    check(isinstance(v, dict), f"arguments are an object: {args}")
    check(isinstance(v.get("city"), str) and v["city"], f"city: {args}")
    check(v.get("unit") in ("celsius", "fahrenheit"), f"unit: {args}")
    if "days" in v:
        check(isinstance(v["days"], int) and 1 <= v["days"] <= 7, f"days: {args}")
    check(set(v) <= {"city", "unit", "days"}, f"properties outside the schema: {args}")
    return v


def check_usage(u, what):
    check(u is not None, f"{what}: no usage")
    check(u.prompt_tokens > 0 and u.completion_tokens > 0, f"{what}: usage {u}")
    check(u.total_tokens == u.prompt_tokens + u.completion_tokens, f"{what}: usage sums {u}")


def non_stream(client, model):
    r = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello"},
        ],
    )
    check(r.object == "chat.completion", f"object {r.object}")
    check(len(r.choices) == 1, f"choices {len(r.choices)}")
    c = r.choices[0]
    check(c.message.role == "assistant", f"role {c.message.role}")
    check(bool(c.message.content), "empty content")
    check(c.finish_reason == "stop", f"finish {c.finish_reason}")
    check_usage(r.usage, "non-stream")
    return {"completion": keys(r), "message": keys(c.message), "usage": keys(r.usage)}


def stream_text(client, model):
    text, finishes, usage, roles, ids = "", [], None, [], set()
    chunks = list(client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Tell me a story"}],
        stream=True,
        stream_options={"include_usage": True},
    ))
    check(chunks, "no chunks")
    for i, chunk in enumerate(chunks):
        check(chunk.object == "chat.completion.chunk", f"object {chunk.object}")
        ids.add(chunk.id)
        if chunk.usage is not None:
            check(i == len(chunks) - 1, "usage before the last chunk")
            check(chunk.choices == [], "usage chunk has choices")
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.role:
                roles.append(c.delta.role)
            text += c.delta.content or ""
            if c.finish_reason:
                finishes.append(c.finish_reason)
    check(chunks[0].choices and chunks[0].choices[0].delta.role == "assistant",
          "role on the first delta")
    check(roles == ["assistant"], f"roles {roles}")
    check(len(ids) == 1, f"chunk ids {ids}")
    check(text.strip(), "streamed text empty")
    check(finishes == ["stop"], f"stream finish reasons {finishes}")
    check_usage(usage, "stream")

    plain = list(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True
    ))
    check(all(c.usage is None for c in plain), "usage without include_usage")
    return {"usage chunk": keys(chunks[-1]), "stream usage": keys(usage)}


def stream_tool_call(client, model):
    """Accumulates the forced call from the raw deltas, as a hand-written client would."""
    calls, finishes, content = {}, [], None
    for chunk in client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What's the weather in Lisbon?"}],
        tools=[WEATHER_TOOL],
        tool_choice=FORCE_WEATHER,
        stream=True,
    ):
        for c in chunk.choices:
            if c.finish_reason:
                finishes.append(c.finish_reason)
            if c.delta.content:
                content = (content or "") + c.delta.content
            for d in c.delta.tool_calls or []:
                first = d.index not in calls
                call = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
                if first:
                    check(d.id, f"id on the first delta of call {d.index}")
                    check(d.function and d.function.name, f"name on the first delta of {d.index}")
                if d.id:
                    check(call["id"] in (None, d.id), "the id changed")
                    call["id"] = d.id
                if d.function and d.function.name:
                    call["name"] = d.function.name
                if d.function and d.function.arguments:
                    call["arguments"] += d.function.arguments
    check(list(calls) == [0], f"tool call indexes {list(calls)}")
    call = calls[0]
    check(call["name"] == "get_weather", f"name {call['name']}")
    check_weather_args(call["arguments"])
    check(finishes == ["tool_calls"], f"finish reasons {finishes}")
    check(not content, f"text around a forced call: {content!r}")
    return call


def stream_helper_tool_call(client, model):
    """The SDK's own stream helper must assemble the same call."""
    with client.chat.completions.stream(
        model=model,
        messages=[{"role": "user", "content": "What's the weather in Lisbon?"}],
        tools=[WEATHER_TOOL],
        tool_choice=FORCE_WEATHER,
    ) as stream:
        done = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    check(len(done) == 1 and done[0].name == "get_weather", f"arguments.done events {done}")
    msg = final.choices[0].message
    check(final.choices[0].finish_reason == "tool_calls", "helper: finish")
    check(msg.tool_calls and len(msg.tool_calls) == 1, "helper: one tool call")
    check_weather_args(msg.tool_calls[0].function.arguments)
    check(msg.tool_calls[0].function.arguments == done[0].arguments, "helper: arguments")


def tool_round_trip(client, model, call):
    messages = [
        {"role": "user", "content": "What's the weather in Lisbon?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": TOOL_RESULT},
    ]
    r = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
    c = r.choices[0]
    check(c.finish_reason == "stop", f"round trip finish {c.finish_reason}")
    check(bool(c.message.content) and not c.message.tool_calls, "round trip: a text answer")
    check_usage(r.usage, "round trip")

    # The same conversation, streamed.
    text, finishes = "", []
    for chunk in client.chat.completions.create(
        model=model, messages=messages, tools=[WEATHER_TOOL], stream=True
    ):
        for ch in chunk.choices:
            text += ch.delta.content or ""
            if ch.finish_reason:
                finishes.append(ch.finish_reason)
    check(text.strip() and finishes == ["stop"], f"streamed round trip {finishes} {text!r}")

    # A forced call, non-streaming: the JSON-string arguments satisfy the schema.
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice=FORCE_WEATHER,
    )
    c = r.choices[0]
    check(c.finish_reason == "tool_calls", f"forced call finish {c.finish_reason}")
    check(c.message.content is None, f"forced call content {c.message.content!r}")
    tc = c.message.tool_calls
    check(tc and len(tc) == 1 and tc[0].type == "function", f"tool_calls {tc}")
    check(tc[0].function.name == "get_weather", "forced call name")
    check_weather_args(tc[0].function.arguments)
    return {"tool message": keys(c.message), "tool call": keys(tc[0])}


def main(base_url, models):
    client = OpenAI(base_url=base_url, api_key="tg-any-key", max_retries=0, timeout=30)
    fields = {}
    failed = []
    for model in models:
        try:
            f = non_stream(client, model)
            f.update(stream_text(client, model))
            call = stream_tool_call(client, model)
            stream_helper_tool_call(client, model)
            f.update(tool_round_trip(client, model, call))
            fields[model] = f
            print(f"{model}: ok")
        except CheckFailed as e:
            failed.append(f"{model}: {e}")
        except Exception as e:  # an SDK error is a failed check too
            failed.append(f"{model}: {type(e).__name__}: {e}")
    if fields:
        ref_model, ref = next(iter(fields.items()))
        for model, f in fields.items():
            for what, names in f.items():
                if names != ref[what]:
                    failed.append(f"{what} fields differ: {ref_model} {ref[what]} vs {model} {names}")
    if failed:
        print("FAILED:\n" + "\n".join(failed), file=sys.stderr)
        sys.exit(1)
    print("conformance sdk: all checks passed")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1], sys.argv[2:])
