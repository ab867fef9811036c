"""Extractive QA's reference span search and window builder (handlers/qa_spans.py), against spans and
scores worked out by hand, a brute-force search, and a real (tiny) word-piece tokenizer."""

from __future__ import annotations

import math
import random

import pytest
import torch

from tiny_models import tiny_tokenizer
from torchship.handlers.qa_spans import (
    EmptyContext,
    PairError,
    QuestionTooLong,
    Span,
    Window,
    best_span,
    best_span_in_window,
    build_windows,
)

LN2, LN3, LN4, LN5, LN8 = (math.log(n) for n in (2, 3, 4, 5, 8))

# One 8-token window: [CLS] q q [SEP] red fox runs [SEP], the context being "red fox runs".
SEQUENCE_IDS = (None, 0, 0, None, 1, 1, 1, None)
OFFSETS = ((0, 0), (0, 3), (4, 7), (0, 0), (0, 3), (4, 7), (8, 12), (0, 0))
CONTEXT = "red fox runs"
HIGH = 10.0  # on question and special tokens: they would win if they were not excluded


def logits(context_values, *, others=HIGH, positions=(4, 5, 6), length=8):
    """A window's logits: `context_values` on the context tokens, `others` everywhere else."""
    values = torch.full((length,), others, dtype=torch.float32)
    for position, value in zip(positions, context_values, strict=True):
        values[position] = value
    return values


def search(start, end, *, max_answer_tokens=30, sequence_ids=SEQUENCE_IDS, offsets=OFFSETS, **kw):
    return best_span_in_window(start, end, sequence_ids, offsets, max_answer_tokens=max_answer_tokens, **kw)


def test_hand_computed_span_and_score():
    # start logits over the context (0, ln2, 0): softmax = (1, 2, 1) / 4 = (1/4, 1/2, 1/4)
    # end logits over the context   (0, ln2, ln3): softmax = (1, 2, 3) / 6 = (1/6, 1/3, 1/2)
    # spans j >= i, score p_start[i] * p_end[j]:
    #   (0,0) 1/24  (0,1) 2/24  (0,2) 3/24
    #               (1,1) 4/24  (1,2) 6/24   <- best: "fox runs", 6/24 = 0.25
    #                           (2,2) 3/24
    # The question and special tokens carry logit 10 (> every context logit) and must not count, not even
    # in the softmax's denominator: with them the score would be far below 0.25.
    span = search(logits((0.0, LN2, 0.0)), logits((0.0, LN2, LN3)))
    assert span == Span(start=4, end=12, score=pytest.approx(0.25, abs=1e-7), window=0)
    assert span.text(CONTEXT) == "fox runs"


def test_end_before_start_is_never_chosen():
    # start (0, 0, ln5): softmax (1, 1, 5) / 7;  end (ln4, 0, 0): softmax (4, 1, 1) / 6
    # The largest product overall is start 2 * end 0 = 5/7 * 4/6 = 20/42, but it ends before it starts.
    # Allowed: (0,0) 4/42, (0,1) 1/42, (0,2) 1/42, (1,1) 1/42, (1,2) 1/42, (2,2) 5/42 <- best: "runs"
    span = search(logits((0.0, 0.0, LN5)), logits((LN4, 0.0, 0.0)))
    assert (span.start, span.end) == (8, 12)
    assert span.score == pytest.approx(5 / 42)


def test_max_answer_tokens_bounds_the_span():
    # As in the hand-computed case: the best span (1,2) "fox runs" is 2 tokens long. With at most 1 token:
    # (0,0) 1/24, (1,1) 4/24, (2,2) 3/24 -> (1,1) "fox", 4/24 = 1/6.
    start, end = logits((0.0, LN2, 0.0)), logits((0.0, LN2, LN3))
    span = search(start, end, max_answer_tokens=1)
    assert (span.start, span.end, span.text(CONTEXT)) == (4, 7, "fox")
    assert span.score == pytest.approx(1 / 6)
    assert search(start, end, max_answer_tokens=2).text(CONTEXT) == "fox runs"
    # (0,2) "red fox runs" (3 tokens, 3/24) loses to (1,2) even when 3 tokens are allowed
    assert search(start, end, max_answer_tokens=3).score == pytest.approx(0.25)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_max_answer_tokens_must_be_positive(bad):
    with pytest.raises(ValueError, match="max_answer_tokens must be a positive integer"):
        search(logits((0.0, 0.0, 0.0)), logits((0.0, 0.0, 0.0)), max_answer_tokens=bad)


def test_question_and_special_tokens_excluded_even_with_the_highest_logits():
    # Every non-context token gets 50; the context's logits are flat, so every one-token span scores
    # 1/3 * 1/3 = 1/9 and the first ("red") wins the tie. Padding beyond the window (positions 8, 9) is
    # ignored too, though its logits are 100.
    start = torch.cat([logits((0.0, 0.0, 0.0), others=50.0), torch.tensor([100.0, 100.0])])
    end = torch.cat([logits((0.0, 0.0, 0.0), others=50.0), torch.tensor([100.0, 100.0])])
    span = search(start, end, max_answer_tokens=1)
    assert (span.start, span.end, span.score) == (0, 3, pytest.approx(1 / 9))


def test_context_first_layout_reads_sequence_zero():
    # [CLS] red fox runs [SEP] q q [SEP]: the context is sequence 0 (a model that reads it first).
    sequence_ids = (None, 0, 0, 0, None, 1, 1, None)
    offsets = ((0, 0), (0, 3), (4, 7), (8, 12), (0, 0), (0, 3), (4, 7), (0, 0))
    # Same context logits as the hand-computed case, now at positions 1..3: best "fox runs", 0.25.
    start = logits((0.0, LN2, 0.0), positions=(1, 2, 3))
    end = logits((0.0, LN2, LN3), positions=(1, 2, 3))
    span = search(start, end, sequence_ids=sequence_ids, offsets=offsets, context_index=0)
    assert (span.start, span.end) == (4, 12) and span.score == pytest.approx(0.25)


def test_a_window_without_context_has_no_span():
    assert (
        search(torch.zeros(4), torch.zeros(4), sequence_ids=(None, 0, 0, None), offsets=((0, 0),) * 4) is None
    )


def test_logits_shorter_than_the_window_are_refused():
    with pytest.raises(ValueError, match="start_logits must be 1-D with at least 8 values"):
        search(torch.zeros(5), torch.zeros(8))


def window(offsets, sequence_ids=SEQUENCE_IDS):
    return Window(
        input_ids=tuple(range(len(sequence_ids))),
        token_type_ids=None,
        offsets=offsets,
        sequence_ids=sequence_ids,
        context_index=1,
    )


def test_best_span_over_windows_is_in_the_second():
    # Window 0 covers "red fox runs" (chars 0-12), window 1 "runs far away" (chars 8-21 of a longer context).
    first = window(OFFSETS)
    second = window(((0, 0), (0, 3), (4, 7), (0, 0), (8, 12), (13, 16), (17, 21), (0, 0)))
    # Window 0: the hand-computed case, best 0.25 -- with 20 added to every logit, which changes no softmax:
    # its logits are larger than window 1's, but scores, not logits, are compared across windows.
    start0, end0 = logits((20.0, 20 + LN2, 20.0)), logits((20.0, 20 + LN2, 20 + LN3))
    # Window 1: start (0, ln8, 0) and end (0, ln8, 0): softmax (1, 8, 1) / 10 each; best (1,1) = 0.8 * 0.8
    # = 0.64 > 0.25: "far" at chars 13-16.
    start1, end1 = logits((0.0, LN8, 0.0)), logits((0.0, LN8, 0.0))
    span = best_span([first, second], [start0, start1], [end0, end1], max_answer_tokens=5)
    assert span == Span(start=13, end=16, score=pytest.approx(0.64), window=1)
    # The other way round, window 0 wins with the same values.
    span = best_span([second, first], [start1, start0], [end1, end0], max_answer_tokens=5)
    assert (span.window, span.start, span.end) == (0, 13, 16)


def test_best_span_needs_logits_for_every_window():
    with pytest.raises(ValueError, match="2 windows but 1 start and 2 end logit rows"):
        best_span([window(OFFSETS)] * 2, [torch.zeros(8)], [torch.zeros(8)] * 2, max_answer_tokens=3)


@pytest.mark.parametrize("seed", range(6))
def test_band_search_equals_a_brute_force_search(seed):
    rng = random.Random(seed)
    question, context = rng.randint(1, 20), rng.randint(1, 300)
    sequence_ids = (None,) + (0,) * question + (None,) + (1,) * context + (None,)
    offsets = tuple((k, k + 1) for k in range(len(sequence_ids)))
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(len(sequence_ids) + 7, generator=generator) * 4
    end = torch.randn(len(sequence_ids) + 7, generator=generator) * 4
    max_answer_tokens = rng.randint(1, 40)

    span = search(start, end, sequence_ids=sequence_ids, offsets=offsets, max_answer_tokens=max_answer_tokens)

    positions = [k for k, s in enumerate(sequence_ids) if s == 1]
    p_start = torch.softmax(start[positions].double(), 0).tolist()
    p_end = torch.softmax(end[positions].double(), 0).tolist()
    best = max(
        (p_start[i] * p_end[j], -i, -j)
        for i in range(len(positions))
        for j in range(i, min(i + max_answer_tokens, len(positions)))
    )
    score, i, j = best[0], -best[1], -best[2]
    assert (span.start, span.end) == (offsets[positions[i]][0], offsets[positions[j]][1])
    assert span.score == pytest.approx(score, rel=1e-12)


# --- windows from a real tokenizer ----------------------------------------------------------------------------

QUESTION = "who sat on the mat?"
LONG_CONTEXT = "the cat sat on the mat. the dog ran fast. john lives in paris."


@pytest.fixture(scope="module")
def bert_tokenizer(tmp_path_factory):
    return tiny_tokenizer("bert", tmp_path_factory.mktemp("bert"))


def context_pieces(window_, context):
    return [
        context[a:b]
        for (a, b), s in zip(window_.offsets, window_.sequence_ids, strict=True)
        if s == window_.context_index
    ]


def test_windows_split_a_long_context_with_overlap_and_offsets_into_it(bert_tokenizer):
    # "who sat on the mat ?" is 8 word pieces (w, ##h, ##o: "who" is not in the tiny vocabulary); with
    # [CLS] and two [SEP] that leaves 20 - 11 = 9 context tokens per window; stride 3: each window starts
    # 9 - 3 = 6 context tokens after the one before. The context is 17 tokens: windows at 0, 6, 12.
    (windows,) = build_windows(bert_tokenizer, [QUESTION], [LONG_CONTEXT], max_length=20, stride=3)
    assert len(windows) == 3
    words = LONG_CONTEXT.replace(".", " .").split()
    assert [context_pieces(w, LONG_CONTEXT) for w in windows] == [words[0:9], words[6:15], words[12:17]]
    for w in windows:
        assert len(w.input_ids) <= 20
        assert w.sequence_ids[0] is None and w.sequence_ids[-1] is None
        assert w.token_type_ids is not None
        # token types: 0 for [CLS] + question + [SEP], 1 for the context and its [SEP]
        assert w.token_type_ids == tuple(0 if k <= 9 else 1 for k in range(len(w.input_ids)))
        assert w.row() == {"input_ids": list(w.input_ids), "token_type_ids": list(w.token_type_ids)}
    # neighbours share exactly `stride` context tokens
    assert context_pieces(windows[0], LONG_CONTEXT)[-3:] == context_pieces(windows[1], LONG_CONTEXT)[:3]


def test_windows_then_span_search_answer_from_the_second_window(bert_tokenizer):
    contexts = ["the cat sat on the mat.", LONG_CONTEXT]
    short, long = build_windows(bert_tokenizer, [QUESTION, QUESTION], contexts, max_length=20, stride=3)
    assert len(short) == 1 and len(long) == 3
    # Logits that point at "ran" (context token 9: in window 1 only, which holds tokens 6-14).
    starts, ends = [], []
    for w in long:
        values = torch.zeros(len(w.input_ids) + 4)  # padded rows are longer than the window
        for k, (a, b) in enumerate(w.offsets):
            if w.sequence_ids[k] == 1 and LONG_CONTEXT[a:b] == "ran":
                values[k] = 5.0
        starts.append(values)
        ends.append(values.clone())
    span = best_span(long, starts, ends, max_answer_tokens=4)
    assert span.window == 1 and span.text(LONG_CONTEXT) == "ran"


def test_context_first_windows(bert_tokenizer):
    (windows,) = build_windows(
        bert_tokenizer, [QUESTION], [LONG_CONTEXT], max_length=20, stride=3, question_first=False
    )
    words = LONG_CONTEXT.replace(".", " .").split()
    assert [context_pieces(w, LONG_CONTEXT) for w in windows] == [words[0:9], words[6:15], words[12:17]]
    assert all(w.context_index == 0 and w.sequence_ids[1] == 0 for w in windows)


def test_offsets_map_to_context_substrings_on_a_bpe_tokenizer(tmp_path):
    tokenizer = tiny_tokenizer("roberta", tmp_path)
    context = "Mary loves London! John lives in Paris and works for Google."
    (windows,) = build_windows(tokenizer, ["Who lives in Paris?"], [context], max_length=24, stride=4)
    assert len(windows) >= 2
    covered = "".join(context_pieces(windows[0], context))
    assert context.replace(" ", "").startswith(covered.replace(" ", ""))
    for w in windows:
        assert w.token_type_ids is None and "token_type_ids" not in w.row()
        for (a, b), s in zip(w.offsets, w.sequence_ids, strict=True):
            if s == 1:  # a lone "Ġ" (the space before "John" here) is a zero-width token
                assert 0 <= a <= b <= len(context)
    # window 2 starts `stride` tokens before window 1's end: "and works for Google"
    assert context_pieces(windows[1], context)[:4] == context_pieces(windows[0], context)[-4:]


def test_a_question_without_room_for_context_is_refused(bert_tokenizer):
    long_question = " ".join(["cat"] * 18)  # 18 tokens + 3 special = 21 > 20
    with pytest.raises(QuestionTooLong) as info:
        build_windows(
            bert_tokenizer, [QUESTION, long_question], ["the cat", "the cat"], max_length=20, stride=3
        )
    assert info.value.pair == 1
    assert isinstance(info.value, ValueError) and isinstance(info.value, PairError)
    message = str(info.value)
    assert "the question is 18 tokens long" in message and "no room for the context" in message
    assert "at most 13 tokens" in message  # 20 - 3 special - 3 stride - 1


def test_a_question_leaving_no_more_than_the_stride_refused_only_when_the_context_must_be_split(
    bert_tokenizer,
):
    question = " ".join(["cat"] * 15)  # 20 - 3 - 15 = 2 context tokens per window, stride 3
    # "the dog" is 2 tokens: it fits beside the question, no split needed.
    (windows,) = build_windows(bert_tokenizer, [question], ["the dog"], max_length=20, stride=3)
    assert context_pieces(windows[0], "the dog") == ["the", "dog"]
    with pytest.raises(QuestionTooLong, match=r"leaves 2 context tokens per window .* the 3-token context"):
        build_windows(bert_tokenizer, [question], ["the dog ran"], max_length=20, stride=3)


def test_an_empty_context_is_refused(bert_tokenizer):
    with pytest.raises(EmptyContext, match="no words") as info:
        build_windows(bert_tokenizer, [QUESTION, QUESTION], ["the cat", "   "], max_length=20, stride=3)
    assert info.value.pair == 1


def test_settings_that_leave_no_context_are_a_plain_value_error(bert_tokenizer):
    with pytest.raises(ValueError, match="max_length 8 leaves no context token") as info:
        build_windows(bert_tokenizer, [QUESTION], ["the cat"], max_length=8, stride=5)
    assert not isinstance(info.value, PairError)
