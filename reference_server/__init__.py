"""The reference server: the Anyscale Endpoints API, exactly, on aiohttp, over a simulator or vLLM."""
