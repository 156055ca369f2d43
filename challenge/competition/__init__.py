"""Run a competition locally: a submission queue in SQLite, workers that score it on every phase,
a leaderboard, and a Codabench bundle of the same competition. See docs/competition.md."""
