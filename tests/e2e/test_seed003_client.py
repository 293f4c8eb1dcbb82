"""Seed 003's own Python client class, unchanged, against the real daemon."""

from __future__ import annotations

from typing import Any, Optional

import pytest
import requests

pytestmark = pytest.mark.e2e


# --- verbatim from shared/seeds/003 ("Полный пример с обработкой ошибок") ---
class LlamaLocalClient:
    """Клиент для взаимодействия с LLaMA Local API."""

    def __init__(self, base_url: str = "http://localhost:8000"):
        self.base_url = base_url

    def generate(
        self,
        prompt: str,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        top_p: Optional[float] = None,
        top_k: Optional[int] = None,
        repeat_penalty: Optional[float] = None,
        stream: bool = False
    ) -> dict[str, Any]:
        """Генерирует текст на основе промпта."""
        url = f"{self.base_url}/generate"
        payload = {"prompt": prompt, "stream": stream}

        # Добавляем опциональные параметры
        if temperature is not None:
            payload["temperature"] = temperature
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        if top_p is not None:
            payload["top_p"] = top_p
        if top_k is not None:
            payload["top_k"] = top_k
        if repeat_penalty is not None:
            payload["repeat_penalty"] = repeat_penalty

        try:
            response = requests.post(url, json=payload, timeout=300)
            response.raise_for_status()
            return response.json()
        except requests.exceptions.RequestException as e:
            print(f"Ошибка при запросе: {e}")
            raise

    def generate_stream(
        self,
        prompt: str,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        **kwargs
    ):
        """Генерирует текст в streaming режиме."""
        url = f"{self.base_url}/generate"
        payload = {"prompt": prompt, "stream": True}

        if temperature is not None:
            payload["temperature"] = temperature
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens

        # Добавляем остальные параметры
        payload.update(kwargs)

        try:
            response = requests.post(url, json=payload, stream=True, timeout=300)
            response.raise_for_status()

            for line in response.iter_lines():
                if line:
                    line = line.decode('utf-8')
                    if line.startswith('data: '):
                        token = line[6:]
                        if token == '[DONE]':
                            break
                        elif token.startswith('[ERROR'):
                            raise Exception(token)
                        else:
                            yield token
        except requests.exceptions.RequestException as e:
            print(f"Ошибка при streaming запросе: {e}")
            raise

    def health(self) -> dict[str, Any]:
        """Проверяет состояние сервера."""
        url = f"{self.base_url}/health"
        response = requests.get(url)
        return response.json()

    def model_info(self) -> dict[str, Any]:
        """Получает информацию о модели."""
        url = f"{self.base_url}/model-info"
        response = requests.get(url)
        response.raise_for_status()
        return response.json()
# --- end of the seed's client ---


def test_seed_client_main_flow(daemon):
    client = LlamaLocalClient(daemon.url)
    health = client.health()
    assert health["status"] == "ok" and health["model_loaded"] is True
    info = client.model_info()
    assert info["path"].endswith(".gguf") and info["n_ctx"] > 0
    result = client.generate(prompt="Что такое Python?", temperature=0.7, max_tokens=40, stream=False)
    assert result["prompt"] == "Что такое Python?"
    assert result["text"].strip()
    tokens = list(client.generate_stream(prompt="Расскажи о машинном обучении", temperature=0.7, max_tokens=30))
    assert len(tokens) > 1
    assert "".join(tokens).strip()


def test_seed_client_all_parameters(daemon):
    client = LlamaLocalClient(daemon.url)
    r = client.generate(prompt="请写一首关于春天的诗", temperature=0.2, max_tokens=30, top_p=0.9, top_k=40,
                        repeat_penalty=1.1)
    assert r["text"].strip()
    assert "\ufffd" not in r["text"]


def test_seed_client_sees_400_for_bad_range(daemon):
    client = LlamaLocalClient(daemon.url)
    with pytest.raises(requests.HTTPError) as e:
        client.generate(prompt="x", temperature=2.5)
    assert e.value.response.status_code == 400
    assert "temperature" in e.value.response.json()["detail"]
