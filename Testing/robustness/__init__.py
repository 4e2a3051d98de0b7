"""The robustness corpus and suite of issue 13: corpus.py derives the variants, run_corpus.py runs every command on
them, verdicts.py judges each run (see Testing/test_robustness.py)."""
