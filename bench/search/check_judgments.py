#!/usr/bin/env python3
"""Checks judgments.jsonl against corpus.jsonl:

- at least 100 queries, ids unique, every relevant note in the corpus;
- a paraphrased query shares no content word with any of its relevant passages (words
  compared lower-cased after stripping common English and King James inflections, so
  "kills" meets "killed"; function words do not count);
- an exact-term query's relevant notes are exactly the corpus notes holding its `term`
  (a name or rare word, whole word, any case), or, for a reference ("John 3:16"), the
  chapter it names.

    bench/search/check_judgments.py   # prints a summary, exits 1 on the first problem
"""
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
STOP = set("""a about after again all also am an and any are art as at be because been before
being but by can could did do does doth dost for from had has hast hath have he her here him his
how i if in into is it its me my no nor not of on one or our out shall shalt she should so some
such than that the thee their them then there these they thine this those thou thus thy to unto
up upon us was we were what when where which while who whom why will with would ye yea you
your""".split())
SUFFIXES = ("ing", "eth", "est", "ed", "es", "s")


def stem(word: str) -> str:
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content(text: str) -> set:
    return {stem(w) for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP and len(w) > 1}


def fail(message: str) -> None:
    print(f"check_judgments: {message}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    corpus = {}
    for line in open(HERE / "corpus.jsonl", encoding="utf-8"):
        note = json.loads(line)
        corpus[note["title"]] = note["title"] + "\n" + note["body"]
    judgments = [json.loads(l) for l in open(HERE / "judgments.jsonl", encoding="utf-8") if l.strip()]
    if len(judgments) < 100:
        fail(f"{len(judgments)} queries, at least 100 needed")
    if len({j["id"] for j in judgments}) != len(judgments):
        fail("query ids are not unique")
    kinds = {"paraphrase": 0, "exact": 0}
    for j in judgments:
        if j["kind"] not in kinds:
            fail(f"{j['id']}: unknown kind {j['kind']!r}")
        kinds[j["kind"]] += 1
        if not j["relevant"]:
            fail(f"{j['id']}: no relevant note")
        for title in j["relevant"]:
            if title not in corpus:
                fail(f"{j['id']}: {title!r} is not in the corpus")
        if j["kind"] == "paraphrase":
            words = content(j["query"])
            for title in j["relevant"]:
                shared = words & content(corpus[title])
                if shared:
                    fail(f"{j['id']} {j['query']!r} shares {sorted(shared)} with {title}")
        else:
            reference = re.fullmatch(r"(.+) (\d+):\d+", j["query"])
            if "term" in j:
                pattern = re.compile(r"\b" + re.escape(j["term"]) + r"\b", re.IGNORECASE)
                holding = sorted(t for t, text in corpus.items() if pattern.search(text))
                if sorted(j["relevant"]) != holding:
                    fail(f"{j['id']}: {j['term']!r} is in {holding}, judged {sorted(j['relevant'])}")
            elif reference:
                book, chapter = reference.group(1), reference.group(2)
                book = "Psalms" if book == "Psalm" else book
                if j["relevant"] != [f"{book} {chapter}"]:
                    fail(f"{j['id']}: {j['query']!r} names {book} {chapter}")
            else:
                fail(f"{j['id']}: an exact query needs a term or a reference")
    print(f"{len(judgments)} queries ({kinds['paraphrase']} paraphrased, {kinds['exact']} exact-term) over {len(corpus)} notes: ok")


if __name__ == "__main__":
    main()
