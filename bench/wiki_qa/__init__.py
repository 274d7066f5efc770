"""The wiki-qa question set (issue 11): realistic, paraphrased questions over the real wikis in `../shared/data`.

`data` loads the question and edit-scenario files of `bench/data/wiki_qa/` into typed records and computes the
dev/test split; `check` (`python -m bench.wiki_qa.check`) verifies every rule of the format a program can.
"""
