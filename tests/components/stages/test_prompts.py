"""Prompts per mode: the context block (cut to max_context_words), the user message, the chat template
(system message, Qwen3's thinking flag) or the bare message, and the fine-tuning prompt/completion split."""
from __future__ import annotations

from components.core.config import ModelConfig, PromptConfig
from components.data.schema import Passage
from components.stages.prompts import format_context, render_prompt, training_text, user_message

PASSAGES = [Passage("p1", "Paris", "Paris is the capital of France."), Passage("p2", "Lyon", "Lyon is a city.")]


class ChatTokenizer:
    """A tokenizer with a chat template that records what it was asked to render."""
    chat_template = "{{ messages }}"
    eos_token = "<|im_end|>"

    def __init__(self):
        self.calls = []

    def apply_chat_template(self, messages, **kwargs):
        self.calls.append((messages, kwargs))
        return "|".join(f"{m['role']}:{m['content']}" for m in messages) + "|assistant:"


class PlainTokenizer:
    chat_template = None
    eos_token = None


def test_context_joins_passages_best_first_in_the_passage_template():
    cfg = PromptConfig()
    assert format_context(PASSAGES, cfg) == "Paris: Paris is the capital of France.\nLyon: Lyon is a city."
    assert format_context(PASSAGES, PromptConfig(passage="[{title}] {text}")) == \
        "[Paris] Paris is the capital of France.\n[Lyon] Lyon is a city."
    assert format_context([Passage("p", "", "x")], PromptConfig(passage="{title}: {text} ")) == ": x"  # stripped


def test_context_is_cut_to_max_context_words():
    cfg = PromptConfig(max_context_words=4)
    assert format_context(PASSAGES, cfg) == "Paris: Paris is the"
    long = [Passage("p", "T", " ".join(f"w{i}" for i in range(1000)))]
    assert len(format_context(long, PromptConfig()).split(" ")) == PromptConfig().max_context_words


def test_user_message_per_mode():
    cfg = PromptConfig()
    assert user_message("Who?", [], cfg) == "Answer the question with a short answer.\nQuestion: Who?"
    with_context = user_message("Who?", PASSAGES[:1], cfg)
    assert with_context == ("Answer the question with a short answer, using the context.\n"
                            "Context:\nParis: Paris is the capital of France.\nQuestion: Who?")


def test_without_a_chat_template_the_bare_message_ends_in_answer():
    content = "Question: Who?"
    assert render_prompt(PlainTokenizer(), content, PromptConfig(), ModelConfig()) == "Question: Who?\nAnswer:"
    chat = ChatTokenizer()
    off = ModelConfig(chat_template=False)  # the model has one, the config turns it off
    assert render_prompt(chat, content, PromptConfig(), off) == "Question: Who?\nAnswer:" and chat.calls == []


def test_chat_template_gets_the_system_message_and_thinking_off_unless_asked():
    chat = ChatTokenizer()
    text = render_prompt(chat, "Q", PromptConfig(system="Be brief."), ModelConfig())
    assert text == "system:Be brief.|user:Q|assistant:"
    messages, kwargs = chat.calls[-1]
    assert kwargs == {"tokenize": False, "add_generation_prompt": True, "enable_thinking": False}
    assert render_prompt(chat, "Q", PromptConfig(), ModelConfig(enable_thinking=True)) == "user:Q|assistant:"
    assert chat.calls[-1][1] == {"tokenize": False, "add_generation_prompt": True}  # the template's own default


def test_training_text_puts_the_loss_on_the_stripped_answer_and_eos():
    assert training_text(ChatTokenizer(), "prompt", "  Paris \n") == ("prompt", "Paris<|im_end|>")
    assert training_text(PlainTokenizer(), "prompt", "Paris") == ("prompt", "Paris")
