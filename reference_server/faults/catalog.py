"""The faults there are, by the name the `x-fault` header gives them, each with the one promise it breaks."""

from __future__ import annotations

from enum import StrEnum

HEADER = "x-fault"


class Fault(StrEnum):
    NO_DONE = "no_done"  # the stream ends without `data: [DONE]`
    MALFORMED_CHUNK = "malformed_chunk"  # chunk N is not JSON
    RESET = "reset"  # the connection is reset after N chunks
    STALL = "stall"  # the stream stalls N ms after the second chunk
    ERROR_500 = "error_500"  # 500 before anything is streamed
    WRONG_USAGE = "wrong_usage"  # total_tokens is off by one
    CHANGING_ID = "changing_id"  # the id changes after the first chunk
    WRONG_OBJECT = "wrong_object"  # `object` is not what the profile says
    DOUBLE_FINISH = "double_finish"  # two chunks carry a finish_reason
    MISSING_ROLE = "missing_role"  # the chat stream has no role delta (n = 1)
    DOUBLE_DONE = "double_done"  # `data: [DONE]` is sent twice
    NO_BLANK_LINE = "no_blank_line"  # events are separated by one newline instead of a blank line
    WRONG_CONTENT_TYPE = "wrong_content_type"  # the stream is sent as application/json
    MISSING_USAGE = "missing_usage"  # no usage anywhere in the response
    WRONG_MODEL = "wrong_model"  # `model` does not echo the request
    BAD_ID = "bad_id"  # the id does not have the profile's format
    OLD_CREATED = "old_created"  # `created` is a day in the past
    TEXT_DRIFT = "text_drift"  # the streamed text differs from the non-streamed text (requests without tools)
    IGNORE_STOP = "ignore_stop"  # a lone stop string (a string or a list of one) is not honoured
    IGNORE_MAX_TOKENS = "ignore_max_tokens"  # one token more than `max_tokens` (`max_completion_tokens` holds)
    TEMPLATE_COMPLETION = "template_completion"  # a completion prompt gets a second BOS
    DROP_ASSISTANT = "drop_assistant"  # a chat's earlier assistant messages are left out of its prompt
    WRONG_FINISH = "wrong_finish"  # finish_reason is a value outside stop/length
    NOT_ENVELOPE = "not_envelope"  # errors are answered as plain text
    # One per conformance check that no fault above breaks alone (see harness/conformance).
    UNLISTED_MODEL = "unlisted_model"  # /v1/models lists no model
    WRONG_MODEL_CARD = "wrong_model_card"  # /v1/models/{id} describes another model
    NO_CHOICE_INDEX = "no_choice_index"  # a non-streamed lone choice (n = 1) lacks `index`
    NO_CHUNK_INDEX = "no_chunk_index"  # a streamed lone choice (n = 1) lacks `index`
    REPEATED_ID = "repeated_id"  # every response has the same (well-formed) id
    LENGTH_ON_EOS = "length_on_eos"  # a natural end (EOS, no stop string, no tools) is reported as `length`
    STRICT_ARGS = "strict_args"  # arguments outside the request schema are refused with 400
    CHANGING_CREATED = "changing_created"  # `created` changes after the first chunk
    EXTRA_FINISH = "extra_finish"  # an empty chunk with a finish_reason comes before the real last one (n = 1)
    STREAM_NO_USAGE = "stream_no_usage"  # streams carry no usage (non-streamed responses still do)
    ZERO_ERROR = "zero_error"  # every chunk carries a zero-valued `error` object, as Go structs do
    BOS_IF_MISSING = "bos_if_missing"  # a completion prompt without the BOS gets one
    ALLOW_MISSING_KEY = "allow_missing_key"  # no Authorization header is served as the first key
    ALLOW_WRONG_KEY = "allow_wrong_key"  # any Bearer key is accepted
    UNKNOWN_MODEL_400 = "unknown_model_400"  # an unknown model is answered 400 instead of 404
    STATUS_422 = "status_422"  # invalid requests are answered 422 instead of 400
    NO_RETRY_AFTER = "no_retry_after"  # 429 without Retry-After
    SHARED_LIMIT = "shared_limit"  # all keys share one concurrency counter
    LATE_RELEASE = "late_release"  # a finished request keeps its slot until its key has nothing in flight
    LEAK_ABANDONED = "leak_abandoned"  # so does a non-streamed request whose client went away
    REJECT_LEAK = "reject_leak"  # from the Nth rejection in a row, each 429 keeps a slot likewise
    # The chat surface beyond plain text (issue 17): one per check of the features.
    IGNORE_MAX_COMPLETION_TOKENS = "ignore_max_completion_tokens"  # max_completion_tokens ignored (max_tokens kept)
    FIRST_STOP_ONLY = "first_stop_only"  # only the first string of a stop list is honoured
    SAME_CHOICE_INDEX = "same_choice_index"  # with n > 1 every choice has index 0
    SHORT_TOP_LOGPROBS = "short_top_logprobs"  # one alternative fewer than asked at every token
    JSON_TRAILING_TEXT = "json_trailing_text"  # JSON mode's output gets " ok" after the object
    SCHEMA_VIOLATION = "schema_violation"  # json_schema output lacks the schema's first required property
    TOOL_ARGS_NOT_JSON = "tool_args_not_json"  # a named tool call's arguments lose their last character
    REPEATED_TOOL_ID = "repeated_tool_id"  # every tool call has the same id
    TOOL_STREAM_DRIFT = "tool_stream_drift"  # streamed argument fragments are sent twice
    TOOL_FINISH_STOP = "tool_finish_stop"  # finish_reason "stop" after a tool call
    TOOLS_DESPITE_NONE = "tools_despite_none"  # tool_choice none still calls a tool
    SEED_IGNORED = "seed_ignored"  # seed is ignored
    REJECT_FEATURES = "reject_features"  # tools, response_format, logprobs and n > 1 refused with 400 (not offered)
