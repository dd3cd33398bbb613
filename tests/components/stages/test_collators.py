"""The fine-tune collator's packed layout (shared prompt prefix once, examples never seeing each other)
must train exactly like padded examples: same loss, same gradients, same tokens counted."""
from __future__ import annotations

import pytest
import torch

from components.stages.collators import (EXAMPLE_TOKENS, IGNORE_INDEX, PackingCollator, PaddingCollator,
                                 attention_pair_cost, shared_prefix_length)

PREFIX = [5, 6, 7, 8, 9, 10]  # the chat template + instruction every example starts with


def example(question: list[int], answer: list[int]) -> dict:
    prompt = PREFIX + question
    return {"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer}


EXAMPLES = [example([11, 12, 13], [20, 21, 2]), example([14, 15], [22, 2]),
            example([16, 17, 18, 19], [23, 24, 25, 2]), example([11, 30], [26, 2])]


@pytest.fixture(scope="module")
def tiny_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         attn_implementation="sdpa")
    return LlamaForCausalLM(config).double().eval()


def assert_same_gradients(grads: list[torch.Tensor], reference: list[torch.Tensor]) -> None:
    # transformers' loss upcasts logits with .float(), i.e. to float32 even for this float64 model, so
    # agreement is to float32 precision relative to each tensor's scale (cross-talk would be O(1)).
    for got, want in zip(grads, reference):
        assert (got - want).abs().max() <= 1e-5 * want.abs().max()


def loss_and_grads(model, batch: dict) -> tuple[float, list[torch.Tensor]]:
    model.zero_grad()
    batch = {k: v for k, v in batch.items() if k != EXAMPLE_TOKENS}
    loss = model(**batch).loss
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()]


def test_shared_prefix_stops_before_the_position_that_predicts_an_answer():
    assert shared_prefix_length(EXAMPLES) == len(PREFIX)
    # an example whose answer starts right after the prefix: the prefix's last position predicts it
    short = example([], [20, 2])
    assert shared_prefix_length(EXAMPLES + [short]) == len(PREFIX) - 1
    assert shared_prefix_length(EXAMPLES[:1]) == 0  # nothing to share with


def test_packed_batch_has_the_padded_batch_loss_and_gradients(tiny_model):
    collator = PackingCollator(pad_token_id=2, pair_cost=0.0)
    packed = collator(EXAMPLES)
    assert packed["input_ids"].shape[0] == 1, "the cheaper layout here is one packed row"
    total = sum(len(e["input_ids"]) for e in EXAMPLES)
    assert packed["input_ids"].shape[1] == total - (len(EXAMPLES) - 1) * len(PREFIX)
    assert packed[EXAMPLE_TOKENS] == total

    reference_loss, reference_grads = loss_and_grads(tiny_model, PaddingCollator(pad_token_id=2)(EXAMPLES))
    loss, grads = loss_and_grads(tiny_model, packed)
    assert loss == pytest.approx(reference_loss, rel=1e-6)
    assert_same_gradients(grads, reference_grads)


def test_examples_in_a_packed_row_do_not_see_each_other(tiny_model):
    """Changing one example's tokens must leave every other example's loss untouched."""
    collator = PackingCollator(pad_token_id=2, pair_cost=0.0)

    def per_token_losses(examples):
        batch = {k: v for k, v in collator(examples).items() if k not in (EXAMPLE_TOKENS, "labels", "shift_labels")}
        with torch.no_grad():
            logits = tiny_model(**batch).logits.reshape(-1, tiny_model.config.vocab_size)
        targets = collator(examples)["shift_labels"][0]
        return torch.nn.functional.cross_entropy(logits, targets, reduction="none")

    base = per_token_losses(EXAMPLES)
    changed = EXAMPLES[:1] + [example([33, 34], [22, 2])] + EXAMPLES[2:]
    other = per_token_losses(changed)
    # the second example owns targets 3..4 (after the first example's 3 answer tokens)
    keep = torch.ones_like(base, dtype=torch.bool)
    keep[3:5] = False
    torch.testing.assert_close(other[keep], base[keep], rtol=0, atol=0)
    assert not torch.equal(other[3:5], base[3:5])


def test_padded_layout_is_kept_when_packing_costs_more_and_still_skips_the_prompt_logits(tiny_model):
    # Nothing shared: packed, these 4 rows of 10-14 tokens make one row of 46, with 2,116 attention pairs
    # against 4 * 14^2 = 784 padded; priced high, the pairs decide.
    examples = [{"input_ids": [31 + k] + e["input_ids"][1:], "labels": e["labels"]} for k, e in enumerate(EXAMPLES)]
    assert shared_prefix_length(examples) == 0
    collator = PackingCollator(pad_token_id=2, pair_cost=1.0)
    batch = collator(examples)
    assert batch["input_ids"].shape[0] == len(examples)
    supervised = sum(sum(label != IGNORE_INDEX for label in e["labels"]) for e in examples)
    assert batch["shift_labels"].shape == (1, supervised)
    reference_loss, reference_grads = loss_and_grads(tiny_model, PaddingCollator(pad_token_id=2)(examples))
    loss, grads = loss_and_grads(tiny_model, batch)
    assert loss == pytest.approx(reference_loss, rel=1e-6)
    assert_same_gradients(grads, reference_grads)
    assert PackingCollator(pad_token_id=2, pack=False)(EXAMPLES)["input_ids"].shape[0] == len(EXAMPLES)


def test_attention_pair_cost_grows_with_the_attention_share_of_the_model(tiny_model):
    from transformers import LlamaForCausalLM

    cost = attention_pair_cost(tiny_model)
    assert 0 < cost < 1
    wider_mlp = LlamaForCausalLM(tiny_model.config.__class__(**{**tiny_model.config.to_dict(), "intermediate_size": 512}))
    assert attention_pair_cost(wider_mlp) < cost  # same attention, more weight FLOPs per token


def test_padding_collator_pads_right_to_a_multiple_and_keeps_labels_from_the_examples():
    # The last answer token is the pad id (EOS doubles as pad): it stays supervised, the padding does not.
    features = [{"input_ids": [5, 6, 2], "labels": [IGNORE_INDEX, 6, 2]},
                {"input_ids": [5, 7, 8, 9, 2], "labels": [IGNORE_INDEX, IGNORE_INDEX, 8, 9, 2]}]
    collator = PaddingCollator(pad_token_id=2, pad_to_multiple_of=4)
    assert collator.width(features) == 8
    batch = collator(features)
    assert batch["input_ids"].tolist() == [[5, 6, 2, 2, 2, 2, 2, 2], [5, 7, 8, 9, 2, 2, 2, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 2] + [IGNORE_INDEX] * 5,
                                        [IGNORE_INDEX, IGNORE_INDEX, 8, 9, 2] + [IGNORE_INDEX] * 3]
    assert all(t.dtype == torch.long for t in batch.values())
    assert PaddingCollator(pad_token_id=2).width(features) == 5


def test_padded_layout_keeps_logits_only_before_supervised_tokens():
    features = [{"input_ids": [5, 6, 2], "labels": [IGNORE_INDEX, 6, 2]},
                {"input_ids": [5, 7, 8, 2], "labels": [IGNORE_INDEX, IGNORE_INDEX, 8, 2]}]
    batch = PackingCollator(pad_token_id=2, pack=False)(features)
    # position i is kept when token i+1 is supervised; its target is that token
    assert batch["logits_to_keep"].tolist() == [[True, True, False, False], [False, True, True, False]]
    assert batch["shift_labels"].tolist() == [[6, 2, 8, 2]]
    assert torch.equal(batch["labels"], batch["shift_labels"])
    assert batch[EXAMPLE_TOKENS] == 7
