"""Price arithmetic against hand-computed cases, the shipped data, and the hook."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest

from llmkernel import Kernel, hookimpl
from llmkernel.routing import Candidate
from llmkernel.types import ModelPrice, Usage
from llmkernel_prices import TieredPrice, lookup
from llmkernel_prices.table import PROVIDER_FILES, load_table, parse_table


def price(provider: str, model: str) -> TieredPrice:
    result = lookup(provider, model)
    assert isinstance(result, TieredPrice), (provider, model, result)
    return result


def test_every_bucket_at_its_own_rate_sonnet_4_5() -> None:
    # $3 input, $3.75 5m write, $6 1h write, $0.30 cache read, $15 output (reasoning too)
    usage = Usage(
        input_tokens=10_000,
        cached_input_tokens=4_000,
        cache_write_tokens=3_000,
        cache_write_1h_tokens=1_000,
        output_tokens=2_000,
        reasoning_tokens=500,
    )
    # 3000*3 + 4000*0.30 + 2000*3.75 + 1000*6 + 1500*15 + 500*15 = 53700 per million
    assert price("anthropic", "claude-sonnet-4-5").cost(usage) == Decimal("0.0537")


def test_cache_writes_5m_and_1h_opus_4_1() -> None:
    usage = Usage(input_tokens=3_000, cache_write_tokens=3_000, cache_write_1h_tokens=2_000)
    # 1000 * 18.75 + 2000 * 30 = 78750 per million
    assert price("anthropic", "claude-opus-4-1").cost(usage) == Decimal("0.07875")


def test_cached_and_reasoning_gpt_5() -> None:
    usage = Usage(
        input_tokens=1_000, cached_input_tokens=800, output_tokens=3_000, reasoning_tokens=2_500
    )
    # 200 * 1.25 + 800 * 0.125 + 3000 * 10 = 30350 per million
    assert price("openai", "gpt-5").cost(usage) == Decimal("0.03035")


def test_reasoning_billed_apart_when_the_data_says_so() -> None:
    table = parse_table(
        {"models": {"thinker": {"input": "1", "output": "10", "reasoning": "20"}}}, "test"
    )
    thinker = table.get("thinker")
    assert thinker is not None
    # 600 plain output * 10 + 400 reasoning * 20 = 14000 per million
    assert thinker.cost(Usage(output_tokens=1_000, reasoning_tokens=400)) == Decimal("0.014")


def test_long_context_tier_reprices_the_whole_request() -> None:
    sonnet = price("anthropic", "claude-sonnet-4-5")
    at_threshold = Usage(input_tokens=200_000, output_tokens=1_000)
    above = Usage(input_tokens=250_000, output_tokens=1_000)
    # 200000 * 3 + 1000 * 15 = 615000 per million; above: 250000 * 6 + 1000 * 22.50
    assert sonnet.cost(at_threshold) == Decimal("0.615")
    assert sonnet.cost(above) == Decimal("1.5225")


def test_long_context_tier_openai_272k() -> None:
    gpt = price("openai", "gpt-5.5")
    assert gpt.cost(Usage(input_tokens=272_001, output_tokens=10)) == Decimal("2.72046")
    assert gpt.cost(Usage(input_tokens=272_000, output_tokens=10)) == Decimal("1.3603")


def test_batch_discount_is_data() -> None:
    batch = price("anthropic", "claude-sonnet-4").batch()
    assert (batch.input, batch.output) == (Decimal("1.5"), Decimal("7.5"))
    assert batch.cost(Usage(input_tokens=100_000)) == Decimal("0.15")
    # the long-context tier is discounted too: 250000 * 3 per million
    assert batch.cost(Usage(input_tokens=250_000)) == Decimal("0.75")
    assert load_table("deepseek").get("deepseek-chat") is not None
    with pytest.raises(ValueError, match="deepseek-chat"):
        price("deepseek", "deepseek-chat").batch()


@pytest.mark.parametrize(
    ("provider", "model", "family"),
    [
        ("openai", "gpt-4.1-2025-04-14", "gpt-4.1"),
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic", "claude-3-5-haiku@20241022", "claude-3-5-haiku"),
    ],
)
def test_dated_ids_resolve_where_documented(provider: str, model: str, family: str) -> None:
    assert price(provider, model) is price(provider, family)


def test_dated_id_with_another_price_stays_unpriced() -> None:
    # gpt-4o's first snapshot was priced differently: not listed, so not guessed
    assert lookup("openai", "gpt-4o-2024-05-13") is None


def test_unknown_model_is_none() -> None:
    assert lookup("openai", "gpt-unknown") is None
    assert lookup("groq", "llama-3.3-70b-versatile-unknown") is None
    assert lookup("openrouter", "openai/gpt-4o") is None  # no OpenRouter table


def test_local_models_are_free_not_unpriced() -> None:
    free = lookup("ollama", "llama3.2")
    assert isinstance(free, ModelPrice)
    assert free.cost(Usage(input_tokens=10**6, output_tokens=10**6)) == Decimal(0)


def test_every_shipped_entry_has_source_and_date() -> None:
    for name in PROVIDER_FILES:
        table = load_table(name)
        assert table.prices, name
        for model, entry in table.prices.items():
            assert entry.source.startswith("https://"), (name, model)
            assert entry.checked, (name, model)
            assert entry.input >= 0 and entry.output >= 0


def test_bad_data_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"x\.models\.m\.output"):
        parse_table({"models": {"m": {"input": "1", "output": 2.5}}}, "x")
    with pytest.raises(ValueError, match="lacks 'output'"):
        parse_table({"models": {"m": {"input": "1"}}}, "x")


# ------------------------------------------------------------------ through a kernel
# Kernels without provider instances: pricing needs only the candidate, so these
# tests pass with core and this package alone. Preset detection reads the config's
# provider tables, so those tests give the hook a config directly.


class ConfigOnly:
    """What price_model reads of a kernel: its config."""

    def __init__(self, providers: dict[str, Any]) -> None:
        from llmkernel.config import Config

        self.config = Config.load({"providers": providers})


def hook_price(providers: dict[str, Any], model: str) -> Any:
    from llmkernel_prices.plugin import price_model

    return price_model(
        kernel=ConfigOnly(providers), provider_type="openai", model=model, candidate=None
    )


def test_kernel_prices_native_provider_types() -> None:
    k = Kernel.from_config({})
    found = k.models.price(
        Candidate(provider="claude", model="claude-haiku-4-5", provider_type="anthropic")
    )
    assert isinstance(found, TieredPrice)
    assert found.cost(Usage(input_tokens=1_000_000)) == Decimal(1)


def test_kernel_unknown_model_costs_none_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    import structlog

    structlog.reset_defaults()  # an in-process CLI test may have configured it: events then
    # go to structlog, not to the standard logger caplog reads
    caplog.set_level(logging.WARNING, logger="llmkernel")
    unknown = Candidate(provider="oa", model="gpt-nope-1", provider_type="openai")
    assert (
        Kernel.from_config({}).models.cost(unknown, Usage(input_tokens=10, output_tokens=10))
        is None
    )
    assert Kernel.from_config({}).models.cost(unknown, Usage(input_tokens=10)) is None
    assert sum("gpt-nope-1" in r.getMessage() for r in caplog.records) == 1


def test_presets_pick_their_own_table() -> None:
    both = {"ds": {"type": "openai", "preset": "deepseek"}, "oa": {"type": "openai"}}
    assert hook_price(both, "deepseek-chat").input == Decimal("0.28")
    assert hook_price(both, "gpt-4.1").input == Decimal("2.00")
    assert hook_price({}, "gpt-4.1").input == Decimal("2.00")  # no instance: OpenAI


def test_local_preset_is_free_but_not_when_a_cloud_preset_shares_the_type() -> None:
    free = hook_price({"v": {"type": "openai", "preset": "vllm"}}, "my-llama")
    assert free is not None and free.cost(Usage(input_tokens=5)) == Decimal(0)
    mixed = {"v": {"type": "openai", "preset": "vllm"}, "g": {"type": "openai", "preset": "groq"}}
    # the hook cannot tell which instance asks: a name groq or vllm may serve is unpriced
    assert hook_price(mixed, "my-llama") is None
    custom = {"c": {"type": "openai", "base_url": "https://llm.example.com/v1"}}
    assert hook_price(custom, "my-model") is None
    assert hook_price(custom, "gpt-4.1") is None  # a custom server may bill differently


def test_config_prices_win_over_the_table() -> None:
    k = Kernel.from_config({"prices": {"openai/gpt-4.1": {"input": "1", "output": "1"}}})
    found = k.models.price(Candidate(provider="oa", model="gpt-4.1", provider_type="openai"))
    assert found is not None and found.input == Decimal(1)


def test_a_plugin_overrides_the_shipped_table() -> None:
    from llmkernel import hookimpl

    class Override:
        @hookimpl
        def price_model(self, model: str) -> ModelPrice | None:
            if model == "gpt-4.1":
                return ModelPrice(input=Decimal(7), output=Decimal(7), source="override")
            return None

    k = Kernel.from_config({}, plugins=[Override()])
    found = k.models.price(Candidate(provider="oa", model="gpt-4.1", provider_type="openai"))
    assert found is not None and found.input == Decimal(7)
    other = k.models.price(Candidate(provider="oa", model="gpt-5", provider_type="openai"))
    assert isinstance(other, TieredPrice)


# ------------------------------------------------------------ OpenAI-compatible presets
# A real Kernel with [providers.<name>] type = "openai", preset = "...". The openai
# plugin may not be installed with this package alone, so a stand-in serves the type
# (its replies: 10 input tokens, one output token per word) and entry points are off.


class OpenAIStandIn:
    """Serves provider type ``openai`` with scripted replies, whatever the preset."""

    __llmkernel_name__ = "openai-stand-in"

    @hookimpl
    def provide_chat(self, config: Any) -> Any:
        from llmkernel.provider import ProviderConfig
        from llmkernel.testing.scripted import ScriptedProvider

        if config.type != "openai":
            return None
        return ScriptedProvider(ProviderConfig(name=config.name, type="openai", options={}))


PRESETS = {
    "groq": {"type": "openai", "preset": "groq"},
    "together": {"type": "openai", "preset": "together"},
    "mistral": {"type": "openai", "preset": "mistral"},
    "openrouter": {"type": "openai", "preset": "openrouter"},
}


def preset_kernel(*names: str) -> Kernel:
    import llmkernel_prices.plugin as prices_plugin

    providers = {name: PRESETS[name] for name in names}
    return Kernel.from_config(
        {"providers": providers},
        plugins=[OpenAIStandIn(), prices_plugin],
        entry_points=False,
    )


@pytest.mark.parametrize(
    ("instance", "model", "expected"),
    [
        # 10 input * 0.59 + 4 output * 0.79 = 9.06 per million
        ("groq", "llama-3.3-70b-versatile", Decimal("0.00000906")),
        # 10 * 0.15 + 4 * 0.60 = 3.9 per million
        ("together", "openai/gpt-oss-120b", Decimal("0.0000039")),
        # 10 * 0.50 + 4 * 1.50 = 11 per million
        ("mistral", "mistral-large-2512", Decimal("0.000011")),
    ],
)
def test_a_preset_model_is_priced_through_the_kernel(
    instance: str, model: str, expected: Decimal
) -> None:
    k = preset_kernel(instance)
    response = k.chat(f"{instance}/{model}", "hi", options={})
    assert response.usage is not None and response.usage.output_tokens == 1
    one_word = Decimal(10) * price(instance, model).input + price(instance, model).output
    assert response.cost == one_word / 1_000_000
    usage = Usage(input_tokens=10, output_tokens=4)
    assert k.models.cost(
        Candidate(provider=instance, model=model, provider_type="openai"), usage
    ) == (expected)


def test_groq_cache_hits_at_the_cached_rate() -> None:
    k = preset_kernel("groq")
    usage = Usage(input_tokens=10_000, cached_input_tokens=8_000, output_tokens=1_000)
    # 2000 * 0.15 + 8000 * 0.075 + 1000 * 0.60 = 1500 per million
    found = k.models.cost(
        Candidate(provider="groq", model="openai/gpt-oss-120b", provider_type="openai"), usage
    )
    assert found == Decimal("0.0015")
    # no confirmed cached rate for gpt-oss-20b: cached tokens at the input rate
    small = Candidate(provider="groq", model="openai/gpt-oss-20b", provider_type="openai")
    # 10000 * 0.075 + 1000 * 0.30 = 1050 per million
    assert k.models.cost(small, usage) == Decimal("0.00105")


def test_groq_batch_is_half_price() -> None:
    assert price("groq", "llama-3.1-8b-instant").batch().output == Decimal("0.04")


@pytest.mark.parametrize(
    ("instance", "model"),
    [
        ("groq", "llama-9-unknown"),
        ("together", "meta-llama/Llama-9-Unknown"),
        ("mistral", "mistral-large-latest"),  # an alias that moves: never guessed
        ("mistral", "mistral-small-2603"),  # sources disagree: left out
        ("openrouter", "openai/gpt-4o"),  # OpenRouter: unpriced unless configured
    ],
)
def test_an_unknown_model_of_a_preset_is_unpriced(instance: str, model: str) -> None:
    k = preset_kernel(instance)
    candidate = Candidate(provider=instance, model=model, provider_type="openai")
    assert k.models.price(candidate) is None
    assert k.models.cost(candidate, Usage(input_tokens=10, output_tokens=10)) is None
    response = k.chat(f"{instance}/{model}", "hi", options={})
    assert response.cost is None


def test_a_model_of_another_preset_is_not_priced_by_this_one() -> None:
    # gpt-4.1 is OpenAI's price; served by Groq it is not known, so unpriced
    k = preset_kernel("groq", "together")
    groq = Candidate(provider="groq", model="gpt-4.1", provider_type="openai")
    assert k.models.price(groq) is None
    # both presets serve openai/gpt-oss-120b: each instance gets its own table's price
    for name in ("groq", "together"):
        found = k.models.price(
            Candidate(provider=name, model="openai/gpt-oss-120b", provider_type="openai")
        )
        assert found is not None and found is price(name, "openai/gpt-oss-120b")


def test_openrouter_config_prices_still_apply() -> None:
    import llmkernel_prices.plugin as prices_plugin

    k = Kernel.from_config(
        {
            "providers": {"openrouter": PRESETS["openrouter"]},
            "prices": {"openrouter/openai/gpt-4o": {"input": "2.5", "output": "10"}},
        },
        plugins=[OpenAIStandIn(), prices_plugin],
        entry_points=False,
    )
    candidate = Candidate(provider="openrouter", model="openai/gpt-4o", provider_type="openai")
    assert k.models.cost(candidate, Usage(input_tokens=1_000, output_tokens=100)) == Decimal(
        "0.0035"
    )


# ------------------------------------------------------------ with the real openai plugin


def openai_kernel(providers: dict[str, Any]) -> Kernel:
    pytest.importorskip("llmkernel_openai")
    import llmkernel_openai.plugin as openai_plugin
    import llmkernel_prices.plugin as prices_plugin

    return Kernel.from_config(
        {"providers": providers}, plugins=[openai_plugin, prices_plugin], entry_points=False
    )


def priced(kernel: Kernel, qualified: str) -> Any:
    instance, model = qualified.split("/", 1)
    return kernel.models.price(Candidate(provider=instance, model=model, provider_type="openai"))


GROQ_BY_URL = {
    "type": "openai",
    "base_url": "https://api.groq.com/openai/v1",
    "api_key_env": "GROQ_API_KEY",
}


@pytest.mark.parametrize(
    "groq", [GROQ_BY_URL, {"type": "openai", "preset": "groq"}], ids=["base_url", "preset"]
)
def test_the_readme_groq_example_prices_both_models(groq: dict[str, Any]) -> None:
    """Configuring an OpenAI-compatible instance no longer unprices everything:
    ``openai/...`` without a ``[providers.openai]`` table is OpenAI's own API, and
    the Groq instance (by preset, or by its API host) is priced by Groq's table."""
    kernel = openai_kernel({"groq": groq})
    assert priced(kernel, "openai/gpt-4o-mini") is price("openai", "gpt-4o-mini")
    assert priced(kernel, "groq/llama-3.3-70b-versatile") is price(
        "groq", "llama-3.3-70b-versatile"
    )
    assert priced(kernel, "groq/gpt-4o-mini") is None  # not on Groq's table


def test_openai_behind_a_proxy_keeps_its_prices_with_its_preset() -> None:
    proxy = "https://llm-proxy.example.com/v1"
    kernel = openai_kernel(
        {
            "proxied": {"type": "openai", "base_url": proxy, "preset": "openai"},
            "custom": {"type": "openai", "base_url": proxy},
            "local": {"type": "openai", "base_url": "http://localhost:8000/v1"},
            "vllm": {"type": "openai", "preset": "vllm"},
        }
    )
    assert priced(kernel, "proxied/gpt-4.1") is price("openai", "gpt-4.1")
    assert priced(kernel, "custom/gpt-4.1") is None  # a custom server: never guessed
    assert priced(kernel, "local/my-llama") is None  # a local URL may be anything
    free = priced(kernel, "vllm/my-llama")  # named local: free
    assert free is not None and free.cost(Usage(input_tokens=10)) == 0
    assert priced(kernel, "openai/gpt-4.1") is price("openai", "gpt-4.1")


def test_gemini_3_1_pro_long_prompts_at_the_higher_rates() -> None:
    pro = price("gemini", "gemini-3.1-pro-preview")
    # 50K uncached x 2 + 50K cache reads x 0.20 + 1K output x 12, per million
    assert pro.cost(
        Usage(input_tokens=100_000, cached_input_tokens=50_000, output_tokens=1_000)
    ) == Decimal("0.122")
    # above 200K input tokens the whole request is billed at 4 / 18
    assert pro.cost(Usage(input_tokens=1_000_000, output_tokens=1_000)) == Decimal("4.018")
