"""The perplexity floor's FLOP counts (lorp.evaluate.compute_floor), against hand counts on a tiny Llama."""


from lorp.evaluate.compute_floor import block_flops, floor_record, head_flops, matmul_rate, variant_flops
from lorp.testing import make_tiny_model


def test_block_and_head_flops_match_a_hand_count():
    model = make_tiny_model("llama", num_blocks=3, vocab_size=128)
    # hidden 32, 4 heads of 8, 2 key-value heads, MLP 64: q 32x32, k and v 32x16, o 32x32, gate, up, down 32x64
    weights = 32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 64
    attention = 2 * 2 * (10 / 2) * 4 * 8  # scores and weighted sum at the mean causal context of 10 tokens
    assert block_flops(model, 10) == [2 * weights + attention] * 3
    assert head_flops(model) == 2 * 128 * 32


def test_a_variant_runs_the_kept_blocks_from_its_first_removed_one():
    per_block, head = [1.0, 2.0, 4.0, 8.0], 16.0
    assert variant_flops(per_block, head, 10) == 10 * 31
    assert variant_flops(per_block, head, 10, [1, 3]) == 10 * (4 + 16)  # restarts at block 1, runs block 2 only
    assert variant_flops(per_block, head, 10, [1, 3], restart=False) == 10 * (1 + 4 + 16)


def test_the_record_carries_a_positive_rate():
    rec = floor_record(make_tiny_model("qwen2", num_blocks=2), 16, rate=5e9)
    assert rec["matmul_flops_per_s"] == 5e9 and len(rec["block_flops"]) == 2 and rec["window_tokens"] == 16
    assert matmul_rate(size=64, repeats=2) > 0
