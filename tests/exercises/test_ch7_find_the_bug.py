"""Chapter 7's "find the bug" exercises: the right diagnosis passes, and every typical wrong diagnosis fails
with a message of its own that names the actual mistake."""
from __future__ import annotations

import pytest

from bncourse.exercises import MultipleChoice, registry
from bncourse.exercises.chapters import ch7_practice
from bncourse.exercises.markup import unknown_markup

# what the feedback for any wrong answer must name: the mistake itself
MISTAKE = {
    "missing_eval": "model.eval()",
    "momentum_convention": "convention",
    "batch_of_one": "batch",
    "finetune_train_mode": "training mode",
    "data_parallel_plain_bn": "BN",
}


@pytest.fixture(autouse=True)
def fresh_registry():
    registry.forget()
    yield
    registry.forget()


def test_there_are_the_five_bugs():
    assert set(ch7_practice.EXERCISES) == set(MISTAKE)


@pytest.mark.parametrize("name", sorted(MISTAKE))
def test_right_answer_passes_and_each_wrong_answer_has_its_own_message(name):
    q = ch7_practice.EXERCISES[name]()
    assert isinstance(q, MultipleChoice) and not q.multi
    assert q.grade(q.answer).passed
    wrong = [i for i in range(len(q.options)) if i != q.answer]
    assert len(wrong) >= 3
    messages = []
    for i in wrong:
        feedback = q.grade(i)
        assert not feedback.passed
        assert i in q.feedback, f"{name}: option {i} has no message of its own"
        assert q.feedback[i] in feedback.message
        assert MISTAKE[name] in q.feedback[i], (name, i, q.feedback[i])
        messages.append(q.feedback[i])
    assert len(set(messages)) == len(messages)


@pytest.mark.parametrize("name", sorted(MISTAKE))
def test_texts_use_only_known_markup_and_ids_are_stable(name):
    q = ch7_practice.EXERCISES[name]()
    texts = [q.prompt, q.hint or "", q.explanation or "", *q.options, *q.feedback.values()]
    assert all(unknown_markup(t) == [] for t in texts), [unknown_markup(t) for t in texts]
    assert q.id.startswith("ch7-bug-")
    ch7_practice.EXERCISES[name]()        # building it again in the same kernel (re-running the cell) is allowed


def test_ids_are_distinct():
    ids = [f().id for f in ch7_practice.EXERCISES.values()]
    assert len(set(ids)) == len(ids)
