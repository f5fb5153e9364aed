#!/usr/bin/env python3
"""Writes corpus.jsonl: the notes of the search evaluation, one chapter of the King James
Bible each (title "Book N", body one verse a line, "V text"), for the books below.

The text comes from Debian's `bible-kjv-text` (public domain), read with the `bible`
program of `bible-kjv`:

    apt-get install bible-kjv bible-kjv-text
    bench/search/make_corpus.py > bench/search/corpus.jsonl
"""
import json
import re
import subprocess
import sys

BOOKS = [
    "Genesis", "Exodus", "Joshua", "Judges", "Ruth", "1 Samuel", "2 Samuel", "1 Kings",
    "Esther", "Psalms", "Daniel", "Jonah", "Matthew", "Mark", "Luke", "John", "Acts",
]


def main() -> None:
    text = subprocess.run(
        ["bible", "-l100000", "ge1:1-re22:21"], check=True, capture_output=True, text=True
    ).stdout
    chapter, verses = None, []
    chapters = []
    for line in text.splitlines():
        heading = re.fullmatch(r"(\S.*) (\d+)", line)
        verse = re.fullmatch(r"\s+(\d+) (.*)", line)
        if heading:
            if chapter:
                chapters.append((chapter, verses))
            chapter, verses = (heading.group(1), int(heading.group(2))), []
        elif verse:
            verses.append(f"{verse.group(1)} {verse.group(2).strip()}")
    chapters.append((chapter, verses))
    out = sys.stdout
    for (book, number), verses in chapters:
        if book in BOOKS:
            json.dump({"title": f"{book} {number}", "body": "\n".join(verses)}, out)
            out.write("\n")


if __name__ == "__main__":
    main()
