//! The simulated model: what a request asks for ([`Exchange`], provider-neutral) and what
//! the answer is ([`Reply`]): synthetic text or tool calls, with finish reasons and token
//! counts. Providers parse their wire format into an `Exchange` and render the `Reply`.
//!
//! Behaviour, deterministic for a given conversation:
//! - Text length: `words=N` when a directive sets it, else `8 + prompt_tokens / 4` words
//!   (at most 96), cut at the first stop sequence (`finish_reason: stop`) and at the output
//!   cap (`finish_reason: length`).
//! - Tools: none when no tool is offered, `tool_choice` is `none`, or the last message is a
//!   tool result. A named function is called when forced; `required` (`any`) calls the tools
//!   the prompt mentions, else the first; `auto` calls a tool only when the prompt mentions
//!   one (its name, or a distinctive word of it such as `weather` for `get_weather`) or asks
//!   to "use the tool". Several mentioned tools are called in parallel unless
//!   `parallel_tool_calls` is false. Arguments satisfy the tool's JSON schema.

use serde_json::Value;

use super::{schema, text};
use crate::api::{ChatRequest, Role, ToolChoice};
use crate::tokens::{self, Encoding};

/// A tool offered by the request.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    /// JSON schema of the arguments (an empty object schema when the request gave none).
    pub parameters: Value,
}

/// How the request lets the model use tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolMode {
    None,
    Auto,
    /// OpenAI `required`, Mistral `any` / `required`, Anthropic `any`.
    Required,
    /// Exactly this function.
    Named(String),
}

/// What a chat request asks for, independent of the provider's format.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The model as requested.
    pub model: String,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    /// Number of choices.
    pub n: u32,
    /// Output-token cap.
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub tools: Vec<ToolSpec>,
    pub tool_choice: ToolMode,
    pub parallel_tool_calls: bool,
    /// Text of the last user message.
    pub last_user_text: String,
    /// The last message is a tool result.
    pub last_is_tool_result: bool,
    pub prompt_tokens: u64,
    pub encoding: Encoding,
    /// Hash of the conversation (model, messages, tools, seed): seeds the answer.
    pub seed: u64,
    /// The request body, for provider-specific options.
    pub body: Value,
}

impl Exchange {
    /// The exchange for an OpenAI-shaped request (OpenAI, Mistral).
    pub fn from_chat(req: &ChatRequest, body: Value) -> Exchange {
        let encoding = Encoding::for_model(&req.model);
        let last_user_text = req
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.text_content())
            .unwrap_or_default();
        let tools: Vec<ToolSpec> = req
            .tools
            .iter()
            .flatten()
            .map(|t| ToolSpec {
                name: t.function.name.clone(),
                parameters: t
                    .function
                    .parameters
                    .clone()
                    .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
            })
            .collect();
        let tool_choice = match &req.tool_choice {
            None if tools.is_empty() => ToolMode::None,
            None => ToolMode::Auto,
            Some(ToolChoice::Named(n)) => ToolMode::Named(n.function.name.clone()),
            Some(ToolChoice::Mode(m)) => match m.as_str() {
                "none" => ToolMode::None,
                "required" | "any" => ToolMode::Required,
                _ => ToolMode::Auto,
            },
        };
        let seed_source = serde_json::json!([
            req.model,
            req.messages,
            req.tools,
            req.seed
                .or_else(|| req.extra.get("random_seed").and_then(Value::as_i64)),
        ]);
        Exchange {
            model: req.model.clone(),
            stream: req.is_stream(),
            include_usage: req.wants_stream_usage(),
            n: req.n.unwrap_or(1).max(1),
            max_tokens: req.max_output_tokens(),
            stop: req.stop_sequences(),
            tools,
            tool_choice,
            parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
            last_user_text,
            last_is_tool_result: req.messages.last().map(|m| m.role) == Some(Role::Tool),
            prompt_tokens: tokens::count_prompt(encoding, req),
            encoding,
            seed: text::stable_hash(seed_source.to_string().as_bytes()),
            body,
        }
    }
}

/// Why a choice ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    ToolCalls,
}

impl Finish {
    /// The OpenAI / Mistral spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::ToolCalls => "tool_calls",
        }
    }
}

/// One tool call of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallReply {
    pub name: String,
    /// JSON text (possibly cut short when the output cap was hit).
    pub arguments: String,
    /// `arguments` split the way a stream delivers it.
    pub fragments: Vec<String>,
}

/// One choice of an answer: text or tool calls.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceReply {
    pub text: String,
    /// `text` split into stream pieces of a word or two.
    pub pieces: Vec<String>,
    pub tool_calls: Vec<ToolCallReply>,
    pub finish: Finish,
    pub completion_tokens: u64,
}

/// The simulated answer to an [`Exchange`].
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub choices: Vec<ChoiceReply>,
}

impl Reply {
    /// Output tokens of all choices.
    pub fn completion_tokens(&self) -> u64 {
        self.choices.iter().map(|c| c.completion_tokens).sum()
    }

    /// Generates the answer; `words` overrides the text length.
    pub fn generate(ex: &Exchange, words: Option<usize>) -> Reply {
        let tools = chosen_tools(ex);
        let choices = (0..ex.n.min(128))
            .map(|i| {
                let seed = ex.seed ^ u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                if tools.is_empty() {
                    text_choice(ex, seed, words)
                } else {
                    tool_choice(ex, seed, &tools)
                }
            })
            .collect();
        Reply { choices }
    }
}

/// The default answer length for a prompt.
pub fn default_words(prompt_tokens: u64) -> usize {
    (8 + prompt_tokens / 4).min(96) as usize
}

fn text_choice(ex: &Exchange, seed: u64, words: Option<usize>) -> ChoiceReply {
    let mut body = text::generate(
        seed,
        words.unwrap_or_else(|| default_words(ex.prompt_tokens)),
    );
    let mut finish = Finish::Stop;
    if let Some(pos) = ex
        .stop
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| body.find(s.as_str()))
        .min()
    {
        body.truncate(pos);
    }
    if let Some(cap) = ex.max_tokens {
        let (cut, was_cut) = text::truncate_to_tokens(ex.encoding, &body, u64::from(cap));
        if was_cut {
            body = cut;
            finish = Finish::Length;
        }
    }
    ChoiceReply {
        pieces: text::pieces(&body, seed),
        completion_tokens: ex.encoding.count(&body),
        text: body,
        tool_calls: Vec::new(),
        finish,
    }
}

fn tool_choice(ex: &Exchange, seed: u64, tools: &[&ToolSpec]) -> ChoiceReply {
    let mut budget = ex.max_tokens.map(u64::from);
    let mut calls = Vec::new();
    let mut finish = Finish::ToolCalls;
    let mut completion_tokens = 0;
    for (k, tool) in tools.iter().enumerate() {
        let call_seed = seed.wrapping_add(k as u64);
        let mut arguments =
            schema::generate_for_prompt(&tool.parameters, call_seed, &ex.last_user_text)
                .to_string();
        // Name, arguments and a few tokens of call framing.
        let cost = ex.encoding.count(&tool.name) + ex.encoding.count(&arguments) + 3;
        if let Some(left) = budget {
            if cost > left {
                let room = left.saturating_sub(ex.encoding.count(&tool.name) + 3);
                arguments = text::truncate_to_tokens(ex.encoding, &arguments, room).0;
                completion_tokens += left;
                finish = Finish::Length;
                calls.push(ToolCallReply {
                    name: tool.name.clone(),
                    fragments: text::fragments(&arguments, 6, call_seed),
                    arguments,
                });
                break;
            }
            budget = Some(left - cost);
        }
        completion_tokens += cost;
        calls.push(ToolCallReply {
            name: tool.name.clone(),
            fragments: text::fragments(&arguments, 6, call_seed),
            arguments,
        });
    }
    ChoiceReply {
        text: String::new(),
        pieces: Vec::new(),
        tool_calls: calls,
        finish,
        completion_tokens,
    }
}

/// Words too generic to identify a tool by.
const GENERIC: &[&str] = &[
    "get", "set", "list", "fetch", "create", "update", "delete", "find", "make", "call", "run",
    "tool", "func", "function", "with", "data", "info", "from", "the", "and", "for", "add",
    "remove", "query", "search", "lookup", "read", "write", "send", "check",
];

/// Whether the prompt mentions `name`: the whole name, or a distinctive part of it.
fn mentions(prompt: &str, name: &str) -> bool {
    let name_lc = name.to_lowercase();
    if prompt.contains(&name_lc) {
        return true;
    }
    name_lc
        .split(['_', '-', '.'])
        .filter(|part| part.len() >= 4 && !GENERIC.contains(part))
        .any(|part| prompt.contains(part))
}

fn asks_for_a_tool(prompt: &str) -> bool {
    [
        "use the tool",
        "use a tool",
        "use your tool",
        "use the tools",
        "call the tool",
        "use tools",
    ]
    .iter()
    .any(|p| prompt.contains(p))
}

/// The tools the answer calls (empty: answer with text).
pub fn chosen_tools(ex: &Exchange) -> Vec<&ToolSpec> {
    if ex.tools.is_empty() || ex.last_is_tool_result {
        return Vec::new();
    }
    let prompt = ex.last_user_text.to_lowercase();
    let mentioned: Vec<&ToolSpec> = ex
        .tools
        .iter()
        .filter(|t| mentions(&prompt, &t.name))
        .collect();
    let first = || ex.tools.iter().take(1).collect::<Vec<_>>();
    let mut chosen = match &ex.tool_choice {
        ToolMode::None => Vec::new(),
        ToolMode::Named(name) => ex
            .tools
            .iter()
            .filter(|t| &t.name == name)
            .take(1)
            .collect(),
        ToolMode::Required if mentioned.is_empty() => first(),
        ToolMode::Required => mentioned,
        ToolMode::Auto if !mentioned.is_empty() => mentioned,
        ToolMode::Auto if asks_for_a_tool(&prompt) => first(),
        ToolMode::Auto => Vec::new(),
    };
    if !ex.parallel_tool_calls {
        chosen.truncate(1);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exchange(body: Value) -> Exchange {
        let req: ChatRequest = serde_json::from_value(body.clone()).unwrap();
        Exchange::from_chat(&req, body)
    }

    fn weather_tools() -> Value {
        json!([
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
        ])
    }

    #[test]
    fn auto_calls_a_tool_the_prompt_mentions_and_otherwise_answers_text() {
        let ex = exchange(
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "What's the weather in Paris?"}], "tools": weather_tools()}),
        );
        let r = Reply::generate(&ex, None);
        assert_eq!(r.choices[0].finish, Finish::ToolCalls);
        assert_eq!(r.choices[0].tool_calls.len(), 1);
        assert_eq!(r.choices[0].tool_calls[0].name, "get_weather");
        let args: Value = serde_json::from_str(&r.choices[0].tool_calls[0].arguments).unwrap();
        assert!(args["city"].is_string());

        let ex = exchange(
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Tell me a story"}], "tools": weather_tools()}),
        );
        assert!(Reply::generate(&ex, None).choices[0].tool_calls.is_empty());
    }

    #[test]
    fn required_without_mention_calls_the_first_tool_and_named_forces_one() {
        let ex = exchange(
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "tools": weather_tools(), "tool_choice": "required"}),
        );
        assert_eq!(
            Reply::generate(&ex, None).choices[0].tool_calls[0].name,
            "get_weather"
        );
        let ex = exchange(
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "weather"}], "tools": weather_tools(),
            "tool_choice": {"type": "function", "function": {"name": "get_time"}}}),
        );
        let r = Reply::generate(&ex, None);
        assert_eq!(r.choices[0].tool_calls.len(), 1);
        assert_eq!(r.choices[0].tool_calls[0].name, "get_time");
    }

    #[test]
    fn parallel_calls_unless_disabled_and_text_after_tool_result() {
        let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "weather and time please"}], "tools": weather_tools()});
        assert_eq!(
            Reply::generate(&exchange(body.clone()), None).choices[0]
                .tool_calls
                .len(),
            2
        );
        let mut one = body.clone();
        one["parallel_tool_calls"] = json!(false);
        assert_eq!(
            Reply::generate(&exchange(one), None).choices[0]
                .tool_calls
                .len(),
            1
        );
        let after = json!({"model": "gpt-4o", "tools": weather_tools(), "tool_choice": "required", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        ]});
        let r = Reply::generate(&exchange(after), None);
        assert!(r.choices[0].tool_calls.is_empty());
        assert_eq!(r.choices[0].finish, Finish::Stop);
    }

    #[test]
    fn cap_cuts_text_and_sets_length() {
        let ex = exchange(
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}),
        );
        let r = Reply::generate(&ex, Some(50));
        assert_eq!(r.choices[0].finish, Finish::Length);
        assert_eq!(r.choices[0].completion_tokens, 5);
        let r = Reply::generate(&ex, Some(2));
        assert_eq!(r.choices[0].finish, Finish::Stop);
    }

    #[test]
    fn n_choices_differ_and_identical_requests_repeat() {
        let body =
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "n": 2});
        let a = Reply::generate(&exchange(body.clone()), None);
        let b = Reply::generate(&exchange(body), None);
        assert_eq!(a, b);
        assert_eq!(a.choices.len(), 2);
        assert_ne!(a.choices[0].text, a.choices[1].text);
    }
}
