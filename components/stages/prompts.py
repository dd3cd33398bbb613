"""Prompts per eval mode. Templates live in PromptConfig; this module only fills and renders them."""
from __future__ import annotations

from typing import Sequence

from components.core.config import ModelConfig, PromptConfig
from components.data.schema import Passage


def format_context(passages: Sequence[Passage], cfg: PromptConfig) -> str:
    """Join passages best-first, cut to max_context_words so long documents cannot blow the prompt up."""
    blocks = [cfg.passage.format(title=p.title, text=p.text).strip() for p in passages]
    words = "\n".join(blocks).split(" ")
    return " ".join(words[: cfg.max_context_words])


def user_message(question: str, passages: Sequence[Passage], cfg: PromptConfig) -> str:
    if not passages:
        return cfg.no_context.format(question=question)
    return cfg.with_context.format(question=question, context=format_context(passages, cfg))


def render_prompt(tokenizer, content: str, prompt_cfg: PromptConfig, model_cfg: ModelConfig) -> str:
    """The text fed to the model: the chat template where the model has one, else the bare message."""
    if not (model_cfg.chat_template and getattr(tokenizer, "chat_template", None)):
        return content + "\nAnswer:"
    messages = ([{"role": "system", "content": prompt_cfg.system}] if prompt_cfg.system else []) + [
        {"role": "user", "content": content}]
    extra = {} if model_cfg.enable_thinking else {"enable_thinking": False}  # Qwen3 reads this flag
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)


def training_text(tokenizer, prompt: str, answer: str) -> tuple[str, str]:
    """(prompt part, completion part) for supervised fine-tuning: loss goes on the completion only."""
    eos = tokenizer.eos_token or ""
    return prompt, answer.strip() + eos
