"""A Gemini client behind the :class:`~simulators.candidates.language_model.ChatModel` interface.

PASTA's candidates came from Gemini 1.5 Flash. :class:`GeminiChat` calls the
Generative Language REST API (``models/{model}:generateContent``) with the
standard library only; the API key comes from ``GEMINI_API_KEY`` (or
``GOOGLE_API_KEY``), never from code. The HTTP transport is a parameter, so
tests run against a fake one without a network. Rate limits and server
errors are retried with backoff; anything else raises, and the candidate
generator repairs the turn from its offline generator.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from simulators.errors import PastaError

API_ROOT = "https://generativelanguage.googleapis.com/v1beta"
KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")

#: ``transport(url, headers, body, timeout) -> (status, body)``.
Transport = Callable[[str, dict, bytes, float], tuple[int, bytes]]


class GeminiError(PastaError, RuntimeError):
    """The Gemini API refused or failed a request."""


def urllib_transport(url: str, headers: dict, body: bytes, timeout: float) -> tuple[int, bytes]:
    """POST with urllib; HTTP errors come back as their status and body."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - fixed https root
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


class GeminiChat:
    """Gemini over its REST API.

    Args:
        model: Model name, e.g. ``"gemini-1.5-flash"`` (PASTA's) or ``"gemini-2.0-flash"``.
        api_key: The key; ``None`` reads ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY``.
        temperature: Sampling temperature.
        transport: The HTTP POST function (a fake one in tests).
        timeout: Seconds per request.
        retries: Retries on rate limits (429) and server errors (5xx).
        backoff: First wait between retries in seconds (doubles each time).

    Raises:
        GeminiError: No API key is set.
    """

    def __init__(self, model: str = "gemini-1.5-flash", api_key: str | None = None, temperature: float = 0.8,
                 transport: Transport | None = None, timeout: float = 60.0, retries: int = 3, backoff: float = 1.0):
        key = api_key or next((os.environ[v] for v in KEY_VARIABLES if os.environ.get(v)), None)
        if not key:
            raise GeminiError(f"no Gemini API key: set {KEY_VARIABLES[0]} (or {KEY_VARIABLES[1]}) in the "
                              "environment, or pass api_key=")
        self.model, self._key, self.temperature = model, key, float(temperature)
        self.transport = transport or urllib_transport
        self.timeout, self.retries, self.backoff = float(timeout), int(retries), float(backoff)

    def identity(self) -> dict:
        return {"model": self.model, "temperature": self.temperature}

    def request_body(self, messages: list[dict[str, str]], seed: int) -> dict:
        """The JSON body of a ``generateContent`` call."""
        system = "\n".join(m["content"] for m in messages if m["role"] == "system")
        contents = [{"role": "model" if m["role"] == "assistant" else "user", "parts": [{"text": m["content"]}]}
                    for m in messages if m["role"] != "system"]
        body: dict = {"contents": contents,
                      "generationConfig": {"temperature": self.temperature, "seed": int(seed),
                                           "responseMimeType": "application/json"}}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        return body

    def complete(self, messages: list[dict[str, str]], seed: int) -> str:
        """The reply's text.

        Raises:
            GeminiError: A refused request (bad key, bad model name), too
                many retries, or a reply without text.
        """
        url = f"{API_ROOT}/models/{self.model}:generateContent"
        headers = {"Content-Type": "application/json", "x-goog-api-key": self._key}
        body = json.dumps(self.request_body(messages, seed)).encode("utf-8")
        wait = self.backoff
        for attempt in range(self.retries + 1):
            status, payload = self.transport(url, headers, body, self.timeout)
            if status == 200:
                return _reply_text(payload)
            if status != 429 and status < 500:
                raise GeminiError(f"Gemini refused the request (HTTP {status}): {_error_message(payload)}")
            if attempt < self.retries:
                time.sleep(wait)
                wait *= 2
        raise GeminiError(f"Gemini kept failing (HTTP {status}) after {self.retries} retries: "
                          f"{_error_message(payload)}")


def _reply_text(payload: bytes) -> str:
    try:
        data = json.loads(payload)
        parts = data["candidates"][0]["content"]["parts"]
        return "".join(p.get("text", "") for p in parts)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise GeminiError(f"Gemini's reply has no text ({type(exc).__name__}); got {payload[:200]!r}") from exc


def _error_message(payload: bytes) -> str:
    try:
        return str(json.loads(payload)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return payload[:200].decode("utf-8", "replace")
