"""The global batch: a round's prompts shared out, sampled, gathered; every process decides
alike. Two processes are simulated by two threads whose gather meets at a barrier."""

from __future__ import annotations

import copy
import threading

import torch

from emit_iad.train.grpo.resampling import Resampler
from emit_iad.train.grpo.rollout import Sampler
from emit_iad.train.world import World
from emit_iad.vlm.chat import PromptConfig

from .test_resampling import Script, feed


def test_share_and_merge_are_inverse():
    items = list(range(7))
    worlds = [World(r, 3) for r in range(3)]
    parts = [w.share(items) for w in worlds]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert worlds[0].merge(parts, 7) == items


class Meeting:
    """all_gather_object for threads."""

    def __init__(self, size):
        self.size, self.slots, self.barrier = size, [None] * size, threading.Barrier(size)

    def world(self, rank):
        meeting = self

        class ThreadWorld(World):
            def gather(self, obj):
                meeting.slots[rank] = obj
                meeting.barrier.wait(timeout=10)
                out = copy.deepcopy(meeting.slots)  # as pickling through the wire
                meeting.barrier.wait(timeout=10)
                return out

        return ThreadWorld(rank, self.size)


class SharedScript(Script):
    def __init__(self, solved):
        super().__init__(solved)
        self.lock, self.by_rank = threading.Lock(), {}

    def sampler(self, rank):
        def sample(prompt, n):
            with self.lock:
                self.by_rank.setdefault(rank, []).append(prompt)
                return super(SharedScript, self).sample(prompt, n)

        return sample


def test_two_processes_decide_alike_and_as_one_process_does():
    solved = {"easy": {1}, "late": {3}, "never": set(), "a": {1}, "b": {2}, "c": {1}, "d": {1}}
    stream = ["easy", "late", "never", "a", "b", "c", "d"]
    alone = Resampler(Script(solved).sample, Script.is_correct, group_size=2, max_rounds=2)
    want, want_stats = alone.fill(feed(stream), batch_size=4)

    script, meeting = SharedScript(solved), Meeting(2)
    results = [None, None]

    def process(rank):
        r = Resampler(script.sampler(rank), Script.is_correct, group_size=2, max_rounds=2,
                      world=meeting.world(rank))  # fmt: skip
        results[rank] = r.fill(feed(stream), batch_size=4)

    threads = [threading.Thread(target=process, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    (g0, s0), (g1, s1) = results
    assert [g.prompt for g in g0] == [g.prompt for g in g1] == [g.prompt for g in want]
    assert [g.responses for g in g0] == [g.responses for g in want]
    assert s0 == s1 == want_stats
    # both processes sampled: the work was shared, not repeated
    assert script.by_rank[0] and script.by_rank[1]
    assert not set(script.by_rank[0][:2]) & set(script.by_rank[1][:2])


def test_one_generate_per_round_gives_what_one_per_prompt_gives(tiny_vlm, records):
    """Near-greedy sampling: the batched call returns each prompt's own completions (left
    padding, few-shot and plain rows mixed, each prompt's heatmap in its row)."""
    vlm = copy.deepcopy(tiny_vlm)
    mixed = records[:4]
    assert len({r["type"] in vlm.fewshot_types() for r in mixed}) == 2
    calls = []
    generate = vlm.model.generate
    vlm.model.generate = lambda **kw: calls.append(1) or generate(**kw)
    batched = Sampler(vlm, PromptConfig(k_shot=1), 1e-6, 6).many(mixed, 2)
    assert len(calls) == 1
    single = Sampler(vlm, PromptConfig(k_shot=1), 1e-6, 6)
    one_by_one = [single(r, 2) for r in mixed]
    assert len(calls) == 1 + len(mixed)
    assert [[x.text for x in g] for g in batched] == [[x.text for x in g] for g in one_by_one]
    for g, h in zip(batched, one_by_one, strict=True):
        assert all(torch.equal(a.ids, b.ids) for a, b in zip(g, h, strict=True))
    limited = Sampler(vlm, PromptConfig(k_shot=1), 1e-6, 6, max_prompts=3).many(mixed, 2)
    assert len(calls) == 1 + len(mixed) + 2 and len(limited) == 4
