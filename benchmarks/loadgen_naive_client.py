"""The baseline the load-generator benchmarks compare with: a streaming client written the usual way.

aiohttp with default settings, `async for line in response.content`, the clock read after each line is decoded
and parsed (the pattern of most LLM benchmark clients). Not a peer tool: a yardstick measured in the same run.

    python -m benchmarks.loadgen_naive_client URL KEY MODEL CONCURRENCY REQUESTS IN_TOKENS OUT_TOKENS OUT WARMUP
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from pathlib import Path

import aiohttp


async def main(
    base_url: str,
    key: str,
    model: str,
    concurrency: int,
    requests: int,
    input_tokens: int,
    output_tokens: int,
    warmup: int,
) -> list[dict[str, object]]:
    headers = {"Authorization": f"Bearer {key}", "x-trace-timing": "1"}
    prompt = " ".join(["word"] * input_tokens)
    counter = itertools.count()
    rows: list[dict[str, object]] = []
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def user() -> None:
            while (n := next(counter)) < warmup + requests:
                body = {
                    "model": model,
                    "messages": [{"role": "user", "content": prompt}],
                    "stream": True,
                    "max_tokens": output_tokens,
                    "ignore_eos": True,
                    "min_tokens": output_tokens,
                }
                sent = time.perf_counter_ns()
                first = None
                chunks: list[int] = []
                async with session.post(f"{base_url}/chat/completions", json=body) as resp:
                    ident = resp.headers.get("x-request-id")
                    async for raw in resp.content:
                        line = raw.decode().strip()
                        if not line.startswith("data:") or line == "data: [DONE]":
                            continue
                        chunk = json.loads(line[5:])
                        text = chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else None
                        if text:
                            now = time.perf_counter_ns()
                            first = first or now
                            chunks.append(now)
                rows.append(
                    {
                        "request_id": ident,
                        "sent_ns": sent,
                        "first_token_ns": first,
                        "chunk_ns": chunks,
                        "ok": resp.status == 200,
                        "warm": n < warmup,
                    }
                )

        await asyncio.gather(*(user() for _ in range(concurrency)))
    return rows


if __name__ == "__main__":
    a = sys.argv[1:]
    rows = asyncio.run(main(a[0], a[1], a[2], int(a[3]), int(a[4]), int(a[5]), int(a[6]), int(a[8])))
    Path(a[7]).write_text("".join(json.dumps(row) + "\n" for row in rows))
