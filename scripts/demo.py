"""Start the reference server (simulator) and talk to it with the official openai SDK: a chat and a streamed chat."""

from __future__ import annotations

import json

import openai

from harness.target import launch_reference_server


def main() -> None:
    with launch_reference_server(extra_args=["--ttft-ms", "20", "--itl-ms", "5"]) as server:
        target = server.target
        print(f"reference server at {target.base_url} serving {target.model}")
        client = openai.OpenAI(base_url=target.base_url, api_key=target.api_key, max_retries=0)
        chat = client.chat.completions.create(
            model=target.model,
            messages=[
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Say 'Test'."},
            ],
            temperature=0.7,
            max_tokens=24,
        )
        print(json.dumps(chat.model_dump(exclude_none=True), indent=2))
        print("streamed:", end=" ", flush=True)
        for chunk in client.chat.completions.create(
            model=target.model, messages=[{"role": "user", "content": "Tell me a joke."}], max_tokens=24, stream=True
        ):
            if chunk.choices:
                print(chunk.choices[0].delta.content or "", end="", flush=True)
            if chunk.usage:
                print(f"\nusage: {chunk.usage.model_dump(exclude_none=True)}")


if __name__ == "__main__":
    main()
