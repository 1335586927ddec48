"""Agent-SFT traces: deterministic generation, real tool observations, and a test split whose
held-out entities, templates and number band really never occur in train/val (checked on the
committed files, not just on the generator's bookkeeping)."""
import json
import re
import unicodedata
from collections import Counter

import pytest

from agent.tools import calc, lookup, normalize
from agent_sft.generate import (ADDED_FACTS, FORBIDDEN, INVENTED_KB, MAX_APPROX_TOKENS, TEST_CATEGORIES,
                                 approx_tokens, build, user_texts)
from agent_sft import templates as T
from agent_sft.heldout import Template, template_words
from agent_sft.invented import fold
from agent_sft.words import covering_words, load_words, word_counts
from agent_sft.traces import HERE, KB_FILE, SEVEN, Generator
from sft.data import validate_conversation
from transformer.chat import parse_action
from transformer.tokenizer import SPECIAL_TOKENS, Tokenizer

DATA = HERE / "data"


def load(name):
    return [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def files():
    return {s: load(s) for s in ("train", "val", "test")}


@pytest.fixture(scope="module")
def gen():
    return Generator(seed=0)  # the committed files are seed 0


def actions(rec):
    for i, m in enumerate(rec["messages"]):
        if m.get("tool_calls"):
            fn = m["tool_calls"][0]["function"]
            yield fn["name"], next(iter(json.loads(fn["arguments"]).values())), rec["messages"][i + 1]["content"]


def test_generation_is_deterministic_and_seeded():
    a, b, c = build(0, 300, 40, 5), build(0, 300, 40, 5), build(1, 300, 40, 5)
    assert a == b
    assert a["train"] != c["train"]
    assert Counter(r["category"] for r in a["test"]) == {k: 5 for k in TEST_CATEGORIES}


def test_exclude_keeps_given_conversations_out_of_train_and_val():
    def users(rec):
        return tuple(m["content"] for m in rec["messages"] if m["role"] == "user")
    plain = build(0, 300, 40, 5)
    banned = frozenset(users(r) for r in plain["train"][:150] + plain["val"][:20])
    kept = build(0, 300, 40, 5, exclude=banned)
    assert len(kept["train"]) == 300 and len(kept["val"]) == 40
    assert not banned & {users(r) for r in kept["train"] + kept["val"]}


def test_committed_files_are_what_seed_0_generates(files):
    small = build(0, 200, 20, 3)  # the same RNG stream: the first records must coincide
    assert [r["messages"] for r in files["train"][:200]] == [r["messages"] for r in small["train"]]


def test_records_are_valid_conversations_with_real_observations(files):
    for split, recs in files.items():
        assert all(r["split"] == split for r in recs)
        for r in recs[:3000]:
            validate_conversation(r)
            kb = DATA / INVENTED_KB if r.get("kb") == "invented" else KB_FILE
            for name, arg, obs in actions(r):
                assert obs == (calc(arg) if name == "calc" else lookup(arg, kb_path=kb)), (name, arg, obs)
    assert len(files["train"]) >= 10000 and (DATA / "train.jsonl").stat().st_size < 16e6  # the repo stays small
    assert set(Counter(r["category"] for r in files["test"])) == set(TEST_CATEGORIES)


PLAN = re.compile(r"(?:I should look up both|I should look this up|I need to compute this), then (.+)\.")


def test_formats_are_simple_and_consistent(files):
    thoughts = {T.THOUGHT_CALC, T.THOUGHT_CALC_NEXT, T.THOUGHT_LOOKUP, T.THOUGHT_LOOKUP_NEXT}
    for r in files["train"][:3000]:
        msgs = r["messages"]
        if r["category"] == "small_talk":  # answered directly: no thought, no tool
            assert len(msgs) == 2 and "reasoning_content" not in msgs[1]
        for m in msgs:
            if m.get("tool_calls"):
                fn = m["tool_calls"][0]["function"]
                arg = next(iter(json.loads(fn["arguments"]).values()))
                assert parse_action(f"{fn['name']}({arg})") == (fn["name"], arg)
                # short and templated
                assert m["reasoning_content"] in thoughts or PLAN.fullmatch(m["reasoning_content"])
        steps = list(actions(r))
        if r["category"] in ("arithmetic", "lookup", "lookup_invented"):  # the answer copies the observation
            (_, arg, obs), = steps
            assert msgs[-1]["content"] == (f"The answer is {obs}." if r["category"] == "arithmetic" else f"{obs}.")
            assert (r.get("kb") == "invented") == (r["category"] == "lookup_invented")
            assert r["text"].startswith(f"User: {msgs[0]['content']}") and f"-> {obs}" in r["text"]
        if r["category"] == "arithmetic":  # the action copies the question's numbers
            assert all(n in steps[0][1] for n in re.findall(r"\d+(?:\.\d+)?", msgs[0]["content"]))
        if r["category"] == "lookup":  # ... or its entity, into the KB key form
            assert steps[0][1].split()[-1] in msgs[0]["content"]
        if r["category"] == "kb_miss":
            assert steps[0][2].startswith("not found") and msgs[-1]["content"] == T.ANSWER_MISS


def test_heldout_entities_never_in_train_or_val(files, gen):
    assert len(gen.heldout_entities) >= 20
    names = {e: gen.entity_names[e].lower().removeprefix("the ") for e in gen.heldout_entities}
    pattern = re.compile("|".join(rf"(?<!\w){re.escape(n)}(?!\w)" for n in names.values()))
    for split in ("train", "val"):
        for r in files[split]:
            assert not set(r["entities"]) & gen.heldout_entities
            for m in r["messages"]:
                text = " ".join(str(m.get(k) or "") for k in ("content", "reasoning_content")).lower()
                assert not pattern.search(text), (split, text)
            for name, arg, _ in actions(r):
                if name == "lookup":
                    assert normalize(arg).split(" of ", 1)[-1] not in {normalize(n) for n in names.values()}
    test_ents = [r for r in files["test"] if "entity" in r["heldout"] and r["category"] == "lookup"]
    assert len(test_ents) >= 20 and all(set(r["entities"]) & gen.heldout_entities for r in test_ents)


def looked_up_names(recs) -> frozenset[str]:
    """Every name the files look up (each tail of a key after " of " / " in "), folded as lookup folds."""
    return frozenset(fold(tail) for r in recs for name, arg, _ in actions(r) if name == "lookup"
                     for tail in re.split(r" (?:of|in) ", arg)[1:] if tail)


def test_heldout_templates_never_in_train_or_val(files, gen):
    assert len(gen.tpl.heldout_templates) >= 50
    names = looked_up_names(files["train"] + files["val"] + files["test"])
    for split in ("train", "val"):
        for r in files[split]:
            assert not set(r["templates"]) & gen.tpl.heldout_templates
            for q in user_texts(r["messages"]):
                assert not gen.asked_with_heldout(q, names), (split, q)
    held = [r for r in files["test"] if "template" in r["heldout"]]
    assert len(held) >= 100
    assert sum(any(gen.asked_with_heldout(q, names) for q in user_texts(r["messages"])) for r in held) == len(held)


def test_template_match_is_exact_about_names():
    one = Template("t", "What is the atomic number of {E}?")
    names = {"gold", "trinidad and tobago", "mars"}.__contains__
    assert one.produces("What is the atomic number of gold?", names)
    # the ".+" pattern reads this as one entity; it is a different (lookup-then-calc) question
    assert re.fullmatch(one.pattern, "What is the atomic number of gold plus 5?")
    assert not one.produces("What is the atomic number of gold plus 5?", names)
    two = Template("u", "What is {a} plus the number of moons of {E1} and {E2}?")
    assert two.produces("What is -2.5 plus the number of moons of Trinidad and Tobago and Mars?",
                        lambda s: names(s.lower()))
    assert not two.produces("What is x plus the number of moons of Mars and Mars?", lambda s: names(s.lower()))


def test_every_template_not_held_out_is_trained(files, gen):
    # a template that is neither held out nor trained would make its test items silently unseen
    trained = Counter(t for r in files["train"] for t in r["templates"])
    groups = [*gen.tpl.arith_tpls.values(), gen.tpl.pairs, gen.tpl.lcalcs, gen.tpl.chains, gen.tpl.follow]
    missing = [t.id for ts in groups for t in ts if not t.heldout and not trained[t.id]]
    assert not missing, missing


def test_heldout_templates_are_new_phrasings_of_trained_meanings(files, gen):
    # "Who composed X?" may be held out only if training asks with "composed" somewhere else
    trained = {w for r in files["train"] for q in user_texts(r["messages"]) for w in template_words(q)}
    held = [t for ts in [*gen.tpl.arith_tpls.values(), gen.tpl.pairs, gen.tpl.lcalcs, gen.tpl.chains, gen.tpl.follow,
                         *([t for t, _ in ts] for ts in gen.tpl.lookup_tpls.values())] for t in ts if t.heldout]
    assert len(held) >= 150
    # relations missing from the KB are themselves held out, like entities (every 4th: test only)
    test_only = {w for pool in gen.miss_pool.values() for i, x in enumerate(pool) if i % 4 == 3
                 for w in template_words(x)}
    for t in held:
        assert set(template_words(t.text)) - test_only <= trained, (t.text, set(template_words(t.text)) - trained)
    # ... and says what a training template of its kind says (the same expression and relation)
    kinds = [(gen.tpl.pairs, gen.tpl.pair_rel), (gen.tpl.lcalcs, gen.tpl.lcalc_rel), (gen.tpl.chains, {}),
             (gen.tpl.follow, {})]
    for tpls, rel in kinds:
        for t in (t for t in tpls if t.heldout):
            assert any(not u.heldout and u.expr == t.expr and rel.get(u.id) == rel.get(t.id) for u in tpls), t.text


def test_heldout_number_band_never_in_train_or_val(files):
    for split in ("train", "val"):
        for r in files[split]:
            for q in user_texts(r["messages"]):
                assert not SEVEN.search(q), (split, q)
    oor = [r for r in files["test"] if r["category"] == "arithmetic_oor"]
    assert oor and all(SEVEN.search(user_texts(r["messages"])[0]) for r in oor)
    assert not any(SEVEN.search(user_texts(r["messages"])[0]) for r in files["test"] if r["category"] == "arithmetic")


def test_eval_only_facts_and_test_questions_absent_from_training(files):
    train_q = {tuple(user_texts(r["messages"])) for s in ("train", "val") for r in files[s]}
    assert not any(tuple(user_texts(r["messages"])) in train_q for r in files["test"])
    for s in ("train", "val"):
        for r in files[s]:
            text = json.dumps(r["messages"]).lower()
            assert not any(f in text for f in FORBIDDEN)
    assert all(lookup(k, kb_path=KB_FILE).startswith("not found") for k in ADDED_FACTS)


def test_traces_fit_the_cpu_context(files):
    # the CPU model sees 128 tokens; the tokenizer is trained later, so the generator bounds an estimate
    assert all(approx_tokens(r["messages"]) <= MAX_APPROX_TOKENS for s in files.values() for r in s)
    assert max(approx_tokens(r["messages"]) for r in files["train"]) > 0.8 * MAX_APPROX_TOKENS


def test_invented_facts_are_training_only_and_collide_with_nothing(files, gen):
    invented = json.loads((DATA / INVENTED_KB).read_text(encoding="utf-8"))
    assert invented == gen.invented and len(invented) >= 1000
    real = json.loads(KB_FILE.read_text(encoding="utf-8"))
    assert not {normalize(k) for k in invented} & {normalize(k) for k in real}
    entities = {normalize(k).split(" of ", 1)[1] for k in invented}
    taken = {normalize(n) for n in gen.entity_names.values()} | {normalize(x) for pool in gen.miss_pool.values() for x in pool}
    assert not entities & taken  # an invented place is never a real one nor a "missing" one
    assert not any(f in " ".join(entities) for f in FORBIDDEN)
    by_split = Counter(r["split"] for s in files.values() for r in s if r.get("kb") == "invented")
    assert by_split["train"] > 2000 and by_split["val"] > 50 and by_split["test"] == 0
    # the generator reads the invented KB only for invented entities: the real lookups still hit kb.json
    assert all(r.get("kb") != "invented" for r in files["train"] if r["category"] == "lookup")


def test_invented_names_leak_no_heldout_name_and_reach_chains_and_misses(files, gen):
    # invented names and answers never spell a held-out entity, a test-only miss name or an eval fact
    invented = json.loads((DATA / INVENTED_KB).read_text(encoding="utf-8"))
    # compared as lookup compares keys: without case, accents or punctuation ("Bülgaria" is "bulgaria")
    text = " | ".join(normalize(f"{ent} | {invented[f'{rel} of {ent}']}") for rel, ent in gen.invented_parts)
    held = {normalize(gen.entity_names[e]) for e in gen.heldout_entities}
    held |= {normalize(x) for pool in gen.miss_pool.values() for i, x in enumerate(pool) if i % 4 == 3}
    assert not [n for n in held if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text)]
    assert not any(f in text for f in FORBIDDEN)
    # copying unseen names is trained beyond single lookups: invented lookup chains and invented misses
    inv = Counter(r["category"] for r in files["train"] if r.get("kb") == "invented")
    assert inv["multi_step"] > 300 and inv["kb_miss"] > 300 and inv["multi_turn"] > 100
    chains = [r for r in files["train"] if r["category"] == "multi_step" and r.get("kb") == "invented"]
    assert all(not r["entities"] for r in chains) and any(n == "calc" for r in chains for n, _, _ in actions(r))


def test_invented_names_with_accents_stay_distinct_keys():
    # lookup ignores accents, so "Zürich" and "Zurich" would be one key and one of the facts unreachable
    kb = json.loads((DATA / INVENTED_KB).read_text(encoding="utf-8"))
    assert len({normalize(k) for k in kb}) == len(kb)
    accented = [k for k in kb if any(unicodedata.combining(c) for c in unicodedata.normalize("NFD", k))]
    assert len(accented) > len(kb) // 50, "some invented names carry an accented letter"


def test_covering_words_spell_every_piece_in_both_cases():
    text = "the king and the queen kept the kingdom; a keeper keeps kings. " * 30
    tok = Tokenizer.train(text, 256 + 40 + len(SPECIAL_TOKENS), pattern="gpt4-digits")
    pieces = {i for i in tok.mergeable_ranks.values() if re.fullmatch(rb" ?[A-Za-z]+", tok.id_to_bytes(i))}
    counts = word_counts([text])
    words = covering_words(counts, tok.encode, pieces, per_piece=1, min_count=1)
    spelled = {t for w in words for t in tok.encode(" " + w)}
    reachable = {t for w in counts for c in (w, w.capitalize()) for t in tok.encode(" " + c)} & pieces
    assert reachable and reachable <= spelled  # every piece a word can spell, some kept word spells
    assert any(w[0].isupper() for w in words) and any(w[0].islower() for w in words)
    assert len(words) < 2 * len(counts)  # a cover, not every word in both cases


def test_invented_names_copy_corpus_words_in_the_case_that_was_covered(files, gen):
    # the committed word list, and names built from it: capitalised entries in place/work names,
    # lowercase ones in lowercase things (their pieces differ: " pride" vs " Pride")
    words = load_words()
    assert len(words) > 3000 and any(w[0].isupper() for w in words) and any(w[0].islower() for w in words)
    keys = [arg for r in files["train"] if r.get("kb") == "invented" for n, arg, _ in actions(r) if n == "lookup"]
    tokens = Counter(w for k in keys for w in re.findall(r"[^\W\d_]+", k.split(" of ", 1)[-1]))
    upper, lower = ([w for w in words if w[0].isupper() == up] for up in (True, False))
    # capitalised names (places, works, people) are most of them; lowercase things (elements, inventions) fewer
    assert sum(1 for w in upper if tokens[w]) > len(upper) // 2
    assert sum(1 for w in lower if tokens[w]) > len(lower) // 10


def test_training_has_round_operands_and_digit_runs(files):
    questions = [q for r in files["train"] if r["category"] == "arithmetic" for q in user_texts(r["messages"])]
    round_ = [q for q in questions if re.search(r"(?<![\d.])[1-9]\d*000(?![\d.])", q)]
    assert len(round_) > len(questions) // 40, (len(round_), len(questions))
    # runs of one non-zero digit ("5469996"), the numbers copying gets wrong: far more than chance gives
    runs = [q for q in questions if re.search(r"([1-9])\1{3}", q)]
    assert len(runs) > len(questions) // 60, (len(runs), len(questions))  # random operands: 10 of 5000


def test_test_items_spread_evenly_over_heldout_templates(files):
    # a random pick gave one draw 7 items of one held-out pair template and 3 of another, enough to move
    # the multi-step score by points; the generator now takes the least-used held-out template
    uses = Counter(t for r in files["test"] if r["category"] == "multi_step" and "template" in r["heldout"]
                   for t in r["templates"])
    for kind in ("pair", "lcalc", "chain"):
        counts = [n for t, n in uses.items() if re.fullmatch(rf"{kind}\d+", t)]
        assert counts and max(counts) - min(counts) <= 2, (kind, uses)


def test_multi_step_training_asks_each_operation_about_equally_often(files):
    # sums once had 7 training phrasings of two lookups and products 2: a held-out "X times Y" became a sum
    ops: dict[str, Counter] = {"pair": Counter(), "lcalc": Counter(), "chain": Counter()}
    for r in files["train"]:
        kind = re.match(r"[a-z]+", r["templates"][0]).group()
        exprs = [arg for n, arg, _ in actions(r) if n == "calc"]
        if r["category"] == "multi_step" and exprs:
            ops[kind]["".join(re.findall(r" ([-+*/]) ", " ".join(exprs)))] += 1
    assert set(ops["pair"]) == set("+-*") and set(ops["lcalc"]) == set("+-*/"), ops
    for kind, counts in ops.items():  # drawn equally; the token cap drops more of the long year questions
        assert max(counts.values()) < 2 * min(counts.values()), (kind, counts)


def test_multi_turn_history_is_questions_and_answers_that_are_not_learned(files):
    # the agent sends past turns as question and answer (transformer.chat.past_turns_as_answers); a
    # learned "The answer is 1441." with no calc before it would teach answering without the tool
    seen = 0
    for r in (r for split in files.values() for r in split if r["category"] == "multi_turn"):
        msgs = r["messages"]
        last_user = max(i for i, m in enumerate(msgs) if m["role"] == "user")
        past, current = msgs[:last_user], msgs[last_user:]
        assert [m["role"] for m in past] == ["user", "assistant"] * (len(past) // 2), past
        assert all(m.get("weight") == 0 and set(m) == {"role", "content", "weight"} for m in past[1::2]), past
        assert all("weight" not in m for m in current)
        if r["split"] == "test" or "expected" in r:
            assert len(r["expected"]) == len(past) // 2 + 1
            assert bool(r["expected"][-1]["tools"]) == any(m.get("tool_calls") for m in current)
        seen += 1
    assert seen > 2000
    assert not any("weight" in m for split in files.values() for r in split if r["category"] != "multi_turn"
                   for m in r["messages"])


def test_follow_ups_ask_each_operation_about_equally_often_on_the_last_answer(files, gen):
    # two phrasings per operation once: the held-out "What is that times 12?" became calc(1441 + 12)
    ops, follows = Counter(), 0
    for r in files["train"]:
        for tid in (t for t in r["templates"] if t.startswith("follow:")):
            ops[tid.split(":")[1]] += 1
    assert set(ops) == {"add", "sub", "mul", "div"} and max(ops.values()) < 1.5 * min(ops.values()), ops
    for r in files["train"] + files["test"]:
        msgs = r["messages"]
        if r["category"] != "multi_turn" or not r["templates"][-1].startswith("follow:"):
            continue
        last_answer = re.search(r"-?\d+(?:\.\d+)?(?=\.$)", msgs[max(i for i, m in enumerate(msgs) if m["role"] == "user") - 1]["content"])
        calc = next(arg for name, arg, _ in actions(r) if name == "calc")
        assert last_answer and re.search(rf"(?<![\d.]){re.escape(last_answer.group())}(?![\d.])", calc), (msgs, calc)
        follows += 1
    assert follows > 300
    held = [t for t in gen.tpl.follow if t.heldout]
    assert len(gen.tpl.follow) >= 80 and len(held) >= 10 and {t.id.split(":")[1] for t in held} >= {"add", "mul"}


def test_a_multi_step_plan_names_the_operation_and_number_of_its_last_calc(files):
    # "I should look this up, then multiply by 88." -> ... calc(38 * 88): the operation is said right
    # after the question and copied at the end
    verbs, checked = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/"}, 0
    for r in files["train"] + files["test"]:
        calcs = [arg for name, arg, _ in actions(r) if name == "calc"]
        if r["category"] != "multi_step" or not calcs:
            continue
        step = PLAN.fullmatch(r["messages"][1]["reasoning_content"]).group(1)
        assert f" {verbs[step.split()[0]]} " in calcs[-1], (step, calcs)
        number = re.search(r"-?\d+(?:\.\d+)?$", step)
        assert number is None or number.group() in calcs[-1], (step, calcs)
        checked += 1
    assert checked > 1500


def test_answer_shapes_are_added_to_an_older_checkpoint(tmp_path, capsys):
    """agent_sft.shapes: meta.json gains data.answer_shapes and keeps everything else."""
    from agent_sft.shapes import main as shapes_main
    ckpt, traces = tmp_path / "agent", tmp_path / "traces"
    ckpt.mkdir(), traces.mkdir()
    (ckpt / "meta.json").write_text(json.dumps({"stage": "agent", "step": 7, "data": {"train_traces": 1}}))
    call = {"id": "c1", "type": "function", "function": {"name": "calc", "arguments": '{"expression": "2 + 3"}'}}
    (traces / "train.jsonl").write_text(json.dumps({"messages": [
        {"role": "user", "content": "What is 2 plus 3?"}, {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "5"}, {"role": "assistant", "content": "The answer is 5."}]}) + "\n")
    shapes_main(["--checkpoint", str(ckpt), "--traces", str(traces)])
    assert "1 answer shapes for 1 kinds" in capsys.readouterr().out
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["step"] == 7 and meta["data"]["train_traces"] == 1
    assert meta["data"]["answer_shapes"] == {"calc": {"": [["The answer is ", "."]]}}
    with pytest.raises(SystemExit, match="meta.json is missing"):
        shapes_main(["--checkpoint", str(tmp_path / "none"), "--traces", str(traces)])
